"""The scripted OpenAI-, Anthropic- and OpenRouter-shaped HTTP server every SDK test uses.

A stdlib threading HTTP server on 127.0.0.1 (ephemeral port), so the real
SDKs go through their whole HTTP stack. Tests script replies (429s with every
retry header format, 5xx, 529, 4xx, slow replies, dropped connections), then
count the hits the server recorded. When nothing is scripted for a request it
answers a well-formed success for its endpoint (plain or streamed), with
``usage``; a scripted error status without a body gets an error body both
SDKs parse.

    with ScriptedServer() as server:             # or the ``scripted_server`` fixture
        server.queue(rate_limited(retry_after=0.05), error(529), model="gpt-a")
        server.reply(429, {"retry-after": "2"}).drop()  # the short form
        client = openai.OpenAI(base_url=server.openai_url, api_key="k", max_retries=0)
        ...
        assert server.hit_count() == 3

``responder`` (a function of the ``Hit``) answers when nothing is scripted;
``closed_port()`` gives a port where nothing listens (connection refused).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from sdk_bodies import stream_events, success_body


@dataclass
class Reply:
    """One scripted answer; ``body=None`` means a default for the endpoint and status."""

    status: int = 200
    body: Optional[Any] = None  # dict/list -> JSON; str/bytes sent as is
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    usage: tuple[int, int] = (10, 5)  # (prompt, completion) of a default success
    drop: bool = False  # close the connection instead of answering


@dataclass
class Hit:
    """One request the server received (header names in lower case)."""

    method: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival

    @property
    def model(self) -> Optional[str]:
        model = self.body.get("model")
        return model if isinstance(model, str) else None


def ok(usage: tuple[int, int] = (10, 5), headers: Optional[dict[str, str]] = None) -> Reply:
    """A success for whatever endpoint is hit, with ``usage`` (prompt, completion)."""
    return Reply(200, None, dict(headers or {}), usage=usage)


def slow(seconds: float) -> Reply:
    """A success that takes ``seconds`` to arrive (for cancellation and concurrency)."""
    return Reply(200, None, {}, delay=seconds)


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


def openrouter_body(reset_ms: int) -> dict[str, Any]:
    """OpenRouter's 429 body: the reset (epoch ms) only inside it, in ``metadata.headers``."""
    return {
        "error": {
            "code": 429,
            "message": "Rate limit exceeded: free-models-per-min.",
            "metadata": {
                "headers": {
                    "X-RateLimit-Limit": "20",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset_ms),
                }
            },
        }
    }


def openrouter_rate_limited(reset_in: float) -> Reply:
    """OpenRouter's 429: no Retry-After, a reset ``reset_in`` seconds from now in the body."""
    return Reply(429, openrouter_body(int((time.time() + reset_in) * 1000)), {})


def error_body(status: int, message: str = "") -> dict[str, Any]:
    """An error body both SDKs parse (OpenAI's ``error.message``, Anthropic's ``type``)."""
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        422: "invalid_request_error",
        429: "rate_limit_error",
        529: "overloaded_error",
    }.get(status, "api_error")
    message = message or f"scripted {status}"
    return {"type": "error", "error": {"type": kind, "message": message, "code": status}}


def error(status: int, headers: Optional[dict[str, str]] = None) -> Reply:
    """An error status with a body both SDKs parse."""
    return Reply(status, error_body(status), dict(headers or {}))


def closed_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class ScriptedServer:
    """The server: script replies (optionally for one model), then read ``hits``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._any: deque[Reply] = deque()
        self._by_model: dict[str, deque[Reply]] = {}
        self.hits: list[Hit] = []
        # Optional: computes the reply from the request when nothing is scripted.
        self.responder: Optional[Callable[[Hit], Reply]] = None
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self.port = 0

    # --- scripting -------------------------------------------------------
    def queue(self, *replies: Reply, model: Optional[str] = None) -> ScriptedServer:
        """Answers the next requests (for ``model`` only, if given) with ``replies``."""
        with self._lock:
            target = self._any if model is None else self._by_model.setdefault(model, deque())
            target.extend(replies)
        return self

    def reply(
        self,
        status: int = 200,
        headers: Optional[dict[str, str]] = None,
        body: Any = None,
        *,
        times: int = 1,
        delay: float = 0.0,
    ) -> ScriptedServer:
        """Queues ``times`` identical replies; returns the server to chain calls."""
        return self.queue(*[Reply(status, body, dict(headers or {}), delay)] * times)

    def drop(self, *, times: int = 1) -> ScriptedServer:
        """Queues ``times`` requests answered by closing the connection."""
        return self.queue(*[Reply(drop=True)] * times)

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
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def anthropic_url(self) -> str:
        return self.base_url

    # --- lifecycle -------------------------------------------------------
    def start(self) -> ScriptedServer:
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.scripted = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving; slow replies in flight are cut short, open connections closed."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            _close(connection)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- answering -------------------------------------------------------
    def _next_reply(self, hit: Hit) -> Reply:
        with self._lock:
            self.hits.append(hit)
            mine = self._by_model.get(hit.model) if hit.model is not None else None
            if mine:
                return mine.popleft()
            if self._any:
                return self._any.popleft()
        responder = self.responder
        return responder(hit) if responder is not None else ok()

    def _answer(self, handler: _Handler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {"_": body}
        headers = {name.lower(): value for name, value in handler.headers.items()}
        hit = Hit(handler.command, urlsplit(handler.path).path, body, headers, time.monotonic())
        reply = self._next_reply(hit)
        # A stop during the delay ends the reply: a cancelled slow call must not hold teardown.
        if reply.drop or (reply.delay and self._stopping.wait(reply.delay)):
            handler.close_connection = True
            _close(handler.connection)
            return
        content_type, data = _payload(reply, hit)
        handler.send_response(reply.status)
        handler.send_header("content-type", content_type)
        handler.send_header("content-length", str(len(data)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)


def _close(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the client
        connection.shutdown(socket.SHUT_RDWR)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections are closed by stop(), not awaited
    scripted: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and left is part of the script, not news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.scripted._lock:
            self.server.scripted._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.scripted._lock:
            self.server.scripted._connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        self.server.scripted._answer(self)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


def _payload(reply: Reply, hit: Hit) -> tuple[str, bytes]:
    """The content type and bytes of ``reply`` to ``hit``."""
    body = reply.body
    if body is None and reply.status >= 400:
        body = error_body(reply.status)
    if body is None and (hit.body.get("stream") or hit.path.endswith(":streamGenerateContent")):
        return "text/event-stream", "".join(stream_events(hit, reply.usage)).encode()
    if body is None:
        body = success_body(hit, reply.usage)
    if isinstance(body, bytes):
        return "text/plain", body
    if isinstance(body, str):
        return "text/plain", body.encode()
    return "application/json", json.dumps(body).encode()
