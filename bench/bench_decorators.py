"""Overhead of @rk.rate_limited beside tenacity's @retry and backoff's @on_exception.

Each decorator wraps the same no-op function; every call succeeds (their
success path; ours acquires from a Limiter with units available and
releases the permit). Prints ns per call over the bare function, and the
ratios. Run: ``python bench/bench_decorators.py``.
"""

from __future__ import annotations

from typing import Any, Callable

import backoff
import tenacity
from _timing import async_ns_per_call, ns_per_call

import ratekeeper as rk

N = 200_000


def noop() -> None:
    return None


async def anoop() -> None:
    return None


def per_call_ns(fn: Callable[[], Any], n: int = N) -> float:
    return ns_per_call("fn()", {"fn": fn}, n, repeat=3)


def per_call_ns_async(fn: Callable[[], Any], n: int = N) -> float:
    return async_ns_per_call("fn()", {"fn": fn}, n, repeat=3)


def report(
    title: str, measure: Callable[[Callable[[], Any]], float], cases: dict[str, Callable[[], Any]]
) -> None:
    """Prints each decorator's cost over the bare call, and the peers' ratios to ours."""
    print(title)
    costs = {name: measure(fn) for name, fn in cases.items()}
    for name, ns in costs.items():
        print(f"  {name:34s} {ns / 1000:8.3f} us")
    ours = costs["rk.rate_limited (rpm+tpm)"]
    print(f"  tenacity / ratekeeper  = {costs['tenacity.retry'] / ours:6.1f}x")
    print(f"  backoff  / ratekeeper  = {costs['backoff.on_exception'] / ours:6.1f}x")


def big_limiter() -> rk.Limiter:
    return rk.Limiter(rpm=10**12, tpm=10**15)


def main() -> None:
    bare = per_call_ns(noop)
    sync = {
        "rk.rate_limited (rpm+tpm)": rk.rate_limited(big_limiter(), tokens=10)(noop),
        "rk.rate_limited (retry=False)": rk.rate_limited(big_limiter(), retry=False)(noop),
        "tenacity.retry": tenacity.retry(stop=tenacity.stop_after_attempt(5))(noop),
        "backoff.on_exception": backoff.on_exception(backoff.expo, Exception, max_tries=5)(noop),
    }
    report(
        f"sync, overhead per call over a bare no-op ({bare:.0f} ns), {N} calls, best of 3",
        lambda fn: per_call_ns(fn) - bare,
        sync,
    )

    abare = per_call_ns_async(anoop)
    asyncs = {
        "rk.rate_limited (rpm+tpm)": rk.rate_limited(big_limiter(), tokens=10)(anoop),
        "tenacity.retry": tenacity.retry(stop=tenacity.stop_after_attempt(5))(anoop),
        "backoff.on_exception": backoff.on_exception(backoff.expo, Exception, max_tries=5)(anoop),
    }
    report(
        f"async, overhead per await over a bare no-op coroutine ({abare:.0f} ns)",
        lambda fn: per_call_ns_async(fn) - abare,
        asyncs,
    )


if __name__ == "__main__":
    main()
