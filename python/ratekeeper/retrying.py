"""Retrying failed calls: ``Retry``, the ``@retry`` decorator, and the engine they share.

The policy and the loop are apart. The policy is three public methods:

- ``policy.decide(exc, attempts) -> RetryDecision``: after the ``attempts``-th
  call failed with ``exc``, whether to try again, after how long
  (``delay``: the server's ``retry_after`` when it gave one, else the
  backoff), and what to raise otherwise (``give_up``: a ``RetryError``, or
  ``None`` to re-raise ``exc`` unchanged).
- ``policy.sleep(seconds)`` / ``await policy.sleep_async(seconds)``: wait as
  the policy was told to (real time, a ``ManualClock``, or a ``sleep=`` hook).

The loop is the one of :mod:`ratekeeper._attempts` (breaker, acquire, call,
settle, decide), which ``@rate_limited``, ``wrap`` and the transports drive
too; a plain ``Retry`` drives it with a limiter that always grants.

``asyncio.CancelledError``, ``KeyboardInterrupt`` and ``SystemExit`` are not
``Exception``: no loop here ever catches them, so they pass straight through.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar, Union, cast, overload

from ._attempts import UNLIMITED, Attempts, RetryState, run_async, run_sync
from ._core import Backoff
from .classify import is_rate_limited, is_retryable
from .errors import RetryError
from .headers import retry_after

__all__ = ["Retry", "RetryDecision", "RetryState", "retry"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

# The most retries a policy takes: beyond any real use, and a count every
# part of the attempt loop holds exactly.
MAX_RETRIES = 2**32 - 1
RetryOn = Union[
    Callable[[BaseException], bool], type[BaseException], tuple[type[BaseException], ...]
]


@dataclass(frozen=True)
class RetryDecision:
    """What to do after a failed attempt (see :meth:`Retry.decide`).

    >>> Retry(max_retries=0).decide(ConnectionError(), 1).retry
    False
    """

    retry: bool
    """Try again after ``delay`` seconds."""
    delay: float
    """Seconds to wait before the next attempt; 0.0 when not retrying."""
    rate_limited: bool
    """The failure was an HTTP 429."""
    server_wait: Optional[float]
    """The server's ``retry_after`` carried by the failure, if any (even when ignored)."""
    give_up: Optional[RetryError]
    """When not retrying a retryable failure: the ``RetryError`` to raise."""

    def error_for(self, exc: BaseException) -> BaseException:
        """What to raise when not retrying: ``give_up``, else ``exc`` itself, unwrapped.

        >>> Retry().decide(KeyError("k"), 1).error_for(KeyError("k"))
        KeyError('k')
        """
        return self.give_up if self.give_up is not None else exc


def _predicate(retry_on: RetryOn) -> Callable[[BaseException], bool]:
    if isinstance(retry_on, type) and issubclass(retry_on, BaseException):
        kinds: tuple[type[BaseException], ...] = (retry_on,)
    elif isinstance(retry_on, tuple):
        if not all(isinstance(k, type) and issubclass(k, BaseException) for k in retry_on):
            raise TypeError("retry_on tuple must hold exception types only")
        kinds = retry_on
    elif callable(retry_on):
        return cast(Callable[[BaseException], bool], retry_on)
    else:
        raise TypeError(
            "retry_on must be an exception type, a tuple of them, or a predicate exc -> bool, "
            f"got {type(retry_on).__name__}"
        )
    return lambda exc: isinstance(exc, kinds)


class Retry:
    """A retry policy: how many times, how long between tries, which errors.

    ``backoff`` is any object with ``delay(attempt) -> float`` (attempt 0 is
    the first retry); default ``rk.Backoff()``. A server-given wait
    (``Retry-After``, reset headers) replaces the backoff when
    ``respect_retry_after``; one longer than ``max_retry_after`` (``None``:
    no cap) is not slept through: ``RetryError`` at once. ``clock=`` a
    ``ManualClock`` waits in virtual time; ``sleep=`` replaces the wait
    itself (a plain function, or an async one for the async path).
    ``before_sleep=fn`` is called before each wait between attempts with an
    ``rk.RetryState`` (``attempt``: the attempt that failed, from 1;
    ``exception``; ``wait``: seconds until the next attempt; ``model`` under
    ``wrap``); after a 429 the wait is a pause of the shared limiter. An
    exception it raises ends the retrying and reaches the caller.
    ``deadline`` (seconds, ``None``: none) bounds the time of all attempts
    and the waits between them: a retry that would start past it is not
    made, ``RetryError`` is raised instead.

    >>> Retry(max_retries=3).call(lambda: "ok")
    'ok'
    """

    __slots__ = (
        "_clock",
        "_retry_on",
        "_sleep",
        "backoff",
        "before_sleep",
        "deadline",
        "max_retries",
        "max_retry_after",
        "respect_retry_after",
        "retry_on",
    )

    def __init__(
        self,
        max_retries: int = 5,
        backoff: Optional[Any] = None,
        retry_on: RetryOn = is_retryable,
        respect_retry_after: bool = True,
        max_retry_after: Optional[float] = 120.0,
        *,
        clock: Optional[Any] = None,
        sleep: Optional[Callable[[float], Any]] = None,
        before_sleep: Optional[Callable[[RetryState], Any]] = None,
        deadline: Optional[float] = None,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise TypeError(f"max_retries must be an int, got {type(max_retries).__name__}")
        if not 0 <= max_retries <= MAX_RETRIES:
            raise ValueError(
                f"max_retries must be an int from 0 to {MAX_RETRIES}, got {max_retries}"
            )
        if max_retry_after is not None:
            if isinstance(max_retry_after, bool) or not isinstance(max_retry_after, (int, float)):
                raise TypeError("max_retry_after must be a number of seconds or None")
            if not finite(max_retry_after) or max_retry_after < 0:
                raise ValueError(
                    f"max_retry_after must be a finite number >= 0 or None, got {max_retry_after}"
                )
            max_retry_after = float(max_retry_after)
        if backoff is None:
            backoff = Backoff()
        elif not callable(getattr(backoff, "delay", None)):
            raise TypeError("backoff must have a delay(attempt) -> float method")
        if clock is not None and not callable(getattr(clock, "advance", None)):
            raise TypeError(f"clock must be None or a ManualClock, got {type(clock).__name__}")
        if sleep is not None and not callable(sleep):
            raise TypeError("sleep must be a callable taking seconds")
        if sleep is not None and clock is not None:
            raise ValueError("give clock= or sleep=, not both")
        if before_sleep is not None and not callable(before_sleep):
            raise TypeError("before_sleep must be a callable taking an rk.RetryState")
        self.max_retries = max_retries
        self.backoff = backoff
        self.retry_on = retry_on
        self._retry_on = _predicate(retry_on)
        self.respect_retry_after = bool(respect_retry_after)
        self.max_retry_after = max_retry_after
        self._clock = clock
        self._sleep = sleep
        self.before_sleep = before_sleep
        self.deadline = _check_deadline(deadline)

    def __repr__(self) -> str:
        return (
            f"Retry(max_retries={self.max_retries}, backoff={self.backoff!r}, "
            f"respect_retry_after={self.respect_retry_after}, "
            f"max_retry_after={self.max_retry_after}, deadline={self.deadline})"
        )

    # -- the engine ---------------------------------------------------------

    def decide(self, exc: BaseException, attempts: int) -> RetryDecision:
        """After call number ``attempts`` (1 for the first) failed with ``exc``: retry or not.

        >>> Retry(max_retries=2).decide(TimeoutError(), 1).retry
        True
        """
        if not isinstance(exc, Exception) or not self._retry_on(exc):
            return RetryDecision(False, 0.0, False, None, None)
        rate_limited = is_rate_limited(exc)
        server_wait = retry_after(exc)
        wait = server_wait if self.respect_retry_after else None
        if attempts > self.max_retries:
            give_up = RetryError(exc, attempts)
        elif wait is not None and self.max_retry_after is not None and wait > self.max_retry_after:
            give_up = RetryError(
                exc,
                attempts,
                f"server asked to wait {wait:.3f}s, more than max_retry_after="
                f"{self.max_retry_after}s; gave up after {attempts} attempt(s): {exc!r}",
            )
        else:
            delay = wait if wait is not None else float(self.backoff.delay(attempts - 1))
            return RetryDecision(True, max(0.0, delay), rate_limited, server_wait, None)
        return RetryDecision(False, 0.0, rate_limited, server_wait, give_up)

    def now(self) -> float:
        """The time this policy waits in (seconds): its clock's, else ``time.monotonic()``.

        >>> Retry().now() > 0
        True
        """
        return time.monotonic() if self._clock is None else float(self._clock.now())

    def sleep(self, seconds: float) -> None:
        """Waits ``seconds`` as this policy waits: real time, virtual time, or the hook.

        >>> Retry(sleep=lambda s: None).sleep(5.0)
        """
        if self._sleep is not None:
            self._sleep(seconds)
        elif self._clock is not None:
            self._clock.advance(seconds)
        elif seconds > 0.0:
            time.sleep(seconds)

    async def sleep_async(self, seconds: float) -> None:
        """Waits ``seconds`` without blocking the event loop (always yields once).

        >>> # await Retry().sleep_async(0.5)
        """
        if self._sleep is not None:
            result = self._sleep(seconds)
            if inspect.isawaitable(result):
                await result
                return
        elif self._clock is not None:
            self._clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)
            return
        await asyncio.sleep(0)  # virtual waits still let other tasks run (and cancel us)

    # -- the loops ----------------------------------------------------------

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Calls ``fn(*args, **kwargs)``, retrying as this policy says.

        >>> Retry().call(int, "7")
        7
        """
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            failure = exc
        # Outside the ``except`` block: an error raised from here carries no
        # spurious "during handling of ..." context.
        return run_sync(self._after(failure), lambda _permit: fn(*args, **kwargs))

    async def call_async(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Awaits ``fn(*args, **kwargs)``, retrying as this policy says.

        >>> # await Retry().call_async(client.chat.completions.create, model="m", messages=[])
        """
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            failure = exc
        return await run_async(self._after(failure), lambda _permit: fn(*args, **kwargs))

    def _after(self, failure: Exception) -> Attempts:
        """The attempt machine, told that a first attempt (made inline) failed with ``failure``."""
        attempts = Attempts(UNLIMITED, self)
        attempts.first_failed(UNLIMITED.acquire(), failure)
        return attempts

    def __call__(self, fn: F) -> F:
        """Decorates a sync or async function (or method) with this policy.

        >>> @Retry(max_retries=2)
        ... def ping(): return "pong"
        >>> ping()
        'pong'
        """
        if not callable(fn):
            raise TypeError(f"retry decorates a function, got {type(fn).__name__}")
        if inspect.iscoroutinefunction(fn):
            call_async = self.call_async

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await call_async(fn, *args, **kwargs)

            async_wrapper.retry_policy = self  # type: ignore[attr-defined]
            return cast(F, async_wrapper)

        after = self._after

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                failure = exc
            return run_sync(after(failure), lambda _permit: fn(*args, **kwargs))

        wrapper.retry_policy = self  # type: ignore[attr-defined]
        return cast(F, wrapper)


def finite(value: float) -> bool:
    """``math.isfinite``, but ``False`` rather than ``OverflowError`` for an int
    too large for a float (``10**400``), so that the caller's ``ValueError``
    names the argument.

    >>> finite(1.5), finite(10**400), finite(float("nan"))
    (True, False, False)
    """
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_deadline(value: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"deadline must be a number of seconds or None, got {type(value).__name__}")
    if not finite(value) or value <= 0:
        raise ValueError(f"deadline must be a finite number of seconds > 0 or None, got {value}")
    return float(value)


@overload
def retry(max_retries: F) -> F: ...
@overload
def retry(
    max_retries: int = 5,
    backoff: Optional[Any] = None,
    retry_on: RetryOn = is_retryable,
    respect_retry_after: bool = True,
    max_retry_after: Optional[float] = 120.0,
    *,
    clock: Optional[Any] = None,
    sleep: Optional[Callable[[float], Any]] = None,
    before_sleep: Optional[Callable[[RetryState], Any]] = None,
    deadline: Optional[float] = None,
) -> Callable[[F], F]: ...
def retry(
    max_retries: Any = 5,
    backoff: Optional[Any] = None,
    retry_on: RetryOn = is_retryable,
    respect_retry_after: bool = True,
    max_retry_after: Optional[float] = 120.0,
    *,
    clock: Optional[Any] = None,
    sleep: Optional[Callable[[float], Any]] = None,
    before_sleep: Optional[Callable[[RetryState], Any]] = None,
    deadline: Optional[float] = None,
) -> Any:
    """Decorator retrying a sync or async function; the arguments of :class:`Retry`.

    Bare ``@retry`` uses the defaults.

    >>> @retry(max_retries=3)
    ... async def ask(prompt): ...
    """
    if callable(max_retries) and not isinstance(max_retries, (int, float)):
        return Retry()(max_retries)
    return Retry(
        max_retries,
        backoff,
        retry_on,
        respect_retry_after,
        max_retry_after,
        clock=clock,
        sleep=sleep,
        before_sleep=before_sleep,
        deadline=deadline,
    )
