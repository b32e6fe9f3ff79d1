"""``rk.transport`` / ``rk.async_transport``: ratekeeper as an httpx (or httpx2) transport.

Every request an HTTP client sends passes a transport's
``handle_request``; this one sends it through the attempt loop of
:mod:`ratekeeper._attempts` around the real transport:

- a request to a model endpoint (``POST`` to ``/chat/completions``,
  ``/completions``, ``/responses``, ``/messages``, ``/embeddings``, or
  Gemini's ``:generateContent``/``:streamGenerateContent``/``:embedContent``)
  passes the model's breaker, acquires a request and its estimated tokens
  from the limiter, and is reconciled with the usage its response reports
  (a JSON body, or an event stream read as it passes): the permit is held
  until the body has been read or closed;
- any other request (``models.list``, ``count_tokens``, files, batches) takes
  no budget but waits out a pause of the limiter;
- every request is retried on a retryable failure (429, 408, 409, 5xx, a
  network error) as the retry policy says; a 429 pauses the limiter for
  everyone for the server's wait (``Retry-After`` and the reset headers, or
  a wait in the JSON body);
- a model whose 429s outlive the retries sits out until its wait has
  passed, and the request moves on to the next of ``fallback_models`` (the
  body's ``model`` is rewritten);
- when the retries run out, the last error response is handed to the SDK,
  which raises its own error as it would have after its own retries.

``httpx`` and ``httpx2`` (which the current openai and anthropic SDKs use)
have distinct transport classes: ``backend=`` picks one, or it is read from
the ``transport=`` wrapped.
"""

from __future__ import annotations

import importlib
import sys
from functools import partial
from typing import Any, Callable, Optional, Union

from ._attempts import run_async, run_sync
from ._options import check_breaker, check_timeout, make_limiter, make_policy
from ._route import ModelCall, Route, StatusFailure
from ._usage_reader import UsageReader
from .cache import ResponseCache, request_identity
from .errors import CircuitOpenError, RateLimitTimeout, RetryError
from .retrying import Retry

__all__ = ["async_transport", "backend_of", "make_route", "transport", "transport_classes"]

_GIVE_UP = (RetryError, CircuitOpenError, RateLimitTimeout, StatusFailure)
_CLASSES: dict[str, tuple[type, type]] = {}


def backend_of(obj: Any) -> Optional[str]:
    """``"httpx"`` or ``"httpx2"``: the package whose client or transport ``obj`` is, or None.

    Read by ``isinstance`` against the packages already imported (a class's
    ``__module__`` is not to be trusted: the groq SDK renames httpx's).

    >>> backend_of(object()) is None
    True
    """
    for name in ("httpx2", "httpx"):
        module = sys.modules.get(name)
        if module is not None and isinstance(
            obj,
            (module.BaseTransport, module.AsyncBaseTransport, module.Client, module.AsyncClient),
        ):
            return name
    return None


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
    import json

    return json.dumps(body, separators=(",", ":")).encode()


def _make_classes(backend: str) -> tuple[type, type]:
    module = importlib.import_module(backend)

    class WatchedStream(module.SyncByteStream):  # type: ignore[misc, name-defined]
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

    class AsyncWatchedStream(module.AsyncByteStream):  # type: ignore[misc, name-defined]
        """The async twin of ``WatchedStream``."""

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

    def watch(route: Route, response: Any, permit: Any, stream_class: type) -> Any:
        reader = UsageReader(response.headers.get("content-type", ""))
        response.stream = stream_class(response.stream, reader, route.finisher(permit, reader))
        return response

    class RateLimitedTransport(module.BaseTransport):  # type: ignore[misc, name-defined]
        """A sync transport: every request through the limiter, retries and breakers."""

        def __init__(self, inner: Any, route: Route, owner: Any = None) -> None:
            self.inner = inner
            self.route = route
            self._owner = owner  # the client whose pool ``inner`` is: kept alive, never closed

        @property
        def limiter(self) -> Any:
            return self.route.limiter

        def handle_request(self, request: Any) -> Any:
            route = self.route
            call = route.model_call(request)
            if call is None:
                request.read()
                try:
                    return run_sync(route.attempts(None, None), lambda _: self._send(request))
                except _GIVE_UP as failure:
                    return route.surface(failure, module.Response, request)
            cache = route.cache
            if cache is None or call.streaming:
                return self._models(request, call)
            key = ResponseCache.key(
                f"{request.method} {request.url}",
                call.body,
                client_identity=request_identity(request.headers),
            )
            status, headers, content = cache.get_or_call(
                key, lambda: self._frozen(self._models(request, call))
            )
            return module.Response(status, headers=headers, content=content, request=request)

        def _frozen(self, response: Any) -> tuple[int, Any, bytes]:
            content = response.read()
            if response.status_code >= 400:
                raise _Uncached(response)
            return response.status_code, response.headers.raw, content

        def _send(self, request: Any, permit: Any = None) -> Any:
            response = self.inner.handle_request(request)
            if response.status_code >= 400:
                response.read()
                response.close()
                self.route.adopt(response, permit)
                raise StatusFailure(response)
            return response

        def _attempt(self, request: Any, permit: Any) -> Any:
            response = self._send(request, permit)
            self.route.adopt(response, permit)
            return watch(self.route, response, permit, WatchedStream)

        def _models(self, request: Any, call: ModelCall) -> Any:
            route = self.route
            candidates = route.candidates(call.model)
            try:
                if len(candidates) == 1:
                    return run_sync(
                        route.attempts(call, call.model), lambda p: self._attempt(request, p)
                    )
                available, wait, last = route.models_to_try(candidates)
                if wait is not None:
                    route.policy.sleep(wait)
                for index, model in enumerate(available):
                    sent = _rewritten(module, request, call, model)
                    try:
                        return run_sync(route.attempts(call, model), partial(self._attempt, sent))
                    except (RetryError, CircuitOpenError) as exc:
                        following = available[index + 1] if index + 1 < len(available) else None
                        if not route.move_on(model, exc, following):
                            raise
                        last = exc
                assert last is not None
                raise last
            except _GIVE_UP as failure:
                return route.surface(failure, module.Response, request)

        def close(self) -> None:
            if self._owner is None:
                self.inner.close()

    class AsyncRateLimitedTransport(module.AsyncBaseTransport):  # type: ignore[misc, name-defined]
        """An async transport: every request through the limiter, retries and breakers."""

        def __init__(self, inner: Any, route: Route, owner: Any = None) -> None:
            self.inner = inner
            self.route = route
            self._owner = owner

        @property
        def limiter(self) -> Any:
            return self.route.limiter

        async def handle_async_request(self, request: Any) -> Any:
            route = self.route
            call = route.model_call(request)
            if call is None:
                await request.aread()
                try:
                    return await run_async(
                        route.attempts(None, None), lambda _: self._send(request)
                    )
                except _GIVE_UP as failure:
                    return route.surface(failure, module.Response, request)
            cache = route.cache
            if cache is None or call.streaming:
                return await self._models(request, call)
            key = ResponseCache.key(
                f"{request.method} {request.url}",
                call.body,
                client_identity=request_identity(request.headers),
            )

            async def fetch() -> tuple[int, Any, bytes]:
                response = await self._models(request, call)
                content = await response.aread()
                if response.status_code >= 400:
                    raise _Uncached(response)
                return response.status_code, response.headers.raw, content

            status, headers, content = await cache.get_or_call_async(key, fetch)
            return module.Response(status, headers=headers, content=content, request=request)

        async def _send(self, request: Any, permit: Any = None) -> Any:
            response = await self.inner.handle_async_request(request)
            if response.status_code >= 400:
                await response.aread()
                await response.aclose()
                self.route.adopt(response, permit)
                raise StatusFailure(response)
            return response

        async def _attempt(self, request: Any, permit: Any) -> Any:
            response = await self._send(request, permit)
            self.route.adopt(response, permit)
            return watch(self.route, response, permit, AsyncWatchedStream)

        async def _models(self, request: Any, call: ModelCall) -> Any:
            route = self.route
            candidates = route.candidates(call.model)
            try:
                if len(candidates) == 1:
                    return await run_async(
                        route.attempts(call, call.model), lambda p: self._attempt(request, p)
                    )
                available, wait, last = route.models_to_try(candidates)
                if wait is not None:
                    await route.policy.sleep_async(wait)
                for index, model in enumerate(available):
                    sent = _rewritten(module, request, call, model)
                    try:
                        return await run_async(
                            route.attempts(call, model), partial(self._attempt, sent)
                        )
                    except (RetryError, CircuitOpenError) as exc:
                        following = available[index + 1] if index + 1 < len(available) else None
                        if not route.move_on(model, exc, following):
                            raise
                        last = exc
                assert last is not None
                raise last
            except _GIVE_UP as failure:
                return route.surface(failure, module.Response, request)

        async def aclose(self) -> None:
            if self._owner is None:
                await self.inner.aclose()

    return RateLimitedTransport, AsyncRateLimitedTransport


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


def make_route(
    limiter: Any,
    *,
    rpm: Optional[float] = None,
    tpm: Optional[float] = None,
    concurrency: Optional[int] = None,
    retry: Union[bool, Retry, None] = True,
    breaker: Any = None,
    fallback_models: Any = (),
    cache: Optional[ResponseCache] = None,
    token_estimator: Optional[Callable[[dict[str, Any]], Any]] = None,
    timeout: Optional[float] = None,
    error_base: Optional[type] = None,
) -> Route:
    """Checks the shared keyword arguments of ``wrap`` and the transports; builds their state."""
    if isinstance(fallback_models, str):
        raise TypeError("fallback_models must be a sequence of model names, not one string")
    models = tuple(fallback_models)
    if not all(isinstance(model, str) for model in models):
        raise TypeError("fallback_models must hold model names (str)")
    if cache is not None and not isinstance(cache, ResponseCache):
        raise TypeError(f"cache must be an rk.ResponseCache, got {type(cache).__name__}")
    if token_estimator is not None and not callable(token_estimator):
        raise TypeError("token_estimator must be a callable of the request's JSON body")
    return Route(
        make_limiter(limiter, rpm, tpm, concurrency),
        make_policy(retry),
        check_breaker(breaker),
        models,
        cache,
        token_estimator,
        check_timeout(timeout),
        error_base,
    )


def _build(is_async: bool, limiter: Any, backend: Optional[str], inner: Any, options: Any) -> Any:
    if inner is not None:
        found = backend_of(inner)
        if found is None:
            raise TypeError(
                f"transport= must be an httpx or httpx2 transport, got {type(inner).__name__}"
            )
        if backend is not None and backend != found:
            raise ValueError(f"backend={backend!r} but transport= is an {found} transport")
        backend = found
    backend = backend or "httpx"
    sync_class, async_class = transport_classes(backend)
    route = make_route(limiter, **options)
    if inner is None:
        module = importlib.import_module(backend)
        inner = module.AsyncHTTPTransport() if is_async else module.HTTPTransport()
    return (async_class if is_async else sync_class)(inner, route)


def transport(
    limiter: Any = None,
    *,
    backend: Optional[str] = None,
    transport: Any = None,
    **options: Any,
) -> Any:
    """An httpx transport that sends every request through a limiter, retries and breakers.

    ``options`` are ``wrap``'s keywords (``rpm``, ``tpm``, ``concurrency``,
    ``retry``, ``breaker``, ``fallback_models``, ``cache``,
    ``token_estimator``, ``timeout``). ``backend`` is ``"httpx"`` (default)
    or ``"httpx2"``; ``transport=`` is the transport to send through (default:
    a new ``HTTPTransport`` of that backend), and its class decides the backend.
    Give it to any SDK that takes an ``http_client``; turn that SDK's own
    retries off (``max_retries=0``), or each attempt may be several requests.

    >>> # groq.Groq(http_client=httpx.Client(transport=rk.transport(rpm=30)), max_retries=0)
    """
    return _build(False, limiter, backend, transport, options)


def async_transport(
    limiter: Any = None,
    *,
    backend: Optional[str] = None,
    transport: Any = None,
    **options: Any,
) -> Any:
    """The async twin of :func:`transport`, for an ``httpx.AsyncClient``.

    >>> # groq.AsyncGroq(http_client=httpx.AsyncClient(transport=rk.async_transport(rpm=30)))
    """
    return _build(True, limiter, backend, transport, options)
