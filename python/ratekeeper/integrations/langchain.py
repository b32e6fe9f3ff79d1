"""LangChain: any ratekeeper limiter as a ``BaseRateLimiter`` for chat models.

``ChatOpenAI(rate_limiter=RateLimiter(rk.Limiter(rpm=500)))``: every call
of the model (``invoke``, ``ainvoke``, ``stream``, ``batch``) first takes one
request from the limiter. Any ratekeeper limiter works: ``Limiter`` (in
process or on Redis), ``TokenBucket``, ``SlidingWindow``, ``FixedWindow``,
``RedisTokenBucket``, ``RedisSlidingWindow``, and ``KeyedLimiter`` (in
process or on Redis) with the ``key`` to charge.

LangChain only asks before a call and never says when it ends or what it
used, so a ``Limiter``'s permit is released at once: its ``concurrency`` cap
and its token budgets are not enforced through this interface (give the
model an ``http_client`` from ``rk.transport``/``rk.async_transport`` for
those, and for retries).
"""

from __future__ import annotations

from typing import Any, Optional

try:
    from langchain_core.rate_limiters import BaseRateLimiter
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "ratekeeper.integrations.langchain needs langchain-core: "
        "pip install 'ratekeeper[langchain]'"
    ) from exc

from .. import _core
from .._redis_keyed import RedisKeyedLimiter
from ..errors import RateLimitTimeout
from ..redis import RedisSlidingWindow, RedisTokenBucket
from ..redis_limiter import RedisLimiter

__all__ = ["RateLimiter"]

# A request is a Permit from these (released at once: see the module docs)...
_PERMITS = (_core.Limiter, RedisLimiter)
# ...one unit per key from these...
_KEYED = (_core.KeyedLimiter, RedisKeyedLimiter)
# ...and one unit from these.
_UNITS = (
    _core.TokenBucket,
    _core.SlidingWindow,
    _core.FixedWindow,
    RedisTokenBucket,
    RedisSlidingWindow,
)


class RateLimiter(BaseRateLimiter):
    """A LangChain rate limiter that takes one request from a ratekeeper limiter.

    ``acquire(blocking=True)`` waits for the request; ``blocking=False`` tries
    once and returns False when the limiter has none to give now.

    >>> import ratekeeper as rk; RateLimiter(rk.TokenBucket.per_minute(60)).acquire()
    True
    """

    def __init__(self, limiter: Any, *, key: Optional[str] = None) -> None:
        if isinstance(limiter, _KEYED):
            if not isinstance(key, str):
                raise TypeError(
                    f"a keyed limiter needs key=<str>, the key each call charges; got {key!r}"
                )
        elif not isinstance(limiter, (*_PERMITS, *_UNITS)):
            raise TypeError(
                "limiter must be a ratekeeper limiter (Limiter, KeyedLimiter, TokenBucket, "
                f"SlidingWindow, FixedWindow, or a Redis one), got {type(limiter).__name__}"
            )
        elif key is not None:
            raise TypeError(f"key is only for a KeyedLimiter; {type(limiter).__name__} has none")
        self._limiter = limiter
        self._key = key

    @property
    def limiter(self) -> Any:
        """The ratekeeper limiter each call takes its request from."""
        return self._limiter

    def acquire(self, *, blocking: bool = True) -> bool:
        """Takes one request: waits for it, or (``blocking=False``) tries once."""
        limiter, timeout = self._limiter, None if blocking else 0.0
        if isinstance(limiter, _PERMITS):
            try:
                limiter.acquire(timeout=timeout).release()
            except RateLimitTimeout:
                return False
            return True
        if self._key is not None:
            return bool(limiter.acquire(self._key, 1, timeout))
        return bool(limiter.acquire(1, timeout))

    async def aacquire(self, *, blocking: bool = True) -> bool:
        """Takes one request on the running event loop, never blocking it while waiting."""
        limiter, timeout = self._limiter, None if blocking else 0.0
        if isinstance(limiter, _PERMITS):
            try:
                permit = await limiter.acquire_async(timeout=timeout)
            except RateLimitTimeout:
                return False
            permit.release()
            return True
        if self._key is not None:
            return bool(await limiter.acquire_async(self._key, 1, timeout))
        return bool(await limiter.acquire_async(1, timeout))

    def __repr__(self) -> str:
        key = "" if self._key is None else f", key={self._key!r}"
        return f"RateLimiter({self._limiter!r}{key})"
