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
from typing import Any, Callable, Optional, Union

from ._options import check_breaker, check_timeout, make_limiter, make_policy
from ._route import Route
from ._transport_classes import transport_classes
from .cache import ResponseCache
from .retrying import Retry

__all__ = ["async_transport", "backend_of", "make_route", "transport", "transport_classes"]


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


def _model_limiter(limiter: Any) -> Any:
    """``limiter``, checked to be an ``rk.Limiter``: model calls charge tokens and adopt headers.

    A ``TokenBucket`` or a window counts only one kind of unit: it would fail
    on the first call, so it is refused here, when the client is wrapped.
    """
    if not callable(getattr(limiter, "update_from_headers", None)):
        raise TypeError(
            "limiter must be an rk.Limiter (in process or on Redis) for wrap and transport, "
            f"got {type(limiter).__name__}; for a TokenBucket's rate, give rk.Limiter(rps=...)"
        )
    return limiter


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
        _model_limiter(make_limiter(limiter, rpm, tpm, concurrency)),
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

    >>> transport(rpm=30)  # doctest: +ELLIPSIS
    RateLimitedTransport(limiter=Limiter(rpm=30...), retry=Retry(max_retries=5, ...))
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

    >>> async_transport(rpm=30, retry=False).route.policy.max_retries
    0
    """
    return _build(True, limiter, backend, transport, options)
