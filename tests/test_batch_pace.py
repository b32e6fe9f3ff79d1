"""The batch holds the provider's limit: adopting real headers never stalls a refilling bucket."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import ratekeeper as rk
from ratekeeper.batch import BatchOptions, run_batch
from ratekeeper.testing import MockProvider
from ratekeeper.testing._budget import Budget, anthropic_headers, openai_headers


def grant_at(limiter: rk.Limiter, clock: rk.ManualClock) -> float:
    permit = limiter._reserve(0, None)
    assert permit is not None
    at = permit._due / 1e9 if permit._due else clock.now()
    clock.advance(max(0.0, at - clock.now()))
    permit.release()
    return at


@pytest.mark.parametrize("headers_of", [openai_headers, anthropic_headers])
def test_a_limiter_adopting_minute_bucket_headers_keeps_granting_at_the_rate(headers_of) -> None:
    # The provider's own bucket on the same clock answers every request with
    # its headers; its reset is the time until the bucket is full (up to 60 s).
    clock = rk.ManualClock()
    limiter = rk.Limiter(rpm=1200, clock=clock)
    server = Budget(1200, clock=clock)
    for _ in range(1400):
        grant_at(limiter, clock)
        assert server.take(1), "the limiter sent more than the provider allows"
        limiter.update_from_headers(headers_of(server, None))
    # 1200 at once, then 200 at 20/s: 10 s. Waiting out the reset took 60 s more.
    assert 9.5 <= clock.now() <= 10.5


def test_a_slower_provider_sets_the_pace_after_it_runs_out() -> None:
    clock = rk.ManualClock()
    limiter = rk.Limiter(rpm=1200, clock=clock)
    limiter.update_from_headers(
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1m0s",
        }
    )
    assert grant_at(limiter, clock) == pytest.approx(1.0)


def test_an_openrouter_window_is_waited_out_until_its_reset() -> None:
    clock = rk.ManualClock()
    limiter = rk.Limiter(rpm=20, clock=clock)
    reset_ms = int((time.time() + 30.0) * 1000)
    limiter.update_from_headers(
        {
            "X-RateLimit-Limit": "20",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(reset_ms),
        }
    )
    assert grant_at(limiter, clock) == pytest.approx(30.0, abs=0.1)


async def test_a_batch_beyond_the_burst_finishes_near_the_ideal_time(tmp_path: Path) -> None:
    # 30 at once, then 10/s: 50 requests ideally take 2 s. Waiting for the
    # provider's reset (3 s: the time until full) each time it reports 0 took 5 s or more.
    rpm, burst, n = 600.0, 30.0, 50
    source = tmp_path / "in.jsonl"
    message = [{"role": "user", "content": "hi"}]
    source.write_text("".join(json.dumps({"id": i, "messages": message}) + "\n" for i in range(n)))
    with MockProvider(rpm=rpm, burst=burst) as provider:
        options = BatchOptions(
            source,
            tmp_path / "out.jsonl",
            model="gpt-4o-mini",
            base_url=provider.base_url,
            rpm=rpm,
            burst=burst,
            concurrency=16,
            show_progress=False,
        )
        summary = await run_batch(options)
        rejected = provider.rate_limited
    ideal = (n - burst) / (rpm / 60.0)
    assert summary.failed == 0
    assert rejected == 0
    assert summary.wall < 1.5 * ideal, f"{summary.wall:.2f} s against an ideal of {ideal:.1f} s"


async def test_a_batch_without_rpm_or_limit_headers_adapts_to_the_providers_rate(
    tmp_path: Path,
) -> None:
    # No budget and no header to learn one from: the slow start finds the
    # burst with a few 429s (not one per worker past it), then the rate adapts.
    n = 150
    source = tmp_path / "in.jsonl"
    message = [{"role": "user", "content": "hi"}]
    source.write_text("".join(json.dumps({"id": i, "messages": message}) + "\n" for i in range(n)))
    with MockProvider(rpm=3000, burst=10, limit_headers=False) as provider:
        options = BatchOptions(
            source,
            tmp_path / "out.jsonl",
            model="gpt-4o-mini",
            base_url=provider.base_url,
            concurrency=32,
            show_progress=False,
        )
        summary = await run_batch(options)
        rejected, hits = provider.rate_limited, provider.hits()
    assert summary.failed == 0
    assert rejected < 0.1 * hits, f"{rejected} 429s in {hits} requests"
