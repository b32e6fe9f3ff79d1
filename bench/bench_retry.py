"""Retry decorators on their success path, and header/classification costs, beside the peers.

Run: python bench/bench_retry.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import backoff as backoff_lib
import httpx
import ratekeeper as rk
import tenacity


def per_call_ns(fn: Callable[[], Any], n: int = 200_000) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / n)
    return best


def per_await_ns(make: Callable[[], Any], n: int = 50_000) -> float:
    async def run() -> float:
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter_ns()
            for _ in range(n):
                await make()
            best = min(best, (time.perf_counter_ns() - start) / n)
        return best

    return asyncio.run(run())


def noop() -> None:
    return None


async def anoop() -> None:
    return None


def main() -> None:
    base = per_call_ns(noop)
    rows = {
        "ratekeeper @retry": per_call_ns(rk.retry(noop)) - base,
        "tenacity @retry": per_call_ns(
            tenacity.retry(stop=tenacity.stop_after_attempt(6))(noop), 20_000
        )
        - base,
        "backoff @on_exception": per_call_ns(
            backoff_lib.on_exception(backoff_lib.expo, Exception, max_tries=6)(noop), 50_000
        )
        - base,
    }
    print("sync success-path overhead per call (ns), lower is better")
    ours = rows["ratekeeper @retry"]
    for name, ns in rows.items():
        print(f"  {name:28s} {ns:9.0f} ns   {ns / ours:6.1f}x ratekeeper")

    abase = per_await_ns(anoop)
    arows = {
        "ratekeeper @retry": per_await_ns(rk.retry(anoop)) - abase,
        "tenacity @retry": per_await_ns(
            tenacity.retry(stop=tenacity.stop_after_attempt(6))(anoop), 10_000
        )
        - abase,
        "backoff @on_exception": per_await_ns(
            backoff_lib.on_exception(backoff_lib.expo, Exception, max_tries=6)(anoop), 20_000
        )
        - abase,
    }
    print("async success-path overhead per await (ns)")
    ours = arows["ratekeeper @retry"]
    for name, ns in arows.items():
        print(f"  {name:28s} {ns:9.0f} ns   {ns / ours:6.1f}x ratekeeper")

    openai_headers = httpx.Headers(
        {
            "content-type": "application/json",
            "x-request-id": "req_1",
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-reset-requests": "120ms",
            "x-ratelimit-limit-tokens": "200000",
            "x-ratelimit-remaining-tokens": "199000",
            "x-ratelimit-reset-tokens": "1m30s",
            "openai-processing-ms": "300",
            "date": "Tue, 24 Nov 2026 11:00:00 GMT",
        }
    )
    plain = dict(openai_headers)
    unrelated = {"content-type": "x", "date": "y"}
    err = httpx.ConnectError("refused")
    costs = {
        "read_limits(httpx.Headers: 10 headers, 6 limits)": per_call_ns(
            lambda: rk.read_limits(openai_headers), 20_000
        ),
        "read_limits(dict, the same)": per_call_ns(lambda: rk.read_limits(plain), 20_000),
        "read_limits(dict of 2 unrelated headers)": per_call_ns(
            lambda: rk.read_limits(unrelated), 50_000
        ),
        "is_retryable(httpx.ConnectError)": per_call_ns(lambda: rk.is_retryable(err)),
    }
    print("per response (ns)")
    for name, ns in costs.items():
        print(f"  {name:50s} {ns:9.0f}")


if __name__ == "__main__":
    main()
