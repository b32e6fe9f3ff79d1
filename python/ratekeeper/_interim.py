"""TEMPORARY stand-in for rk.Limiter / rk.wrap until branch `wrap` is merged. Delete then."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from .limiters import TokenBucket


class Limiter:
    def __init__(self, *, rpm: Optional[float] = None, tpm: Optional[float] = None,
                 burst: Optional[float] = None, concurrency: Optional[int] = None) -> None:
        self.bucket = TokenBucket.per_minute(rpm, burst) if rpm else None
        self.sem = asyncio.Semaphore(concurrency or 10_000)


class _Create:
    def __init__(self, inner: Any, limiter: Limiter) -> None:
        self.inner, self.limiter = inner, limiter

    async def create(self, **kwargs: Any) -> Any:
        for attempt in range(6):
            if self.limiter.bucket is not None:
                await self.limiter.bucket.acquire_async()
            try:
                async with self.limiter.sem:
                    return await self.inner.create(**kwargs)
            except Exception as exc:
                status = getattr(exc, "status_code", None)
                if attempt == 5 or not (status in (429, 500, 502, 503) or "Connection" in type(exc).__name__):
                    raise
                headers = getattr(getattr(exc, "response", None), "headers", {}) or {}
                ms = headers.get("retry-after-ms")
                await asyncio.sleep(float(ms) / 1000 if ms else 0.1 * 2**attempt)
        raise AssertionError


class _Ns:
    pass


def wrap(client: Any, limiter: Limiter) -> Any:
    out = _Ns()
    if hasattr(client, "messages"):
        out.messages = _Create(client.messages, limiter)  # type: ignore[attr-defined]
    else:
        out.chat = _Ns()  # type: ignore[attr-defined]
        out.chat.completions = _Create(client.chat.completions, limiter)  # type: ignore[attr-defined]
    return out
