"""Cancelling reservations never loosens a limiter: properties in virtual time.

The waiters of TokenBucket and of each KeyedLimiter key move up when one
ahead cancels: their properties (the bound, FIFO, the move-up) are Rust
property tests (`src/core/bucket_props.rs`, `src/core/keyed_props.rs`); here,
the limiters whose reservations keep their due times, and the move-up seen
from the public API.

A waiter reserves units for a due time and sleeps; if it is cancelled first
it hands them back (``_cancel``). Other waiters may already be queued behind
it, sleeping until due times that counted its units. These properties play
any interleaving of grants, reservations, cancellations and time, and check
the SPEC bounds on the times units are actually granted: a reservation not
cancelled is granted at its due time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Callable

import pytest
from grant_bounds import (
    NS,
    Grants,
    assert_fixed_bound,
    assert_sliding_bound,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import ratekeeper as rk

TICK = 1 / 64


@dataclass(frozen=True)
class Step:
    """Wait ``ticks``, then: take now (``try``), reserve, or cancel a pending reservation."""

    ticks: int
    kind: str  # "try", "reserve", "cancel"
    n: float
    pick: int


steps = st.lists(
    st.builds(
        Step,
        ticks=st.integers(0, 40),
        kind=st.sampled_from(["try", "reserve", "reserve", "cancel"]),
        n=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
        pick=st.integers(0, 50),
    ),
    max_size=50,
)
rates = st.sampled_from([0.5, 1.0, 4.0, 16.0])
sizes = st.sampled_from([1.0, 2.0, 3.0, 5.0])
windows = st.integers(1, 8).map(lambda k: k / 4)

Reserve = Callable[[float], int]
Cancel = Callable[[float, int], None]
Try = Callable[[float], bool]


def play(
    clock: rk.ManualClock,
    steps: list[Step],
    most: float,
    take: Try,
    reserve: Reserve,
    cancel: Cancel,
) -> list[tuple[int, float]]:
    """Plays ``steps``; returns every grant as (time in ns, units)."""
    grants: list[tuple[int, float]] = []
    pending: list[tuple[int, float]] = []
    for step in steps:
        clock.advance(step.ticks * TICK)
        now = round(clock.now() * NS)
        # Reservations whose due time has come are granted: their waiters woke.
        grants += [(due, n) for due, n in pending if due <= now]
        pending = [(due, n) for due, n in pending if due > now]
        n = min(step.n, most)
        if step.kind == "try":
            if take(n):
                grants.append((now, n))
        elif step.kind == "reserve":
            due = reserve(n)
            assert due >= 0, "no timeout: never refused"
            if due == 0:
                grants.append((now, n))
            else:
                pending.append((due, n))
        elif pending:
            due, n = pending.pop(step.pick % len(pending))
            cancel(n, due)
    return grants + pending


# Each limiter as (size, period) -> (take, reserve, cancel), with the bound it
# keeps and the strategy of its period: a refill rate for the buckets, a
# window in seconds for the windows.
Make = Callable[[float, float, rk.ManualClock], tuple[Try, Reserve, Cancel]]
Check = Callable[[Grants, float, float], None]


def make_window(
    kind: type[rk.SlidingWindow] | type[rk.FixedWindow],
) -> Make:
    def make(limit: float, window: float, clock: rk.ManualClock) -> tuple[Try, Reserve, Cancel]:
        limiter = kind(limit, window, clock=clock)
        return limiter.try_acquire, lambda n: limiter._reserve(n, None), limiter._cancel

    return make


KINDS: dict[str, tuple[Make, st.SearchStrategy[float], Check]] = {
    "sliding_window_within_limit_in_any_window": (
        make_window(rk.SlidingWindow),
        windows,
        assert_sliding_bound,
    ),
    "fixed_window_within_limit_per_aligned_window": (
        make_window(rk.FixedWindow),
        windows,
        assert_fixed_bound,
    ),
}


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=300, deadline=None)
@given(size=sizes, steps=steps, data=st.data())
def test_cancellations_never_grant_beyond_the_limiters_bound(
    kind: str, size: float, steps: list[Step], data: st.DataObject
) -> None:
    make, periods, check = KINDS[kind]
    period = data.draw(periods, label="rate or window")
    clock = rk.ManualClock()
    take, reserve, cancel = make(size, period, clock)
    check(play(clock, steps, size, take, reserve, cancel), size, period)


async def test_a_cancelled_waiter_moves_those_behind_it_up_in_order() -> None:
    # rate 10/s, capacity 1: waiters due every 0.1 s; every other one is
    # cancelled at once, so the 20 that stay are granted within ~2 s, not ~4 s.
    loop = asyncio.get_running_loop()
    bucket = rk.TokenBucket(10.0, 1.0)
    assert bucket.try_acquire()
    granted: list[tuple[int, float]] = []

    async def wait(i: int) -> None:
        await bucket.acquire_async()
        granted.append((i, loop.time()))

    started = loop.time()
    tasks = [asyncio.create_task(wait(i)) for i in range(40)]
    await asyncio.sleep(0.01)  # all have reserved
    for task in tasks[::2]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    took = loop.time() - started
    assert [i for i, _ in granted] == list(range(1, 40, 2))
    assert took < 2.6, f"20 survivors took {took:.2f} s"
    # Neither a newcomer ahead: the bucket is empty after the survivors.
    assert not bucket.try_acquire()


async def test_a_refund_with_waiters_queued_goes_to_them_not_to_a_newcomer() -> None:
    bucket = rk.TokenBucket(1.0, 6.0)
    assert bucket.try_acquire(6)
    waiter = asyncio.create_task(bucket.acquire_async(6))
    await asyncio.sleep(0.01)
    bucket.refund(6)
    await asyncio.wait_for(waiter, 1.0)  # woken now, not after 6 s
    assert not bucket.try_acquire(1)
    assert bucket.wait_time(6) == pytest.approx(6.0, abs=0.1)


def test_a_blocked_thread_behind_a_cancelled_reservation_moves_up() -> None:
    bucket = rk.TokenBucket(2.0, 1.0)
    assert bucket.try_acquire()

    async def cancelled_waiter() -> None:
        task = asyncio.create_task(bucket.acquire_async())
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    took: list[float] = []

    def blocked() -> None:
        time.sleep(0.02)  # behind the async waiter
        started = time.monotonic()
        bucket.acquire()
        took.append(time.monotonic() - started)

    thread = threading.Thread(target=blocked)
    thread.start()
    asyncio.run(cancelled_waiter())
    thread.join()
    # Due at ~1 s behind the waiter; moved up to ~0.5 s when it cancelled.
    assert took[0] < 0.8
