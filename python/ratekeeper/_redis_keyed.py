"""``KeyedLimiter`` with its per-key buckets in Redis (SPEC section 9).

``rk.KeyedLimiter(rate, capacity, backend=...)`` returns a
:class:`RedisKeyedLimiter` (re-exported by :mod:`ratekeeper.redis_limiter`,
where the compiled constructor looks for it). Each key's bucket is a
``RedisTokenBucket`` under the backend's prefix, ``prefix:{keyed:HASH}:bucket``
(HASH: the key's SHA-256, 128 bits, never the key itself);
it expires when full again, so ``idle_timeout`` is Redis's TTL and ``len()``
is not known here.
"""

from __future__ import annotations

from typing import Any, Optional

from . import _core
from .redis import RedisTokenBucket

__all__ = ["RedisKeyedLimiter"]


class RedisKeyedLimiter:
    """A ``KeyedLimiter`` whose per-key buckets live in Redis, shared by every process.

    Made by ``rk.KeyedLimiter(rate, capacity, backend=...)``; see the module docs.

    >>> users = rk.KeyedLimiter(1.0, 5, backend=backend); users.try_acquire("u1")  # doctest: +SKIP
    """

    # Bucket handles kept per key; past this many the cache starts over (a
    # handle holds no shared state, only the on_error="local" stand-in).
    _CACHE_LIMIT = 4096

    def __init__(
        self,
        rate: float,
        capacity: float,
        *,
        backend: _core.RedisBackend,
        overrides: Optional[Any] = None,
        idle_timeout: float = 600.0,
        clock: Optional[object] = None,
    ) -> None:
        if not isinstance(backend, _core.RedisBackend):
            raise TypeError(f"backend must be a RedisBackend, got {type(backend).__name__}")
        if clock is not None:
            raise ValueError("clock cannot be used with backend: time comes from the Redis server")
        # The in-process constructor checks every argument the same way.
        _core.KeyedLimiter(rate, capacity, overrides=overrides, idle_timeout=idle_timeout)
        self.backend = backend
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.idle_timeout = float(idle_timeout)
        self._overrides: dict[str, tuple[float, float]] = {
            k: (float(v[0]), float(v[1])) for k, v in dict(overrides or {}).items()
        }
        self._buckets: dict[str, RedisTokenBucket] = {}

    def _bucket(self, key: str) -> RedisTokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if not isinstance(key, str):
                raise TypeError(f"key must be a str, got {type(key).__name__}")
            rate, capacity = self._overrides.get(key, (self.rate, self.capacity))
            if len(self._buckets) >= self._CACHE_LIMIT:
                self._buckets.clear()
            bucket = RedisTokenBucket(self.backend, key, rate, capacity, _kind="keyed")
            self._buckets[key] = bucket
        return bucket

    def try_acquire(self, key: str, n: float = 1.0) -> bool:
        """Takes ``n`` units from ``key``'s shared bucket now if it has them (one Redis call).

        >>> users.try_acquire("u1")  # doctest: +SKIP
        """
        return self._bucket(key).try_acquire(n)

    def refund(self, key: str, n: float) -> None:
        """Gives ``n`` units back to ``key``'s shared bucket, never above capacity (one Redis call).

        >>> users.refund("u1", 1)  # doctest: +SKIP
        """
        self._bucket(key).refund(n)

    def acquire(self, key: str, n: float = 1.0, timeout: Optional[float] = None) -> bool:
        """Waits (GIL released) for ``n`` units of ``key``; ``False``, taking nothing, past ``timeout``.

        >>> users.acquire("u1", 2, timeout=5.0)  # doctest: +SKIP
        """
        return self._bucket(key).acquire(n, timeout)

    async def acquire_async(self, key: str, n: float = 1, timeout: Optional[float] = None) -> bool:
        """Waits on the running loop for ``n`` units of ``key``.

        >>> await users.acquire_async("u1")  # doctest: +SKIP
        """
        return await self._bucket(key).acquire_async(n, timeout)

    def wait_time(self, key: str, n: float = 1.0) -> float:
        """Seconds until ``n`` units of ``key`` would be granted (server time).

        >>> users.wait_time("u1")  # doctest: +SKIP
        """
        return self._bucket(key).wait_time(n)

    def available(self, key: str) -> float:
        """Units available to ``key`` now (its capacity while Redis holds no state for it).

        >>> users.available("u1")  # doctest: +SKIP
        """
        bucket = self._bucket(key)
        return bucket.capacity - bucket.wait_time(bucket.capacity) * bucket.rate

    def reset(self, key: Optional[str] = None) -> None:
        """Refills ``key``'s shared bucket; without a key, raises (Redis keys are not listed).

        >>> users.reset("u1")  # doctest: +SKIP
        """
        if key is None:
            raise TypeError(
                "reset() of a Redis-backed KeyedLimiter needs a key: its buckets are Redis keys "
                "that are not listed (they expire once full)"
            )
        self._bucket(key).reset()

    def __len__(self) -> int:
        raise TypeError(
            "len() is not known for a Redis-backed KeyedLimiter: each key's bucket is a Redis "
            "key that expires once the bucket is full again (idle_timeout is that TTL)"
        )

    def __bool__(self) -> bool:
        return True

    def __contains__(self, key: object) -> bool:
        """Whether Redis holds state for ``key`` (its bucket is not full)."""
        if not isinstance(key, str):
            return False
        return self.available(key) < self._bucket(key).capacity

    def __repr__(self) -> str:
        return (
            f"KeyedLimiter(rate={self.rate!r}, capacity={self.capacity!r}, "
            f"backend={self.backend!r})"
        )
