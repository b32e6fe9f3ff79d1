"""TokenBucket: every method and behaviour of SPEC section 2, in virtual time."""

from __future__ import annotations

import asyncio

import pytest

import ratekeeper as rk


def make(rate: float = 1.0, capacity: float = 5.0) -> tuple[rk.TokenBucket, rk.ManualClock]:
    clock = rk.ManualClock()
    return rk.TokenBucket(rate, capacity, clock=clock), clock


def test_starts_full_and_grants_its_capacity_at_once() -> None:
    bucket, _ = make(capacity=5)
    assert [bucket.try_acquire() for _ in range(6)] == [True] * 5 + [False]


def test_refills_continuously_at_rate_up_to_capacity() -> None:
    bucket, clock = make(rate=2, capacity=4)
    assert bucket.try_acquire(4)
    clock.advance(0.5)
    assert bucket.available == pytest.approx(1.0)
    clock.advance(100)
    assert bucket.available == pytest.approx(4.0)


def test_try_acquire_takes_fractional_units() -> None:
    bucket, _ = make(capacity=1)
    assert bucket.try_acquire(0.5)
    assert bucket.try_acquire(0.5)
    assert not bucket.try_acquire(0.5)


def test_wait_time_is_zero_when_units_are_there() -> None:
    bucket, _ = make()
    assert bucket.wait_time() == 0.0
    assert bucket.wait_time(5) == 0.0


def test_wait_time_counts_the_refill_needed() -> None:
    bucket, _ = make(rate=2, capacity=4)
    bucket.try_acquire(4)
    assert bucket.wait_time(1) == pytest.approx(0.5)
    assert bucket.wait_time(3) == pytest.approx(1.5)


def test_acquire_waits_in_virtual_time_until_units_are_due() -> None:
    bucket, clock = make(rate=1, capacity=1)
    assert bucket.acquire()
    assert clock.now() == 0.0
    assert bucket.acquire()
    assert clock.now() == pytest.approx(1.0)


def test_acquire_with_timeout_refuses_at_once_and_takes_nothing() -> None:
    bucket, clock = make(rate=1, capacity=2)
    bucket.try_acquire(2)
    assert bucket.acquire(2, timeout=1.5) is False
    assert clock.now() == 0.0
    assert bucket.available == pytest.approx(0.0)
    assert bucket.acquire(2, timeout=2.0) is True
    assert clock.now() == pytest.approx(2.0)


def test_acquire_with_zero_timeout_is_try_acquire() -> None:
    bucket, _ = make(capacity=1)
    assert bucket.acquire(timeout=0)
    assert not bucket.acquire(timeout=0)


def test_available_goes_negative_with_outstanding_reservations() -> None:
    bucket, _ = make(rate=1, capacity=1)
    assert bucket._reserve(1) == 0
    due = bucket._reserve(1)
    assert due > 0
    assert bucket._reserve(1) > due
    assert bucket.available == pytest.approx(-2.0)
    assert bucket.wait_time() == pytest.approx(3.0)


def test_refund_gives_units_back_but_never_above_capacity() -> None:
    bucket, _ = make(capacity=3)
    bucket.try_acquire(2)
    bucket.refund(1)
    assert bucket.available == pytest.approx(2.0)
    bucket.refund(100)
    assert bucket.available == pytest.approx(3.0)


def test_reset_fills_the_bucket_again() -> None:
    bucket, _ = make(capacity=3)
    bucket._reserve(3)
    bucket._reserve(3)
    bucket.reset()
    assert bucket.available == pytest.approx(3.0)
    assert bucket.try_acquire(3)


def test_rate_and_capacity_are_read_only_properties() -> None:
    bucket, _ = make(rate=2.5, capacity=7)
    assert (bucket.rate, bucket.capacity) == (2.5, 7.0)
    with pytest.raises(AttributeError):
        bucket.rate = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("factory", "rate"),
    [
        (rk.TokenBucket.per_second, 120.0),
        (rk.TokenBucket.per_minute, 2.0),
        (rk.TokenBucket.per_hour, 120 / 3600),
    ],
)
def test_per_period_constructors_set_rate_and_default_burst(factory, rate) -> None:  # type: ignore[no-untyped-def]
    bucket = factory(120)
    assert bucket.rate == pytest.approx(rate)
    assert bucket.capacity == 120.0
    assert factory(120, burst=10).capacity == 10.0
    assert isinstance(bucket, rk.TokenBucket)


def test_per_minute_takes_a_clock() -> None:
    clock = rk.ManualClock()
    bucket = rk.TokenBucket.per_minute(60, burst=1, clock=clock)
    bucket.try_acquire()
    assert bucket.acquire()
    assert clock.now() == pytest.approx(1.0)


def test_repr_shows_the_configuration() -> None:
    assert repr(rk.TokenBucket(1, 60)) == "TokenBucket(rate=1.0, capacity=60.0)"


def test_with_acquires_one_unit_waiting_as_needed() -> None:
    bucket, clock = make(rate=1, capacity=1)
    with bucket as entered:
        assert entered is bucket
    with bucket:
        pass
    assert clock.now() == pytest.approx(1.0)
    assert bucket.available == pytest.approx(0.0)


def test_with_does_not_swallow_exceptions() -> None:
    bucket, _ = make()
    with pytest.raises(KeyError), bucket:
        raise KeyError("boom")


async def test_async_with_acquires_one_unit_waiting_as_needed() -> None:
    bucket, clock = make(rate=1, capacity=1)
    async with bucket as entered:
        assert entered is bucket
    async with bucket:
        pass
    assert clock.now() == pytest.approx(1.0)


async def test_acquire_async_granted_at_once_and_after_a_wait() -> None:
    bucket, clock = make(rate=2, capacity=1)
    assert await bucket.acquire_async() is True
    assert await bucket.acquire_async() is True
    assert clock.now() == pytest.approx(0.5)


async def test_acquire_async_with_timeout_refuses_at_once_and_takes_nothing() -> None:
    bucket, clock = make(rate=1, capacity=1)
    bucket.try_acquire()
    assert await bucket.acquire_async(timeout=0.5) is False
    assert clock.now() == 0.0
    assert bucket.wait_time() == pytest.approx(1.0)


async def test_cancelled_waiter_returns_its_reservation() -> None:
    # A real clock, so that the waiter is still asleep when it is cancelled.
    bucket = rk.TokenBucket(0.1, 1)
    bucket.try_acquire()
    waiter = asyncio.ensure_future(bucket.acquire_async())
    await asyncio.sleep(0.01)
    assert bucket.wait_time() == pytest.approx(20.0, abs=0.5)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bucket.wait_time() == pytest.approx(10.0, abs=0.5)


def test_subclass_of_the_rust_class_with_no_instance_dict() -> None:
    bucket, _ = make()
    assert isinstance(bucket, rk._core.TokenBucket)
    with pytest.raises(AttributeError):
        bucket.extra = 1  # type: ignore[attr-defined]
