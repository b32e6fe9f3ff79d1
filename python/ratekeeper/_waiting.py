"""The async slow path shared by every limiter: sleep on the caller's loop.

The decision and the reservation are made synchronously in Rust
(``_reserve``); only a positive wait comes here. Sleeping on the caller's own
event loop costs what ``asyncio.sleep`` costs; no tokio future is bridged.
A waiter ahead that gives its units back moves this one up: Rust then calls
the wake-up registered with ``_wake_on`` (from any thread), and the waiter
reads its new due time.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Callable, Optional, Protocol


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def wait_for_due(
    until: Callable[[int], float],
    due: int,
    give_back: Callable[[], None],
    wake_on: Optional[Callable[[int, Callable[[], object]], None]] = None,
) -> None:
    """Sleeps until ``until(due)`` says the reservation is reached; ``give_back()`` if cancelled.

    >>> # await wait_for_due(bucket._until, due, lambda: bucket._cancel(1, due), bucket._wake_on)
    """
    try:
        # Yield once even on a manual clock (whose ``_until`` advances it and
        # answers 0), so that virtual-time waiters still interleave.
        await asyncio.sleep(0)
        left = until(due)
        if wake_on is None:
            while left > 0.0:
                await asyncio.sleep(left)
                left = until(due)
        else:
            loop = asyncio.get_running_loop()
            while left > 0.0:
                future: asyncio.Future[None] = loop.create_future()
                wake_on(due, functools.partial(loop.call_soon_threadsafe, _wake, future))
                timer = loop.call_later(left, _wake, future)
                try:
                    await future
                finally:
                    timer.cancel()
                left = until(due)
    except BaseException:
        # Cancelled (or interrupted) before the units were due: hand them back
        # so that the next waiter does not wait for units nobody uses.
        give_back()
        raise


class Reserving(Protocol):
    """What the Rust limiters expose to this module."""

    def _until(self, due: int) -> float: ...
    def _cancel(self, n: float, due: int) -> None: ...
    def _wake_on(self, due: int, callback: Callable[[], object]) -> None: ...


async def sleep_until_due(limiter: Reserving, n: float, due: int) -> None:
    """Sleeps until the reservation ``due`` of ``n`` units; gives it back if cancelled.

    >>> # await sleep_until_due(bucket, 1, bucket._reserve(1, None))
    """
    await wait_for_due(limiter._until, due, lambda: limiter._cancel(n, due), limiter._wake_on)


class KeyedReserving(Protocol):
    """What the Rust keyed limiter exposes to this module."""

    def _until(self, key: str, due: int) -> float: ...
    def _cancel(self, key: str, n: float, due: int) -> None: ...
    def _finish(self, key: str) -> None: ...
    def _wake_on(self, due: int, callback: Callable[[], object]) -> None: ...


async def sleep_until_due_keyed(limiter: KeyedReserving, key: str, n: float, due: int) -> None:
    """Sleeps until ``key``'s reservation ``due``; gives it back if cancelled.

    >>> # await sleep_until_due_keyed(limiter, "user-1", 1, limiter._reserve("user-1", 1, None))
    """
    until = functools.partial(limiter._until, key)
    await wait_for_due(until, due, lambda: limiter._cancel(key, n, due), limiter._wake_on)
    # The reservation is used: the key may be dropped again once idle.
    limiter._finish(key)
