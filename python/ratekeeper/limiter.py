"""The LLM-shaped façade of SPEC section 7: ``Limiter`` and its ``Permit``.

``Limiter`` and ``Permit`` are the compiled classes themselves (an exact
builtin type keeps CPython's fast call path): ``acquire`` (blocking, GIL
released), ``pause`` and the permits are Rust. This module attaches, once at
import, only what runs on an event loop (``acquire_async``), the reading of
the server's headers (``update_from_headers``), and ``stats`` (Rust's
counters plus ``learned``, the budgets the limiter's clients learned).

How tokens map to budgets: ``tokens`` is the request's total and feeds
``tpm``. ``input_tokens`` feeds ``itpm`` and ``output_tokens`` feeds
``otpm``; without ``input_tokens`` the whole of ``tokens`` counts as input
(so an ``itpm``-only limiter still counts a plain ``tokens=`` estimate), and
without ``tokens`` the total is ``input_tokens + output_tokens``.
"""

from __future__ import annotations

import asyncio
import functools
import math
import weakref
from typing import Any, Callable, Optional

from . import _core
from ._waiting import sleep_until_due
from .errors import RateLimitTimeout
from .headers import ServerLimits, read_limits

__all__ = ["Limiter", "Permit"]


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def acquire_async(
    self: _core.Limiter,
    tokens: float = 0,
    timeout: Optional[float] = None,
    *,
    input_tokens: Optional[float] = None,
    output_tokens: Optional[float] = None,
) -> _core.Permit:
    """Waits on the running loop for a slot and every budget; never blocks the loop.

    Raises ``RateLimitTimeout`` (holding nothing) when the grant would come
    later than ``timeout`` seconds. A cancelled wait gives back its slot and
    budgets.

    >>> # async with await limiter.acquire_async(tokens=1200) as permit: ...
    """
    # The decision and the reservation are made in Rust, synchronously; only
    # a busy concurrency cap or a real wait for budget goes further.
    permit = self._reserve(tokens, timeout, input_tokens, output_tokens)
    if permit is None:
        permit = await _acquire_slot_then_reserve(
            self, tokens, timeout, input_tokens, output_tokens
        )
    due = permit._due
    if due:
        await sleep_until_due(permit, 0.0, due)
    return permit


async def _acquire_slot_then_reserve(
    self: _core.Limiter,
    tokens: float,
    timeout: Optional[float],
    input_tokens: Optional[float],
    output_tokens: Optional[float],
) -> _core.Permit:
    loop = asyncio.get_running_loop()
    started = loop.time()
    future: asyncio.Future[None] = loop.create_future()
    # The releasing thread (any thread) schedules the wake-up on our loop.
    ticket = self._enqueue(functools.partial(loop.call_soon_threadsafe, _wake, future))
    if ticket:
        try:
            if timeout is None:
                await future
            else:
                await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            if self._cancel_slot(ticket, True):
                raise RateLimitTimeout(
                    f"no concurrency slot within the timeout of {timeout:.3f}s",
                    loop.time() - started,
                    timeout,
                ) from None
            # A slot was handed over just as the wait timed out: keep it.
        except BaseException:
            if not self._cancel_slot(ticket):
                self._release_slot()
            raise
    waited = loop.time() - started
    try:
        permit = self._reserve(tokens, timeout, input_tokens, output_tokens, True, waited)
    except RateLimitTimeout:
        raise  # Rust gave the slot back before raising
    except BaseException:
        self._release_slot()
        raise
    assert permit is not None  # with holds_slot=True, Rust always reserves
    return permit


def update_from_headers(
    self: _core.Limiter, headers: Any, *, max_retry_after: Optional[float] = 120.0
) -> None:
    """Adopts the server's rate-limit headers: never more generous than the server.

    Each budget the server reports a ``remaining`` for is tightened so that no
    more than that is available now (never loosened). With nothing left, the
    next unit comes after the server's emission interval: OpenAI's and
    Anthropic's reset is the time until the bucket is *full* again, so it is
    divided by the limit, not waited out; only OpenRouter's bare
    ``X-RateLimit-*`` (a window) waits for its reset (at most one period).
    ``requests`` go to the fastest request budget configured (rps, then rpm,
    rph, rpd), ``tokens`` to tpm, Anthropic's input and output tokens to itpm
    and otpm. A ``retry-after`` pauses the limiter, for at most
    ``max_retry_after`` seconds (the default of ``rk.Retry``; ``None``: no
    cap), whatever the response's status.

    >>> Limiter(rpm=60).update_from_headers({"x-ratelimit-remaining-requests": "5"})
    """
    adopt_server_limits(
        read_limits(headers),
        lambda budget: self.available(budget) is not None,
        self._adopt,
        self.pause,
        max_retry_after=max_retry_after,
    )


def adopt_server_limits(
    limits: ServerLimits,
    has_budget: Callable[[str], bool],
    adopt: Callable[..., None],
    pause: Callable[[float], None],
    *,
    max_retry_after: Optional[float] = 120.0,
) -> None:
    """Maps what the server said onto a limiter's budgets (in process or on Redis).

    ``requests`` go to the fastest request budget configured (rps, then rpm,
    rph, rpd), ``tokens`` to tpm, Anthropic's input and output tokens to itpm
    and otpm; ``adopt(budget, remaining, reset, limit, at_reset)`` applies the
    one adoption rule (Rust: ``ServerBudget::tat_floor``). A ``retry-after``
    longer than ``max_retry_after`` pauses for ``max_retry_after``: capped,
    not ignored, so that callers still back off from a server that asked
    them to, for as long as the user allows, and ask again after.

    >>> adopt_server_limits(read_limits({}), lambda b: False, print, print)
    """
    cap = _check_max_retry_after(max_retry_after)
    if limits.requests_remaining is not None:
        for budget in ("rps", "rpm", "rph", "rpd"):
            if has_budget(budget):
                adopt(
                    budget,
                    limits.requests_remaining,
                    limits.requests_reset,
                    limits.requests_limit,
                    limits.requests_fixed_window,
                )
                break
    token_budgets = (
        ("tpm", limits.tokens_remaining, limits.tokens_reset, limits.tokens_limit),
        (
            "itpm",
            limits.input_tokens_remaining,
            limits.input_tokens_reset,
            limits.input_tokens_limit,
        ),
        (
            "otpm",
            limits.output_tokens_remaining,
            limits.output_tokens_reset,
            limits.output_tokens_limit,
        ),
    )
    for budget, remaining, reset, limit in token_budgets:
        if remaining is not None and has_budget(budget):
            adopt(budget, remaining, reset, limit, False)
    wait = limits.retry_after
    if wait is not None and cap is not None:
        wait = min(wait, cap)
    if wait is not None and wait > 0:
        pause(wait)


def _check_max_retry_after(value: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"max_retry_after must be a number of seconds or None, got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"max_retry_after must be a finite number >= 0 or None, got {seconds}")
    return seconds


# What the clients of a limiter learned from the server, by limiter (ratekeeper._learning).
LEARNED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_rust_stats = _core.Limiter.stats


def learned_of(limiter: Any) -> dict[str, dict[str, float]]:
    """What ``limiter``'s clients learned: model (or ``"*"``) -> {budget: amount per period}.

    >>> learned_of(object())
    {}
    """
    try:
        learning = LEARNED.get(limiter)
    except TypeError:  # not weakly referenceable: nothing was learned for it
        return {}
    return {} if learning is None else dict(learning.snapshot())


def stats(self: _core.Limiter) -> dict[str, Any]:
    """Counters: granted, rejected (timed out), cancelled, waited_seconds, rate_limited
    (429s seen), retries, in_flight, waiting (for a slot), paused_for (seconds),
    available and capacity (per budget), wait_histogram, and learned (model or ``"*"``
    -> the budgets learned from the server, ``{"rpm": ..., "tpm": ...}``).

    >>> Limiter(rpm=60).stats()["available"]
    {'rpm': 60.0}
    """
    out: dict[str, Any] = _rust_stats(self)
    out["learned"] = learned_of(self)
    return out


async def _permit_aenter(self: _core.Permit) -> _core.Permit:
    return self


async def _permit_aexit(self: _core.Permit, *_exc_info: object) -> None:
    self.release()


# A Python coroutine is the cheapest awaitable here: an already-done awaitable
# written in Rust must raise StopIteration, which costs more than the frame.
_core.Permit.__aenter__ = _permit_aenter  # type: ignore[method-assign]
_core.Permit.__aexit__ = _permit_aexit  # type: ignore[method-assign]
_core.Limiter.acquire_async = acquire_async  # type: ignore[method-assign]
_core.Limiter.update_from_headers = update_from_headers  # type: ignore[method-assign]
_core.Limiter.stats = stats  # type: ignore[method-assign]

Limiter = _core.Limiter
Permit = _core.Permit
