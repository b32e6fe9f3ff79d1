"""The async slow path shared by every limiter: sleep on the caller's loop.

The decision and the reservation are made synchronously in Rust
(``_reserve``); only a positive wait comes here. Sleeping on the caller's own
event loop costs what ``asyncio.sleep`` costs; no tokio future is bridged.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Reserving(Protocol):
    """What the Rust limiters expose to this module."""

    def _until(self, due: int) -> float: ...
    def _cancel(self, n: float, due: int) -> None: ...


async def sleep_until_due(limiter: Reserving, n: float, due: int) -> None:
    """Sleeps until the reservation ``due`` is reached; gives it back if cancelled.

    >>> # await sleep_until_due(bucket, 1, bucket._reserve(1, None))
    """
    try:
        # Yield once even on a manual clock, so that virtual-time waiters
        # still interleave with the other tasks.
        await asyncio.sleep(0)
        left = limiter._until(due)
        while left > 0.0:
            await asyncio.sleep(left)
            left = limiter._until(due)
    except BaseException:
        # Cancelled (or interrupted) before the units were due: hand them back
        # so that the next waiter does not wait for units nobody uses.
        limiter._cancel(n, due)
        raise


class KeyedReserving(Protocol):
    """What the Rust keyed limiter exposes to this module."""

    def _until(self, due: int) -> float: ...
    def _cancel(self, key: str, n: float, due: int) -> None: ...
    def _finish(self, key: str) -> None: ...


async def sleep_until_due_keyed(limiter: KeyedReserving, key: str, n: float, due: int) -> None:
    """Sleeps until ``key``'s reservation ``due``; gives it back if cancelled.

    >>> # await sleep_until_due_keyed(limiter, "user-1", 1, limiter._reserve("user-1", 1, None))
    """
    try:
        await asyncio.sleep(0)
        left = limiter._until(due)
        while left > 0.0:
            await asyncio.sleep(left)
            left = limiter._until(due)
    except BaseException:
        limiter._cancel(key, n, due)
        raise
    # The reservation is used: the key may be dropped again once idle.
    limiter._finish(key)
