"""``KeyedLimiter``: one token bucket per key (SPEC section 2).

The sync methods are the Rust ones (``ratekeeper._core.KeyedLimiter``), with
no Python frame in between; this module adds what must run on an event loop.
"""

from __future__ import annotations

from typing import Optional

from . import _core
from ._waiting import sleep_until_due_keyed

__all__ = ["KeyedLimiter"]


async def acquire_async(
    self: _core.KeyedLimiter, key: str, n: float = 1, timeout: Optional[float] = None
) -> bool:
    """Waits on the running loop until ``n`` units of ``key`` are granted.

    >>> # await limiter.acquire_async("user-1"); await limiter.acquire_async("u", 5, timeout=1)
    """
    if timeout is None and self.try_acquire(key, n):  # units there now: the cheapest check
        return True
    # Otherwise decided and reserved in Rust, synchronously; only a real wait sleeps.
    due = self._reserve(key, n, timeout)
    if due == 0:
        return True
    if due < 0:
        return False
    await sleep_until_due_keyed(self, key, n, due)
    return True


# The public class is the Rust class itself (see limiters.py for why), with
# its one async method attached here.
_core.KeyedLimiter.acquire_async = acquire_async  # type: ignore[method-assign]
KeyedLimiter = _core.KeyedLimiter
