"""Limits shared by every process through Redis (SPEC section 9).

One atomic Lua script per acquire (GCRA, time from the Redis server), called
by SHA over one connection per backend, from Rust. While Redis is
unreachable, ``on_error`` decides: ``"local"`` limits in process, ``"allow"``
fails open, ``"deny"`` fails closed. The change is logged once per outage on
the ``"ratekeeper"`` logger.
"""

from __future__ import annotations

import asyncio
import functools
import math
from types import TracebackType
from typing import Any, Optional

from . import _core

__all__ = ["RedisBackend", "RedisBudgets", "RedisSlidingWindow", "RedisTokenBucket"]


def check_timeout(timeout: Optional[float]) -> Optional[float]:
    """``timeout`` itself when None or a finite number >= 0; else a ``ValueError``.

    >>> check_timeout(1.5)
    1.5
    """
    if timeout is not None and not (math.isfinite(timeout) and timeout >= 0):
        raise ValueError(f"timeout must be None or a finite number >= 0, got {timeout!r}")
    return timeout


async def _reserve_then_sleep(engine: Any, amount: Any, timeout: Optional[float]) -> bool:
    """One reserving script call for ``amount`` on ``engine``, then the wait on this loop.

    ``engine`` is a ``RedisTokenBucket`` (``amount``: units) or a
    ``RedisBudgets`` (``amount``: one per budget). ``False`` when the grant
    would come later than ``timeout``; a cancelled wait gives the units back.

    >>> # await _reserve_then_sleep(bucket, 1.0, None)
    """
    # The Redis call runs on the Rust runtime; its reply is handed to this
    # loop with one call_soon_threadsafe (measured faster than a bridged
    # future: bench/bench_redis.py).
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[tuple[float, int]] = loop.create_future()
    engine._reserve_into(amount, timeout, loop.call_soon_threadsafe, _resolve, reply)
    wait, source = await _await_reply(engine, amount, reply)
    if wait == 0.0:
        return True
    if wait < 0.0:
        return False
    try:
        await asyncio.sleep(wait)
    except BaseException:
        # Cancelled before the units were due: hand them back so that the
        # next waiter, in any process, does not wait for units nobody uses.
        engine._cancel(amount, source)
        raise
    return True


async def _await_reply(
    engine: Any, amount: Any, reply: asyncio.Future[tuple[float, int]]
) -> tuple[float, int]:
    """Awaits the script's reply; cancelled first, gives back what the script still grants.

    >>> # wait, source = await _await_reply(bucket, 1.0, reply)
    """
    try:
        return await asyncio.shield(reply)
    except asyncio.CancelledError:
        # The script runs on: whatever it reserves for this caller goes back.
        reply.add_done_callback(functools.partial(_give_back_late, engine, amount))
        raise


def _give_back_late(engine: Any, amount: Any, reply: asyncio.Future[tuple[float, int]]) -> None:
    if reply.cancelled() or reply.exception() is not None:
        return
    wait, source = reply.result()
    if wait >= 0.0:
        engine._cancel(amount, source)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    """Runs on the future's loop: completes it unless it was cancelled meanwhile."""
    if future.done():
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


class RedisBackend(_core.RedisBackend):
    """Where Redis-backed limiters keep their shared state.

    ``url`` is one ``redis://`` URL, or a list of node URLs (or ``cluster=True``)
    for Redis Cluster. Every Redis call is bounded by ``timeout`` seconds.

    >>> backend = RedisBackend("redis://127.0.0.1:6379/0", prefix="myapp", on_error="local")
    """

    __slots__ = ()


class RedisTokenBucket(_core.RedisTokenBucket):
    """A token bucket shared by every process that uses the same ``key``.

    >>> bucket = RedisTokenBucket(backend, "openai", rate=10.0, capacity=20.0)  # doctest: +SKIP
    """

    __slots__ = ()

    async def acquire_async(self, n: float = 1, timeout: Optional[float] = None) -> bool:
        """Waits on the running loop until ``n`` units are granted.

        >>> await bucket.acquire_async()  # doctest: +SKIP
        """
        return await _reserve_then_sleep(self, n, timeout)

    async def _check_async(self, n: float = 1) -> tuple[bool, float, float, float]:
        """A try-acquire with what rate-limit headers need:
        ``(granted, retry_after, remaining, reset)`` in units and seconds.

        >>> granted, retry_after, remaining, reset = await bucket._check_async()  # doctest: +SKIP
        """
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[tuple[bool, float, float, float]] = loop.create_future()
        self._check_into(n, loop.call_soon_threadsafe, _resolve, reply)
        return await reply

    async def __aenter__(self) -> RedisTokenBucket:
        await self.acquire_async()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        return None


class RedisBudgets(_core.RedisBudgets):
    """Budgets of one limiter (rpm, tpm, ...) shared through Redis, charged all or none.

    The engine of a Redis-backed ``Limiter``; every method takes one amount per budget.

    >>> budgets = RedisBudgets(backend, "team-a", [("rpm", 10.0, 600.0)])  # doctest: +SKIP
    """

    __slots__ = ()

    async def acquire_async(self, amounts: list[float], timeout: Optional[float] = None) -> bool:
        """Waits on the running loop until every budget grants its amount.

        >>> await budgets.acquire_async([1, 500])  # doctest: +SKIP
        """
        return await _reserve_then_sleep(self, amounts, timeout)


class RedisSlidingWindow(_core.RedisSlidingWindow):
    """At most ``limit`` units in any ``window`` seconds, for every process using ``key``.

    Exact, like the in-process ``SlidingWindow``: a sliding log in a Redis
    sorted set, on the server's clock, one script call per try. Nothing is
    reserved ahead: a waiter sleeps the wait the log gives (when enough of it
    leaves the window) and asks again, so it never polls.

    >>> window = RedisSlidingWindow(backend, "openai", limit=100, window=60.0)  # doctest: +SKIP
    """

    __slots__ = ()

    async def acquire_async(self, n: float = 1, timeout: Optional[float] = None) -> bool:
        """Waits on the running loop until ``n`` units fit; ``False`` past ``timeout``.

        >>> await window.acquire_async()  # doctest: +SKIP
        """
        check_timeout(timeout)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            reply: asyncio.Future[float] = loop.create_future()
            self._try_into(n, loop.call_soon_threadsafe, _resolve, reply)
            wait = await reply
            if wait == 0.0:
                return True
            if deadline is not None and loop.time() + wait > deadline:
                return False
            await asyncio.sleep(wait)

    async def __aenter__(self) -> RedisSlidingWindow:
        await self.acquire_async()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        return None
