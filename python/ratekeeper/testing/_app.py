"""The mock provider's ASGI app (starlette): routes, limits, faults, and a log of hits.

Every handler runs on the server's one event loop, so the check of both
budgets and the charge that follows are one atomic step without a lock.
Faults are applied in this order: added latency, a scripted fault, a random
connection drop, a random 5xx, then the rate limits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import _payloads as payloads
from ._budget import Budget, anthropic_headers, openai_headers, retry_after_headers

ROUTES = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "responses",
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "count_tokens",
    "/v1beta/models/{model}:generateContent": "gemini",
    "/v1/models/{model}:generateContent": "gemini",  # google-genai's path with a base_url
}
_KEY_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_DROP_MESSAGE = "ASGI callable returned without completing response."


@dataclass(frozen=True)
class Fault:
    """One scripted failure: answer ``status``, or ``drop`` the connection, after ``delay``."""

    status: Optional[int] = None
    drop: bool = False
    delay: float = 0.0
    retry_after: Optional[float] = None
    path: Optional[str] = None


@dataclass(frozen=True)
class Hit:
    """One request the mock received and what it answered (``status`` None: dropped)."""

    method: str
    path: str
    status: Optional[int]
    outcome: str
    body: Any
    at: float = field(default_factory=time.monotonic)
    # The credentials it was sent with (Authorization, x-api-key, x-goog-api-key).
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class MockState:
    """Configuration and counters shared by the app (server thread) and its owner."""

    requests_budget: Optional[Budget]
    tokens_budget: Optional[Budget]
    api_key: Optional[str] = None
    error_rate: float = 0.0
    error_status: int = 500
    drop_rate: float = 0.0
    latency: float = 0.0
    completion_tokens: int = 16
    reply: Optional[str] = None
    seed: Optional[int] = None
    limit_headers: bool = True
    hits: list[Hit] = field(default_factory=list)
    scripted: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    def next_fault(self, path: str) -> Optional[Fault]:
        with self.lock:
            for i, fault in enumerate(self.scripted):
                if fault.path is None or fault.path == path:
                    return self.scripted.pop(i)
        return None


class _DroppedResponse(Response):
    """Sends the status line and headers, then closes the connection mid-response."""

    def __init__(self) -> None:
        super().__init__(status_code=200, headers={"content-length": "1000"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        # Returning without the body makes uvicorn close the transport: the
        # client sees the peer hang up before the response is complete.


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _DROP_MESSAGE


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


class _JSON(JSONResponse):
    """JSON with every non-ASCII character escaped: a reply may hold half a UTF-16 pair."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


def _api(route: str) -> str:
    if route in ("messages", "count_tokens"):
        return "anthropic"
    return "gemini" if route == "gemini" else "openai"


def _error(api: str, status: int, message: str, kind: str, headers: dict[str, str]) -> Response:
    if api == "gemini":
        # Google sends no Retry-After header: the wait is in the body's RetryInfo.
        wait = headers.pop("retry-after", None)
        headers.pop("retry-after-ms", None)
        delay = float(wait) if wait is not None else None
        body_g = payloads.gemini_error(status, message, delay if status == 429 else None)
        return _JSON(body_g, status_code=status, headers=headers)
    if api == "anthropic":
        error_type = _ANTHROPIC_ERRORS.get(status, "api_error")
        body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    else:
        code = "rate_limit_exceeded" if status == 429 else None
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return _JSON(body, status_code=status, headers=headers)


def _limit_headers(state: MockState, api: str) -> dict[str, str]:
    if api == "gemini" or not state.limit_headers:
        return {}  # Gemini sends no rate-limit headers; its 429 says how long in the body
    make = anthropic_headers if api == "anthropic" else openai_headers
    return make(state.requests_budget, state.tokens_budget)


def _rate_limited(state: MockState, api: str, model: str, cost: int) -> Optional[Response]:
    """Charges one request and ``cost`` tokens, or answers 429 and charges nothing."""
    requests, tokens = state.requests_budget, state.tokens_budget
    waits = []
    if requests is not None:
        waits.append(("requests", requests, 1, requests.wait(1)))
    if tokens is not None:
        waits.append(("tokens", tokens, cost, tokens.wait(cost)))
    blocked = [w for w in waits if w[3] > 0.0]
    if not blocked:
        for _, budget, amount, _ in waits:
            budget.take(amount)
        return None
    kind, budget, amount, wait = max(blocked, key=lambda w: w[3])
    headers = _limit_headers(state, api)
    if wait == float("inf"):
        message = (
            f"Request too large for {model} on {kind} per min: "
            f"Limit {int(budget.capacity)}, Requested {amount}."
        )
    else:
        headers.update(retry_after_headers(wait))
        message = (
            f"Rate limit reached for {model} on {kind} per min (RPM/TPM): "
            f"Limit {int(budget.per_minute)}, Requested {amount}. "
            f"Please try again in {wait * 1000:.0f}ms."
        )
    return _error(api, 429, message, kind, headers)


def _success(route: str, body: dict[str, Any], state: MockState, prompt: int, out: int) -> Response:
    model = str(body.get("model") or "mock-model")
    headers = _limit_headers(state, _api(route))
    headers["x-request-id"] = f"req_{uuid.uuid4().hex[:24]}"
    text = state.reply
    if body.get("stream") is True and route in ("chat", "messages", "responses"):
        events: Any
        if route == "chat":
            options = body.get("stream_options") or {}
            include = bool(isinstance(options, dict) and options.get("include_usage"))
            events = payloads.openai_chat_stream(model, prompt, out, include)
        elif route == "messages":
            events = payloads.anthropic_stream(model, prompt, out)
        else:
            events = payloads.responses_stream(model, prompt, out, text)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    builders: dict[str, Callable[[], dict[str, Any]]] = {
        "chat": lambda: payloads.chat_completion(model, prompt, out, text),
        "completions": lambda: payloads.text_completion(model, prompt, out, text),
        "embeddings": lambda: payloads.embeddings(model, body, prompt),
        "responses": lambda: payloads.response_object(model, prompt, out, text),
        "messages": lambda: payloads.anthropic_message(model, prompt, out, text),
        "count_tokens": lambda: {"input_tokens": prompt},
        "gemini": lambda: payloads.gemini_response(model, prompt, out, text),
    }
    return _JSON(builders[route](), headers=headers)


def _authorized(state: MockState, request: Request) -> bool:
    if state.api_key is None:
        return True
    bearer = request.headers.get("authorization", "")
    given = (
        request.headers.get("x-api-key")
        or request.headers.get("x-goog-api-key")
        or request.query_params.get("key")
        or bearer.removeprefix("Bearer ").strip()
    )
    return given == state.api_key


async def _answer(
    state: MockState, request: Request, route: str, body: Any
) -> tuple[Response, str]:
    api = _api(route)
    path = request.url.path
    if state.latency > 0:
        await asyncio.sleep(state.latency)
    fault = state.next_fault(path)
    if fault is not None:
        if fault.delay > 0:
            await asyncio.sleep(fault.delay)
        if fault.drop:
            return _DroppedResponse(), "dropped"
        if fault.status is not None:
            headers = _limit_headers(state, api)
            if fault.retry_after is not None:
                headers.update(retry_after_headers(fault.retry_after))
            message = f"injected failure (status {fault.status})"
            return _error(api, fault.status, message, "injected", headers), "injected"
    if state.drop_rate and state.random.random() < state.drop_rate:
        return _DroppedResponse(), "dropped"
    if state.error_rate and state.random.random() < state.error_rate:
        message = "The server had an error while processing your request."
        return _error(api, state.error_status, message, "server_error", {}), "injected"
    if not _authorized(state, request):
        return _error(
            api, 401, "Incorrect API key provided.", "invalid_request_error", {}
        ), "unauthorized"
    if not isinstance(body, dict):
        message = "We could not parse the JSON body of your request."
        return _error(api, 400, message, "invalid_request_error", {}), "bad_request"
    prompt = payloads.estimate_tokens(payloads.prompt_text(route, body))
    out = payloads.completion_tokens(route, body, state.completion_tokens)
    if route == "gemini":
        body = {**body, "model": request.path_params.get("model", "mock-model")}
    model = str(body.get("model") or "mock-model")
    if route == "count_tokens":  # metered apart from messages, as Anthropic does
        return _success(route, body, state, prompt, 0), "ok"
    refused = _rate_limited(state, api, model, prompt + out)
    if refused is not None:
        return refused, "rate_limited"
    return _success(route, body, state, prompt, out), "ok"


def _endpoint(state: MockState, route: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        response, outcome = await _answer(state, request, route, body)
        status = None if outcome == "dropped" else response.status_code
        keys = {k: request.headers[k] for k in _KEY_HEADERS if k in request.headers}
        state.hits.append(
            Hit(request.method, request.url.path, status, outcome, body, headers=keys)
        )
        return response

    return endpoint


def create_app(state: MockState) -> Starlette:
    """The starlette app serving the OpenAI and Anthropic routes over ``state``."""

    async def list_models(request: Request) -> Response:
        state.hits.append(Hit("GET", request.url.path, 200, "ok", None))
        return _JSON(payloads.models())

    routes = [
        Route(path, _endpoint(state, name), methods=["POST"]) for path, name in ROUTES.items()
    ]
    routes.append(Route("/v1/models", list_models, methods=["GET"]))
    return Starlette(routes=routes)
