"""``Limiter`` and ``KeyedLimiter`` shared through Redis (SPEC section 9).

``rk.Limiter(..., backend=RedisBackend(...), key="team-a")`` returns a
:class:`RedisLimiter` and ``rk.KeyedLimiter(rate, capacity, backend=...)`` a
:class:`RedisKeyedLimiter`: the compiled constructors hand over to these
classes when ``backend`` is given, so the in-process classes keep their fast
path untouched. They have the same methods; what differs:

- Every budget of a ``RedisLimiter`` (rps/rpm/rph/rpd/tpm/itpm/otpm) is
  checked and charged by ONE script call, all or nothing, on the Redis
  server's clock (``RedisBudgets``). Requests are not queued in arrival order
  across processes: a waiter reserves its grant time, like a token bucket.
- ``pause`` is shared: a pause key beside the budgets (same hash tag) that
  the script honours, so a 429's ``retry-after`` pauses every process.
  While Redis is unreachable the pause is not seen by the fallback.
- ``concurrency`` stays per process (a slot is held for a request's whole
  life, which a crashed process would never give back to a shared counter).
- ``stats()`` counts this process's requests; ``available`` and
  ``paused_for`` are read from Redis (capacity and 0 while it is unreachable).
- ``Permit.reconcile`` refunds to, or charges extra on, Redis (one call).
- A ``RedisKeyedLimiter`` keeps one bucket per key in Redis, under the
  backend's prefix: ``{prefix:keyed:KEY}:bucket``. Its keys expire when their
  bucket is full again, so ``idle_timeout`` is Redis's TTL and ``len()`` is
  not known here (it raises ``TypeError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from typing import Any, Literal, Optional

from . import _core
from .errors import RateLimitError, RateLimitTimeout
from .headers import read_limits
from .limiter import adopt_server_limits
from .redis import RedisBudgets, RedisTokenBucket, _resolve

__all__ = ["RedisKeyedLimiter", "RedisLimiter", "RedisPermit"]

_PERIODS = {"rps": 1.0, "rpm": 60.0, "rph": 3600.0, "rpd": 86400.0}
_TOKEN_BUDGETS = ("tpm", "itpm", "otpm")
# Sources of a grant, as the Rust side numbers them.
_OPEN = 2


def _check_tokens(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_timeout(timeout: Optional[float]) -> Optional[float]:
    if timeout is not None and not (math.isfinite(timeout) and timeout >= 0):
        raise ValueError(f"timeout must be None or a finite number >= 0, got {timeout!r}")
    return timeout


class _Tokens:
    """What one request asks of the token budgets (as ``core::limiter::Amounts``)."""

    __slots__ = ("input", "input_from_total", "output", "total")

    def __init__(
        self, tokens: float, input_tokens: Optional[float], output_tokens: Optional[float]
    ) -> None:
        tokens = _check_tokens("tokens", tokens)
        self.input_from_total = input_tokens is None
        self.input = tokens if input_tokens is None else _check_tokens("input_tokens", input_tokens)
        self.output = (
            0.0 if output_tokens is None else _check_tokens("output_tokens", output_tokens)
        )
        if tokens > 0:
            self.total = tokens
        elif self.input_from_total:
            self.total = self.output
        else:
            self.total = self.input + self.output

    def reconciled(
        self, tokens: Optional[float], input_tokens: Optional[float], output_tokens: Optional[float]
    ) -> _Tokens:
        nxt = _Tokens.__new__(_Tokens)
        nxt.total, nxt.input, nxt.output = self.total, self.input, self.output
        nxt.input_from_total = self.input_from_total
        if input_tokens is not None:
            nxt.input = _check_tokens("input_tokens", input_tokens)
            nxt.input_from_total = False
        if output_tokens is not None:
            nxt.output = _check_tokens("output_tokens", output_tokens)
        if tokens is not None:
            nxt.total = _check_tokens("actual_tokens", tokens)
            if nxt.input_from_total:
                nxt.input = nxt.total
        elif input_tokens is not None or output_tokens is not None:
            nxt.total = nxt.input + nxt.output
        return nxt

    def units(self, budget: str) -> float:
        if budget == "tpm":
            return self.total
        if budget == "itpm":
            return self.input
        if budget == "otpm":
            return self.output
        return 1.0


class RedisPermit:
    """A request granted by a :class:`RedisLimiter`; ``reconcile`` settles tokens on Redis.

    >>> with limiter.acquire(tokens=1000) as permit: permit.reconcile(640)  # doctest: +SKIP
    """

    __slots__ = ("_limiter", "_lock", "_slot", "_source", "_tokens", "released", "waited")

    def __init__(
        self,
        limiter: RedisLimiter,
        tokens: _Tokens,
        source: int,
        waited: float,
        slot: Optional[_core.Permit],
    ) -> None:
        self._limiter = limiter
        self._tokens = tokens
        self._source = source
        self._slot = slot
        self._lock = threading.Lock()
        self.waited = waited
        self.released = False

    @property
    def tokens(self) -> float:
        """Tokens charged to tpm (the estimate, or the reconciled usage)."""
        return self._tokens.total

    @property
    def input_tokens(self) -> float:
        return self._tokens.input

    @property
    def output_tokens(self) -> float:
        return self._tokens.output

    def release(self) -> None:
        """Gives the (per-process) concurrency slot back; again does nothing."""
        with self._lock:
            if self.released:
                return
            self.released = True
        self._limiter._in_flight_done()
        if self._slot is not None:
            self._slot.release()

    def reconcile(
        self,
        actual_tokens: Optional[float] = None,
        *,
        input_tokens: Optional[float] = None,
        output_tokens: Optional[float] = None,
    ) -> None:
        """Refunds to, or charges extra on, the shared token budgets (one Redis call each way).

        >>> permit.reconcile(640)  # doctest: +SKIP
        """
        with self._lock:
            old = self._tokens
            new = old.reconciled(actual_tokens, input_tokens, output_tokens)
            self._tokens = new
        self._limiter._settle(old, new, self._source)

    def __enter__(self) -> RedisPermit:
        return self

    def __exit__(self, *_exc: object) -> Literal[False]:
        self.release()
        return False

    async def __aenter__(self) -> RedisPermit:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return (
            f"RedisPermit(tokens={self._tokens.total!r}, waited={self.waited:.6f}, "
            f"released={self.released})"
        )


class RedisLimiter:
    """A ``Limiter`` whose budgets are shared through Redis by every process using ``key``.

    Made by ``rk.Limiter(..., backend=..., key=...)``; see the module docs.

    >>> limiter = rk.Limiter(rpm=500, tpm=200_000, backend=backend, key="team-a")  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        backend: _core.RedisBackend,
        key: Optional[str],
        rpm: Optional[float] = None,
        tpm: Optional[float] = None,
        rps: Optional[float] = None,
        rph: Optional[float] = None,
        rpd: Optional[float] = None,
        itpm: Optional[float] = None,
        otpm: Optional[float] = None,
        concurrency: Optional[int] = None,
        burst: Optional[float] = None,
        clock: Optional[object] = None,
    ) -> None:
        if not isinstance(backend, _core.RedisBackend):
            raise TypeError(f"backend must be a RedisBackend, got {type(backend).__name__}")
        if key is None:
            raise ValueError("key is required with backend: it names the shared budget")
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty str, got {key!r}")
        if clock is not None:
            raise ValueError("clock cannot be used with backend: time comes from the Redis server")
        limits = {"rps": rps, "rpm": rpm, "rph": rph, "rpd": rpd}
        limits.update({"tpm": tpm, "itpm": itpm, "otpm": otpm})
        # The in-process constructor checks every argument the same way.
        _core.Limiter(
            rps=rps, rpm=rpm, rph=rph, rpd=rpd, tpm=tpm, itpm=itpm, otpm=otpm,
            concurrency=concurrency, burst=burst,
        )  # fmt: skip
        budgets = []
        for name, amount in limits.items():
            if amount is None:
                continue
            capacity = burst if burst is not None and name in _PERIODS else amount
            budgets.append((name, amount / _PERIODS.get(name, 60.0), float(capacity)))
        if not budgets:
            raise ValueError(
                "a Limiter with backend needs at least one of rps, rpm, rph, rpd, tpm, itpm "
                "or otpm (concurrency alone is per process: leave backend out)"
            )
        self.backend = backend
        self.key = key
        self._limits = {name: amount for name, amount in limits.items() if amount is not None}
        self._burst = burst
        self._names = [name for name, _, _ in budgets]
        self._budgets = RedisBudgets(backend, key, budgets)
        self._slots = None if concurrency is None else _core.Limiter(concurrency=concurrency)
        self._lock = threading.Lock()
        self._counts = {"granted": 0, "rejected": 0, "cancelled": 0, "rate_limited": 0}
        self._counts.update({"retries": 0, "in_flight": 0})
        self._waited = 0.0

    # -- counters -----------------------------------------------------------

    def _count(self, name: str, waited: float = 0.0) -> None:
        with self._lock:
            self._counts[name] += 1
            self._waited += waited

    def _in_flight_done(self) -> None:
        with self._lock:
            self._counts["in_flight"] -= 1

    def _count_rate_limited(self) -> None:
        self._count("rate_limited")

    def _count_retry(self) -> None:
        self._count("retries")

    # -- acquiring ----------------------------------------------------------

    def _amounts(self, tokens: _Tokens) -> list[float]:
        return [tokens.units(name) for name in self._names]

    def _timed_out(self, wait: float, timeout: float) -> RateLimitTimeout:
        self._count("rejected")
        return RateLimitTimeout(
            f"granting this would need a wait of {wait:.3f}s, over the timeout of {timeout:.3f}s",
            wait,
            timeout,
        )

    def _granted(
        self, tokens: _Tokens, source: int, waited: float, slot: Optional[_core.Permit]
    ) -> RedisPermit:
        with self._lock:
            self._counts["granted"] += 1
            self._counts["in_flight"] += 1
            self._waited += waited
        return RedisPermit(self, tokens, source, waited, slot)

    def acquire(
        self,
        tokens: float = 0.0,
        timeout: Optional[float] = None,
        *,
        input_tokens: Optional[float] = None,
        output_tokens: Optional[float] = None,
    ) -> RedisPermit:
        """Waits (GIL released) for a slot, then for every shared budget (one Redis call).

        Raises ``RateLimitTimeout``, holding nothing, when that would exceed ``timeout``.

        >>> with limiter.acquire(tokens=1200) as permit: ...  # doctest: +SKIP
        """
        request = _Tokens(tokens, input_tokens, output_tokens)
        amounts = self._amounts(request)
        timeout = _check_timeout(timeout)
        slot = None if self._slots is None else self._slots.acquire(0.0, timeout)
        try:
            slot_waited = 0.0 if slot is None else slot.waited
            left = None if timeout is None else max(timeout - slot_waited, 0.0)
            source, wait = _core_reserve(self, amounts, left, timeout)
            if wait > 0.0:
                try:
                    time.sleep(wait)
                except BaseException:
                    self._give_back(request, source)
                    raise
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        return self._granted(request, source, slot_waited + wait, slot)

    async def acquire_async(
        self,
        tokens: float = 0,
        timeout: Optional[float] = None,
        *,
        input_tokens: Optional[float] = None,
        output_tokens: Optional[float] = None,
    ) -> RedisPermit:
        """Waits on the running loop for a slot and every shared budget; never blocks the loop.

        >>> # async with await limiter.acquire_async(tokens=1200) as permit: ...
        """
        request = _Tokens(tokens, input_tokens, output_tokens)
        amounts = self._amounts(request)
        timeout = _check_timeout(timeout)
        loop = asyncio.get_running_loop()
        slot = None
        if self._slots is not None:
            slot = await self._slots.acquire_async(0.0, timeout)
        try:
            slot_waited = 0.0 if slot is None else slot.waited
            left = None if timeout is None else max(timeout - slot_waited, 0.0)
            source, wait = _OPEN, 0.0
            if any(amounts):
                reply: asyncio.Future[tuple[float, int]] = loop.create_future()
                self._budgets._reserve_into(
                    amounts, left, loop.call_soon_threadsafe, _resolve, reply
                )
                wait, source = await reply
                if wait < 0.0:
                    raise self._timed_out(-1.0 - wait, timeout or 0.0)
                if wait > 0.0:
                    try:
                        await asyncio.sleep(wait)
                    except BaseException:
                        self._count("cancelled")
                        self._budgets._cancel(amounts, source)
                        raise
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        return self._granted(request, source, slot_waited + wait, slot)

    def _give_back(self, tokens: _Tokens, source: int) -> None:
        amounts = self._amounts(tokens)
        if any(amounts) and source != _OPEN:
            self._budgets._refund(amounts, source)

    def _settle(self, old: _Tokens, new: _Tokens, source: int) -> None:
        """Moves the token budgets by the difference between two estimates."""
        extra = [0.0] * len(self._names)
        back = [0.0] * len(self._names)
        for i, name in enumerate(self._names):
            if name in _TOKEN_BUDGETS:
                diff = new.units(name) - old.units(name)
                if diff > 0:
                    cap = self._limits[name]
                    extra[i] = min(diff, cap)
                elif diff < 0:
                    back[i] = -diff
        if any(back) and source != _OPEN:
            self._budgets._refund(back, source)
        if any(extra):
            # Charged now whatever the wait: the tokens were already spent.
            # Under on_error="deny" during an outage there is nothing to charge.
            with contextlib.suppress(RateLimitError):
                self._budgets._reserve(extra, None)

    # -- control ------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Grants nothing, in any process sharing ``key``, for ``seconds`` (server time).

        >>> limiter.pause(2.0)  # doctest: +SKIP
        """
        self._budgets.pause(seconds)

    def update_from_headers(self, headers: Any) -> None:
        """Tightens the shared budgets to the server's rate-limit headers (never loosens).

        >>> limiter.update_from_headers(response.headers)  # doctest: +SKIP
        """
        adopt_server_limits(
            read_limits(headers), self._limits.__contains__, self._adopt, self.pause
        )

    def _adopt(
        self,
        budget: str,
        remaining: float,
        reset: Optional[float] = None,
        limit: Optional[float] = None,
        at_reset: bool = False,
    ) -> None:
        if budget not in _PERIODS and budget not in _TOKEN_BUDGETS:
            raise ValueError(
                f"budget must be one of rps, rpm, rph, rpd, tpm, itpm, otpm, got {budget!r}"
            )
        if budget in self._names:
            self._budgets._adopt(self._names.index(budget), remaining, reset, limit, at_reset)

    def _capacity(self, name: str) -> float:
        if self._burst is not None and name in _PERIODS:
            return self._burst
        return self._limits[name]

    def available(self, budget: str) -> Optional[float]:
        """Units of ``budget`` available now in Redis; ``None`` when not configured.

        >>> limiter.available("tpm")  # doctest: +SKIP
        """
        if budget not in _PERIODS and budget not in _TOKEN_BUDGETS:
            raise ValueError(f"unknown budget {budget!r}")
        if budget not in self._limits:
            return None
        peeked = self._budgets._peek()
        capacity = self._capacity(budget)
        if peeked is None:
            return capacity
        ahead = peeked[0][self._names.index(budget)]
        rate = self._limits[budget] / _PERIODS.get(budget, 60.0)
        return float(capacity - ahead * rate)

    def stats(self) -> dict[str, Any]:
        """This process's counters, with ``available`` and ``paused_for`` read from Redis.

        >>> limiter.stats()["granted"]  # doctest: +SKIP
        """
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
            out["waited_seconds"] = self._waited
        out["waiting"] = 0 if self._slots is None else self._slots.stats()["waiting"]
        peeked = self._budgets._peek()
        out["paused_for"] = 0.0 if peeked is None else peeked[1]
        available = {}
        for i, name in enumerate(self._names):
            capacity = self._capacity(name)
            rate = self._limits[name] / _PERIODS.get(name, 60.0)
            available[name] = capacity if peeked is None else capacity - peeked[0][i] * rate
        out["available"] = available
        return out

    def reset(self) -> None:
        """Every shared budget full again and no pause, for every process (counters kept)."""
        self._budgets.reset()

    @property
    def concurrency(self) -> Optional[int]:
        return None if self._slots is None else self._slots.concurrency

    def __repr__(self) -> str:
        parts = [f"{name}={amount!r}" for name, amount in self._limits.items()]
        if self.concurrency is not None:
            parts.append(f"concurrency={self.concurrency}")
        if self._burst is not None:
            parts.append(f"burst={self._burst!r}")
        parts.append(f"key={self.key!r}")
        return f"Limiter({', '.join(parts)}, backend={self.backend!r})"


def _core_reserve(
    limiter: RedisLimiter, amounts: list[float], left: Optional[float], timeout: Optional[float]
) -> tuple[int, float]:
    """One script call: ``(source, wait)``, or ``RateLimitTimeout`` with nothing taken."""
    if not any(amounts):
        return _OPEN, 0.0
    granted, wait, source = limiter._budgets._reserve(amounts, left)
    if not granted:
        raise limiter._timed_out(wait, timeout or 0.0)
    return source, wait


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
            bucket = RedisTokenBucket(self.backend, f"keyed:{key}", rate, capacity)
            self._buckets[key] = bucket
        return bucket

    def try_acquire(self, key: str, n: float = 1.0) -> bool:
        """Takes ``n`` units from ``key``'s shared bucket now if it has them (one Redis call)."""
        return self._bucket(key).try_acquire(n)

    def acquire(self, key: str, n: float = 1.0, timeout: Optional[float] = None) -> bool:
        """Waits (GIL released) for ``n`` units of ``key``; ``False``, taking nothing, past ``timeout``."""
        return self._bucket(key).acquire(n, timeout)

    async def acquire_async(self, key: str, n: float = 1, timeout: Optional[float] = None) -> bool:
        """Waits on the running loop for ``n`` units of ``key``."""
        return await self._bucket(key).acquire_async(n, timeout)

    def wait_time(self, key: str, n: float = 1.0) -> float:
        """Seconds until ``n`` units of ``key`` would be granted (server time)."""
        return self._bucket(key).wait_time(n)

    def available(self, key: str) -> float:
        """Units available to ``key`` now (its capacity while Redis holds no state for it)."""
        bucket = self._bucket(key)
        return bucket.capacity - bucket.wait_time(bucket.capacity) * bucket.rate

    def reset(self, key: Optional[str] = None) -> None:
        """Refills ``key``'s shared bucket; without a key, raises (Redis keys are not listed)."""
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
