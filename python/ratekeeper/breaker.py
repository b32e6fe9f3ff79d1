"""The circuit breaker of SPEC section 4: the Rust state machine plus its async call.

``CircuitBreaker`` subclasses its Rust twin in ``ratekeeper._core``: the state
machine, ``call`` and the decorated sync function run in Rust with no Python
frame in between; this module adds the decorator's choice between sync and
async, ``call_async``, and ``copy``.

Every state change (closed -> open, open -> half_open, half_open -> closed or
open, and ``trip``/``reset``) calls ``on_state_change(breaker, old, new)``,
then emits a ``"breaker_state"`` event (logged on ``"ratekeeper.breaker"``,
WARNING when it opens). The Rust state machine notes changes under its lock
only, so the closed path pays nothing for them.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, Callable, Optional, Union, cast, overload

from . import _core
from ._events import emit

if TYPE_CHECKING:
    from typing import TypeVar

    from typing_extensions import ParamSpec

    P = ParamSpec("P")
    R = TypeVar("R")

__all__ = ["CircuitBreaker", "FailureOn"]

FailureOn = Union[
    type[BaseException],
    tuple[type[BaseException], ...],
    Callable[[BaseException], bool],
]
"""What ``failure_on=`` accepts: an exception type, a tuple of them, or a predicate."""

StateHook = Callable[[Any, str, str], object]
"""What ``on_state_change=`` accepts: called as ``fn(breaker, old_state, new_state)``."""

_log = logging.getLogger("ratekeeper.breaker")


def _state_changed(breaker: Any, old: str, new: str) -> None:
    """Tells the breaker's hook, then everyone else, that ``breaker`` went ``old`` -> ``new``."""
    hook = breaker.on_state_change
    if hook is not None:
        try:
            hook(breaker, old, new)
        except Exception:  # a hook must not break the call that moved the breaker
            _log.exception("on_state_change hook %r raised on %s -> %s", hook, old, new)
    emit("breaker_state", breaker, state=new, previous=old)


class CircuitBreaker(_core.CircuitBreaker):
    """Stops calling a failing service, then probes it again after ``reset_timeout``.

    >>> breaker = CircuitBreaker(failure_threshold=3, reset_timeout=30.0); breaker.state
    'closed'

    Use it as a decorator on sync or async functions (``@breaker``), or call
    through it (``breaker.call(fn, *args)``, ``await breaker.call_async(fn, *args)``).
    A refused call raises ``rk.CircuitOpenError`` without running. Exceptions
    that match ``failure_on`` (default: every ``Exception``) count as failures;
    others pass through and count as successes. ``KeyboardInterrupt``,
    ``SystemExit`` and ``asyncio.CancelledError`` count as neither: they pass
    through and give back the half-open probe slot the call held.

    ``on_state_change(breaker, old_state, new_state)`` is called on every
    state change, in the thread that caused it, after the breaker's lock is
    released (it may look at the breaker); an exception it raises is logged
    on ``"ratekeeper.breaker"``, not raised into the call.
    """

    __slots__ = ()

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout: float = 60.0,
        *,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        failure_on: Optional[FailureOn] = None,
        clock: Optional[_core.ManualClock] = None,
        on_state_change: Optional[StateHook] = None,
    ) -> None:
        # The settings were taken by the Rust __new__; this only starts listening.
        if inspect.iscoroutinefunction(on_state_change):
            raise TypeError("on_state_change must be a plain function, not async def")
        self._listen(_state_changed)

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        """Decorates ``func`` so that every call goes through this breaker.

        >>> @CircuitBreaker()
        ... def fetch() -> int: return 1
        """
        if inspect.iscoroutinefunction(func):
            return self._wrap_async(func)
        wrapper = self._wrap(func)
        functools.update_wrapper(wrapper, func)
        return cast("Callable[P, Any]", wrapper)

    def _wrap_async(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        breaker = self

        # The body of call_async, inlined: one coroutine per call, not two.
        @functools.wraps(func)
        async def through_breaker(*args: P.args, **kwargs: P.kwargs) -> R:
            permit = breaker._enter()
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                breaker._settle(permit, exc)
                raise
            breaker._success(permit)
            return result

        through_breaker.breaker = breaker  # type: ignore[attr-defined]
        return through_breaker

    async def call_async(
        self, func: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Awaits ``func(*args, **kwargs)`` through the breaker.

        >>> # result = await breaker.call_async(client.chat.completions.create, **request)
        """
        permit = self._enter()
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            self._settle(permit, exc)
            raise
        self._success(permit)
        return result

    def copy(self) -> CircuitBreaker:
        """A new, closed breaker with the same settings (and clock) as this one.

        >>> CircuitBreaker(3).copy().failure_threshold
        3
        """
        fresh: CircuitBreaker = same_settings(self)
        return fresh


def same_settings(breaker: Any) -> Any:
    """A new, closed breaker of ``breaker``'s class and settings (the Rust class has no ``copy``).

    >>> same_settings(CircuitBreaker(3)).failure_threshold
    3
    """
    return type(breaker)(
        breaker.failure_threshold,
        breaker.reset_timeout,
        half_open_max_calls=breaker.half_open_max_calls,
        success_threshold=breaker.success_threshold,
        failure_on=breaker.failure_on,
        clock=breaker.clock,
        on_state_change=breaker.on_state_change,
    )
