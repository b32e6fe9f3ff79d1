"""Invariants of the three single limiters, for any sequence of calls (virtual time).

Times are multiples of 1/64 s and windows multiples of 1/4 s, so that float
seconds and the core's integer nanoseconds agree exactly; grant times are
compared in integer nanoseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from grant_bounds import (
    assert_bucket_bound,
    assert_fixed_bound,
    assert_sliding_bound,
    ns,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import ratekeeper as rk

Limiter = Union[rk.TokenBucket, rk.SlidingWindow, rk.FixedWindow]
TICK = 1 / 64


@dataclass(frozen=True)
class Op:
    """One call: wait ``ticks`` of virtual time, then ask for ``n`` one way or another."""

    ticks: int
    n: float
    kind: str  # "try", "acquire", "timeout"
    timeout_ticks: int


ops_strategy = st.lists(
    st.builds(
        Op,
        ticks=st.integers(0, 96),
        n=st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0]),
        kind=st.sampled_from(["try", "acquire", "timeout"]),
        timeout_ticks=st.integers(0, 128),
    ),
    max_size=60,
)
rates = st.sampled_from([0.5, 1.0, 3.0, 10.0, 64.0])
sizes = st.sampled_from([1.0, 3.0, 5.0, 10.0])
windows = st.integers(1, 12).map(lambda k: k / 4)


def run(
    limiter: Limiter, clock: rk.ManualClock, ops: list[Op], most: float
) -> list[tuple[int, float]]:
    """Plays ``ops`` and returns the grants as (time in ns, units)."""
    grants: list[tuple[int, float]] = []
    for op in ops:
        clock.advance(op.ticks * TICK)
        n = min(op.n, most)
        if op.kind == "try":
            granted = limiter.try_acquire(n)
        elif op.kind == "acquire":
            granted = limiter.acquire(n)
        else:
            granted = limiter.acquire(n, timeout=op.timeout_ticks * TICK)
        if granted:
            grants.append((ns(clock.now()), n))
    return grants


@st.composite
def limiters(draw: st.DrawFn) -> tuple[Limiter, rk.ManualClock, float]:
    """Any of the three limiters on a fresh manual clock, with the most it grants at once."""
    clock = rk.ManualClock(draw(st.integers(0, 64)) * TICK)
    kind = draw(st.sampled_from(["bucket", "sliding", "fixed"]))
    size = draw(sizes)
    limiter: Limiter
    if kind == "bucket":
        limiter = rk.TokenBucket(draw(rates), size, clock=clock)
    elif kind == "sliding":
        limiter = rk.SlidingWindow(size, draw(windows), clock=clock)
    else:
        limiter = rk.FixedWindow(size, draw(windows), clock=clock)
    return limiter, clock, size


@settings(max_examples=150, deadline=None)
@given(rate=rates, capacity=sizes, ops=ops_strategy)
def test_token_bucket_never_grants_more_than_capacity_plus_refill(
    rate: float, capacity: float, ops: list[Op]
) -> None:
    clock = rk.ManualClock()
    bucket = rk.TokenBucket(rate, capacity, clock=clock)
    grants = run(bucket, clock, ops, capacity)
    times = [t for t, _ in grants]
    assert times == sorted(times), "grants are served in arrival order"
    assert_bucket_bound(grants, rate, capacity)
    # The check above holds for any clock that only moves forward; this one
    # fails if a later request could jump the queue: reserved one after the
    # other at one instant, each is due no earlier than the one before it.
    dues = [bucket._reserve(min(op.n, capacity), None) for op in ops]
    assert dues == sorted(dues), "reservations are served in arrival order"


@settings(max_examples=150, deadline=None)
@given(limit=sizes, window=windows, ops=ops_strategy)
def test_sliding_window_never_grants_more_than_limit_in_any_window(
    limit: float, window: float, ops: list[Op]
) -> None:
    clock = rk.ManualClock()
    grants = run(rk.SlidingWindow(limit, window, clock=clock), clock, ops, limit)
    assert_sliding_bound(grants, limit, window)


@settings(max_examples=150, deadline=None)
@given(limit=sizes, window=windows, ops=ops_strategy)
def test_fixed_window_never_grants_more_than_limit_per_aligned_window(
    limit: float, window: float, ops: list[Op]
) -> None:
    clock = rk.ManualClock()
    grants = run(rk.FixedWindow(limit, window, clock=clock), clock, ops, limit)
    assert_fixed_bound(grants, limit, window)


@settings(max_examples=200, deadline=None)
@given(setup=limiters(), ops=ops_strategy, n=st.sampled_from([0.5, 1.0, 2.0, 5.0]))
def test_acquire_grants_exactly_when_wait_time_said(
    setup: tuple[Limiter, rk.ManualClock, float], ops: list[Op], n: float
) -> None:
    limiter, clock, most = setup
    run(limiter, clock, ops, most)
    n = min(n, most)
    wait = limiter.wait_time(n)
    before = clock.now()
    assert limiter.acquire(n)
    assert ns(clock.now() - before) == ns(wait)


@settings(max_examples=200, deadline=None)
@given(
    setup=limiters(),
    ops=ops_strategy,
    n=st.sampled_from([0.5, 1.0, 2.0, 5.0]),
    timeout_ticks=st.integers(0, 400),
)
def test_acquire_with_timeout_refuses_at_once_taking_nothing_when_the_wait_exceeds_it(
    setup: tuple[Limiter, rk.ManualClock, float], ops: list[Op], n: float, timeout_ticks: int
) -> None:
    limiter, clock, most = setup
    run(limiter, clock, ops, most)
    n = min(n, most)
    timeout = timeout_ticks * TICK
    wait = limiter.wait_time(n)
    before = clock.now()
    granted = limiter.acquire(n, timeout=timeout)
    if ns(wait) > ns(timeout):
        assert granted is False
        assert clock.now() == before
        assert limiter.wait_time(n) == wait
    else:
        assert granted is True
        assert ns(clock.now() - before) == ns(wait)
