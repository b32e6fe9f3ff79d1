"""``rk.wrap``: an SDK client every request of which stays inside the limits (SPEC 8, 12).

``wrap(client)`` returns a client of the very same class (``isinstance`` and
type hints keep working): a copy made with ``with_options(max_retries=0,
http_client=...)``, whose HTTP client is a copy of the original's with a
ratekeeper transport (:mod:`ratekeeper.transports`) in front of each of its
transports. So every request the SDK sends passes the limiter, the retries
and the breakers, whatever method sent it (``create``, ``parse``,
``stream(...)``, ``with_raw_response``, ``with_streaming_response``,
``beta.*``, ``models.list``, ``count_tokens``, ...), and the SDK never retries
behind our back: each attempt is one HTTP request. The original client is
left as it was. ``with_options`` / ``copy`` of the wrapped client keep the
SDK's retries off and share the same state.

Errors: when the retries run out on an error status, the SDK raises its own
error for the last response (``openai.RateLimitError``, ...), as it does
after its own retries; ratekeeper's own errors (``rk.CircuitOpenError``,
``rk.RateLimitTimeout``) reach the caller as themselves.
"""

from __future__ import annotations

import copy
import importlib
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union, overload

from .cache import ResponseCache
from .retrying import Retry
from .transports import backend_of, make_route, transport_classes

if TYPE_CHECKING:
    import anthropic
    import openai

    from ._core import Limiter

    class WrappedOpenAI(openai.OpenAI):
        ratekeeper_limiter: Limiter

    class WrappedAsyncOpenAI(openai.AsyncOpenAI):
        ratekeeper_limiter: Limiter

    class WrappedAnthropic(anthropic.Anthropic):
        ratekeeper_limiter: Limiter

    class WrappedAsyncAnthropic(anthropic.AsyncAnthropic):
        ratekeeper_limiter: Limiter


__all__ = ["wrap"]

C = TypeVar("C")


def _sdk_error_base(client: Any) -> Optional[type]:
    """The SDK's root error class (``openai.OpenAIError``, ...): the SDK re-raises those as they are."""
    package = importlib.import_module(type(client).__module__.split(".", 1)[0])
    connection_error = getattr(package, "APIConnectionError", None)
    if not isinstance(connection_error, type):
        return None
    bases = [k for k in connection_error.__mro__ if k not in (Exception, BaseException, object)]
    return bases[-1] if bases else None


@overload
def wrap(
    client: openai.OpenAI,
    limiter: Any = None,
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
) -> WrappedOpenAI: ...
@overload
def wrap(
    client: openai.AsyncOpenAI,
    limiter: Any = None,
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
) -> WrappedAsyncOpenAI: ...
@overload
def wrap(
    client: anthropic.Anthropic,
    limiter: Any = None,
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
) -> WrappedAnthropic: ...
@overload
def wrap(
    client: anthropic.AsyncAnthropic,
    limiter: Any = None,
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
) -> WrappedAsyncAnthropic: ...
@overload
def wrap(
    client: C,
    limiter: Any = None,
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
) -> C: ...
def wrap(
    client: Any,
    limiter: Any = None,
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
) -> Any:
    """A client of the same class whose every request goes through the limiter, retries and breaker.

    ``limiter`` (an ``rk.Limiter`` to share) or the budgets ``rpm``/``tpm``/
    ``concurrency``; ``retry`` (``True``: ``rk.Retry()``; ``False``: none);
    ``breaker`` (cloned per model); ``fallback_models`` tried in order when a
    model's 429s outlive the retries or its breaker is open; ``cache`` (an
    ``rk.ResponseCache``); ``token_estimator`` (the request's JSON body ->
    tokens); ``timeout`` (seconds > 0 a request may wait for the limiter, else
    ``rk.RateLimitTimeout``). ``client.ratekeeper_limiter`` is the limiter.

    >>> # client = rk.wrap(openai.OpenAI(), rpm=500, tpm=200_000, fallback_models=["gpt-4o-mini"])
    """
    http = getattr(client, "_client", None)
    backend = backend_of(http) if http is not None else None
    if not callable(getattr(client, "with_options", None)) or backend is None:
        raise TypeError(
            "wrap takes an SDK client built on httpx or httpx2 (openai, anthropic, "
            f"or one with with_options and an httpx client), got {type(client).__name__}; "
            "for another SDK, give its http_client a rk.transport(...)"
        )
    route = make_route(
        limiter,
        rpm=rpm,
        tpm=tpm,
        concurrency=concurrency,
        retry=retry,
        breaker=breaker,
        fallback_models=fallback_models,
        cache=cache,
        token_estimator=token_estimator,
        timeout=timeout,
        error_base=_sdk_error_base(client),
    )
    sync_class, async_class = transport_classes(backend)
    is_async = isinstance(http, importlib.import_module(backend).AsyncClient)
    transport_class = async_class if is_async else sync_class

    def limited_http(http: Any) -> Any:
        """A copy of ``http`` (same pool, settings and hooks) sending through ratekeeper."""
        made = copy.copy(http)
        hooks = made._event_hooks
        made._transport = transport_class(http._transport, route, owner=http, hooks=hooks)
        made._mounts = {
            pattern: None
            if inner is None
            else transport_class(inner, route, owner=http, hooks=hooks)
            for pattern, inner in http._mounts.items()
        }
        return made

    def install(sdk_client: Any) -> Any:
        with_options = type(sdk_client).with_options

        def without_retries(*args: Any, **kwargs: Any) -> Any:
            kwargs["max_retries"] = 0
            given = kwargs.get("http_client")
            if given is not None and not isinstance(given._transport, transport_class):
                kwargs["http_client"] = limited_http(given)
            return install(with_options(sdk_client, *args, **kwargs))

        sdk_client.with_options = without_retries
        sdk_client.copy = without_retries
        sdk_client.ratekeeper_limiter = route.limiter
        return sdk_client

    return install(client.with_options(max_retries=0, http_client=limited_http(http)))
