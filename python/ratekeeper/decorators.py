"""``@rate_limited``: a limiter, retries and a breaker around any function (SPEC section 8).

Every attempt, the first and each retry, acquires from the limiter: retries
spend the same budget as first attempts. A 429 pauses the limiter for the
server's ``retry_after`` (else the backoff), so that every caller sharing it
backs off together. The loop is the shared one of :mod:`ratekeeper._attempts`.
``asyncio.CancelledError``, ``KeyboardInterrupt`` and ``SystemExit`` are not
``Exception``: they are never caught here; the attempt gives its permit (and
a half-open breaker's probe slot) back on the way out.

After a call returns, the charge is reconciled with what it really used:
``usage=True`` (the default) reads the return value's ``usage`` (the SDKs'
responses carry one), ``usage=fn`` computes it from the return value.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any, Callable, Optional, TypeVar, Union, cast, overload

from . import _tokens
from ._attempts import Attempts, run_async, run_sync
from ._options import check_breaker, check_timeout, make_limiter, make_policy
from .retrying import Retry

__all__ = ["rate_limited"]

F = TypeVar("F", bound=Callable[..., Any])
Tokens = Union[int, Callable[..., int], None]
Usage = Union[bool, Callable[[Any], Any]]


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
    usage: Usage = True,
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
    usage: Usage = True,
) -> Any:
    """Limits (and retries, and guards with a breaker) a sync or async function or method.

    ``limiter`` is an ``rk.Limiter`` to share; or give ``rpm``/``tpm``/``concurrency``
    for a limiter of this function's own. ``tokens`` is what a call costs:
    an int, or a callable given the call's arguments. ``timeout`` (seconds
    > 0) bounds each wait for the limiter (``rk.RateLimitTimeout`` beyond it).
    ``usage`` reconciles the charge after a call: ``True`` reads the return
    value's ``usage`` (``prompt_tokens``/``completion_tokens`` or
    ``input_tokens``/``output_tokens``), a callable computes it (a usage object,
    or an int of tokens) from the return value, ``False`` keeps the estimate.

    Decorating a method of an SDK client that retries by itself
    (``max_retries`` > 0) warns: each of our attempts would be up to
    ``max_retries + 1`` HTTP requests. Use ``rk.wrap`` on the client instead,
    or ``client.with_options(max_retries=0)``.

    >>> @rate_limited(rpm=60, tpm=40_000, tokens=lambda prompt: len(prompt) // 4 + 512)
    ... async def ask(prompt: str) -> str: ...
    """
    if inspect.isfunction(limiter) or inspect.ismethod(limiter):
        return rate_limited()(limiter)  # bare ``@rate_limited`` is a mistake: no budget
    fixed_tokens, count_tokens = _token_counter(tokens)
    shared = make_limiter(limiter, rpm, tpm, concurrency)
    policy = make_policy(retry)
    check_breaker(breaker)
    timeout = check_timeout(timeout)
    if not isinstance(usage, bool) and not callable(usage):
        raise TypeError(f"usage must be True, False or a callable, got {type(usage).__name__}")

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"rate_limited decorates a function, got {type(fn).__name__}")
        _warn_if_it_retries_itself(fn, policy)
        guard = _Guard(shared, policy, breaker, timeout, fixed_tokens, count_tokens, usage)
        if inspect.iscoroutinefunction(fn):
            return cast(F, _async_wrapper(fn, guard))
        return cast(F, _sync_wrapper(fn, guard))

    return decorate


def _warn_if_it_retries_itself(fn: Any, policy: Retry) -> None:
    """Warns when ``fn`` is a method of an SDK client with retries of its own."""
    owner = getattr(fn, "__self__", None)
    client = getattr(owner, "_client", owner)
    retries = getattr(client, "max_retries", None)
    if policy.max_retries == 0 or not isinstance(retries, int) or retries <= 0:
        return
    warnings.warn(
        f"rate_limited wraps {getattr(fn, '__qualname__', fn)!r} of a client that retries "
        f"by itself (max_retries={retries}): each attempt may send up to {retries + 1} "
        "HTTP requests. Use rk.wrap(client) or client.with_options(max_retries=0).",
        RuntimeWarning,
        stacklevel=3,
    )


class _Guard:
    """What every call of one decorated function shares."""

    __slots__ = ("breaker", "count_tokens", "fixed_tokens", "limiter", "policy", "timeout", "usage")

    def __init__(
        self,
        limiter: Any,
        policy: Retry,
        breaker: Any,
        timeout: Optional[float],
        fixed_tokens: int,
        count_tokens: Optional[Callable[..., int]],
        usage: Usage,
    ) -> None:
        self.limiter = limiter
        self.policy = policy
        self.breaker = breaker
        self.timeout = timeout
        self.fixed_tokens = fixed_tokens
        self.count_tokens = count_tokens
        self.usage = usage

    def attempts(self, cost: int) -> Attempts:
        return Attempts(self.limiter, self.policy, self.breaker, tokens=cost, timeout=self.timeout)

    def finish(self, permit: Any, result: Any) -> None:
        """Reconciles the charge with the result's usage (when told how), then releases."""
        try:
            usage = self.usage
            if usage is True:
                found = getattr(result, "usage", None)
                if found is not None:
                    _reconcile(permit, found)
            elif usage is not False:
                _reconcile(permit, usage(result))
        finally:
            permit.release()


def _reconcile(permit: Any, usage: Any) -> None:
    if isinstance(usage, int) and not isinstance(usage, bool):
        permit.reconcile(usage)
        return
    counted = _tokens.from_usage(usage)
    if counted is not None:
        permit.reconcile(counted.input + counted.output)


# The wrappers make a first attempt without a breaker inline (acquire, call,
# finish): the granted path builds no state machine and reports nothing. A
# failure hands the attempt to the machine, which settles it and goes on.


def _sync_wrapper(fn: Callable[..., Any], guard: _Guard) -> Callable[..., Any]:
    finish, acquire, timeout = guard.finish, guard.limiter.acquire, guard.timeout
    fixed, count = guard.fixed_tokens, guard.count_tokens

    def machine(args: Any, kwargs: Any, cost: int, permit: Any, failure: Any) -> Any:
        def attempt(permit: Any) -> Any:
            result = fn(*args, **kwargs)
            finish(permit, result)
            return result

        attempts = guard.attempts(cost)
        if permit is not None:
            attempts.first_failed(permit, failure)
        return run_sync(attempts, attempt)

    @functools.wraps(fn)
    def limited(*args: Any, **kwargs: Any) -> Any:
        cost = fixed if count is None else count(*args, **kwargs)
        if guard.breaker is not None:
            return machine(args, kwargs, cost, None, None)
        permit = acquire(cost, timeout)
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            failure = exc
        except BaseException:
            permit.release()
            raise
        else:
            finish(permit, result)
            return result
        return machine(args, kwargs, cost, permit, failure)

    limited.limiter = guard.limiter  # type: ignore[attr-defined]
    limited.retry_policy = guard.policy  # type: ignore[attr-defined]
    return limited


def _async_wrapper(fn: Callable[..., Any], guard: _Guard) -> Callable[..., Any]:
    finish, acquire, timeout = guard.finish, guard.limiter.acquire_async, guard.timeout
    fixed, count = guard.fixed_tokens, guard.count_tokens

    async def machine(args: Any, kwargs: Any, cost: int, permit: Any, failure: Any) -> Any:
        async def attempt(permit: Any) -> Any:
            result = await fn(*args, **kwargs)
            finish(permit, result)
            return result

        attempts = guard.attempts(cost)
        if permit is not None:
            attempts.first_failed(permit, failure)
        return await run_async(attempts, attempt)

    @functools.wraps(fn)
    async def limited(*args: Any, **kwargs: Any) -> Any:
        cost = fixed if count is None else count(*args, **kwargs)
        if guard.breaker is not None:
            return await machine(args, kwargs, cost, None, None)
        permit = await acquire(cost, timeout)
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            failure = exc
        except BaseException:
            permit.release()
            raise
        else:
            finish(permit, result)
            return result
        return await machine(args, kwargs, cost, permit, failure)

    limited.limiter = guard.limiter  # type: ignore[attr-defined]
    limited.retry_policy = guard.policy  # type: ignore[attr-defined]
    return limited
