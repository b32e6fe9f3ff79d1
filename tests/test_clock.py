"""ManualClock: virtual time for tests, shared by every primitive built on it."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

import ratekeeper as rk


def test_manual_clock_starts_where_told_and_moves_only_when_advanced() -> None:
    clock = rk.ManualClock(start=5.0)
    assert clock.now() == 5.0
    assert clock.advance(1.5) == 6.5
    assert clock.now() == 6.5


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, -math.inf])
def test_manual_clock_rejects_bad_start_and_steps(bad: float) -> None:
    with pytest.raises(ValueError, match="start"):
        rk.ManualClock(start=bad)
    with pytest.raises(ValueError, match="seconds"):
        rk.ManualClock().advance(bad)


def test_manual_clock_rejects_non_numbers() -> None:
    with pytest.raises(TypeError):
        rk.ManualClock(start="soon")  # type: ignore[arg-type]


def test_waiting_an_hour_of_limiter_time_takes_no_real_time() -> None:
    clock = rk.ManualClock()
    bucket = rk.TokenBucket.per_hour(1, clock=clock)
    started = time.perf_counter()
    assert bucket.acquire()
    assert bucket.acquire()  # the second unit is due an hour later
    assert clock.now() == pytest.approx(3600.0)
    assert time.perf_counter() - started < 1.0


async def test_async_waits_on_a_manual_clock_advance_it() -> None:
    clock = rk.ManualClock()
    bucket = rk.TokenBucket(rate=0.5, capacity=1, clock=clock)
    assert await bucket.acquire_async()
    assert await bucket.acquire_async()
    assert clock.now() == pytest.approx(2.0)


def test_primitives_sharing_a_clock_see_the_same_time() -> None:
    clock = rk.ManualClock()
    first = rk.TokenBucket(1, 1, clock=clock)
    second = rk.TokenBucket(1, 1, clock=clock)
    first.try_acquire()
    second.try_acquire()
    first.acquire()  # advances the shared clock by one second
    assert second.wait_time() == 0.0


def test_clock_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="clock"):
        rk.TokenBucket(1, 1, clock=time.monotonic)  # type: ignore[arg-type]


def test_sleep_is_an_advance() -> None:
    clock = rk.ManualClock()
    clock.sleep(2.0)
    assert clock.now() == 2.0
    assert "2.0" in repr(clock)


def test_manual_clock_runs_in_an_event_loop_without_sleeping() -> None:
    clock = rk.ManualClock()
    bucket = rk.TokenBucket.per_minute(1, clock=clock)

    async def three() -> None:
        for _ in range(3):
            await bucket.acquire_async()

    started = time.perf_counter()
    asyncio.run(three())
    assert clock.now() == pytest.approx(120.0)
    assert time.perf_counter() - started < 1.0


def test_manual_clock_never_wraps_around_on_a_huge_advance() -> None:
    clock = rk.ManualClock(1.0)
    with pytest.raises(ValueError, match="seconds"):
        clock.advance(1e300)
    assert clock.now() == 1.0
    with pytest.raises(ValueError, match="start"):
        rk.ManualClock(1e300)


def test_a_bucket_at_the_clocks_latest_time_still_limits() -> None:
    clock = rk.ManualClock()
    bucket = rk.TokenBucket(1.0, 1.0, clock=clock)
    clock.advance(9.2e9)  # the end of a manual clock's range, ~292 years
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
