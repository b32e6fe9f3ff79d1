"""The limiters of SPEC section 2: the Rust classes, plus their async methods.

The public classes are the compiled classes of ``ratekeeper._core``
themselves, not Python subclasses: CPython's fast call path for a builtin
method needs the instance's exact type, and a subclass costs every
``try_acquire`` ~7 ns more (measured, ``bench/bench_core.py``). What must run
on an event loop (``acquire_async``, ``async with``) is written here in
Python and attached to the Rust classes once, at import.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Callable, Optional, Protocol

from . import _core
from ._waiting import sleep_until_due

__all__ = ["FixedWindow", "SlidingWindow", "TokenBucket"]


class _Reserving(Protocol):
    def try_acquire(self, n: float = 1.0) -> bool: ...
    def _reserve(self, n: float = 1.0, timeout: Optional[float] = None) -> int: ...
    def _until(self, due: int) -> float: ...
    def _cancel(self, n: float, due: int) -> None: ...
    def _wake_on(self, due: int, callback: Callable[[], object]) -> None: ...


async def acquire_async(self: _Reserving, n: float = 1, timeout: Optional[float] = None) -> bool:
    """Waits on the running loop until ``n`` units are granted; ``False`` if over ``timeout``.

    >>> # await bucket.acquire_async(); await bucket.acquire_async(5, timeout=1.0)
    """
    # Units there now: one Rust call with one argument, the cheapest check
    # (try_acquire never jumps ahead of queued waiters, so order is kept).
    # A timeout is validated by _reserve, so it takes the general path.
    if timeout is None and self.try_acquire(n):
        return True
    # Otherwise decided and reserved in Rust, synchronously; only a real wait sleeps.
    due = self._reserve(n, timeout)
    if due == 0:
        return True
    if due < 0:
        return False
    await sleep_until_due(self, n, due)
    return True


async def _aenter(self: Any) -> Any:
    await self.acquire_async()
    return self


async def _aexit(
    self: Any,
    exc_type: Optional[type[BaseException]],
    exc: Optional[BaseException],
    tb: Optional[TracebackType],
) -> None:
    return None


def attach_async_methods(cls: type) -> None:
    """Gives a Rust limiter class ``acquire_async`` and ``async with`` (done once, at import).

    >>> attach_async_methods(_core.TokenBucket)
    """
    cls.acquire_async = acquire_async  # type: ignore[attr-defined]
    cls.__aenter__ = _aenter  # type: ignore[attr-defined]
    cls.__aexit__ = _aexit  # type: ignore[attr-defined]


for _limiter in (_core.TokenBucket, _core.SlidingWindow, _core.FixedWindow):
    attach_async_methods(_limiter)

TokenBucket = _core.TokenBucket
SlidingWindow = _core.SlidingWindow
FixedWindow = _core.FixedWindow
