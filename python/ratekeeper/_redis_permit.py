"""What one request asks of a ``RedisLimiter``'s budgets, and the permit that holds it.

Apart from :mod:`ratekeeper.redis_limiter` (which re-exports ``RedisPermit``)
because the token arithmetic here is the same ``core::limiter::Amounts`` rule
as in Rust, and reads best on its own.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Literal, Optional

from . import _core

if TYPE_CHECKING:
    from .redis_limiter import RedisLimiter

__all__ = ["RedisPermit"]


def _check_tokens(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


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
        """Tokens charged to itpm (all of ``tokens`` unless input was given apart)."""
        return self._tokens.input

    @property
    def output_tokens(self) -> float:
        """Tokens charged to otpm."""
        return self._tokens.output

    def release(self) -> None:
        """Gives the (per-process) concurrency slot back; again does nothing.

        >>> permit.release()  # doctest: +SKIP
        """
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
