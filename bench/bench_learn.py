"""No budget given: what ratekeeper learns, against the mock provider at RPM (burst BURST).

Two runs, each against a server that sends its limit headers and against
one that sends none (its 429s still say ``retry-after``):

- ``rk.wrap(openai.AsyncOpenAI(...))`` with no budget, CALLS concurrent calls;
- ``ratekeeper batch`` with no ``--rpm``, a file of LINES lines.

Printed: the errors that reached user code (goal: none), the wall time beside
the ideal ``(N - burst) / rate`` (goal: within 15% with headers, 35% without),
and the share of requests the server answered 429 (goal: under 2% with
headers, under 10% without).

    python bench/bench_learn.py [--rpm 600] [--burst 10] [--calls 60] [--lines 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

import ratekeeper as rk
from ratekeeper.batch import BatchOptions, run_batch
from ratekeeper.testing import MockProvider

MESSAGES = [{"role": "user", "content": "Say hello to the benchmark."}]


async def wrapped_calls(provider: MockProvider, calls: int) -> tuple[float, int]:
    raw = openai.AsyncOpenAI(base_url=provider.base_url, api_key="bench")
    client = rk.wrap(raw)

    async def one() -> None:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

    started = time.monotonic()
    results = await asyncio.gather(*(one() for _ in range(calls)), return_exceptions=True)
    wall = time.monotonic() - started
    await client.close()
    await raw.close()  # the client wrap copied from: its own HTTP client, closed in this loop
    return wall, sum(isinstance(result, BaseException) for result in results)


async def batch_lines(provider: MockProvider, lines: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        with src.open("w") as file:
            for i in range(lines):
                body = {"model": "gpt-4o-mini", "messages": MESSAGES}
                line = {"custom_id": f"r-{i}", "method": "POST", "url": "/v1/chat/completions"}
                file.write(json.dumps({**line, "body": body}) + "\n")
        options = BatchOptions(
            src, Path(tmp) / "out.jsonl", base_url=provider.base_url, show_progress=False
        )
        summary = await run_batch(options)
    return summary.wall, summary.failed


def report(name: str, n: int, wall: float, errors: int, provider: MockProvider, args: Any) -> None:
    ideal = (n - args.burst) / (args.rpm / 60.0)
    hits = provider.hits()
    share = provider.rate_limited / hits if hits else 0.0
    print(
        f"{name:<34} errors {errors:>3}   wall {wall:7.2f}s  ideal {ideal:7.2f}s "
        f"({(wall / ideal - 1) * 100:+5.1f}%)   429s {provider.rate_limited:>4}/{hits:<5} "
        f"({share * 100:4.1f}%)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rpm", type=float, default=600.0)
    parser.add_argument("--burst", type=float, default=10.0)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--skip-batch", action="store_true")
    args = parser.parse_args()
    print(f"mock provider at {args.rpm:g} RPM, burst {args.burst:g}; no budget given")
    for headers in (True, False):
        label = "with limit headers" if headers else "without limit headers"
        runs = [("wrap", args.calls, wrapped_calls)]
        if not args.skip_batch:
            runs.append(("batch", args.lines, batch_lines))
        for kind, n, run in runs:
            with MockProvider(rpm=args.rpm, burst=args.burst, limit_headers=headers) as provider:
                wall, errors = asyncio.run(run(provider, n))
                report(f"{kind} {n}, {label}", n, wall, errors, provider, args)


if __name__ == "__main__":
    main()
