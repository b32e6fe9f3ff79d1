"""Retry decorators on their success path, and header/classification costs, beside the peers.

Run: python bench/bench_retry.py
"""

from __future__ import annotations

from typing import Any, Callable

import backoff as backoff_lib
import httpx
import tenacity
from _timing import async_ns_per_call, ns_per_call

import ratekeeper as rk


def per_call_ns(fn: Callable[[], Any], n: int = 200_000) -> float:
    return ns_per_call("fn()", {"fn": fn}, n)


def per_await_ns(fn: Callable[[], Any], n: int = 50_000) -> float:
    return async_ns_per_call("fn()", {"fn": fn}, n)


def noop() -> None:
    return None


async def anoop() -> None:
    return None


def overheads(
    title: str,
    measure: Callable[..., float],
    fn: Callable[[], Any],
    peer_calls: tuple[int, int],
) -> None:
    """Prints each decorator's cost over the bare ``fn``, as a ratio to ours."""
    base = measure(fn)
    tenacity_calls, backoff_calls = peer_calls
    rows = {
        "ratekeeper @retry": measure(rk.retry(fn)) - base,
        "tenacity @retry": measure(
            tenacity.retry(stop=tenacity.stop_after_attempt(6))(fn), tenacity_calls
        )
        - base,
        "backoff @on_exception": measure(
            backoff_lib.on_exception(backoff_lib.expo, Exception, max_tries=6)(fn), backoff_calls
        )
        - base,
    }
    print(title)
    ours = rows["ratekeeper @retry"]
    for name, ns in rows.items():
        print(f"  {name:28s} {ns:9.0f} ns   {ns / ours:6.1f}x ratekeeper")


def main() -> None:
    overheads(
        "sync success-path overhead per call (ns), lower is better",
        per_call_ns,
        noop,
        (20_000, 50_000),
    )
    overheads("async success-path overhead per await (ns)", per_await_ns, anoop, (10_000, 20_000))

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
