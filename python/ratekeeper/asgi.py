"""ASGI middleware that limits each client of a served API (SPEC section 10).

A request over its client's limit is answered 429 before the app runs: the
app never sees it. Every response, granted or not, carries
``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``
(seconds until the client's bucket is full again); a 429 adds
``Retry-After``. Buckets are per key, in process (``KeyedLimiter``) or
shared by every worker through Redis (``backend=RedisBackend(...)``).

A websocket connection costs one request when it opens: over the limit, it
is accepted and at once closed with code 1008 (policy violation) and the
reason ``Rate limit exceeded`` before the app runs (a close before the
accept would reach the client as a bare HTTP 403, without the code). A key
function that raises (or returns ``None``) means the client cannot be told
apart: HTTP answers 400 with a JSON error, a websocket is closed with 1008;
the app never runs, and the exception's text (it may quote a header) is
never sent.

>>> # app = RateLimitMiddleware(Starlette(routes=routes), rate=10, capacity=20)
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, MutableMapping
from typing import Any, Callable, Optional

from .keyed import KeyedLimiter
from .redis import RedisBackend, RedisTokenBucket

__all__ = ["RateLimitMiddleware", "client_ip"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY = json.dumps({"error": {"code": 429, "message": "Rate limit exceeded"}}).encode()
_UNIDENTIFIED = "Could not identify the client"
_UNIDENTIFIED_BODY = json.dumps({"error": {"code": 400, "message": _UNIDENTIFIED}}).encode()
_POLICY_VIOLATION = 1008  # the websocket close code for both refusals
# Redis-backed buckets kept per key; past this many the cache starts over
# (a bucket object is only a handle: its state lives in Redis).
_MAX_CACHED_BUCKETS = 10_000


def client_ip(scope: Scope) -> str:
    """The default key: the client's IP address (``"unknown"`` when the server gives none).

    >>> client_ip({"client": ("10.0.0.1", 5000)})
    '10.0.0.1'
    """
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RateLimitMiddleware:
    """Limits each client to ``rate`` requests/s with bursts of ``capacity``.

    ``key`` maps the ASGI scope to a client identity (default: client IP; an
    API-key header is the common choice). With ``backend``, all workers share
    one budget per key through Redis. ``idle_timeout`` (seconds) is how long
    an in-process client's bucket is kept after its last request; a client
    back after that starts with a full bucket, which it would have anyway
    once ``capacity / rate`` seconds have passed.

    >>> app = RateLimitMiddleware(app, rate=10, capacity=20)  # doctest: +SKIP
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        rate: float,
        capacity: float,
        key: Optional[Callable[[Scope], str]] = None,
        backend: Optional[RedisBackend] = None,
        idle_timeout: float = 600.0,
    ) -> None:
        if key is not None and not callable(key):
            raise TypeError(f"key must be a function of the ASGI scope, got {type(key).__name__}")
        for name, value in (("rate", rate), ("capacity", capacity), ("idle_timeout", idle_timeout)):
            if isinstance(value, int) and not -(2**1023) < value < 2**1023:
                raise ValueError(f"{name} must be a finite number > 0, got an int too large to use")
        self.app = app
        self.key = key or client_ip
        self.backend = backend
        # Validates rate, capacity and idle_timeout (ValueError naming them) at once.
        self._local = KeyedLimiter(rate, capacity, idle_timeout=idle_timeout)
        self.rate = self._local.rate
        self.capacity = self._local.capacity
        self.idle_timeout = self._local.idle_timeout
        self._shared: dict[str, RedisTokenBucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan: not ours
            return
        client = self._client_of(scope)
        if client is None:
            await _refuse(kind, receive, send, [], 400, _UNIDENTIFIED)
            return
        granted, retry_after, remaining, reset = await self._check(client)
        headers = [
            (b"x-ratelimit-limit", _number(self.capacity)),
            (b"x-ratelimit-remaining", str(max(0, math.floor(remaining))).encode()),
            (b"x-ratelimit-reset", str(math.ceil(reset)).encode()),
        ]
        if not granted:
            headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
            await _refuse(kind, receive, send, headers, 429, "Rate limit exceeded")
            return
        first = "http.response.start" if kind == "http" else "websocket.accept"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == first:
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _client_of(self, scope: Scope) -> Optional[str]:
        """The client's key, or None when the key function cannot tell (raises, or says None)."""
        try:
            client = self.key(scope)
        except Exception:
            return None
        if client is None:
            return None
        return client if isinstance(client, str) else str(client)

    async def _check(self, key: str) -> tuple[bool, float, float, float]:
        """``(granted, retry_after, remaining, reset)`` for one request of ``key``."""
        if self.backend is not None:
            bucket = self._shared.get(key)
            if bucket is None:
                if len(self._shared) >= _MAX_CACHED_BUCKETS:
                    self._shared.clear()
                # Kind "asgi": its keys never meet a user's bucket, and the
                # client identity (often an API key) is stored hashed.
                bucket = RedisTokenBucket(self.backend, key, self.rate, self.capacity, _kind="asgi")
                self._shared[key] = bucket
            return await bucket._check_async(1)
        local = self._local
        granted = local.try_acquire(key, 1)
        remaining = local.available(key)
        retry_after = 0.0 if granted else local.wait_time(key, 1)
        return granted, retry_after, remaining, (self.capacity - remaining) / self.rate


def _number(value: float) -> bytes:
    return (str(int(value)) if value == int(value) else repr(value)).encode()


async def _refuse(
    kind: str,
    receive: Receive,
    send: Send,
    headers: list[tuple[bytes, bytes]],
    status: int,
    message: str,
) -> None:
    """Answers ``status`` over HTTP, or closes a websocket with 1008; the app never runs."""
    if kind == "websocket":
        opening = await receive()
        if opening["type"] != "websocket.connect":
            return  # the client left before its handshake was answered
        await send({"type": "websocket.accept", "headers": headers})
        await send({"type": "websocket.close", "code": _POLICY_VIOLATION, "reason": message})
        return
    body = _BODY if status == 429 else _UNIDENTIFIED_BODY
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
