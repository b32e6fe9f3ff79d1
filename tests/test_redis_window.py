"""RedisSlidingWindow against a real redis-server: the same log as SlidingWindow."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis as redis_py
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_server import RedisServer

import ratekeeper as rk


def window(url: str, key: str, limit: float, seconds: float, **kw: object) -> rk.RedisSlidingWindow:
    return rk.RedisSlidingWindow(rk.RedisBackend(url, **kw), key, limit, seconds)  # type: ignore[arg-type]


def test_a_full_window_refuses_and_tells_the_wait_from_its_log(
    redis_url: str, unique_key: str
) -> None:
    w = window(redis_url, unique_key, limit=3, seconds=100)
    other = window(redis_url, unique_key, limit=3, seconds=100)
    assert [w.try_acquire() for _ in range(3)] == [True] * 3
    assert other.try_acquire() is False  # one log for both
    assert 99 < other.wait_time() <= 100
    assert w.acquire(timeout=0.05) is False
    client = redis_py.Redis.from_url(redis_url)
    key = f"ratekeeper:{{window:{unique_key}}}:window"
    assert client.zcard(key) == 3  # a refusal logs nothing
    assert 0 < client.pttl(key) <= 100_001
    client.close()
    w.reset()
    assert other.try_acquire(3)


def test_acquire_sleeps_the_computed_wait(redis_url: str, unique_key: str) -> None:
    w = window(redis_url, unique_key, limit=2, seconds=0.3)
    start = time.monotonic()
    for _ in range(4):
        assert w.acquire()
    # The third grant waits for the first to leave the window.
    assert time.monotonic() - start >= 0.28
    assert w.acquire(1, timeout=0.01) is False


async def test_acquire_async_waits_on_the_loop(redis_url: str, unique_key: str) -> None:
    w = window(redis_url, unique_key, limit=1, seconds=0.2)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    assert await w.acquire_async()
    assert await w.acquire_async(timeout=0.01) is False
    assert await w.acquire_async()
    task.cancel()
    assert ticks >= 5  # the loop ran while we waited
    async with w:
        pass


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.tuples(st.integers(0, 3_000_000), st.sampled_from([0.5, 1.0, 2.0, 3.0])),
        min_size=1,
        max_size=25,
    )
)
def test_the_script_logs_like_the_in_process_sliding_window(
    redis_url: str, steps: list[tuple[int, float]]
) -> None:
    clock = rk.ManualClock()
    local = rk.SlidingWindow(5, 2.0, clock=clock)
    key = f"prop-{time.monotonic_ns()}"
    shared = window(redis_url, key, limit=5, seconds=2.0)
    now_us = 10**15
    for gap_us, n in steps:
        now_us += gap_us
        clock.advance(gap_us / 1e6)
        expected = local.wait_time(n)
        granted = local.try_acquire(n)
        wait = shared._acquire_at(n, now_us)
        assert (wait == 0.0) == granted
        if not granted:
            assert wait == pytest.approx(expected, abs=2e-6)


@pytest.mark.parametrize("on_error", ["local", "allow", "deny"])
def test_on_error_when_redis_is_killed(
    own_redis: RedisServer, unique_key: str, on_error: str
) -> None:
    w = window(own_redis.url, unique_key, limit=2, seconds=100, on_error=on_error)
    assert w.try_acquire()
    own_redis.kill()
    answers = [w.try_acquire() for _ in range(4)]
    expected = {"local": [True, True, False, False], "allow": [True] * 4, "deny": [False] * 4}
    assert answers == expected[on_error]
    if on_error == "deny":
        with pytest.raises(rk.RateLimitError, match="deny"):
            w.acquire()


def test_bad_input_raises_at_once(redis_url: str, unique_key: str) -> None:
    backend = rk.RedisBackend(redis_url)
    with pytest.raises(ValueError, match="limit"):
        rk.RedisSlidingWindow(backend, unique_key, 0, 1.0)
    with pytest.raises(ValueError, match="window"):
        rk.RedisSlidingWindow(backend, unique_key, 1, -1.0)
    w = rk.RedisSlidingWindow(backend, unique_key, 2, 1.0)
    with pytest.raises(ValueError):
        w.try_acquire(3)
    with pytest.raises(ValueError):
        w.try_acquire(-1)
    with pytest.raises(ValueError, match="timeout"):
        w.acquire(timeout=-1)
    assert repr(w).startswith("RedisSlidingWindow(")
