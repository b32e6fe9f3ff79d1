"""``Limiter`` and ``KeyedLimiter`` shared through Redis (SPEC section 9).

``rk.Limiter(..., backend=RedisBackend(...), key="team-a")`` returns a
:class:`RedisLimiter` and ``rk.KeyedLimiter(rate, capacity, backend=...)`` a
:class:`RedisKeyedLimiter`: the compiled constructors hand over to these
classes when ``backend`` is given, so the in-process classes keep their fast
path untouched. They have the same methods; what differs:

- Every budget of a ``RedisLimiter`` (rps/rpm/rph/rpd/tpm/itpm/otpm) is
  checked and charged by ONE script call, all or nothing, on the Redis
  server's clock (``RedisBudgets``), at the grant time as in process, and
  never before the last grant (arrival order across processes). A waiter
  reserves its grant time and sleeps; there is no queue in Redis, so units
  given back (a refund, a ``reconcile`` below the estimate) while others wait
  are kept rather than moving them up, except a cancel of the latest
  reservation, which is exact.
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
import threading
import time
from typing import Any, Optional

from . import _core
from ._redis_keyed import RedisKeyedLimiter
from ._redis_permit import RedisPermit, _Tokens
from .errors import RateLimitError, RateLimitTimeout
from .headers import read_limits
from .limiter import adopt_server_limits, learned_of
from .redis import RedisBudgets, _await_reply, _resolve, check_timeout

__all__ = ["RedisKeyedLimiter", "RedisLimiter", "RedisPermit"]

_PERIODS = {"rps": 1.0, "rpm": 60.0, "rph": 3600.0, "rpd": 86400.0}
_TOKEN_BUDGETS = ("tpm", "itpm", "otpm")
# Sources of a grant, as the Rust side numbers them.
_OPEN = 2


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
        self._limits = {name: amount for name, amount in limits.items() if amount is not None}
        if not self._limits:
            raise ValueError(
                "a Limiter with backend needs at least one of rps, rpm, rph, rpd, tpm, itpm "
                "or otpm (concurrency alone is per process: leave backend out)"
            )
        self.backend = backend
        self.key = key
        self._burst = burst
        self._names = list(self._limits)
        self._budgets = RedisBudgets(
            backend,
            key,
            [(name, self._rate(name), float(self._capacity(name))) for name in self._names],
        )
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
        timeout = check_timeout(timeout)
        slot = None if self._slots is None else self._slots.acquire(0.0, timeout)
        try:
            slot_waited = 0.0 if slot is None else slot.waited
            left = None if timeout is None else max(timeout - slot_waited, 0.0)
            source, wait = self._reserve_now(amounts, left, timeout)
            if wait > 0.0:
                try:
                    time.sleep(wait)
                except BaseException:
                    # Interrupted (Ctrl-C): counted as the in-process Limiter
                    # and acquire_async count it, and its units handed back.
                    self._count("cancelled")
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
        timeout = check_timeout(timeout)
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
                wait, source = await _await_reply(self._budgets, amounts, reply)
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

    def _reserve_now(
        self, amounts: list[float], left: Optional[float], timeout: Optional[float]
    ) -> tuple[int, float]:
        """One script call: ``(source, wait)``, or ``RateLimitTimeout`` with nothing taken."""
        if not any(amounts):
            return _OPEN, 0.0
        granted, wait, source = self._budgets._reserve(amounts, left)
        if not granted:
            raise self._timed_out(wait, timeout or 0.0)
        return source, wait

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

    def update_from_headers(
        self, headers: Any, *, max_retry_after: Optional[float] = 120.0
    ) -> None:
        """Tightens the shared budgets to the server's rate-limit headers (never loosens).

        A server's wait pauses every process for at most ``max_retry_after``
        seconds, as in process.

        >>> limiter.update_from_headers(response.headers)  # doctest: +SKIP
        """
        adopt_server_limits(
            read_limits(headers),
            self._limits.__contains__,
            self._adopt,
            self.pause,
            max_retry_after=max_retry_after,
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

    def _rate(self, name: str) -> float:
        """Units per second: rps/rpm/rph/rpd by their period, token budgets per minute."""
        return self._limits[name] / _PERIODS.get(name, 60.0)

    def _available_from(self, peeked: Optional[Any], name: str) -> float:
        """Units of ``name`` available, from a ``_peek()`` (``None``: no state, so full)."""
        capacity = self._capacity(name)
        if peeked is None:
            return capacity
        ahead = peeked[0][self._names.index(name)]
        return float(capacity - ahead * self._rate(name))

    def available(self, budget: str) -> Optional[float]:
        """Units of ``budget`` available now in Redis; ``None`` when not configured.

        >>> limiter.available("tpm")  # doctest: +SKIP
        """
        if budget not in _PERIODS and budget not in _TOKEN_BUDGETS:
            raise ValueError(f"unknown budget {budget!r}")
        if budget not in self._limits:
            return None
        return self._available_from(self._budgets._peek(), budget)

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
        out["available"] = {name: self._available_from(peeked, name) for name in self._names}
        out["learned"] = learned_of(self)
        return out

    def reset(self) -> None:
        """Every shared budget full again and no pause, for every process (counters kept).

        >>> limiter.reset()  # doctest: +SKIP
        """
        self._budgets.reset()

    @property
    def concurrency(self) -> Optional[int]:
        """The per-process cap on requests in flight, or ``None``."""
        return None if self._slots is None else self._slots.concurrency

    def __repr__(self) -> str:
        parts = [f"{name}={amount!r}" for name, amount in self._limits.items()]
        if self.concurrency is not None:
            parts.append(f"concurrency={self.concurrency}")
        if self._burst is not None:
            parts.append(f"burst={self._burst!r}")
        parts.append(f"key={self.key!r}")
        return f"Limiter({', '.join(parts)}, backend={self.backend!r})"
