"""The steps that ``@rate_limited`` and ``wrap`` share around every attempt.

Building the limiter and the retry policy from the keyword arguments, the
breaker's default idea of a failure, and what happens after a failed attempt:
count it, pause the shared limiter on a 429 (so that every caller backs off
together, not only the one that was told), and decide whether to go again.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from .classify import is_rate_limited, is_retryable, status_of
from .errors import CircuitOpenError
from .retrying import Retry, RetryDecision

__all__ = [
    "NO_RETRY",
    "abandon_breaker",
    "after_failure",
    "clone_breaker",
    "enter_breaker",
    "is_service_failure",
    "make_limiter",
    "make_policy",
    "settle_breaker",
]

# Nothing is retryable: every error passes through unchanged, never as RetryError.
NO_RETRY = Retry(max_retries=0, retry_on=lambda exc: False)


def make_limiter(
    limiter: Any, rpm: Optional[float], tpm: Optional[float], concurrency: Optional[int]
) -> Any:
    """``limiter`` itself, or a new ``rk.Limiter`` from the shorthand budgets (not both)."""
    shorthand = {"rpm": rpm, "tpm": tpm, "concurrency": concurrency}
    given: dict[str, Any] = {name: value for name, value in shorthand.items() if value is not None}
    if limiter is not None:
        if given:
            raise ValueError(f"give limiter= or the budgets ({', '.join(given)}), not both")
        if not callable(getattr(limiter, "acquire", None)):
            raise TypeError(f"limiter must be an rk.Limiter, got {type(limiter).__name__}")
        return limiter
    from .limiter import Limiter

    return Limiter(rpm=rpm, tpm=tpm, concurrency=concurrency)


def make_policy(retry: Union[bool, Retry, None]) -> Retry:
    """``retry=True`` means ``Retry()``; ``False``/``None`` means no retries."""
    if retry is True:
        return Retry()
    if retry is False or retry is None:
        return NO_RETRY
    if isinstance(retry, Retry):
        return retry
    raise TypeError(f"retry must be True, False or an rk.Retry, got {type(retry).__name__}")


def is_service_failure(exc: BaseException) -> bool:
    """A sign the service is unwell: 5xx (529 included), connection errors, timeouts.

    A 429 is the service working as intended, and a 4xx is the caller's fault:
    neither counts against the breaker.

    >>> is_service_failure(TimeoutError())
    True
    """
    if not isinstance(exc, Exception):
        return False
    status = status_of(exc)
    if status is not None:
        return status >= 500
    return is_retryable(exc)


def clone_breaker(template: Any) -> Any:
    """A fresh breaker with ``template``'s configuration (one per model under ``wrap``)."""
    copy = getattr(template, "copy", None)
    if callable(copy):
        return copy()
    from .breaker import same_settings

    return same_settings(template)


def enter_breaker(breaker: Any) -> Any:
    """Lets one call through ``breaker`` and returns what it holds (``CircuitOpenError`` if not).

    Half-open, the call holds a probe slot: exactly one of ``settle_breaker``
    or ``abandon_breaker`` must follow, or the slot is never given back.
    """
    enter = getattr(breaker, "_enter", None)
    if enter is not None:
        return enter()
    # A breaker of another kind: allow() and record_*() only, no probe slot to hold.
    if not breaker.allow():
        raise CircuitOpenError(breaker.retry_after)
    return None


def settle_breaker(breaker: Any, permit: Any, exc: Optional[BaseException]) -> None:
    """Records the outcome of a call let through with ``permit`` (``exc`` None: it returned)."""
    if permit is None:
        if exc is None:
            breaker.record_success()
        else:
            _record_outcome(breaker, exc)
    elif exc is None:
        breaker._success(permit)
    elif not isinstance(exc, Exception):
        breaker._abandon(permit)
    elif breaker.failure_on is None and not is_service_failure(exc):
        breaker._success(permit)
    else:
        # Its own failure_on decides; without one, every Exception counts,
        # and this one is a service failure.
        breaker._settle(permit, exc)


def abandon_breaker(breaker: Any, permit: Any) -> None:
    """The call let through with ``permit`` never reached the service: nothing counts."""
    if permit is not None:
        breaker._abandon(permit)


def _record_outcome(breaker: Any, exc: BaseException) -> None:
    """Tells a breaker of another kind whether ``exc`` was the service failing.

    Its own ``failure_on`` decides when it has one; else ``is_service_failure``.
    """
    failure_on = breaker.failure_on
    if failure_on is None:
        failed = is_service_failure(exc)
    elif isinstance(failure_on, (type, tuple)):
        failed = isinstance(exc, failure_on)
    else:
        failed = bool(failure_on(exc))
    if failed:
        breaker.record_failure()
    else:
        breaker.record_success()


def after_failure(limiter: Any, policy: Retry, exc: BaseException, attempts: int) -> RetryDecision:
    """Counts a failed attempt and decides; on a 429 that will be retried, pauses ``limiter``.

    The pause is the retry's wait: the next ``acquire`` (this caller's and
    everyone else's) sleeps until it ends, so the caller does not sleep again.
    """
    decision = policy.decide(exc, attempts)
    if decision.rate_limited or is_rate_limited(exc):
        limiter._count_rate_limited()
    if decision.retry:
        limiter._count_retry()
        if decision.rate_limited and decision.delay > 0.0:
            limiter.pause(decision.delay)
    return decision
