"""ASGI middleware that limits each client of a served API (SPEC section 10).

A request over its client's limit is answered 429 before the app runs: the
app never sees it. Every response, granted or not, carries
``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``
(seconds until the client's bucket is full again); a 429 adds
``Retry-After``. Buckets are per key, in process (``KeyedLimiter``) or
shared by every worker through Redis (``backend=RedisBackend(...)``).

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
    one budget per key through Redis.

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
    ) -> None:
        self.app = app
        self.key = key or client_ip
        self.backend = backend
        self.rate = float(rate)
        self.capacity = float(capacity)
        # Validates rate and capacity (ValueError naming them) at once.
        self._local = KeyedLimiter(rate, capacity)
        self._shared: dict[str, RedisTokenBucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # lifespan, websocket: not ours
            return
        granted, retry_after, remaining, reset = await self._check(self.key(scope))
        headers = [
            (b"x-ratelimit-limit", _number(self.capacity)),
            (b"x-ratelimit-remaining", str(max(0, math.floor(remaining))).encode()),
            (b"x-ratelimit-reset", str(math.ceil(reset)).encode()),
        ]
        if not granted:
            await _reject(send, headers, retry_after)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _check(self, key: str) -> tuple[bool, float, float, float]:
        """``(granted, retry_after, remaining, reset)`` for one request of ``key``."""
        if self.backend is not None:
            bucket = self._shared.get(key)
            if bucket is None:
                if len(self._shared) >= _MAX_CACHED_BUCKETS:
                    self._shared.clear()
                bucket = RedisTokenBucket(self.backend, key, self.rate, self.capacity)
                self._shared[key] = bucket
            return await bucket._check_async(1)
        local = self._local
        granted = local.try_acquire(key, 1)
        remaining = local.available(key)
        retry_after = 0.0 if granted else local.wait_time(key, 1)
        return granted, retry_after, remaining, (self.capacity - remaining) / self.rate


def _number(value: float) -> bytes:
    return (str(int(value)) if value == int(value) else repr(value)).encode()


async def _reject(send: Send, headers: list[tuple[bytes, bytes]], retry_after: float) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_BODY)).encode()),
                (b"retry-after", str(max(1, math.ceil(retry_after))).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": _BODY})
