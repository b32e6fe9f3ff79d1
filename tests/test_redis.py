"""RedisTokenBucket and RedisBudgets against a real redis-server."""

from __future__ import annotations

import asyncio
import multiprocessing
import time

import pytest
import redis as redis_py
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ratekeeper as rk
from ratekeeper.redis import RedisBudgets


def bucket(url: str, key: str, rate: float, capacity: float, **kw: object) -> rk.RedisTokenBucket:
    return rk.RedisTokenBucket(rk.RedisBackend(url, **kw), key, rate, capacity)  # type: ignore[arg-type]


def test_a_full_bucket_grants_its_capacity_then_refuses(redis_url: str, unique_key: str) -> None:
    b = bucket(redis_url, unique_key, rate=0.01, capacity=5)
    assert [b.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    assert 90 < b.wait_time() <= 100


def test_acquire_with_a_short_timeout_takes_nothing(redis_url: str, unique_key: str) -> None:
    b = bucket(redis_url, unique_key, rate=1, capacity=1)
    assert b.acquire()
    assert b.acquire(timeout=0.1) is False
    assert 0.5 < b.wait_time() <= 1.0


def test_acquire_waits_for_its_reservation(redis_url: str, unique_key: str) -> None:
    b = bucket(redis_url, unique_key, rate=10, capacity=1)
    start = time.monotonic()
    for _ in range(4):
        assert b.acquire()
    assert time.monotonic() - start >= 0.28


def test_refund_and_reset_give_units_back(redis_url: str, unique_key: str) -> None:
    b = bucket(redis_url, unique_key, rate=0.01, capacity=3)
    assert b.try_acquire(3)
    b.refund(2)
    assert b.try_acquire(2) and not b.try_acquire()
    b.reset()
    assert b.try_acquire(3)


def test_processes_on_one_key_share_one_budget(redis_url: str, unique_key: str) -> None:
    b1 = bucket(redis_url, unique_key, rate=0.01, capacity=4)
    b2 = bucket(redis_url, unique_key, rate=0.01, capacity=4)
    assert b1.try_acquire(3)
    assert not b2.try_acquire(2)
    assert b2.try_acquire(1)


def test_bad_arguments_raise_at_once(redis_url: str, unique_key: str) -> None:
    with pytest.raises(ValueError, match="on_error"):
        rk.RedisBackend(redis_url, on_error="maybe")
    with pytest.raises(ValueError, match="timeout"):
        rk.RedisBackend(redis_url, timeout=0)
    with pytest.raises(ValueError, match="url"):
        rk.RedisBackend("http://nope")
    with pytest.raises(TypeError, match="url"):
        rk.RedisBackend(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate"):
        bucket(redis_url, unique_key, rate=float("nan"), capacity=1)
    b = bucket(redis_url, unique_key, rate=1, capacity=2)
    for n in (0, -1, 3):
        with pytest.raises(ValueError, match="n"):
            b.try_acquire(n)
    assert "RedisTokenBucket(key=" in repr(b) and "on_error='local'" in repr(b.backend)


async def test_acquire_async_waits_without_blocking_the_loop(
    redis_url: str, unique_key: str
) -> None:
    b = bucket(redis_url, unique_key, rate=10, capacity=1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    start = time.monotonic()
    results = [await b.acquire_async() for _ in range(3)]
    task.cancel()
    assert results == [True] * 3
    assert time.monotonic() - start >= 0.18
    assert ticks >= 5
    assert await b.acquire_async(timeout=0.01) is False
    async with b:
        pass


async def test_a_cancelled_async_waiter_returns_its_reservation(
    redis_url: str, unique_key: str
) -> None:
    b = bucket(redis_url, unique_key, rate=1, capacity=1)
    assert b.try_acquire()
    waiter = asyncio.create_task(b.acquire_async())
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.sleep(0.1)  # the refund runs in the background
    assert b.wait_time() < 0.95


# Rates whose unit cost is a whole number of microseconds, so that the
# script (µs) and the in-process bucket (ns) must agree exactly.
RATES = st.sampled_from([1.0, 2.0, 4.0, 5.0, 10.0, 50.0, 1000.0])


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    rate=RATES,
    capacity=st.integers(1, 20),
    steps=st.lists(
        st.tuples(st.integers(0, 2_000_000), st.integers(1, 20), st.booleans()), max_size=30
    ),
)
def test_the_script_follows_the_same_gcra_as_the_in_process_bucket(
    redis_url: str, rate: float, capacity: int, steps: list[tuple[int, int, bool]]
) -> None:
    key = f"prop-{time.monotonic_ns()}"
    shared = bucket(redis_url, key, rate=rate, capacity=capacity)
    clock = rk.ManualClock(start=1000.0)
    local = rk.TokenBucket(rate, capacity, clock=clock)
    now_us = 1_000_000_000
    for advance_us, n, waits in steps:
        now_us += advance_us
        clock.advance(advance_us / 1e6)
        n = min(n, capacity)
        timeout = 1.0 if waits else 0.0
        wait = shared._acquire_at(n, now_us, timeout)
        expected = local.wait_time(n)
        granted = local.acquire(n, timeout=timeout) if waits else local.try_acquire(n)
        if waits:
            clock_after = clock.now()
            clock.advance(0)  # the local acquire may have moved virtual time
            assert clock_after == clock.now()
        assert (wait >= 0) == granted
        if granted and waits:
            assert wait == pytest.approx(expected, abs=2e-6)
            # Keep both clocks together: the local wait advanced the manual clock.
            now_us += round(expected * 1e6)


def spend(url: str, key: str, seconds: float, rate: float, cap: float, ready, results) -> None:  # type: ignore[no-untyped-def]
    b = bucket(url, key, rate=rate, capacity=cap)
    ready.wait()  # every process is up and connected before the clock starts
    start = time.time()
    granted = 0
    while True:
        left = start + seconds - time.time()
        if left <= 0 or not b.acquire(timeout=left):
            break
        granted += 1
    results.put((granted, start))


def test_four_processes_share_one_budget_exactly(redis_url: str, unique_key: str) -> None:
    rate, capacity, seconds = 100.0, 50.0, 3.0
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Barrier(4), ctx.Queue()
    args = (redis_url, unique_key, seconds, rate, capacity, ready, results)
    workers = [ctx.Process(target=spend, args=args) for _ in range(4)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join()
    counts = [granted for granted, _ in outcomes]
    starts = [start for _, start in outcomes]
    spread = max(starts) - min(starts)
    bound = capacity + rate * seconds
    assert sum(counts) <= bound + rate * spread + 1
    assert sum(counts) >= 0.95 * bound
    assert all(c > 0 for c in counts)


def test_budgets_are_charged_all_or_nothing(redis_url: str, unique_key: str) -> None:
    backend = rk.RedisBackend(redis_url)
    budgets = RedisBudgets(backend, unique_key, [("rpm", 0.01, 10.0), ("tpm", 0.01, 100.0)])
    assert budgets.names == ["rpm", "tpm"]
    assert budgets.try_acquire([1, 90])
    assert not budgets.try_acquire([1, 20])  # tpm short: rpm must not be charged
    assert budgets.try_acquire([9, 10])
    assert not budgets.try_acquire([1, 0])
    with pytest.raises(ValueError, match="one number per budget"):
        budgets.try_acquire([1])


def test_keys_carry_one_hash_tag_per_limiter(redis_url: str, unique_key: str) -> None:
    backend = rk.RedisBackend(redis_url, prefix="rkt")
    budgets = RedisBudgets(backend, unique_key, [("rpm", 1.0, 10.0), ("tpm", 1.0, 100.0)])
    assert budgets.try_acquire([1, 5])
    client = redis_py.Redis.from_url(redis_url)
    keys = sorted(k.decode() for k in client.keys(f"rkt:{{limiter:{unique_key}}}:*"))
    assert keys == [f"rkt:{{limiter:{unique_key}}}:rpm", f"rkt:{{limiter:{unique_key}}}:tpm"]
    assert 0 < client.pttl(keys[0]) <= 1001
    client.close()


def test_keys_start_with_the_prefix_never_collide_and_hide_identities(redis_url: str) -> None:
    # A bucket, a limiter and a keyed limiter all named "sk-live-123" (an API
    # key as a client identity): three budgets, no key in clear.
    prefix = f"rk-{time.monotonic_ns()}"
    backend = rk.RedisBackend(redis_url, prefix=prefix)
    name = "sk-live-123"
    bucket = rk.RedisTokenBucket(backend, name, rate=0.001, capacity=1)
    limiter = rk.Limiter(rpm=1, backend=backend, key=name)
    keyed = rk.KeyedLimiter(0.001, 1, backend=backend)
    assert bucket.try_acquire()
    limiter.acquire().release()
    assert keyed.try_acquire(name)
    assert not bucket.try_acquire() and not keyed.try_acquire(name)
    client = redis_py.Redis.from_url(redis_url)
    keys = [k.decode() for k in client.keys(f"{prefix}*")]
    client.close()
    assert keys and all(k.startswith(f"{prefix}:{{") for k in keys)
    assert {k.split(":{")[1].split(":")[0] for k in keys} == {"bucket", "limiter", "keyed"}
    # Names of buckets and limiters are configuration; the keyed one is hashed.
    assert {k for k in keys if name in k} == {
        f"{prefix}:{{bucket:{name}}}:bucket",
        f"{prefix}:{{limiter:{name}}}:rpm",
    }


def test_the_password_in_the_url_never_shows(redis_url: str, unique_key: str) -> None:
    secret = "s3cret-Pa55"
    url = redis_url.replace("redis://", f"redis://user:{secret}@")
    backend = rk.RedisBackend(url, on_error="allow")
    limiter = rk.Limiter(rpm=60, backend=backend, key=unique_key)
    for shown in (repr(backend), repr(limiter), repr(rk.RedisBackend([url], on_error="allow"))):
        assert secret not in shown and "user:***@" in shown
    with pytest.raises(ValueError) as bad:
        rk.RedisBackend(f"redis://:{secret}@host:notaport/0")
    assert secret not in str(bad.value)
