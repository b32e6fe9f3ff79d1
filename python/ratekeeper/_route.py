"""What a ratekeeper transport knows and decides, apart from sending (sync or async).

``Route`` holds the state one transport (or one wrapped client and its
copies) shares: the limiter, the retry policy, a breaker per model, the
fallback models and which of them sit out, the cache, the token estimate.
It tells model calls from other requests, estimates a call's tokens, turns
an error response into a failure the retry policy reads, and turns a final
failure back into what the SDK expects (the last error response, or the
error itself).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Optional

from . import _events, _tokens
from ._attempts import UNLIMITED, Attempts
from ._guarding import clone_breaker
from ._learning import learning_for
from ._learning_limiter import LearningLimiter
from ._usage_reader import UsageReader
from .cache import ResponseCache
from .classify import is_rate_limited
from .errors import CircuitOpenError, RateLimitError, RetryError
from .headers import retry_after
from .retrying import Retry

__all__ = ["ModelCall", "Route", "StatusFailure"]

# Requests to these take the budgets and are reconciled with their usage.
_MODEL_PATHS = ("/chat/completions", "/completions", "/responses", "/messages", "/embeddings")
_GEMINI_ACTIONS = (":generateContent", ":streamGenerateContent", ":embedContent")


class StatusFailure(Exception):
    """An error response (status >= 400), read: what the retry policy and breaker judge.

    ``status_code``, ``response`` (its ``headers``) and ``body`` (the parsed
    JSON, or None) are what ``rk.is_retryable`` and ``rk.retry_after`` read.
    """

    def __init__(self, response: Any) -> None:
        self.status_code: int = response.status_code
        self.response = response
        try:
            self.body: Any = json.loads(response.content)
        except ValueError:
            self.body = None
        super().__init__(f"HTTP {self.status_code}")


class ModelCall:
    """One request to a model endpoint: its body, model, stream flag and token estimate."""

    __slots__ = ("body", "estimate", "model", "streaming")

    def __init__(self, body: dict[str, Any], model: Optional[str], estimate: _tokens.Tokens):
        self.body = body
        self.model = model
        self.streaming = bool(body.get("stream"))
        self.estimate = estimate


class _PauseOnly:
    """The limiter of a request that takes no budget: it only waits out a pause."""

    __slots__ = ("events_source", "limiter", "policy")

    def __init__(self, limiter: Any, policy: Retry) -> None:
        self.limiter = limiter
        self.policy = policy
        self.events_source = limiter

    def paused_for(self) -> float:
        stats = getattr(self.limiter, "stats", None)
        paused = stats().get("paused_for", 0.0) if callable(stats) else 0.0
        return float(paused or 0.0)

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
        wait = self.paused_for()
        if wait > 0.0:
            self.policy.sleep(wait)
        return UNLIMITED.acquire()

    async def acquire_async(self, *args: Any, **kwargs: Any) -> Any:
        wait = self.paused_for()
        if wait > 0.0:
            await self.policy.sleep_async(wait)
        return UNLIMITED.acquire()

    def pause(self, seconds: float) -> None:
        self.limiter.pause(seconds)

    def _count_rate_limited(self) -> None:
        self.limiter._count_rate_limited()

    def _count_retry(self) -> None:
        self.limiter._count_retry()


def _sdk_error(kind: type, base: Optional[type]) -> type:
    """``kind`` that is also the SDK's own base error, so the SDK passes it through unwrapped."""
    if base is None or issubclass(kind, base):
        return kind
    made = _MIXED.get((kind, base))
    if made is None:
        made = _MIXED[(kind, base)] = type(kind.__name__, (kind, base), {})
        made.__module__ = kind.__module__
    return made


_MIXED: dict[tuple[type, type], type] = {}


class Route:
    """The state a transport shares across requests (see the module)."""

    def __init__(
        self,
        limiter: Any,
        policy: Retry,
        breaker: Any = None,
        fallback_models: tuple[str, ...] = (),
        cache: Optional[ResponseCache] = None,
        token_estimator: Optional[Callable[[dict[str, Any]], Any]] = None,
        timeout: Optional[float] = None,
        error_base: Optional[type] = None,
    ) -> None:
        self.limiter = limiter
        self.policy = policy
        self.breaker_template = breaker
        self.fallback_models = fallback_models
        self.cache = cache
        self.token_estimator = token_estimator
        self.timeout = timeout
        self.error_base = error_base
        self.pause_only = _PauseOnly(limiter, policy)
        self._breakers: dict[Any, Any] = {}
        self._sitting_out: dict[Any, tuple[float, BaseException]] = {}
        self._lock = threading.Lock()
        clock = getattr(policy, "_clock", None)
        self.now: Callable[[], float] = time.monotonic if clock is None else clock.now
        self.update_from_headers = getattr(limiter, "update_from_headers", None)
        # The budgets the user did not give, learned from the server (SPEC 12).
        self.learning = learning_for(limiter, clock)

    # -- what a request is ----------------------------------------------------
    def model_call(self, request: Any) -> Optional[ModelCall]:
        """The model call ``request`` is, or None (it takes no budget)."""
        if request.method != "POST":
            return None
        path: str = request.url.path
        from_path: Optional[str] = None  # Gemini names the model in the URL
        if not path.endswith(_MODEL_PATHS):
            action = next((a for a in _GEMINI_ACTIONS if path.endswith(a)), None)
            if action is None:
                return None
            from_path = path[: -len(action)].rsplit("/", 1)[-1]
        try:
            body = json.loads(request.content)
        except Exception:  # not JSON, or a body not read: it still is a model call
            body = None
        if not isinstance(body, dict):
            return ModelCall({}, from_path, _tokens.Tokens(0, 0))
        model = body.get("model") if from_path is None else from_path
        call = ModelCall(body, model if isinstance(model, str) else None, self.estimate(body, path))
        if from_path is not None and action_streams(path):
            call.streaming = True
        return call

    def estimate(self, body: dict[str, Any], path: str = "") -> _tokens.Tokens:
        if self.token_estimator is None:
            return _tokens.estimate_body(body, path)
        value = self.token_estimator(body)
        if isinstance(value, _tokens.Tokens):
            return value
        if isinstance(value, tuple) and len(value) == 2:
            return _tokens.Tokens(int(value[0]), int(value[1]))
        return _tokens.Tokens(int(value), 0)

    def limiter_for(self, model: Optional[str]) -> Any:
        """What a call to ``model`` acquires from: the user's limiter, with the learned budgets."""
        learning = self.learning
        if learning is None:
            return self.limiter
        return LearningLimiter(self.limiter, learning.model(model), self.policy)

    def attempts(
        self, call: Optional[ModelCall], model: Optional[str], limiter: Any = None
    ) -> Attempts:
        """The attempt loop of one call; ``limiter`` the one its first attempt acquired from."""
        if call is None:
            return Attempts(self.pause_only, self.policy)
        estimate = call.estimate
        return Attempts(
            self.limiter_for(model) if limiter is None else limiter,
            self.policy,
            self.breaker_for(model),
            timeout=self.timeout,
            input_tokens=estimate.input,
            output_tokens=estimate.output,
            model=model,
        )

    # -- after an attempt -----------------------------------------------------
    def adopt(self, response: Any, permit: Any = None) -> None:
        """Learns from the headers of a response (not a 429: its wait is the retry's).

        Only a response that carries rate-limit headers is read: the names are
        checked first, in one pass, so that a plain success costs little.
        ``permit`` (the attempt's) also learns the limits it states, a 429's included.
        """
        update = self.update_from_headers
        if update is not None and response.status_code != 429:
            names = b"|".join([name for name, _ in response.headers.raw]).lower()
            if b"ratelimit" in names or b"retry-after" in names:
                # A wait on a success pauses no longer than the policy allows a retry's.
                update(response.headers, max_retry_after=self.policy.max_retry_after)
        learn = getattr(permit, "learn", None)
        if learn is not None:
            learn(response)

    def finisher(self, permit: Any, reader: Optional[UsageReader]) -> Callable[[], None]:
        """What runs once when the response body ends: reconcile the charge, release."""

        def finish() -> None:
            try:
                usage = reader.result() if reader is not None else None
                if usage is not None:
                    permit.reconcile(input_tokens=usage.input, output_tokens=usage.output)
            finally:
                permit.release()

        return finish

    # -- models ---------------------------------------------------------------
    def breaker_for(self, model: Any) -> Any:
        if self.breaker_template is None:
            return None
        breaker = self._breakers.get(model)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(model)
                if breaker is None:
                    # The user's own breaker serves the first model; the others get clones.
                    template = self.breaker_template
                    breaker = template if not self._breakers else clone_breaker(template)
                    self._breakers[model] = breaker
                    # Its state changes reach the wrapped client's subscribers and metrics.
                    _events.link(breaker, self.limiter, model=model)
        return breaker

    def candidates(self, model: Optional[str]) -> list[Optional[str]]:
        return [model] + [other for other in self.fallback_models if other != model]

    def sit_out(self, model: Any, failure: RetryError) -> None:
        # A RetryError exists only for a failure the policy retries, so this is
        # the server's wait its last decision saw; without one, the backoff
        # that decision used (``decide`` after attempt n waits ``delay(n - 1)``).
        wait = retry_after(failure.last_exception)
        if wait is None:
            wait = float(self.policy.backoff.delay(failure.attempts - 1))
        with self._lock:
            self._sitting_out[model] = (self.now() + wait, failure)

    def sitting_out(self, model: Any) -> bool:
        entry = self._sitting_out.get(model)
        return entry is not None and entry[0] > self.now()

    def models_to_try(
        self, candidates: list[Optional[str]]
    ) -> tuple[list[Optional[str]], Optional[float], Optional[BaseException]]:
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

    def move_on(self, model: Any, failure: BaseException, next_model: Any) -> bool:
        """After ``model``'s last failure: whether to try ``next_model`` (and note it sits out).

        Retries that ran out (429s, and also 5xx) and an open breaker move the
        call on; a model that ran out of 429s also sits out until its wait has
        passed. Any other error (a 400, a 401) would fail on every model.
        """
        if isinstance(failure, RetryError):
            if is_rate_limited(failure.last_exception):
                self.sit_out(model, failure)
        elif not isinstance(failure, CircuitOpenError):
            return False
        if next_model is not None:
            reason = (
                "circuit_open" if isinstance(failure, CircuitOpenError) else "retries_exhausted"
            )
            _events.emit("fallback", self.limiter, model=model, to_model=next_model, reason=reason)
        return True

    # -- what the SDK sees ----------------------------------------------------
    def surface(self, failure: BaseException, response_class: type, request: Any) -> Any:
        """The final failure as the SDK expects it: an error response to return, or an error.

        An error status is handed back as a response (the SDK raises its own
        error for it, as when its own retries run out); a network error is
        re-raised as it came; ratekeeper's own errors are raised as classes
        that are also the SDK's base error, so that the SDK lets them through.
        """
        last = failure.last_exception if isinstance(failure, RetryError) else failure
        if isinstance(last, StatusFailure):
            read = last.response
            return response_class(
                read.status_code,
                headers=read.headers,
                content=read.content,
                request=request,
                extensions=getattr(read, "extensions", None),
            )
        if isinstance(failure, RateLimitError) and not isinstance(failure, RetryError):
            failure.__class__ = _sdk_error(type(failure), self.error_base)
            raise failure
        raise last


def action_streams(path: str) -> bool:
    """Gemini streams by its URL (``:streamGenerateContent``), not by a body flag.

    >>> action_streams("/v1beta/models/gemini-2.0-flash:streamGenerateContent")
    True
    """
    return path.endswith(":streamGenerateContent")
