"""A scripted HTTP server on 127.0.0.1 for tests that drive the real openai/anthropic SDKs.

    with ScriptedServer() as server:
        server.reply(429, {"retry-after": "2"})     # the next request gets this
        server.reply(200)                           # then a valid completion
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="k", max_retries=0)

Each request takes the next scripted reply; when the script is empty, a 200
with a body the SDKs accept for the path (``/chat/completions``,
``/completions``, ``/embeddings``, ``/responses``, ``/messages``) and
``usage``. ``server.hits`` counts requests, ``server.requests`` keeps them.
``drop()`` closes the connection without an answer; ``closed_port()`` gives a
port where nothing listens (connection refused). The ``scripted_server``
fixture (see conftest.py) starts one per test.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

__all__ = ["Reply", "ScriptedServer", "closed_port", "error_body", "success_body"]


@dataclass
class Reply:
    """One scripted answer; ``drop`` closes the connection instead, ``delay`` waits first."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # dict/list -> JSON; str/bytes as is; None -> a default for the path
    delay: float = 0.0
    drop: bool = False


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def error_body(status: int, message: str = "scripted error") -> dict[str, Any]:
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
    return {"type": "error", "error": {"type": kind, "message": message, "code": status}}


def success_body(path: str, request_body: Any = None) -> dict[str, Any]:
    """A minimal valid response for the endpoint at ``path``."""
    model = request_body.get("model", "test-model") if isinstance(request_body, dict) else "m"
    if path.endswith("/messages"):
        return {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }
    if path.endswith("/embeddings"):
        return {
            "object": "list",
            "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 1.0]}],
            "usage": {"prompt_tokens": 10, "total_tokens": 10},
        }
    if path.endswith("/responses"):
        return {
            "id": "resp_test",
            "object": "response",
            "created_at": 0,
            "model": model,
            "status": "completed",
            "output": [],
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": 10,
                "output_tokens": 5,
                "total_tokens": 15,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    if path.endswith("/completions") and not path.endswith("/chat/completions"):
        return {
            "id": "cmpl_test",
            "object": "text_completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "text": "ok", "finish_reason": "stop", "logprobs": None}],
            "usage": usage,
        }
    return {
        "id": "chatcmpl_test",
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
        "usage": usage,
    }


def closed_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class ScriptedServer:
    """The server; start with ``with ScriptedServer() as server`` or ``start()``/``stop()``."""

    def __init__(self) -> None:
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        # Optional: compute the reply from the request when the script is empty.
        self.responder: Optional[Callable[[Request], Reply]] = None
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- scripting ---------------------------------------------------------

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
        with self._lock:
            for _ in range(times):
                self._script.append(Reply(status, dict(headers or {}), body, delay))
        return self

    def drop(self, *, times: int = 1) -> ScriptedServer:
        """Queues ``times`` requests answered by closing the connection."""
        with self._lock:
            for _ in range(times):
                self._script.append(Reply(drop=True))
        return self

    @property
    def hits(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> ScriptedServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                request = Request(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with server._lock:
                    server.requests.append(request)
                    reply = server._script.popleft() if server._script else None
                if reply is None:
                    responder = server.responder
                    reply = responder(request) if responder is not None else Reply()
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                payload = reply.body
                if payload is None:
                    if reply.status < 400:
                        payload = success_body(self.path, body)
                    else:
                        payload = error_body(reply.status)
                if isinstance(payload, (dict, list)):
                    data = json.dumps(payload).encode()
                    content_type = "application/json"
                else:
                    data = payload if isinstance(payload, bytes) else str(payload).encode()
                    content_type = "text/plain"
                self.send_response(reply.status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and left is part of the script, not news

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
