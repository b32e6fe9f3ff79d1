"""The httpx / httpx2 transport classes behind ``rk.transport`` and ``rk.wrap``.

One factory builds, per backend package, a sync and an async transport (and
the byte streams that read usage as the body passes), so that each subclasses
that package's own ``BaseTransport``: the SDKs and httpx check the types.
What the transports decide lives in :mod:`ratekeeper._route`; the attempt
loop in :mod:`ratekeeper._attempts`.
"""

from __future__ import annotations

import importlib
import json
from functools import partial
from typing import Any, Callable, Optional

from ._attempts import run_async, run_sync
from ._route import ModelCall, Route, StatusFailure
from ._usage_reader import UsageReader
from .cache import ResponseCache, request_identity
from .errors import CircuitOpenError, RateLimitTimeout, RetryError

__all__ = ["transport_classes"]

_GIVE_UP = (RetryError, CircuitOpenError, RateLimitTimeout, StatusFailure)
_CLASSES: dict[str, tuple[type, type]] = {}


def _rewritten(module: Any, request: Any, call: ModelCall, model: Any) -> Any:
    """``request`` with its body's ``model`` replaced (a fallback)."""
    if model == call.model:
        return request
    content = _dumps({**call.body, "model": model})
    headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"content-length"]
    return module.Request(
        request.method, request.url, headers=headers, content=content, extensions=request.extensions
    )


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class _WatchedStream:
    """The response body, passed on unchanged; its usage read; ``finish`` once at the end."""

    def __init__(self, inner: Any, reader: Optional[UsageReader], finish: Callable[[], None]):
        self._inner = inner
        self._reader = reader
        self._finish: Optional[Callable[[], None]] = finish

    def __iter__(self) -> Any:
        reader = self._reader
        for chunk in self._inner:
            if reader is not None:
                reader.feed(chunk)
            yield chunk

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._end()

    def _end(self) -> None:
        finish, self._finish = self._finish, None
        if finish is not None:
            finish()

    def __del__(self) -> None:  # a body dropped unread still gives its permit back
        self._end()


class _AsyncWatchedStream:
    """The async twin of ``_WatchedStream``."""

    def __init__(self, inner: Any, reader: Optional[UsageReader], finish: Callable[[], None]):
        self._inner = inner
        self._reader = reader
        self._finish: Optional[Callable[[], None]] = finish

    async def __aiter__(self) -> Any:
        reader = self._reader
        async for chunk in self._inner:
            if reader is not None:
                reader.feed(chunk)
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._end()

    def _end(self) -> None:
        finish, self._finish = self._finish, None
        if finish is not None:
            finish()

    def __del__(self) -> None:
        self._end()


class _Replay:
    """Tells an httpx client's event hooks of the attempts that it does not see itself.

    The client runs its hooks once around the transport: ``request`` before
    the first attempt and ``response`` with the answer it is handed. Each
    retry adds, before its own attempt, the ``response`` hooks for the failed
    answer before it and the ``request`` hooks for itself, so that the hooks
    see every attempt once (``ratekeeper batch`` counts requests and 429s so).
    """

    __slots__ = ("failed", "hooks", "started")

    def __init__(self, hooks: dict[str, Any]) -> None:
        self.hooks = hooks
        self.started = False
        self.failed: Any = None

    @classmethod
    def of(cls, hooks: Optional[dict[str, Any]]) -> Optional[_Replay]:
        if not hooks or not (hooks.get("request") or hooks.get("response")):
            return None
        return cls(hooks)

    def _due(self) -> tuple[list[Any], list[Any], Any]:
        if not self.started:
            self.started = True
            return [], [], None
        failed, self.failed = self.failed, None
        answered = self.hooks.get("response", []) if failed is not None else []
        return answered, self.hooks.get("request", []), failed

    def before(self, request: Any) -> None:
        answered, asked, failed = self._due()
        for hook in answered:
            hook(failed)
        for hook in asked:
            hook(request)

    async def before_async(self, request: Any) -> None:
        answered, asked, failed = self._due()
        for hook in answered:
            await hook(failed)
        for hook in asked:
            await hook(request)


def watch(route: Route, response: Any, permit: Any, stream_class: type) -> Any:
    reader = UsageReader()
    response.stream = stream_class(response.stream, reader, route.finisher(permit, reader))
    return response


class _SyncTransport:
    """A sync transport: every request through the limiter, retries and breakers."""

    _module: Any  # the httpx or httpx2 package
    _stream_class: type

    def __init__(
        self, inner: Any, route: Route, owner: Any = None, hooks: Optional[dict[str, Any]] = None
    ) -> None:
        self.inner = inner
        self.route = route
        self._owner = owner  # the client whose pool ``inner`` is: kept alive, never closed
        self._hooks = hooks  # the client's event hooks, told of the attempts it does not see

    @property
    def limiter(self) -> Any:
        return self.route.limiter

    def __repr__(self) -> str:
        return f"{type(self).__name__}(limiter={self.route.limiter!r}, retry={self.route.policy!r})"

    def handle_request(self, request: Any) -> Any:
        route = self.route
        call = route.model_call(request)
        if call is None:
            request.read()
            try:
                replay = _Replay.of(self._hooks)
                return run_sync(route.attempts(None, None), lambda _: self._send(request, replay))
            except _GIVE_UP as failure:
                return route.surface(failure, self._module.Response, request)
        cache = route.cache
        if cache is None or call.streaming:
            return self._models(request, call)
        key = ResponseCache.key(
            f"{request.method} {request.url}",
            call.body,
            client_identity=request_identity(request),
        )
        try:
            status, headers, content = cache.get_or_call(
                key, lambda: self._frozen(self._models(request, call))
            )
        except _Uncached as failure:
            return route.surface(failure, self._module.Response, request)
        return self._module.Response(status, headers=headers, content=content, request=request)

    def _frozen(self, response: Any) -> tuple[int, Any, bytes]:
        content = response.read()
        if response.status_code >= 400:
            raise _Uncached(response)
        return response.status_code, response.headers.raw, content

    def _send(self, request: Any, replay: Optional[_Replay], permit: Any = None) -> Any:
        if replay is not None:
            replay.before(request)
        response = self.inner.handle_request(request)
        if response.status_code >= 400:
            response.read()
            response.close()
            self.route.adopt(response, permit)
            if replay is not None:
                replay.failed = response
            raise StatusFailure(response)
        return response

    def _attempt(self, request: Any, replay: Optional[_Replay], permit: Any) -> Any:
        response = self._send(request, replay, permit)
        self.route.adopt(response, permit)
        return watch(self.route, response, permit, self._stream_class)

    def _models(self, request: Any, call: ModelCall) -> Any:
        route = self.route
        replay = _Replay.of(self._hooks)
        try:
            if not route.fallback_models:
                if route.breaker_template is not None:
                    return run_sync(
                        route.attempts(call, call.model), partial(self._attempt, request, replay)
                    )
                # The first attempt inline: the granted path builds no state machine.
                estimate = call.estimate
                limiter = route.limiter_for(call.model)
                permit = limiter.acquire(
                    0,
                    route.timeout,
                    input_tokens=estimate.input,
                    output_tokens=estimate.output,
                )
                try:
                    return self._attempt(request, replay, permit)
                except Exception as exc:
                    failure = exc
                except BaseException:
                    permit.release()
                    raise
                attempts = route.attempts(call, call.model, limiter)
                attempts.first_failed(permit, failure)
                return run_sync(attempts, partial(self._attempt, request, replay))
            available, wait, last = route.models_to_try(route.candidates(call.model))
            if wait is not None:
                route.policy.sleep(wait)
            for index, model in enumerate(available):
                sent = _rewritten(self._module, request, call, model)
                try:
                    return run_sync(
                        route.attempts(call, model), partial(self._attempt, sent, replay)
                    )
                except (RetryError, CircuitOpenError) as exc:
                    following = available[index + 1] if index + 1 < len(available) else None
                    if not route.move_on(model, exc, following):
                        raise
                    last = exc
            assert last is not None
            raise last
        except _GIVE_UP as failure:
            return route.surface(failure, self._module.Response, request)

    def close(self) -> None:
        if self._owner is None:
            self.inner.close()


class _AsyncTransport:
    """An async transport: every request through the limiter, retries and breakers."""

    _module: Any
    _stream_class: type

    def __init__(
        self, inner: Any, route: Route, owner: Any = None, hooks: Optional[dict[str, Any]] = None
    ) -> None:
        self.inner = inner
        self.route = route
        self._owner = owner
        self._hooks = hooks

    @property
    def limiter(self) -> Any:
        return self.route.limiter

    def __repr__(self) -> str:
        return f"{type(self).__name__}(limiter={self.route.limiter!r}, retry={self.route.policy!r})"

    async def handle_async_request(self, request: Any) -> Any:
        route = self.route
        call = route.model_call(request)
        if call is None:
            await request.aread()
            try:
                replay = _Replay.of(self._hooks)
                return await run_async(
                    route.attempts(None, None), lambda _: self._send(request, replay)
                )
            except _GIVE_UP as failure:
                return route.surface(failure, self._module.Response, request)
        cache = route.cache
        if cache is None or call.streaming:
            return await self._models(request, call)
        key = ResponseCache.key(
            f"{request.method} {request.url}",
            call.body,
            client_identity=request_identity(request),
        )

        async def fetch() -> tuple[int, Any, bytes]:
            response = await self._models(request, call)
            content = await response.aread()
            if response.status_code >= 400:
                raise _Uncached(response)
            return response.status_code, response.headers.raw, content

        try:
            status, headers, content = await cache.get_or_call_async(key, fetch)
        except _Uncached as failure:
            return route.surface(failure, self._module.Response, request)
        return self._module.Response(status, headers=headers, content=content, request=request)

    async def _send(self, request: Any, replay: Optional[_Replay], permit: Any = None) -> Any:
        if replay is not None:
            await replay.before_async(request)
        response = await self.inner.handle_async_request(request)
        if response.status_code >= 400:
            await response.aread()
            await response.aclose()
            self.route.adopt(response, permit)
            if replay is not None:
                replay.failed = response
            raise StatusFailure(response)
        return response

    async def _attempt(self, request: Any, replay: Optional[_Replay], permit: Any) -> Any:
        response = await self._send(request, replay, permit)
        self.route.adopt(response, permit)
        return watch(self.route, response, permit, self._stream_class)

    async def _models(self, request: Any, call: ModelCall) -> Any:
        route = self.route
        replay = _Replay.of(self._hooks)
        try:
            if not route.fallback_models:
                if route.breaker_template is not None:
                    return await run_async(
                        route.attempts(call, call.model), partial(self._attempt, request, replay)
                    )
                # The first attempt inline: the granted path builds no state machine.
                estimate = call.estimate
                limiter = route.limiter_for(call.model)
                permit = await limiter.acquire_async(
                    0,
                    route.timeout,
                    input_tokens=estimate.input,
                    output_tokens=estimate.output,
                )
                try:
                    return await self._attempt(request, replay, permit)
                except Exception as exc:
                    failure = exc
                except BaseException:
                    permit.release()
                    raise
                attempts = route.attempts(call, call.model, limiter)
                attempts.first_failed(permit, failure)
                return await run_async(attempts, partial(self._attempt, request, replay))
            available, wait, last = route.models_to_try(route.candidates(call.model))
            if wait is not None:
                await route.policy.sleep_async(wait)
            for index, model in enumerate(available):
                sent = _rewritten(self._module, request, call, model)
                try:
                    return await run_async(
                        route.attempts(call, model), partial(self._attempt, sent, replay)
                    )
                except (RetryError, CircuitOpenError) as exc:
                    following = available[index + 1] if index + 1 < len(available) else None
                    if not route.move_on(model, exc, following):
                        raise
                    last = exc
            assert last is not None
            raise last
        except _GIVE_UP as failure:
            return route.surface(failure, self._module.Response, request)

    async def aclose(self) -> None:
        if self._owner is None:
            await self.inner.aclose()


def _make_classes(backend: str) -> tuple[type, type]:
    """The transport classes of ``backend``: the logic above on that package's base classes."""
    module = importlib.import_module(backend)
    streams = {
        "_module": module,
        "_stream_class": type("WatchedStream", (_WatchedStream, module.SyncByteStream), {}),
    }
    async_streams = {
        "_module": module,
        "_stream_class": type(
            "AsyncWatchedStream", (_AsyncWatchedStream, module.AsyncByteStream), {}
        ),
    }
    sync_class = type("RateLimitedTransport", (_SyncTransport, module.BaseTransport), streams)
    async_class = type(
        "AsyncRateLimitedTransport", (_AsyncTransport, module.AsyncBaseTransport), async_streams
    )
    return sync_class, async_class


class _Uncached(StatusFailure):
    """An error response under the cache: shared with the callers waiting, never stored."""


def transport_classes(backend: str) -> tuple[type, type]:
    """The sync and async transport classes for ``backend`` (``"httpx"`` or ``"httpx2"``)."""
    if backend not in ("httpx", "httpx2"):
        raise ValueError(f"backend must be 'httpx' or 'httpx2', got {backend!r}")
    classes = _CLASSES.get(backend)
    if classes is None:
        classes = _CLASSES[backend] = _make_classes(backend)
    return classes
