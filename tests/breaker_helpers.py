"""Shared helpers for the CircuitBreaker tests (test_breaker.py, test_breaker_calls.py)."""

from __future__ import annotations

from typing import Any

import ratekeeper as rk


class ServiceDown(Exception):
    pass


class NotTheService(Exception):
    pass


def fail(exc: BaseException) -> None:
    raise exc


def make(
    failure_threshold: int = 3,
    reset_timeout: float = 10.0,
    **options: Any,
) -> tuple[rk.CircuitBreaker, rk.ManualClock]:
    """A breaker on a fresh ManualClock."""
    clock = rk.ManualClock()
    return rk.CircuitBreaker(failure_threshold, reset_timeout, clock=clock, **options), clock


def open_breaker(**options: Any) -> tuple[rk.CircuitBreaker, rk.ManualClock]:
    """A breaker tripped open on a fresh ManualClock."""
    breaker, clock = make(**options)
    breaker.trip()
    return breaker, clock
