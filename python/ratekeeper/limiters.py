"""The limiters of SPEC section 2: Rust classes plus their async methods.

Each class subclasses its Rust twin in ``ratekeeper._core``: the sync hot
paths (``try_acquire``, ``acquire``, ``wait_time``) are the Rust methods
themselves, with no Python frame in between; this module adds only what must
run on an event loop.
"""

from __future__ import annotations

from types import TracebackType
from typing import Optional

from . import _core
from ._waiting import sleep_until_due

__all__ = ["TokenBucket"]


class TokenBucket(_core.TokenBucket):
    """A token bucket: starts full, refills at ``rate`` units/s up to ``capacity``.

    >>> bucket = TokenBucket.per_minute(60, burst=10); bucket.try_acquire()
    True
    """

    __slots__ = ()

    @classmethod
    def per_second(
        cls, n: float, burst: Optional[float] = None, *, clock: Optional[_core.ManualClock] = None
    ) -> TokenBucket:
        """``n`` units per second, holding ``burst`` (default ``n``).

        >>> TokenBucket.per_second(5).rate
        5.0
        """
        return cls(n, n if burst is None else burst, clock=clock)

    @classmethod
    def per_minute(
        cls, n: float, burst: Optional[float] = None, *, clock: Optional[_core.ManualClock] = None
    ) -> TokenBucket:
        """``n`` units per minute, holding ``burst`` (default ``n``).

        >>> TokenBucket.per_minute(60).rate
        1.0
        """
        return cls(n / 60.0, n if burst is None else burst, clock=clock)

    @classmethod
    def per_hour(
        cls, n: float, burst: Optional[float] = None, *, clock: Optional[_core.ManualClock] = None
    ) -> TokenBucket:
        """``n`` units per hour, holding ``burst`` (default ``n``).

        >>> TokenBucket.per_hour(3600).rate
        1.0
        """
        return cls(n / 3600.0, n if burst is None else burst, clock=clock)

    async def acquire_async(self, n: float = 1, timeout: Optional[float] = None) -> bool:
        """Waits on the running loop until ``n`` units are granted.

        >>> # await bucket.acquire_async(); await bucket.acquire_async(5, timeout=1.0)
        """
        due = self._reserve(n, timeout)
        if due == 0:
            return True
        if due < 0:
            return False
        await sleep_until_due(self, n, due)
        return True

    async def __aenter__(self) -> TokenBucket:
        await self.acquire_async()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        return None
