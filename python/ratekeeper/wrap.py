"""``rk.wrap``: an openai / anthropic client whose calls stay inside the limits (SPEC 8).

``wrap(client)`` returns a client of the very same class (``isinstance`` and
type hints keep working): a copy made with ``with_options(max_retries=0)``,
so the SDK never retries behind our back and each attempt is one HTTP
request. On the copy, the ``create`` methods of ``chat.completions``,
``completions``, ``embeddings``, ``responses`` (openai) and ``messages``
(anthropic) are replaced, on those resource instances only, by limited ones;
everything else (``models.list``, attributes) is the SDK's own, and
``with_options`` / ``copy`` return a wrapped client sharing the same state.

One limited call, per model tried (the requested one, then ``fallback_models``):

1. the model's breaker must allow it; a model sitting out is skipped;
2. estimate the tokens and acquire them from the limiter (every attempt);
3. send through a second, untouched copy's ``with_raw_response`` so that the
   headers are read (``limiter.update_from_headers``) and the user still
   gets exactly what ``.parse()`` gives: the SDK's model or ``Stream``;
4. reconcile the charge with ``usage`` (streams: when the stream reports it);
5. on a failure, retry as the policy says; a 429 pauses the shared limiter
   for the server's wait; 429s that outlive the retries make the model sit
   out until its ``retry_after`` and move the call on to the next model.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional, TypeVar, Union

from . import _tokens
from ._guarding import after_failure, clone_breaker, make_limiter, make_policy, settle_breaker
from ._streams import watch_stream
from .cache import ResponseCache
from .classify import is_rate_limited, status_of
from .errors import CircuitOpenError, RetryError
from .headers import retry_after
from .retrying import Retry, RetryDecision

__all__ = ["wrap"]

C = TypeVar("C")
RAW_MARKER = "X-Stainless-Raw-Response"
ENDPOINTS: tuple[tuple[str, ...], ...] = (
    ("chat", "completions"),
    ("completions",),
    ("embeddings",),
    ("responses",),
    ("messages",),
)


def _is_async(client: Any) -> bool:
    return any(base.__name__ == "AsyncAPIClient" for base in type(client).__mro__)


def _walk(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def _wants_raw(kwargs: dict[str, Any]) -> bool:
    headers = kwargs.get("extra_headers")
    return isinstance(headers, dict) and RAW_MARKER in headers


class _Wrapping:
    """The state one wrapped client (and its ``with_options`` copies) share."""

    def __init__(
        self,
        limiter: Any,
        policy: Retry,
        breaker: Any,
        fallback_models: tuple[str, ...],
        cache: Optional[ResponseCache],
        token_estimator: Optional[Callable[[dict[str, Any]], Any]],
    ) -> None:
        self.limiter = limiter
        self.policy = policy
        self.breaker_template = breaker
        self.fallback_models = fallback_models
        self.cache = cache
        self.token_estimator = token_estimator
        self._breakers: dict[Any, Any] = {}
        self._sitting_out: dict[str, tuple[float, BaseException]] = {}
        self._lock = threading.Lock()
        clock = getattr(policy, "_clock", None)
        self.now: Callable[[], float] = time.monotonic if clock is None else clock.now

    # -- per model ----------------------------------------------------------
    def breaker_for(self, model: Any) -> Any:
        if self.breaker_template is None:
            return None
        breaker = self._breakers.get(model)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(model)
                if breaker is None:
                    # The user's own breaker serves the first model; the others get clones.
                    breaker = (
                        self.breaker_template
                        if not self._breakers
                        else clone_breaker(self.breaker_template)
                    )
                    self._breakers[model] = breaker
        return breaker

    def candidates(self, kwargs: dict[str, Any]) -> list[Any]:
        first = kwargs.get("model")
        return [first] + [model for model in self.fallback_models if model != first]

    def sit_out(self, model: Any, failure: RetryError, attempts: int) -> None:
        # A RetryError exists only for a failure the policy retries, so this is
        # the ``server_wait`` its last decision saw; without one, the backoff
        # that decision used (``decide`` after attempt n waits ``delay(n - 1)``).
        wait = retry_after(failure.last_exception)
        if wait is None:
            wait = float(self.policy.backoff.delay(attempts - 1))
        with self._lock:
            self._sitting_out[model] = (self.now() + wait, failure)

    def sitting_out(self, model: Any) -> bool:
        entry = self._sitting_out.get(model)
        return entry is not None and entry[0] > self.now()

    # -- one attempt's bookkeeping -------------------------------------------
    def estimate(self, kwargs: dict[str, Any]) -> _tokens.Tokens:
        if self.token_estimator is None:
            return _tokens.estimate(kwargs)
        value = self.token_estimator(kwargs)
        if isinstance(value, _tokens.Tokens):
            return value
        if isinstance(value, tuple) and len(value) == 2:
            return _tokens.Tokens(int(value[0]), int(value[1]))
        return _tokens.Tokens(int(value), 0)

    def acquire_args(self, estimate: _tokens.Tokens) -> dict[str, Any]:
        # Input and output apart: tpm is charged their sum, itpm/otpm each its own.
        return {"input_tokens": estimate.input, "output_tokens": estimate.output}

    @staticmethod
    def reconcile(permit: Any, actual: Optional[_tokens.Tokens]) -> None:
        if actual is not None:
            permit.reconcile(input_tokens=actual.input, output_tokens=actual.output)

    def adopt(self, headers: Any) -> None:
        if headers is not None:
            self.limiter.update_from_headers(headers)

    def adopt_error(self, exc: BaseException) -> None:
        # A 429's wait is applied by the retry step (a pause while retrying;
        # a sit-out for that model when giving up): adopting its headers here
        # would pause every model for a wait only one of them was given.
        if is_rate_limited(exc):
            return
        response = getattr(exc, "response", None)
        self.adopt(getattr(response, "headers", None))

    def finish_success(self, permit: Any, result: Any, streaming: bool) -> None:
        """Reconciles and releases now, or (for a stream) when the stream ends."""
        if streaming and result is not None and hasattr(result, "response"):

            def finish(usage: Optional[_tokens.Tokens]) -> None:
                try:
                    self.reconcile(permit, usage)
                finally:
                    permit.release()

            watch_stream(result, finish)
            return
        try:
            self.reconcile(permit, _tokens.from_usage(getattr(result, "usage", None)))
        finally:
            permit.release()

    def succeeded(
        self,
        permit: Any,
        breaker: Any,
        ticket: Any,
        headers: Any,
        result: Any,
        raw_wanted: bool,
        streaming: bool,
    ) -> None:
        """After an attempt that returned: the breaker, the server's limits, the charge."""
        if breaker is not None:
            settle_breaker(breaker, ticket, None)
        self.adopt(headers)
        self.finish_success(permit, None if raw_wanted else result, streaming)

    def failed(
        self, permit: Any, breaker: Any, ticket: Any, failure: Exception, attempts: int
    ) -> RetryDecision:
        """After an attempt that raised: refund, adopt, tell the breaker, decide on a retry."""
        self.release_failed(permit, failure)
        self.adopt_error(failure)
        if breaker is not None:
            settle_breaker(breaker, ticket, failure)
        return after_failure(self.limiter, self.policy, failure, attempts)

    def release_failed(self, permit: Any, exc: BaseException) -> None:
        """Releases a failed attempt's permit; a 4xx (429 included) generated nothing: refund it.

        A 5xx or a broken connection may have been processed: its charge stays.
        """
        try:
            status = status_of(exc)
            if status is not None and 400 <= status < 500:
                self.reconcile(permit, _tokens.Tokens(0, 0))
        finally:
            permit.release()

    def give_up_on_model(
        self, model: Any, failure: BaseException, attempts: int
    ) -> Optional[BaseException]:
        """After a model's last failure: the error to move on with, or ``None`` to raise now.

        Retries that ran out (429s, and also 5xx) and an open breaker move the
        call on; a model that ran out of 429s also sits out until its wait
        has passed. Any other error (a 400, a 401) would fail on every model.
        """
        if isinstance(failure, RetryError):
            if is_rate_limited(failure.last_exception):
                self.sit_out(model, failure, failure.attempts)
            return failure
        if isinstance(failure, CircuitOpenError):
            return failure
        return None

    def models_to_try(
        self, candidates: list[Any]
    ) -> tuple[list[Any], Optional[float], Optional[BaseException]]:
        """The models not sitting out; if all are: the one back first, after waiting its wait.

        Returns ``(models, wait or None, why the waited-for model sits out)``;
        a wait longer than the policy's ``max_retry_after`` raises that reason now.
        """
        available = [model for model in candidates if not self.sitting_out(model)]
        if available:
            return available, None, None
        with self._lock:
            entries = [(self._sitting_out[model], model) for model in candidates]
        (until, failure), model = min(entries, key=lambda entry: entry[0][0])
        wait = max(0.0, until - self.now())
        limit = self.policy.max_retry_after
        if limit is not None and wait > limit:
            raise failure
        return [model], wait, failure


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
) -> C:
    """A client of the same class whose model calls go through the limiter, retries and breaker.

    >>> # client = rk.wrap(openai.OpenAI(), rpm=500, tpm=200_000, fallback_models=["gpt-4o-mini"])
    """
    if not callable(getattr(client, "with_options", None)):
        raise TypeError(
            "wrap takes an openai or anthropic client (with with_options), "
            f"got {type(client).__name__}"
        )
    if isinstance(fallback_models, str):
        raise TypeError("fallback_models must be a sequence of model names, not one string")
    models = tuple(fallback_models)
    if not all(isinstance(model, str) for model in models):
        raise TypeError("fallback_models must hold model names (str)")
    if cache is not None and not isinstance(cache, ResponseCache):
        raise TypeError(f"cache must be an rk.ResponseCache, got {type(cache).__name__}")
    if token_estimator is not None and not callable(token_estimator):
        raise TypeError("token_estimator must be a callable of the request's keyword arguments")
    if breaker is not None and not callable(getattr(breaker, "allow", None)):
        raise TypeError(f"breaker must be an rk.CircuitBreaker, got {type(breaker).__name__}")
    state = _Wrapping(
        make_limiter(limiter, rpm, tpm, concurrency),
        make_policy(retry),
        breaker,
        models,
        cache,
        token_estimator,
    )
    return _install(client, state)


def _install(client: C, state: _Wrapping) -> C:
    from ._calls import make_async_create, make_sync_create

    outer: Any = client.with_options(max_retries=0)  # type: ignore[attr-defined]
    inner: Any = client.with_options(max_retries=0)  # type: ignore[attr-defined]
    make = make_async_create if _is_async(client) else make_sync_create
    # The cache key's method names the client (base URL, key, organization,
    # headers; hashed): two clients never share an answer.
    identity = ResponseCache.client_identity(client)
    for path in ENDPOINTS:
        try:
            resource, inner_resource = _walk(outer, path), _walk(inner, path)
        except AttributeError:
            continue
        if not callable(getattr(resource, "create", None)):
            continue
        method = f"{identity} {'.'.join(path)}.create"
        resource.create = make(inner_resource, method, state)

    with_options = type(outer).with_options

    def wrapped_with_options(*args: Any, **kwargs: Any) -> Any:
        return _install(with_options(outer, *args, **kwargs), state)

    outer.with_options = wrapped_with_options
    outer.copy = wrapped_with_options
    outer.ratekeeper_limiter = state.limiter
    return outer  # type: ignore[no-any-return]
