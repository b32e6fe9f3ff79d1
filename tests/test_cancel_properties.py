"""Cancelling reservations never loosens a limiter: properties in virtual time.

A waiter reserves units for a due time and sleeps; if it is cancelled first
it hands them back (``_cancel``). Other waiters may already be queued behind
it, sleeping until due times that counted its units. These properties play
any interleaving of grants, reservations, cancellations and time, and check
the SPEC bounds on the times units are actually granted: a reservation not
cancelled is granted at its due time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable

import pytest
from grant_bounds import (
    NS,
    Grants,
    assert_bucket_bound,
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


def make_bucket(capacity: float, rate: float, clock: rk.ManualClock) -> tuple[Try, Reserve, Cancel]:
    bucket = rk.TokenBucket(rate, capacity, clock=clock)
    return bucket.try_acquire, lambda n: bucket._reserve(n, None), bucket._cancel


def make_keyed(capacity: float, rate: float, clock: rk.ManualClock) -> tuple[Try, Reserve, Cancel]:
    keyed = rk.KeyedLimiter(rate, capacity, clock=clock)
    return (
        lambda n: keyed.try_acquire("k", n),
        lambda n: keyed._reserve("k", n, None),
        lambda n, due: keyed._cancel("k", n, due),
    )


def make_window(
    kind: type[rk.SlidingWindow] | type[rk.FixedWindow],
) -> Make:
    def make(limit: float, window: float, clock: rk.ManualClock) -> tuple[Try, Reserve, Cancel]:
        limiter = kind(limit, window, clock=clock)
        return limiter.try_acquire, lambda n: limiter._reserve(n, None), limiter._cancel

    return make


KINDS: dict[str, tuple[Make, st.SearchStrategy[float], Check]] = {
    "token_bucket_within_capacity_plus_refill": (
        make_bucket,
        rates,
        lambda grants, capacity, rate: assert_bucket_bound(grants, rate, capacity),
    ),
    "keyed_limiter_within_capacity_plus_refill": (
        make_keyed,
        rates,
        lambda grants, capacity, rate: assert_bucket_bound(grants, rate, capacity),
    ),
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


def test_a_cancelled_reservation_with_a_waiter_behind_it_does_not_let_a_third_land_on_it() -> None:
    # The case of the review: capacity 1, rate 1; A due at 1 s, B at 2 s;
    # A cancels at 0.5 s; C must not be due at 2 s beside B.
    clock = rk.ManualClock()
    bucket = rk.TokenBucket(1.0, 1.0, clock=clock)
    assert bucket.try_acquire()
    a = bucket._reserve(1.0, None)
    b = bucket._reserve(1.0, None)
    clock.advance(0.5)
    bucket._cancel(1.0, a)
    c = bucket._reserve(1.0, None)
    assert c >= b + NS


def test_cancelling_the_last_reservation_gives_its_units_back() -> None:
    clock = rk.ManualClock()
    bucket = rk.TokenBucket(1.0, 1.0, clock=clock)
    assert bucket.try_acquire()
    a = bucket._reserve(1.0, None)
    b = bucket._reserve(1.0, None)
    bucket._cancel(1.0, b)
    bucket._cancel(1.0, a)
    assert bucket.wait_time() == 1.0


async def test_cancelled_async_waiter_ahead_of_another_never_shortens_the_queue() -> None:
    bucket = rk.TokenBucket(1.0, 1.0)
    assert bucket.try_acquire()
    first = asyncio.create_task(bucket.acquire_async())
    second = asyncio.create_task(bucket.acquire_async())
    await asyncio.sleep(0.01)  # both have reserved: due in ~1 s and ~2 s
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    try:
        # The second waiter still sleeps until ~2 s: a newcomer comes after it.
        assert bucket.wait_time() > 2.5
    finally:
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)


async def test_cancelled_async_keyed_waiter_ahead_of_another_never_shortens_the_queue() -> None:
    keyed = rk.KeyedLimiter(1.0, 1.0)
    assert keyed.try_acquire("k")
    first = asyncio.create_task(keyed.acquire_async("k"))
    second = asyncio.create_task(keyed.acquire_async("k"))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    try:
        assert keyed.wait_time("k") > 2.5
    finally:
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
