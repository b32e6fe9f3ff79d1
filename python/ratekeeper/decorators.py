"""``@rate_limited``: a limiter, retries and a breaker around any function (SPEC section 8).

Every attempt, the first and each retry, acquires from the limiter: retries
spend the same budget as first attempts. A 429 pauses the limiter for the
server's ``retry_after`` (else the backoff), so that every caller sharing it
backs off together. ``asyncio.CancelledError``, ``KeyboardInterrupt`` and
``SystemExit`` are not ``Exception``: they are never caught here, and the
permit's ``with`` block (or the limiter's own cancelled wait) gives the
reservation back on the way out.

The success path is kept short on purpose: acquire, call, release.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, TypeVar, Union, cast, overload

from ._guarding import (
    abandon_breaker,
    after_failure,
    enter_breaker,
    make_limiter,
    make_policy,
    settle_breaker,
)
from .retrying import Retry

__all__ = ["rate_limited"]

F = TypeVar("F", bound=Callable[..., Any])
Tokens = Union[int, Callable[..., int], None]


def _token_counter(tokens: Tokens) -> tuple[int, Optional[Callable[..., int]]]:
    if tokens is None:
        return 0, None
    if isinstance(tokens, bool):
        raise TypeError("tokens must be an int >= 0 or a callable of the call's arguments")
    if isinstance(tokens, int):
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens}")
        return tokens, None
    if callable(tokens):
        return 0, tokens
    raise TypeError(
        "tokens must be an int >= 0 or a callable of the call's arguments, "
        f"got {type(tokens).__name__}"
    )


@overload
def rate_limited(limiter: F) -> F: ...
@overload
def rate_limited(
    limiter: Any = None,
    *,
    rpm: Optional[float] = None,
    tpm: Optional[float] = None,
    concurrency: Optional[int] = None,
    tokens: Tokens = None,
    retry: Union[bool, Retry, None] = True,
    breaker: Any = None,
    timeout: Optional[float] = None,
) -> Callable[[F], F]: ...
def rate_limited(
    limiter: Any = None,
    *,
    rpm: Optional[float] = None,
    tpm: Optional[float] = None,
    concurrency: Optional[int] = None,
    tokens: Tokens = None,
    retry: Union[bool, Retry, None] = True,
    breaker: Any = None,
    timeout: Optional[float] = None,
) -> Any:
    """Limits (and retries, and guards with a breaker) a sync or async function or method.

    ``limiter`` is an ``rk.Limiter`` to share; or give ``rpm``/``tpm``/``concurrency``
    for a limiter of this function's own. ``tokens`` is what a call costs:
    an int, or a callable given the call's arguments. ``timeout`` bounds
    each wait for the limiter (``rk.RateLimitTimeout`` beyond it).

    >>> @rate_limited(rpm=60, tpm=40_000, tokens=lambda prompt: len(prompt) // 4 + 512)
    ... async def ask(prompt: str) -> str: ...
    """
    if inspect.isfunction(limiter) or inspect.ismethod(limiter):
        return rate_limited()(limiter)  # bare ``@rate_limited`` is a mistake: no budget
    fixed_tokens, count_tokens = _token_counter(tokens)
    shared = make_limiter(limiter, rpm, tpm, concurrency)
    policy = make_policy(retry)
    if breaker is not None and not callable(getattr(breaker, "allow", None)):
        raise TypeError(f"breaker must be an rk.CircuitBreaker, got {type(breaker).__name__}")

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"rate_limited decorates a function, got {type(fn).__name__}")
        if inspect.iscoroutinefunction(fn):
            return cast(
                F, _async_wrapper(fn, shared, policy, breaker, timeout, fixed_tokens, count_tokens)
            )
        return cast(
            F, _sync_wrapper(fn, shared, policy, breaker, timeout, fixed_tokens, count_tokens)
        )

    return decorate


def _sync_wrapper(
    fn: Callable[..., Any],
    limiter: Any,
    policy: Retry,
    breaker: Any,
    timeout: Optional[float],
    fixed_tokens: int,
    count_tokens: Optional[Callable[..., int]],
) -> Callable[..., Any]:
    acquire = limiter.acquire

    def guarded(args: Any, kwargs: Any, cost: int) -> tuple[bool, Any]:
        """One attempt through the breaker: (True, result) or (False, the failure).

        A half-open breaker lends the attempt a probe slot; an attempt that
        never reaches the service (its wait timed out or was interrupted, or
        the call itself was interrupted) gives the slot back.
        """
        permit = enter_breaker(breaker)
        failure: Optional[Exception] = None
        try:
            with acquire(cost, timeout):
                try:
                    result = fn(*args, **kwargs)
                except Exception as exc:
                    failure = exc
        except BaseException:
            abandon_breaker(breaker, permit)
            raise
        settle_breaker(breaker, permit, failure)
        return (True, result) if failure is None else (False, failure)

    def retry_loop(args: Any, kwargs: Any, cost: int, failure: Exception) -> Any:
        attempts = 1
        while True:
            decision = after_failure(limiter, policy, failure, attempts)
            if not decision.retry:
                raise decision.error_for(failure)
            if not decision.rate_limited:
                policy.sleep(decision.delay)
            attempts += 1
            if breaker is not None:
                ok, outcome = guarded(args, kwargs, cost)
                if ok:
                    return outcome
                failure = outcome
                continue
            with acquire(cost, timeout):
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    failure = exc

    @functools.wraps(fn)
    def limited(*args: Any, **kwargs: Any) -> Any:
        cost = fixed_tokens if count_tokens is None else count_tokens(*args, **kwargs)
        if breaker is not None:
            ok, outcome = guarded(args, kwargs, cost)
            if ok:
                return outcome
            return retry_loop(args, kwargs, cost, outcome)
        with acquire(cost, timeout):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                failure = exc
        # Outside the ``except`` block: a non-retryable error leaves exactly as raised.
        return retry_loop(args, kwargs, cost, failure)

    limited.limiter = limiter  # type: ignore[attr-defined]
    limited.retry_policy = policy  # type: ignore[attr-defined]
    return limited


def _async_wrapper(
    fn: Callable[..., Any],
    limiter: Any,
    policy: Retry,
    breaker: Any,
    timeout: Optional[float],
    fixed_tokens: int,
    count_tokens: Optional[Callable[..., int]],
) -> Callable[..., Any]:
    acquire_async = limiter.acquire_async

    async def guarded(args: Any, kwargs: Any, cost: int) -> tuple[bool, Any]:
        """One attempt through the breaker (see the sync ``guarded``)."""
        permit = enter_breaker(breaker)
        failure: Optional[Exception] = None
        try:
            with await acquire_async(cost, timeout):
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:
                    failure = exc
        except BaseException:
            abandon_breaker(breaker, permit)
            raise
        settle_breaker(breaker, permit, failure)
        return (True, result) if failure is None else (False, failure)

    async def retry_loop(args: Any, kwargs: Any, cost: int, failure: Exception) -> Any:
        attempts = 1
        while True:
            decision = after_failure(limiter, policy, failure, attempts)
            if not decision.retry:
                raise decision.error_for(failure)
            if not decision.rate_limited:
                await policy.sleep_async(decision.delay)
            attempts += 1
            if breaker is not None:
                ok, outcome = await guarded(args, kwargs, cost)
                if ok:
                    return outcome
                failure = outcome
                continue
            with await acquire_async(cost, timeout):
                try:
                    return await fn(*args, **kwargs)
                except Exception as exc:
                    failure = exc

    @functools.wraps(fn)
    async def limited(*args: Any, **kwargs: Any) -> Any:
        cost = fixed_tokens if count_tokens is None else count_tokens(*args, **kwargs)
        if breaker is not None:
            ok, outcome = await guarded(args, kwargs, cost)
            if ok:
                return outcome
            return await retry_loop(args, kwargs, cost, outcome)
        with await acquire_async(cost, timeout):
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                failure = exc
        return await retry_loop(args, kwargs, cost, failure)

    limited.limiter = limiter  # type: ignore[attr-defined]
    limited.retry_policy = policy  # type: ignore[attr-defined]
    return limited
