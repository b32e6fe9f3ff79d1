"""A scripted OpenAI- and Anthropic-shaped HTTP server for the wrapping tests.

A real starlette app served by uvicorn in a background thread on 127.0.0.1
(ephemeral port), so the real SDKs go through their whole HTTP stack. Tests
queue replies (429s with every retry header format, 5xx, 529, 4xx, slow
replies) and then count the hits the server recorded. When nothing is queued
for a request, it answers a well-formed success for its endpoint, with
``usage``.

    with ScriptedServer() as server:
        server.queue(rate_limited(retry_after=0.05))
        client = openai.OpenAI(base_url=server.openai_url, api_key="k")
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Reply:
    """One scripted answer: a status, a JSON body, headers, an optional delay."""

    status: int = 200
    body: Optional[Any] = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    usage: tuple[int, int] = (10, 5)


@dataclass
class Hit:
    """One request the server received."""

    method: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float

    @property
    def model(self) -> Optional[str]:
        model = self.body.get("model")
        return model if isinstance(model, str) else None


def ok(usage: tuple[int, int] = (10, 5), headers: Optional[dict[str, str]] = None) -> Reply:
    """A success for whatever endpoint is hit, with ``usage`` (prompt, completion)."""
    return Reply(200, None, dict(headers or {}), usage=usage)


def rate_limited(
    retry_after: Optional[float] = None,
    retry_after_ms: Optional[float] = None,
    headers: Optional[dict[str, str]] = None,
    body: Optional[Any] = None,
) -> Reply:
    """A 429 with the given retry headers (and an OpenAI-shaped error body by default)."""
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["retry-after"] = f"{retry_after:g}"
    if retry_after_ms is not None:
        all_headers["retry-after-ms"] = f"{retry_after_ms:g}"
    if body is None:
        body = {
            "error": {
                "message": "Rate limit reached",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
        }
    return Reply(429, body, all_headers)


def openrouter_rate_limited(reset_in: float) -> Reply:
    """OpenRouter's 429: no Retry-After, the reset (epoch ms) only in the JSON body."""
    reset_ms = int((time.time() + reset_in) * 1000)
    body = {
        "error": {
            "code": 429,
            "message": "Rate limit exceeded",
            "metadata": {
                "headers": {
                    "X-RateLimit-Limit": "20",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset_ms),
                }
            },
        }
    }
    return Reply(429, body, {})


def error(status: int, headers: Optional[dict[str, str]] = None) -> Reply:
    """An error status with a body both SDKs parse (Anthropic's shape names its type)."""
    kind = {529: "overloaded_error", 500: "api_error", 400: "invalid_request_error"}.get(
        status, "error"
    )
    body = {"type": "error", "error": {"type": kind, "message": f"scripted {status}"}}
    return Reply(status, body, dict(headers or {}))


def slow(seconds: float) -> Reply:
    """A success that takes ``seconds`` to arrive (for cancellation and concurrency)."""
    return Reply(200, None, {}, delay=seconds)


class ScriptedServer:
    """The server: ``queue`` replies (optionally for one model), then read ``hits``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._any: deque[Reply] = deque()
        self._by_model: dict[str, deque[Reply]] = {}
        self.hits: list[Hit] = []
        routes = [Route("/{path:path}", self._handle, methods=["GET", "POST"])]
        self._app = Starlette(routes=routes)
        self._server: Optional[uvicorn.Server] = None
        self._thread: Optional[threading.Thread] = None
        self.port = 0

    # --- scripting -------------------------------------------------------
    def queue(self, *replies: Reply, model: Optional[str] = None) -> None:
        """Answers the next requests (for ``model`` only, if given) with ``replies``."""
        with self._lock:
            target = self._any if model is None else self._by_model.setdefault(model, deque())
            target.extend(replies)

    def reset(self) -> None:
        """Forgets the script and the hits."""
        with self._lock:
            self._any.clear()
            self._by_model.clear()
            self.hits.clear()

    def hit_count(self, path_suffix: str = "", model: Optional[str] = None) -> int:
        """Requests received whose path ends with ``path_suffix`` (and for ``model``)."""
        with self._lock:
            return sum(
                1
                for hit in self.hits
                if hit.path.endswith(path_suffix) and (model is None or hit.model == model)
            )

    def models_hit(self) -> list[Optional[str]]:
        """The ``model`` of every request, in arrival order."""
        with self._lock:
            return [hit.model for hit in self.hits]

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- lifecycle -------------------------------------------------------
    def __enter__(self) -> ScriptedServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="error",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("scripted server did not start")
            time.sleep(0.005)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    # --- the app ---------------------------------------------------------
    def _next_reply(self, model: Optional[str]) -> Reply:
        with self._lock:
            mine = self._by_model.get(model) if model is not None else None
            if mine:
                return mine.popleft()
            if self._any:
                return self._any.popleft()
        return ok()

    async def _handle(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {"_": body}
        hit = Hit(request.method, request.url.path, body, dict(request.headers), time.monotonic())
        with self._lock:
            self.hits.append(hit)
        reply = self._next_reply(hit.model)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200 or reply.body is not None:
            return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)
        if body.get("stream"):
            return StreamingResponse(
                _stream_events(hit, reply.usage),
                media_type="text/event-stream",
                headers=reply.headers,
            )
        return JSONResponse(_success_body(hit, reply.usage), headers=reply.headers)


def _success_body(hit: Hit, usage: tuple[int, int]) -> Any:
    prompt, completion = usage
    model = hit.model or "model"
    path = hit.path
    if path.endswith("/models"):
        if "anthropic-version" in hit.headers:
            return {
                "data": [
                    {
                        "id": "claude-x",
                        "type": "model",
                        "display_name": "Claude",
                        "created_at": "2024-01-01T00:00:00Z",
                    }
                ],
                "has_more": False,
                "first_id": "claude-x",
                "last_id": "claude-x",
            }
        return {
            "object": "list",
            "data": [{"id": "gpt-x", "object": "model", "created": 0, "owned_by": "me"}],
        }
    openai_usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if path.endswith("/chat/completions"):
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ],
            "usage": openai_usage,
        }
    if path.endswith("/completions"):
        return {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 0,
            "model": model,
            "choices": [{"text": "ok", "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": openai_usage,
        }
    if path.endswith("/embeddings"):
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 1.0]}],
            "model": model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }
    if path.endswith("/responses"):
        return {
            "id": "resp_1",
            "object": "response",
            "created_at": 0,
            "model": model,
            "status": "completed",
            "output": [
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "ok", "annotations": []}],
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": prompt,
                "output_tokens": completion,
                "total_tokens": prompt + completion,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }
    if path.endswith("/messages"):
        return _anthropic_message(model, prompt, completion)
    return {"ok": True}


def _anthropic_message(model: str, prompt: int, completion: int) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


async def _stream_events(hit: Hit, usage: tuple[int, int]) -> Any:
    prompt, completion = usage
    model = hit.model or "model"
    if hit.path.endswith("/messages"):
        start = _anthropic_message(model, prompt, 1)
        start["content"] = []
        events: list[tuple[str, Any]] = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "ok"},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": completion},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        for name, data in events:
            yield f"event: {name}\ndata: {json.dumps(data)}\n\n"
        return
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": None}
        ],
    }
    yield f"data: {json.dumps(chunk)}\n\n"
    options = hit.body.get("stream_options") or {}
    if options.get("include_usage"):
        last = dict(
            chunk,
            choices=[],
            usage={
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        )
        yield f"data: {json.dumps(last)}\n\n"
    yield "data: [DONE]\n\n"
