"""ResponseCache: canonical keys, LRU, ttl, single flight for tasks and threads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import ratekeeper as rk


def test_key_ignores_argument_order_and_separates_methods():
    key = rk.ResponseCache.key
    assert key("chat", {"model": "m", "messages": [1]}) == key(
        "chat", {"messages": [1], "model": "m"}
    )
    assert key("chat", {"model": "m"}) != key("embeddings", {"model": "m"})
    assert key("chat", {"model": "m"}) != key("chat", {"model": "n"})


def test_identical_calls_are_answered_once():
    cache = rk.ResponseCache()
    calls = []
    for _ in range(3):
        assert cache.get_or_call("k", lambda: calls.append(1) or "answer") == "answer"
    assert len(calls) == 1
    assert (cache.hits, cache.misses) == (2, 1)


def test_least_recently_used_is_evicted_beyond_maxsize():
    cache = rk.ResponseCache(maxsize=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == (True, 1)  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") == (False, None)
    assert cache.get("a") == (True, 1)
    assert cache.get("c") == (True, 3)
    assert len(cache) == 2


def test_answers_expire_after_ttl():
    clock = rk.ManualClock()
    cache = rk.ResponseCache(ttl=10.0, clock=clock)
    cache.put("k", "v")
    clock.advance(9.9)
    assert cache.get("k") == (True, "v")
    clock.advance(0.2)
    assert cache.get("k") == (False, None)
    assert len(cache) == 0


def test_errors_are_not_stored():
    cache = rk.ResponseCache()
    with pytest.raises(ZeroDivisionError):
        cache.get_or_call("k", lambda: 1 / 0)
    assert cache.get_or_call("k", lambda: "fine") == "fine"


async def test_concurrent_identical_async_requests_share_one_call():
    cache = rk.ResponseCache()
    calls = 0

    async def slow_answer() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "shared"

    results = await asyncio.gather(*(cache.get_or_call_async("k", slow_answer) for _ in range(8)))
    assert results == ["shared"] * 8
    assert calls == 1


async def test_a_cancelled_leader_hands_the_call_to_a_waiting_follower():
    cache = rk.ResponseCache()
    started = asyncio.Event()
    calls = 0

    async def answer() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(0.05)
        return "second"

    leader = asyncio.ensure_future(cache.get_or_call_async("k", answer))
    await started.wait()
    follower = asyncio.ensure_future(cache.get_or_call_async("k", answer))
    await asyncio.sleep(0)
    leader.cancel()
    assert await follower == "second"
    assert calls == 2
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_a_failed_shared_call_raises_in_every_waiter():
    cache = rk.ResponseCache()

    async def broken() -> str:
        await asyncio.sleep(0.02)
        raise KeyError("boom")

    results = await asyncio.gather(
        *(cache.get_or_call_async("k", broken) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, KeyError) for result in results)
    assert len(cache) == 0


def test_threads_asking_the_same_thing_share_one_call():
    cache = rk.ResponseCache()
    calls = 0
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def answer() -> str:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.1)
        return "v"

    results: list[str] = []

    def worker() -> None:
        barrier.wait()
        results.append(cache.get_or_call("k", answer))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["v"] * 6
    assert calls == 1


@pytest.mark.parametrize("maxsize", [0, -1, 1.5, True])
def test_bad_maxsize_is_refused(maxsize):
    with pytest.raises(ValueError, match="maxsize"):
        rk.ResponseCache(maxsize=maxsize)


@pytest.mark.parametrize("ttl", [0, -1.0, float("nan"), float("inf")])
def test_bad_ttl_is_refused(ttl):
    with pytest.raises(ValueError, match="ttl"):
        rk.ResponseCache(ttl=ttl)


class Opaque:
    """An argument whose repr says nothing about its state."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Opaque()"


def test_arguments_that_differ_only_in_state_get_different_keys():
    assert rk.ResponseCache.key("m", {"x": Opaque(1)}) != rk.ResponseCache.key(
        "m", {"x": Opaque(2)}
    )
    assert rk.ResponseCache.key("m", {"x": Opaque(1)}) == rk.ResponseCache.key(
        "m", {"x": Opaque(1)}
    )


def test_a_mapping_with_keys_of_mixed_types_still_has_a_key():
    mixed = {"logit_bias": {1: 5, "a": 3}}
    assert rk.ResponseCache.key("m", mixed) == rk.ResponseCache.key(
        "m", {"logit_bias": {"a": 3, 1: 5}}
    )
    assert rk.ResponseCache.key("m", mixed) != rk.ResponseCache.key("m", {"logit_bias": {1: 5}})
