"""The three limiters under real threads and a real event loop (real time).

Bounds are generous where the machine's speed matters, and exact where the
limiter's contract is: never more than the bound, under any contention.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable, Union

import pytest

import ratekeeper as rk

Limiter = Union[rk.TokenBucket, rk.SlidingWindow, rk.FixedWindow]


def hammer(take: Callable[[], bool], threads: int, seconds: float) -> tuple[int, float]:
    """Calls ``take`` from ``threads`` threads for ``seconds``; returns (grants, elapsed)."""
    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    deadline = 0.0

    def worker(index: int) -> None:
        start.wait()
        granted = 0
        while time.monotonic() < deadline:
            if take():
                granted += 1
        counts[index] = granted

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    began = time.monotonic()
    deadline = began + seconds
    start.wait()
    for thread in workers:
        thread.join()
    return sum(counts), time.monotonic() - began


def assert_eight_threads_get_the_bucket_bound(
    rate: float, capacity: float, blocking: bool, seconds: float, least: float
) -> None:
    """8 threads take from one bucket: never above its bound, at least ``least`` of it."""
    bucket = rk.TokenBucket(rate, capacity)
    began = time.monotonic()
    take = bucket.acquire if blocking else bucket.try_acquire
    granted, _ = hammer(take, threads=8, seconds=seconds)
    # From the bucket's creation (it starts full) to the last thread's end.
    bound = capacity + rate * (time.monotonic() - began)
    assert granted <= bound
    assert granted >= least * bound


def test_eight_threads_on_one_bucket_get_the_bound_and_no_more() -> None:
    assert_eight_threads_get_the_bucket_bound(2000, 100, blocking=False, seconds=2.0, least=0.95)


def test_eight_threads_blocking_on_one_bucket_stay_within_the_bound() -> None:
    assert_eight_threads_get_the_bucket_bound(500, 10, blocking=True, seconds=1.0, least=0.8)


def test_threads_on_a_sliding_window_get_at_most_limit_per_window() -> None:
    window = rk.SlidingWindow(200, 0.25)
    granted, elapsed = hammer(window.try_acquire, threads=4, seconds=1.0)
    windows_started = int(elapsed / 0.25) + 1
    assert granted <= 200 * windows_started
    assert granted >= 0.95 * 200 * (windows_started - 1)


def test_threads_on_a_fixed_window_get_at_most_limit_per_aligned_window() -> None:
    window = rk.FixedWindow(200, 0.25)
    granted, elapsed = hammer(window.try_acquire, threads=4, seconds=1.0)
    # The run may straddle one more aligned window than its length suggests.
    windows_touched = int(elapsed / 0.25) + 2
    assert granted <= 200 * windows_touched
    assert granted >= 0.95 * 200 * (windows_touched - 3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: rk.TokenBucket(1, 1),
        lambda: rk.SlidingWindow(1, 1.0),
        lambda: rk.FixedWindow(1, 1.0),
    ],
    ids=["TokenBucket", "SlidingWindow", "FixedWindow"],
)
def test_a_blocking_acquire_lets_other_threads_run(make: Callable[[], Limiter]) -> None:
    limiter = make()
    limiter.try_acquire()
    waiting = threading.Event()

    def wait_for_a_unit() -> None:
        waiting.set()
        limiter.acquire()

    thread = threading.Thread(target=wait_for_a_unit)
    thread.start()
    waiting.wait()
    # If the wait held the GIL, this thread would stall for the whole wait.
    longest_gap, last, spins = 0.0, time.perf_counter(), 0
    while thread.is_alive():
        now = time.perf_counter()
        longest_gap, last = max(longest_gap, now - last), now
        spins += 1
    thread.join()
    assert spins > 1000
    assert longest_gap < 0.5


async def test_hundred_tasks_on_a_bucket_are_served_in_order_at_the_rate() -> None:
    bucket = rk.TokenBucket(200, 1)
    served: list[int] = []

    async def task(index: int) -> None:
        await bucket.acquire_async()
        served.append(index)

    began = time.monotonic()
    await asyncio.gather(*(task(i) for i in range(100)))
    elapsed = time.monotonic() - began
    assert served == list(range(100))
    # 99 waits of 5 ms: never faster (exact rate), and not much slower.
    assert elapsed >= 99 / 200 - 0.01
    assert elapsed < 5.0


@pytest.mark.parametrize(
    "make",
    [
        lambda clock: rk.TokenBucket(10, 1, clock=clock),
        lambda clock: rk.SlidingWindow(1, 0.1, clock=clock),
        lambda clock: rk.FixedWindow(1, 0.1, clock=clock),
    ],
    ids=["TokenBucket", "SlidingWindow", "FixedWindow"],
)
async def test_tasks_are_served_in_arrival_order_in_virtual_time(
    make: Callable[[rk.ManualClock], Limiter],
) -> None:
    clock = rk.ManualClock()
    limiter = make(clock)
    served: list[tuple[int, float]] = []

    async def task(index: int) -> None:
        await limiter.acquire_async()
        served.append((index, clock.now()))

    await asyncio.gather(*(task(i) for i in range(100)))
    assert [index for index, _ in served] == list(range(100))
    assert served[-1][1] == pytest.approx(9.9)


@pytest.mark.parametrize(
    "make",
    [
        lambda: rk.TokenBucket(5, 1),
        lambda: rk.SlidingWindow(1, 0.2),
        lambda: rk.FixedWindow(1, 0.2),
    ],
    ids=["TokenBucket", "SlidingWindow", "FixedWindow"],
)
async def test_a_cancelled_waiter_lets_the_next_one_in_earlier(
    make: Callable[[], Limiter],
) -> None:
    limiter = make()
    limiter.try_acquire()
    order: list[str] = []

    async def wait(name: str) -> None:
        await limiter.acquire_async()
        order.append(name)

    first = asyncio.ensure_future(wait("first"))
    second = asyncio.ensure_future(wait("second"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    before = limiter.wait_time()
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    # The cancelled units are free again: a newcomer waits one slot less.
    assert limiter.wait_time() < before - 0.1
    third = asyncio.ensure_future(wait("third"))
    await asyncio.wait_for(asyncio.gather(first, third), timeout=5.0)
    assert order == ["first", "third"]
