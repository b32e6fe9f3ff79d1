"""The one attempt loop: breaker, acquire, call, settle, decide (tenacity's ``iter()`` style).

``Attempts`` is one call's state across its attempts. ``iter()`` looks at how
the last attempt ended and says what to do next:

- ``ATTEMPT``: the breaker let the attempt through; acquire from the limiter
  and make the call, then report ``succeeded()`` or ``failed(permit, exc)``;
- ``SLEEP``: wait ``wait`` seconds as the policy waits, then ask again;
- ``STOP``: raise ``error`` (a ``RetryError``, or the failure itself).

A 429 that will be retried pauses the shared limiter for the wait instead of
sleeping (every caller backs off together; the next acquire waits), so
``iter()`` then answers ``ATTEMPT`` at once. ``run_sync`` / ``run_async``
drive it; ``Retry``, ``@rate_limited``, ``wrap`` and the transports all do.
Events (``ratekeeper._events.emit``) are reported only on the failure path:
a granted first attempt runs no extra code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, TypeVar

from . import _events
from ._guarding import abandon_breaker, enter_breaker, settle_breaker
from .classify import is_rate_limited, status_of
from .errors import RetryError

if TYPE_CHECKING:
    from .retrying import Retry, RetryDecision

__all__ = [
    "ATTEMPT",
    "SLEEP",
    "STOP",
    "UNLIMITED",
    "Attempts",
    "RetryState",
    "run_async",
    "run_sync",
]

T = TypeVar("T")
ATTEMPT, SLEEP, STOP = 0, 1, 2


@dataclass(frozen=True)
class RetryState:
    """What ``Retry(before_sleep=fn)`` is given before each wait between attempts.

    >>> RetryState(attempt=1, exception=TimeoutError(), wait=0.5).wait
    0.5
    """

    attempt: int
    """The attempt that just failed (1 for the first)."""
    exception: BaseException
    """How it failed."""
    wait: float
    """Seconds until the next attempt (a 429's wait is a pause of the shared limiter)."""
    model: Optional[str] = None
    """The model called, under ``wrap`` and the transports; else None."""


class _NoPermit:
    __slots__ = ()

    def release(self) -> None:
        pass

    def reconcile(self, *args: Any, **kwargs: Any) -> None:
        pass


_NO_PERMIT = _NoPermit()


class _Unlimited:
    """The limiter of a plain ``Retry``: grants at once, ignores pauses and counts."""

    __slots__ = ()
    events_source = None

    def acquire(self, *args: Any, **kwargs: Any) -> _NoPermit:
        return _NO_PERMIT

    async def acquire_async(self, *args: Any, **kwargs: Any) -> _NoPermit:
        return _NO_PERMIT

    def pause(self, seconds: float) -> None:
        pass

    def _count_rate_limited(self) -> None:
        pass

    def _count_retry(self) -> None:
        pass


UNLIMITED: Any = _Unlimited()


def _reason(exc: BaseException) -> str:
    status = status_of(exc)
    return str(status) if status is not None else type(exc).__name__


class Attempts:
    """One call's attempts through ``limiter``, ``policy`` and ``breaker`` (see the module)."""

    __slots__ = (
        "args",
        "breaker",
        "error",
        "failure",
        "kwargs",
        "limiter",
        "model",
        "number",
        "policy",
        "started",
        "ticket",
        "wait",
    )

    def __init__(
        self,
        limiter: Any,
        policy: Retry,
        breaker: Any = None,
        *,
        tokens: float = 0,
        timeout: Optional[float] = None,
        input_tokens: Optional[float] = None,
        output_tokens: Optional[float] = None,
        model: Optional[str] = None,
    ) -> None:
        self.limiter = limiter
        self.policy = policy
        self.breaker = breaker
        self.model = model
        # What every acquire is given: the request does not change between attempts.
        self.args = (tokens, timeout)
        self.kwargs = (
            {}
            if input_tokens is None and output_tokens is None
            else {"input_tokens": input_tokens, "output_tokens": output_tokens}
        )
        self.number = 0
        self.started = policy.now() if policy.deadline is not None else 0.0
        self.ticket: Any = None
        self.failure: Optional[Exception] = None
        self.wait = 0.0
        self.error: Optional[BaseException] = None

    def iter(self) -> int:
        """What to do next: ``ATTEMPT``, ``SLEEP`` (``self.wait``) or ``STOP`` (``self.error``)."""
        failure = self.failure
        if failure is not None:
            self.failure = None
            if not self._decide(failure):
                return STOP
            if self.wait > 0.0:
                return SLEEP
        if self.breaker is not None:
            # Half-open, the breaker lends this attempt a probe slot: exactly
            # one of succeeded/failed/abandon must follow, or it is never given back.
            self.ticket = enter_breaker(self.breaker)
        self.number += 1
        return ATTEMPT

    def succeeded(self) -> None:
        """The attempt returned; its permit is the caller's to release."""
        if self.breaker is not None:
            settle_breaker(self.breaker, self.ticket, None)

    def failed(self, permit: Any, exc: Exception) -> None:
        """The attempt raised ``exc``: release the permit, tell the breaker; ``iter()`` decides.

        A 4xx (429 included) generated nothing: its tokens are refunded. A 5xx
        or a broken connection may have been processed: the charge stays.
        """
        try:
            status = status_of(exc)
            if status is not None and 400 <= status < 500:
                permit.reconcile(0, input_tokens=0, output_tokens=0)
        finally:
            permit.release()
        if self.breaker is not None:
            settle_breaker(self.breaker, self.ticket, exc)
        self.failure = exc

    def first_failed(self, permit: Any, exc: Exception) -> None:
        """The first attempt, made by a driver's fast path (no breaker), raised ``exc``."""
        self.number = 1
        self.failed(permit, exc)

    def abandon(self, permit: Any) -> None:
        """The attempt never reached the service (timed out waiting, cancelled): nothing counts."""
        if permit is not None:
            permit.release()
        if self.breaker is not None:
            abandon_breaker(self.breaker, self.ticket)

    def _decide(self, failure: Exception) -> bool:
        policy, limiter = self.policy, self.limiter
        source = getattr(limiter, "events_source", limiter)
        decision = policy.decide(failure, self.number)
        if decision.rate_limited or is_rate_limited(failure):
            limiter._count_rate_limited()
            wait = decision.server_wait if decision.server_wait is not None else decision.delay
            _events.emit("rate_limited", source, model=self.model, wait=wait, attempt=self.number)
        if decision.retry and policy.deadline is not None:
            decision = self._within_deadline(decision, failure)
        if not decision.retry:
            self.error = decision.error_for(failure)
            if decision.give_up is not None:
                _events.emit(
                    "giving_up",
                    source,
                    model=self.model,
                    attempt=self.number,
                    reason=_reason(failure),
                )
            return False
        limiter._count_retry()
        wait = decision.delay
        _events.emit(
            "retry",
            source,
            model=self.model,
            wait=wait,
            attempt=self.number,
            reason=_reason(failure),
        )
        before_sleep = policy.before_sleep
        if before_sleep is not None:
            before_sleep(RetryState(self.number, failure, wait, self.model))
        if decision.rate_limited and wait > 0.0 and limiter is not UNLIMITED:
            limiter.pause(wait)  # the next acquire (everyone's) waits it out
            _events.emit("pause", source, wait=wait)
            wait = 0.0
        self.wait = wait
        return True

    def _within_deadline(self, decision: RetryDecision, failure: Exception) -> RetryDecision:
        """``decision``, or giving up when the next attempt would start past the deadline."""
        deadline = self.policy.deadline
        assert deadline is not None
        elapsed = self.policy.now() - self.started
        if elapsed + decision.delay <= deadline:
            return decision
        give_up = RetryError(
            failure,
            self.number,
            f"the next attempt would start {elapsed + decision.delay:.3f}s after the first, "
            f"past the deadline of {deadline}s; gave up after {self.number} attempt(s): "
            f"{failure!r}",
        )
        return replace(decision, retry=False, delay=0.0, give_up=give_up)


def run_sync(attempts: Attempts, call: Callable[[Any], T]) -> T:
    """Drives ``attempts`` with ``call(permit)``; on return the permit is ``call``'s to release."""
    acquire = attempts.limiter.acquire
    while True:
        action = attempts.iter()
        if action == ATTEMPT:
            permit = None
            try:
                permit = acquire(*attempts.args, **attempts.kwargs)
                result = call(permit)
            except Exception as exc:
                if permit is None:  # the wait failed (a timeout): the attempt never began
                    attempts.abandon(None)
                    raise
                attempts.failed(permit, exc)
                continue
            except BaseException:
                attempts.abandon(permit)
                raise
            attempts.succeeded()
            return result
        if action == SLEEP:
            attempts.policy.sleep(attempts.wait)
            continue
        assert attempts.error is not None
        raise attempts.error


async def run_async(attempts: Attempts, call: Callable[[Any], Awaitable[T]]) -> T:
    """The async twin of ``run_sync``."""
    acquire = attempts.limiter.acquire_async
    while True:
        action = attempts.iter()
        if action == ATTEMPT:
            permit = None
            try:
                permit = await acquire(*attempts.args, **attempts.kwargs)
                result = await call(permit)
            except Exception as exc:
                if permit is None:
                    attempts.abandon(None)
                    raise
                attempts.failed(permit, exc)
                continue
            except BaseException:
                attempts.abandon(permit)
                raise
            attempts.succeeded()
            return result
        if action == SLEEP:
            await attempts.policy.sleep_async(attempts.wait)
            continue
        assert attempts.error is not None
        raise attempts.error
