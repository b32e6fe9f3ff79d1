"""``ratekeeper demo``: what the limiter does, in under half a minute, with no key and no network.

Two acts against the built-in mock provider (which enforces its limit as a
provider that meters per couple of seconds does): first a naive client fires
a burst at once and collects 429s; then ``ratekeeper batch``'s own code path
sends the whole batch at the limit, and the summary compares the rate it
achieved with the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from ._batch_html import render_report
from .batch import BatchOptions, run_batch
from .testing.mock_server import MockProvider

_MODEL = "gpt-4o-mini"


async def _naive_burst(rpm: float, burst: float, n: int) -> int:
    """Sends ``n`` requests at once with no limiter; returns how many got a 429."""
    import openai

    with MockProvider(rpm=rpm, burst=burst) as provider:
        client = openai.AsyncOpenAI(base_url=provider.base_url, api_key="demo", max_retries=0)
        message: Any = [{"role": "user", "content": "hello"}]

        async def one() -> None:
            with contextlib.suppress(openai.RateLimitError):
                await client.chat.completions.create(model=_MODEL, messages=message)

        await asyncio.gather(*(one() for _ in range(n)))
        await client.close()
        return provider.rate_limited


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def default_report_path() -> Path:
    """Where the demo's report goes unless ``--report`` says otherwise."""
    return Path(tempfile.gettempdir(), "ratekeeper-demo-report.html")


def run_demo(requests: int = 300, rpm: float = 900.0, report: Optional[Path] = None) -> int:
    """Runs the demo; writes its HTML report and prints its path; returns 0 when no line failed."""
    burst = max(1.0, rpm / 30.0)  # the provider meters per 2 s, as OpenAI may
    say(f"ratekeeper demo: a mock provider allowing {rpm:.0f} requests/min ({burst:.0f} at once)")
    naive = min(requests, int(burst * 3))
    rejected = asyncio.run(_naive_burst(rpm, burst, naive))
    say(f"  without ratekeeper: {naive} requests at once -> {rejected} answered 429")
    seconds = max(0.0, requests - burst) / (rpm / 60.0)
    say(f"  with ratekeeper: {requests} requests at {rpm:.0f} RPM (about {seconds:.0f} s)")
    with (
        tempfile.TemporaryDirectory(prefix="ratekeeper-demo-") as tmp,
        MockProvider(rpm=rpm, burst=burst) as provider,
    ):
        prompts = Path(tmp, "prompts.jsonl")
        with prompts.open("w") as file:
            for i in range(requests):
                prompt = {"role": "user", "content": f"Say something about rate limit #{i}."}
                body = {"model": _MODEL, "messages": [prompt]}
                line = {"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions"}
                file.write(json.dumps({**line, "body": body}) + "\n")
        options = BatchOptions(
            prompts,
            Path(tmp, "results.jsonl"),
            model=_MODEL,
            base_url=provider.base_url,
            rpm=rpm,
            burst=burst,
            concurrency=32,
            report=report or default_report_path(),
        )
        summary = asyncio.run(run_batch(options))
        assert options.report is not None
        options.report.write_text(render_report(summary, "demo (OpenAI Batch API lines)"))
        say(summary.render(options.output_path).replace(str(options.output_path), "(temporary)"))
        minutes = max(0.0, summary.wall - 0.0) / 60.0
        achieved = max(0.0, summary.sent - burst) / minutes if minutes else 0.0
        say(
            f"  after the first {burst:.0f}: {achieved:,.0f} requests/min against the limit of "
            f"{rpm:,.0f}; the provider answered {provider.rate_limited} request(s) with 429"
        )
    say(f"  report (open it in a browser): {options.report}")
    print(options.report, flush=True)
    return 0 if summary.failed == 0 and not summary.interrupted else 1
