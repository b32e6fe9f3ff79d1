"""Overhead of @rk.rate_limited beside tenacity's @retry and backoff's @on_exception.

Each decorator wraps the same no-op function; every call succeeds (their
success path; ours acquires from a Limiter with units available and
releases the permit). Prints ns per call over the bare function, and the
ratios. Run: ``python bench/bench_decorators.py``.
"""

from __future__ import annotations

import asyncio
import time

import backoff
import tenacity

import ratekeeper as rk

N = 200_000


def noop() -> None:
    return None


async def anoop() -> None:
    return None


def per_call_ns(fn, n: int = N) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - started) / n)
    return best


def per_call_ns_async(fn, n: int = N) -> float:
    async def run() -> float:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter_ns()
            for _ in range(n):
                await fn()
            best = min(best, (time.perf_counter_ns() - started) / n)
        return best

    return asyncio.run(run())


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
    print(f"sync, overhead per call over a bare no-op ({bare:.0f} ns), {N} calls, best of 3")
    sync_ns = {name: per_call_ns(fn) - bare for name, fn in sync.items()}
    for name, ns in sync_ns.items():
        print(f"  {name:34s} {ns / 1000:8.3f} us")
    ours = sync_ns["rk.rate_limited (rpm+tpm)"]
    print(f"  tenacity / ratekeeper  = {sync_ns['tenacity.retry'] / ours:6.1f}x")
    print(f"  backoff  / ratekeeper  = {sync_ns['backoff.on_exception'] / ours:6.1f}x")

    abare = per_call_ns_async(anoop)
    asyncs = {
        "rk.rate_limited (rpm+tpm)": rk.rate_limited(big_limiter(), tokens=10)(anoop),
        "tenacity.retry": tenacity.retry(stop=tenacity.stop_after_attempt(5))(anoop),
        "backoff.on_exception": backoff.on_exception(backoff.expo, Exception, max_tries=5)(anoop),
    }
    print(f"async, overhead per await over a bare no-op coroutine ({abare:.0f} ns)")
    async_ns = {name: per_call_ns_async(fn) - abare for name, fn in asyncs.items()}
    for name, ns in async_ns.items():
        print(f"  {name:34s} {ns / 1000:8.3f} us")
    ours = async_ns["rk.rate_limited (rpm+tpm)"]
    print(f"  tenacity / ratekeeper  = {async_ns['tenacity.retry'] / ours:6.1f}x")
    print(f"  backoff  / ratekeeper  = {async_ns['backoff.on_exception'] / ours:6.1f}x")


if __name__ == "__main__":
    main()
