"""One call's limiter under ``wrap`` when budgets are learned (see :mod:`ratekeeper._learning`).

``LearningLimiter`` takes the user's limiter, then the model's learned
limiter and its place in the adaptive pace; its permit releases and
reconciles both, and hands each response to the model's budgets to learn from.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ._learning import ModelBudgets

__all__ = ["LearnedPermit", "LearningLimiter"]


class LearnedPermit:
    """The user's permit and the learned limiter's, released and reconciled together."""

    __slots__ = ("budgets", "inner", "outer", "ticket")

    def __init__(
        self, outer: Any, inner: Any, budgets: ModelBudgets, ticket: Optional[int]
    ) -> None:
        self.outer = outer
        self.inner = inner
        self.budgets = budgets
        self.ticket = ticket  # the place in the slow start's window, or None

    def learn(self, response: Any) -> None:
        self.budgets.learn(response, ticket=self.ticket)

    def reconcile(self, *args: Any, **kwargs: Any) -> None:
        try:
            self.outer.reconcile(*args, **kwargs)
        finally:
            if self.inner is not None:
                self.inner.reconcile(*args, **kwargs)

    def release(self) -> None:
        if self.ticket is not None:  # answered or not, it leaves the window
            self.budgets.slow.leave(self.ticket)
        try:
            self.outer.release()
        finally:
            if self.inner is not None:
                self.inner.release()


class LearningLimiter:
    """One call's limiter: the user's, then the model's learned limiter and adaptive pace."""

    __slots__ = ("budgets", "decreases", "events_source", "policy", "user")

    def __init__(self, user: Any, budgets: ModelBudgets, policy: Any) -> None:
        self.user = user
        self.budgets = budgets
        self.policy = policy
        self.events_source = getattr(user, "events_source", user)
        self.decreases = -1

    def acquire(self, *args: Any, **kwargs: Any) -> LearnedPermit:
        budgets, sleep = self.budgets, self.policy.sleep
        ticket = budgets.enter()
        try:
            wait = budgets.through(ticket)
            while wait:
                sleep(wait)
                wait = budgets.through(ticket)
            permit = self.user.acquire(*args, **kwargs)
        except BaseException:
            _leave(budgets, ticket)
            raise
        inner = None
        try:
            learned = budgets.limiter
            if learned is not None:
                inner = _take(learned.acquire, args, kwargs)
            self.decreases = budgets.wait(sleep)
        except BaseException:
            if inner is not None:
                inner.release()
            permit.release()
            _leave(budgets, ticket)
            raise
        return LearnedPermit(permit, inner, budgets, ticket)

    async def acquire_async(self, *args: Any, **kwargs: Any) -> LearnedPermit:
        budgets, sleep = self.budgets, self.policy.sleep_async
        ticket = budgets.enter()
        try:
            wait = budgets.through(ticket)
            while wait:
                await sleep(wait)
                wait = budgets.through(ticket)
            permit = await self.user.acquire_async(*args, **kwargs)
        except BaseException:
            _leave(budgets, ticket)
            raise
        inner = None
        try:
            learned = budgets.limiter
            if learned is not None:
                inner = await _take_async(learned.acquire_async, args, kwargs)
            self.decreases = await budgets.wait_async(sleep)
        except BaseException:
            if inner is not None:
                inner.release()
            permit.release()
            _leave(budgets, ticket)
            raise
        return LearnedPermit(permit, inner, budgets, ticket)

    def pause(self, seconds: float) -> None:
        self.user.pause(seconds)
        self.budgets.pause(seconds)

    def _count_rate_limited(self) -> None:
        self.user._count_rate_limited()
        self.budgets.rate_limited(self.decreases)

    def _count_retry(self) -> None:
        self.user._count_retry()


def _leave(budgets: ModelBudgets, ticket: Optional[int]) -> None:
    if ticket is not None:
        budgets.slow.leave(ticket)


def _take(acquire: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    try:
        return acquire(*args, **kwargs)
    except ValueError:  # more tokens than the learned budget holds: the request alone
        return acquire(0, *args[1:])


async def _take_async(acquire: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    try:
        return await acquire(*args, **kwargs)
    except ValueError:
        return await acquire(0, *args[1:])
