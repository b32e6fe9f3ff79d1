"""``KeyedLimiter``: one token bucket per key (SPEC section 2).

The sync methods are the Rust ones (``ratekeeper._core.KeyedLimiter``), with
no Python frame in between; this module adds what must run on an event loop.
"""

from __future__ import annotations

from typing import Optional

from . import _core
from ._waiting import sleep_until_due_keyed

__all__ = ["KeyedLimiter"]


class KeyedLimiter(_core.KeyedLimiter):
    """One token bucket per key (a user, an API key, a model), made on first use.

    Buckets start full and refill at ``rate`` units/s up to ``capacity``;
    ``overrides`` gives some keys their own ``(rate, capacity)``. A bucket
    idle for ``idle_timeout`` seconds (and so full again) is dropped, so
    memory follows the active keys.

    >>> limiter = KeyedLimiter(1.0, 5, overrides={"gpt-4o": (10.0, 50)}); limiter.try_acquire("u1")
    True
    """

    __slots__ = ()

    async def acquire_async(self, key: str, n: float = 1, timeout: Optional[float] = None) -> bool:
        """Waits on the running loop until ``n`` units of ``key`` are granted.

        >>> # await limiter.acquire_async("user-1"); await limiter.acquire_async("u", 5, timeout=1)
        """
        due = self._reserve(key, n, timeout)
        if due == 0:
            return True
        if due < 0:
            return False
        await sleep_until_due_keyed(self, key, n, due)
        return True
