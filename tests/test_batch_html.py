"""``--report FILE.html`` (ratekeeper._batch_html), opened in a real headless Chromium.

The report comes from a real run against the mock provider with 429s and
retries in it; Chromium loads it from disk with the network disabled,
and the test reads back the DOM Chromium built and its console log.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ratekeeper._batch_html import render_report
from ratekeeper.batch import BatchOptions, BatchSummary, run_batch
from ratekeeper.testing import MockProvider

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
HELLO = [{"role": "user", "content": "hello there"}]


def chromium(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        # Any request leaving the machine would fail: the page must need none.
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


async def a_run_with_429s_and_retries(tmp_path: Path) -> BatchSummary:
    src = tmp_path / "in.jsonl"
    lines = [
        {"custom_id": f"line {i} <b>&", "params": {"max_tokens": 5, "messages": HELLO}}
        for i in range(40)
    ]
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with MockProvider(rpm=1200, latency=0.01) as provider:
        provider.inject(429, retry_after=0.2, times=3)
        provider.inject(503, times=2)
        options = BatchOptions(
            src,
            tmp_path / "out.jsonl",
            model="claude-3-5-haiku-latest",
            base_url=provider.anthropic_base_url,
            rpm=1200,
            concurrency=4,
            show_progress=False,
            report=tmp_path / "report.html",
        )
        return await run_batch(options)


async def test_report_holds_the_run_with_its_429s_retries_and_slowest_lines(tmp_path: Path) -> None:
    summary = await a_run_with_429s_and_retries(tmp_path)
    assert (summary.ok, summary.rate_limited, summary.retries) == (40, 3, 5)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 3 and "limit (20 req/s)" in page
    assert "line 0 &lt;b&gt;&amp;" in page and "<b>&" not in page  # ids are escaped
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page fetches something"
    assert "<script" not in page


@needs_chromium
async def test_report_renders_in_headless_chromium_with_its_charts_and_no_console_errors(
    tmp_path: Path,
) -> None:
    await a_run_with_429s_and_retries(tmp_path)
    page = tmp_path / "report.html"
    dom = chromium(page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for chart in ("requests-chart", "tokens-chart", "errors-chart"):
        assert f'id="{chart}"' in dom.stdout
    assert dom.stdout.count("<polyline") == 2 and "<rect" in dom.stdout
    assert "Slowest lines" in dom.stdout and "p99" in dom.stdout
    assert console_errors(dom.stderr) == []
    shot = tmp_path / "report.png"
    picture = chromium(page, f"--screenshot={shot}", "--window-size=1000,1600")
    assert picture.returncode == 0 and shot.stat().st_size > 20_000  # not a blank page


@needs_chromium
def test_the_console_check_sees_an_error_when_there_is_one(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><script>undefinedThing()</script></body></html>")
    result = chromium(broken, "--dump-dom")
    assert any("undefinedThing" in line for line in console_errors(result.stderr))


def test_an_empty_run_still_renders_a_page() -> None:
    page = render_report(BatchSummary(), "empty.jsonl")
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 3
