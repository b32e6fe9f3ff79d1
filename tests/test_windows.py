"""SlidingWindow and FixedWindow: every method and behaviour, in virtual time."""

from __future__ import annotations

import asyncio
from typing import Union

import pytest

import ratekeeper as rk

Window = Union[rk.SlidingWindow, rk.FixedWindow]
CLASSES = [rk.SlidingWindow, rk.FixedWindow]


def make(cls: type[Window], limit: float = 3, window: float = 1.0) -> tuple[Window, rk.ManualClock]:
    clock = rk.ManualClock()
    return cls(limit, window, clock=clock), clock


@pytest.fixture(params=CLASSES, ids=lambda cls: cls.__name__)
def cls(request: pytest.FixtureRequest) -> type[Window]:
    return request.param  # type: ignore[no-any-return]


# --- shared behaviour ------------------------------------------------------


def test_grants_the_limit_at_once_then_refuses(cls: type[Window]) -> None:
    limiter, _ = make(cls, limit=3)
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_fractional_units_fill_the_limit_exactly(cls: type[Window]) -> None:
    limiter, _ = make(cls, limit=1)
    assert all(limiter.try_acquire(0.1) for _ in range(10))
    assert not limiter.try_acquire(0.1)


def test_the_whole_limit_is_free_again_one_window_later(cls: type[Window]) -> None:
    limiter, clock = make(cls, limit=3, window=2.0)
    assert limiter.try_acquire(3)
    assert limiter.wait_time(3) == pytest.approx(2.0)
    clock.advance(2.0)
    assert limiter.wait_time(3) == 0.0
    assert limiter.try_acquire(3)


def test_acquire_waits_in_virtual_time_in_arrival_order(cls: type[Window]) -> None:
    limiter, clock = make(cls, limit=1, window=1.0)
    assert limiter.acquire()
    assert limiter.acquire()
    assert clock.now() == pytest.approx(1.0)
    assert limiter.acquire()
    assert clock.now() == pytest.approx(2.0)


def test_acquire_with_timeout_refuses_at_once_and_takes_nothing(cls: type[Window]) -> None:
    limiter, clock = make(cls, limit=2, window=1.0)
    limiter.try_acquire(2)
    assert limiter.acquire(timeout=0.5) is False
    assert clock.now() == 0.0
    assert limiter.wait_time(2) == pytest.approx(1.0)
    assert limiter.acquire(2, timeout=1.0) is True
    assert clock.now() == pytest.approx(1.0)


def test_reservations_queue_behind_each_other(cls: type[Window]) -> None:
    limiter, _ = make(cls, limit=1, window=1.0)
    assert limiter._reserve() == 0
    first = limiter._reserve()
    second = limiter._reserve()
    assert 0 < first < second
    assert limiter.wait_time() == pytest.approx(3.0)
    assert not limiter.try_acquire()


def test_cancel_of_the_last_reservation_lets_the_next_waiter_in_earlier(
    cls: type[Window],
) -> None:
    limiter, _ = make(cls, limit=1, window=1.0)
    limiter.try_acquire()
    first = limiter._reserve()
    second = limiter._reserve()
    limiter._cancel(1, second)
    assert limiter.wait_time() == pytest.approx(2.0)
    limiter._cancel(1, first)
    assert limiter.wait_time() == pytest.approx(1.0)


def test_reset_forgets_grants_and_reservations(cls: type[Window]) -> None:
    limiter, _ = make(cls, limit=2, window=10.0)
    limiter.try_acquire(2)
    limiter._reserve(2)
    limiter.reset()
    assert limiter.wait_time(2) == 0.0
    assert limiter.try_acquire(2)


def test_limit_and_window_are_read_only_properties(cls: type[Window]) -> None:
    limiter, _ = make(cls, limit=10, window=2.5)
    assert (limiter.limit, limiter.window) == (10.0, 2.5)
    with pytest.raises(AttributeError):
        limiter.limit = 3.0  # type: ignore[misc]


def test_repr_shows_the_configuration(cls: type[Window]) -> None:
    assert repr(cls(10, 1)) == f"{cls.__name__}(limit=10.0, window=1.0)"


def test_with_acquires_one_unit_waiting_as_needed(cls: type[Window]) -> None:
    limiter, clock = make(cls, limit=1, window=1.0)
    with limiter as entered:
        assert entered is limiter
    with limiter:
        pass
    assert clock.now() == pytest.approx(1.0)


async def test_async_with_acquires_one_unit_waiting_as_needed(cls: type[Window]) -> None:
    limiter, clock = make(cls, limit=1, window=1.0)
    async with limiter as entered:
        assert entered is limiter
    async with limiter:
        pass
    assert clock.now() == pytest.approx(1.0)


async def test_acquire_async_waits_and_honours_timeout(cls: type[Window]) -> None:
    limiter, clock = make(cls, limit=1, window=1.0)
    assert await limiter.acquire_async()
    assert await limiter.acquire_async(timeout=0.5) is False
    assert clock.now() == 0.0
    assert await limiter.acquire_async(timeout=1.0) is True
    assert clock.now() == pytest.approx(1.0)


async def test_cancelled_waiter_returns_its_reservation(cls: type[Window]) -> None:
    # A real clock, so that the waiter is still asleep when it is cancelled.
    # A long window, so that crossing a FixedWindow boundary mid-test is (almost) impossible.
    limiter = cls(1, 1000.0)
    limiter.try_acquire()
    before = limiter.wait_time()
    waiter = asyncio.ensure_future(limiter.acquire_async())
    await asyncio.sleep(0.01)
    assert limiter.wait_time() == pytest.approx(before + 1000.0, abs=0.5)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.wait_time() == pytest.approx(before, abs=0.5)


# --- where the two differ --------------------------------------------------


def test_sliding_frees_each_grant_exactly_one_window_after_it() -> None:
    limiter, clock = make(rk.SlidingWindow, limit=2, window=1.0)
    limiter.try_acquire()
    clock.advance(0.5)
    limiter.try_acquire()
    assert limiter.wait_time() == pytest.approx(0.5)
    clock.advance(0.5)
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    assert limiter.wait_time() == pytest.approx(0.5)


def test_sliding_has_no_burst_at_a_window_boundary() -> None:
    limiter, clock = make(rk.SlidingWindow, limit=10, window=1.0)
    clock.advance(0.9)
    assert limiter.try_acquire(10)
    clock.advance(0.2)
    assert not limiter.try_acquire()
    assert limiter.wait_time() == pytest.approx(0.8)


def test_fixed_allows_a_full_window_right_after_a_boundary() -> None:
    limiter, clock = make(rk.FixedWindow, limit=10, window=1.0)
    clock.advance(0.9)
    assert limiter.try_acquire(10)
    assert limiter.wait_time() == pytest.approx(0.1)
    clock.advance(0.1)
    assert limiter.try_acquire(10)


def test_fixed_puts_a_request_that_does_not_fit_at_the_next_window_start() -> None:
    limiter, clock = make(rk.FixedWindow, limit=3, window=1.0)
    clock.advance(0.25)
    limiter.try_acquire(2)
    assert limiter.wait_time(1) == 0.0
    assert limiter.wait_time(2) == pytest.approx(0.75)
    assert limiter.acquire(2)
    assert clock.now() == pytest.approx(1.0)
    # The next window keeps the one unit left; FIFO keeps later requests there too.
    assert limiter.try_acquire(1)
    assert not limiter.try_acquire(1)


def test_windows_are_subclasses_of_the_rust_classes() -> None:
    assert issubclass(rk.SlidingWindow, rk._core.SlidingWindow)
    assert issubclass(rk.FixedWindow, rk._core.FixedWindow)
