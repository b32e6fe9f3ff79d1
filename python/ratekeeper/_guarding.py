"""The circuit breaker's side of every attempt: let it through, settle it, or give it back.

The breaker's default idea of a failure (``is_service_failure``) and the
probe-slot protocol of a half-open breaker (``enter_breaker`` then exactly
one of ``settle_breaker`` / ``abandon_breaker``) live here, for the attempt
loop in :mod:`ratekeeper._attempts`.
"""

from __future__ import annotations

from typing import Any, Optional

from .classify import is_retryable, status_of
from .errors import CircuitOpenError

__all__ = [
    "abandon_breaker",
    "clone_breaker",
    "enter_breaker",
    "is_service_failure",
    "settle_breaker",
]


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
