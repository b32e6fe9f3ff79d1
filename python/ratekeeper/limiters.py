"""The limiters of SPEC section 2: Rust classes plus their async methods.

Each class subclasses its Rust twin in ``ratekeeper._core``: the sync hot
paths (``try_acquire``, ``acquire``, ``wait_time``) are the Rust methods
themselves, with no Python frame in between; this module adds only what must
run on an event loop.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import Optional, Protocol, TypeVar

from . import _core
from ._waiting import Reserving, sleep_until_due

__all__ = ["FixedWindow", "SlidingWindow", "TokenBucket"]


class _Reservable(Reserving, Protocol):
    """What the async methods need of a Rust limiter."""

    def _reserve(self, n: float = 1.0, timeout: Optional[float] = None) -> int: ...


_L = TypeVar("_L", bound=_Reservable)


def _check_amount(name: str, value: object) -> None:
    """Raises TypeError/ValueError naming ``name`` unless ``value`` is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")


class AsyncAcquire:
    """``acquire_async`` and ``async with`` for any Rust limiter with ``_reserve``.

    A mixin placed after the Rust class, so the sync methods stay the Rust
    ones. Attribute lookup through the extra base is served by the type's
    method cache: the granted fast path costs the same as a method defined
    on the class itself.

    >>> # class MyLimiter(_core.SomeLimiter, AsyncAcquire): __slots__ = ()
    """

    __slots__ = ()

    async def acquire_async(
        self: _Reservable, n: float = 1, timeout: Optional[float] = None
    ) -> bool:
        """Waits on the running loop until ``n`` units are granted.

        ``False`` at once, taking nothing, when the wait would exceed ``timeout``;
        a cancelled wait gives its units back.

        >>> # await limiter.acquire_async(); await limiter.acquire_async(5, timeout=1.0)
        """
        due = self._reserve(n, timeout)
        if due == 0:
            return True
        if due < 0:
            return False
        await sleep_until_due(self, n, due)
        return True

    async def __aenter__(self: _L) -> _L:
        await AsyncAcquire.acquire_async(self)
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        return None


class TokenBucket(_core.TokenBucket, AsyncAcquire):
    """A token bucket: starts full, refills at ``rate`` units/s up to ``capacity``.

    >>> bucket = TokenBucket.per_minute(60, burst=10); bucket.try_acquire()
    True
    """

    __slots__ = ()

    @classmethod
    def _per_period(
        cls, n: float, burst: Optional[float], seconds: float, clock: Optional[_core.ManualClock]
    ) -> TokenBucket:
        # Checked here so that errors name the caller's arguments, not rate/capacity.
        _check_amount("n", n)
        if burst is not None:
            _check_amount("burst", burst)
        return cls(n / seconds, n if burst is None else burst, clock=clock)

    @classmethod
    def per_second(
        cls, n: float, burst: Optional[float] = None, *, clock: Optional[_core.ManualClock] = None
    ) -> TokenBucket:
        """``n`` units per second, holding ``burst`` (default ``n``).

        >>> TokenBucket.per_second(5).rate
        5.0
        """
        return cls._per_period(n, burst, 1.0, clock)

    @classmethod
    def per_minute(
        cls, n: float, burst: Optional[float] = None, *, clock: Optional[_core.ManualClock] = None
    ) -> TokenBucket:
        """``n`` units per minute, holding ``burst`` (default ``n``).

        >>> TokenBucket.per_minute(60).rate
        1.0
        """
        return cls._per_period(n, burst, 60.0, clock)

    @classmethod
    def per_hour(
        cls, n: float, burst: Optional[float] = None, *, clock: Optional[_core.ManualClock] = None
    ) -> TokenBucket:
        """``n`` units per hour, holding ``burst`` (default ``n``).

        >>> TokenBucket.per_hour(3600).rate
        1.0
        """
        return cls._per_period(n, burst, 3600.0, clock)


class SlidingWindow(_core.SlidingWindow, AsyncAcquire):
    """At most ``limit`` units in any window of ``window`` seconds, exactly (a sliding log).

    >>> window = SlidingWindow(limit=10, window=1.0); window.try_acquire()
    True
    """

    __slots__ = ()


class FixedWindow(_core.FixedWindow, AsyncAcquire):
    """At most ``limit`` units per aligned window ``[k*window, (k+1)*window)`` of the clock.

    >>> window = FixedWindow(limit=100, window=60.0); window.try_acquire(5)
    True
    """

    __slots__ = ()
