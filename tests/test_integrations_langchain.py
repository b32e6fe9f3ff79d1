"""ratekeeper.integrations.langchain.RateLimiter under a real ChatOpenAI, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_core.rate_limiters import BaseRateLimiter
from langchain_openai import ChatOpenAI

import ratekeeper as rk
from ratekeeper.integrations.langchain import RateLimiter
from ratekeeper.testing import MockProvider


@pytest.fixture(scope="module")
def provider() -> Iterator[MockProvider]:
    with MockProvider(rpm=None) as p:
        yield p


def chat_model(provider: MockProvider, limiter: Any, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-4o-mini",
        base_url=provider.base_url,
        api_key="sk-test",  # type: ignore[arg-type]
        max_retries=0,
        # A client of its own: langchain-openai shares a cached one bound to the first loop.
        http_async_client=httpx.AsyncClient(),
        rate_limiter=RateLimiter(limiter, **options),
    )


def test_invoke_and_ainvoke_take_a_request_from_the_limiter(provider: MockProvider) -> None:
    limiter = rk.Limiter(rpm=600)
    model = chat_model(provider, limiter)
    before = provider.counts().get("/v1/chat/completions", {}).get("ok", 0)
    assert model.invoke("hello there").content
    assert limiter.stats()["granted"] == 1
    assert asyncio.run(model.ainvoke("hello again")).content
    assert list(model.stream("and a stream"))
    stats = limiter.stats()
    assert (stats["granted"], stats["in_flight"]) == (3, 0)  # each permit given back at once
    assert provider.counts()["/v1/chat/completions"]["ok"] == before + 3


def test_a_blocked_call_waits_for_the_limiter(provider: MockProvider) -> None:
    limiter = rk.Limiter(rps=20, burst=1)
    model = chat_model(provider, limiter)
    for _ in range(3):
        model.invoke("hi")
    stats = limiter.stats()
    assert stats["granted"] == 3 and stats["waited_seconds"] > 0  # the 2nd and 3rd waited


def test_non_blocking_acquire_is_false_when_the_limiter_is_empty() -> None:
    clock = rk.ManualClock()
    adapters = [
        RateLimiter(limiter)
        for limiter in (
            rk.Limiter(rpm=60, burst=2, clock=clock),
            rk.TokenBucket.per_minute(60, burst=2, clock=clock),
            rk.SlidingWindow(2, 60.0, clock=clock),
            rk.FixedWindow(2, 60.0, clock=clock),
        )
    ]
    for langchain in adapters:
        assert isinstance(langchain, BaseRateLimiter)
        assert langchain.acquire(blocking=False) and langchain.acquire()
        assert langchain.acquire(blocking=False) is False, langchain
        assert asyncio.run(langchain.aacquire(blocking=False)) is False, langchain
    clock.advance(60.0)  # a minute later every one has room again
    assert all(langchain.acquire(blocking=False) for langchain in adapters)


def test_a_keyed_limiter_charges_its_key(provider: MockProvider) -> None:
    keyed = rk.KeyedLimiter(0.001, 2)
    model = chat_model(provider, keyed, key="team-a")
    model.invoke("hi")
    assert asyncio.run(model.ainvoke("hi")).content
    assert RateLimiter(keyed, key="team-a").acquire(blocking=False) is False
    assert RateLimiter(keyed, key="team-b").acquire(blocking=False) is True


def test_a_redis_limiter_works_too(provider: MockProvider, redis_url: str, unique_key: str) -> None:
    backend = rk.RedisBackend(redis_url)
    limiter = rk.Limiter(rpm=60, burst=2, backend=backend, key=unique_key)
    model = chat_model(provider, limiter)
    model.invoke("hi")
    assert asyncio.run(model.ainvoke("hi")).content
    assert limiter.stats()["granted"] == 2
    assert RateLimiter(limiter).acquire(blocking=False) is False
    bucket = rk.RedisTokenBucket(backend, unique_key + "-bucket", 0.001, 1)
    assert RateLimiter(bucket).acquire() is True
    assert asyncio.run(RateLimiter(bucket).aacquire(blocking=False)) is False


@pytest.mark.parametrize("bad", [None, 60, "rpm=60", object(), rk.CircuitBreaker()])
def test_anything_but_a_limiter_is_refused_at_creation(bad: Any) -> None:
    with pytest.raises(TypeError, match="ratekeeper limiter"):
        RateLimiter(bad)


def test_keys_are_checked_at_creation() -> None:
    with pytest.raises(TypeError, match="needs key"):
        RateLimiter(rk.KeyedLimiter(1.0, 5))
    with pytest.raises(TypeError, match="only for a KeyedLimiter"):
        RateLimiter(rk.TokenBucket.per_minute(60), key="a")
    assert repr(RateLimiter(rk.KeyedLimiter(1.0, 5), key="a")).endswith("key='a')")
