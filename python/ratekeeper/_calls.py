"""The limited ``create`` methods that ``wrap`` installs: a sync and an async twin.

The two are the same steps (see :mod:`ratekeeper.wrap`) written twice, once
with ``await``; the shared bookkeeping lives on ``_Wrapping``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from ._guarding import abandon_breaker, enter_breaker
from .cache import ResponseCache
from .errors import CircuitOpenError, RetryError
from .wrap import _wants_raw, _Wrapping

__all__ = ["make_async_create", "make_sync_create"]


def _model_kwargs(kwargs: dict[str, Any], model: Any) -> dict[str, Any]:
    return kwargs if kwargs.get("model") == model else {**kwargs, "model": model}


def make_sync_create(inner: Any, method: str, state: _Wrapping) -> Callable[..., Any]:
    """``create`` for a sync client: ``inner`` is the untouched copy's resource."""
    raw_create = inner.with_raw_response.create
    plain_create = inner.create
    policy = state.policy

    def call_model(args: Any, kwargs: dict[str, Any], model: Any) -> Any:
        breaker = state.breaker_for(model)
        streaming = bool(kwargs.get("stream"))
        raw_wanted = _wants_raw(kwargs)
        # The request does not change between attempts: estimated once.
        acquire_args = state.acquire_args(state.estimate(kwargs))
        attempts = 0
        while True:
            # Half-open, the breaker lends this call a probe slot: whatever
            # happens next (a limiter timeout, a cancel, Ctrl-C) must settle
            # or abandon it, or the breaker stays half-open for good.
            ticket = enter_breaker(breaker) if breaker is not None else None
            try:
                permit = state.limiter.acquire(**acquire_args)
            except BaseException:
                if breaker is not None:
                    abandon_breaker(breaker, ticket)
                raise
            attempts += 1
            try:
                if raw_wanted:
                    result = plain_create(*args, **kwargs)
                    headers = result.headers
                else:
                    response = raw_create(*args, **kwargs)
                    headers = response.headers
                    result = response.parse()
            except Exception as exc:
                failure = exc
            except BaseException:
                permit.release()
                if breaker is not None:
                    abandon_breaker(breaker, ticket)
                raise
            else:
                state.succeeded(permit, breaker, ticket, headers, result, raw_wanted, streaming)
                return result
            decision = state.failed(permit, breaker, ticket, failure, attempts)
            if not decision.retry:
                raise decision.error_for(failure)
            if not decision.rate_limited:
                policy.sleep(decision.delay)

    def call(args: Any, kwargs: dict[str, Any]) -> Any:
        candidates = state.candidates(kwargs)
        if len(candidates) == 1:
            return call_model(args, kwargs, candidates[0])
        available, wait, last = state.models_to_try(candidates)
        if wait is not None:
            policy.sleep(wait)
        for model in available:
            try:
                return call_model(args, _model_kwargs(kwargs, model), model)
            except (RetryError, CircuitOpenError) as exc:
                last = state.give_up_on_model(model, exc, getattr(exc, "attempts", 1))
                if last is None:
                    raise
        assert last is not None
        raise last

    def create(*args: Any, **kwargs: Any) -> Any:
        cache = state.cache
        if cache is not None and not kwargs.get("stream") and not _wants_raw(kwargs):
            key = ResponseCache.key(method, {"args": args, "kwargs": kwargs})
            return cache.get_or_call(key, lambda: call(args, kwargs))
        return call(args, kwargs)

    return create


def make_async_create(inner: Any, method: str, state: _Wrapping) -> Callable[..., Any]:
    """``create`` for an async client: ``inner`` is the untouched copy's resource."""
    raw_create = inner.with_raw_response.create
    plain_create = inner.create
    policy = state.policy

    async def call_model(args: Any, kwargs: dict[str, Any], model: Any) -> Any:
        breaker = state.breaker_for(model)
        streaming = bool(kwargs.get("stream"))
        raw_wanted = _wants_raw(kwargs)
        acquire_args = state.acquire_args(state.estimate(kwargs))
        attempts = 0
        while True:
            # Half-open, the breaker lends this call a probe slot: whatever
            # happens next (a limiter timeout, a cancel, Ctrl-C) must settle
            # or abandon it, or the breaker stays half-open for good.
            ticket = enter_breaker(breaker) if breaker is not None else None
            try:
                permit = await state.limiter.acquire_async(**acquire_args)
            except BaseException:
                if breaker is not None:
                    abandon_breaker(breaker, ticket)
                raise
            attempts += 1
            try:
                if raw_wanted:
                    result = await plain_create(*args, **kwargs)
                    headers = result.headers
                else:
                    response = await raw_create(*args, **kwargs)
                    headers = response.headers
                    result = response.parse()
                    if inspect.isawaitable(result):
                        result = await result
            except Exception as exc:
                failure = exc
            except BaseException:
                permit.release()
                if breaker is not None:
                    abandon_breaker(breaker, ticket)
                raise
            else:
                state.succeeded(permit, breaker, ticket, headers, result, raw_wanted, streaming)
                return result
            decision = state.failed(permit, breaker, ticket, failure, attempts)
            if not decision.retry:
                raise decision.error_for(failure)
            if not decision.rate_limited:
                await policy.sleep_async(decision.delay)

    async def call(args: Any, kwargs: dict[str, Any]) -> Any:
        candidates = state.candidates(kwargs)
        if len(candidates) == 1:
            return await call_model(args, kwargs, candidates[0])
        available, wait, last = state.models_to_try(candidates)
        if wait is not None:
            await policy.sleep_async(wait)
        for model in available:
            try:
                return await call_model(args, _model_kwargs(kwargs, model), model)
            except (RetryError, CircuitOpenError) as exc:
                last = state.give_up_on_model(model, exc, getattr(exc, "attempts", 1))
                if last is None:
                    raise
        assert last is not None
        raise last

    async def create(*args: Any, **kwargs: Any) -> Any:
        cache = state.cache
        if cache is not None and not kwargs.get("stream") and not _wants_raw(kwargs):
            key = ResponseCache.key(method, {"args": args, "kwargs": kwargs})
            return await cache.get_or_call_async(key, lambda: call(args, kwargs))
        return await call(args, kwargs)

    return create
