"""ns per call of the window limiters beside `limits` (memory storage) and aiolimiter.

Run: python bench/bench_windows.py   (after `maturin develop --release`)

Every limiter is sized so that each call is granted: this measures the
admitting fast path, the one a program pays on every request.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

from aiolimiter import AsyncLimiter
from limits import parse, storage, strategies

import ratekeeper as rk

SYNC_CALLS = 200_000
ASYNC_CALLS = 100_000
HUGE = 1e12


def per_call(call: Callable[[], object], calls: int = SYNC_CALLS) -> float:
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - began) / calls * 1e9)
    return best


def per_await(make: Callable[[], Awaitable[object]], calls: int = ASYNC_CALLS) -> float:
    async def run() -> float:
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            for _ in range(calls):
                await make()
            best = min(best, (time.perf_counter() - began) / calls * 1e9)
        return best

    return asyncio.run(run())


def table(title: str, rows: list[tuple[str, float]]) -> None:
    ours = rows[0][1]
    print(f"\n{title}")
    for name, ns in rows:
        print(f"  {name:42s} {ns:9.0f} ns   {ns / ours:6.1f}x ours")


def main() -> None:
    memory = storage.MemoryStorage()
    item = parse("1000000000/second")
    moving = strategies.MovingWindowRateLimiter(memory)
    fixed = strategies.FixedWindowRateLimiter(memory)
    sliding_rk = rk.SlidingWindow(HUGE, 1.0)
    fixed_rk = rk.FixedWindow(HUGE, 1.0)
    bucket_rk = rk.TokenBucket(HUGE, HUGE)

    table(
        "sliding window, admitting",
        [
            ("ratekeeper SlidingWindow.try_acquire()", per_call(sliding_rk.try_acquire)),
            ("limits MovingWindowRateLimiter.hit()", per_call(lambda: moving.hit(item, "a"))),
        ],
    )
    table(
        "fixed window, admitting",
        [
            ("ratekeeper FixedWindow.try_acquire()", per_call(fixed_rk.try_acquire)),
            ("limits FixedWindowRateLimiter.hit()", per_call(lambda: fixed.hit(item, "b"))),
        ],
    )
    table(
        "await acquire_async(), granted at once",
        [
            ("ratekeeper TokenBucket", per_await(bucket_rk.acquire_async)),
            ("ratekeeper SlidingWindow", per_await(rk.SlidingWindow(HUGE, 1.0).acquire_async)),
            ("ratekeeper FixedWindow", per_await(fixed_rk.acquire_async)),
            ("aiolimiter AsyncLimiter.acquire()", per_await(AsyncLimiter(HUGE, 1.0).acquire)),
        ],
    )


if __name__ == "__main__":
    main()
