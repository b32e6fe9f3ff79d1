"""Limiter and KeyedLimiter with backend=RedisBackend(...): real redis-server, real processes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import multiprocessing
import os
import signal
import threading
import time

import pytest
import redis as redis_py
from redis_server import RedisServer

import ratekeeper as rk
from ratekeeper.redis_limiter import RedisKeyedLimiter, RedisLimiter


def shared(url: str, key: str, **kw: object) -> RedisLimiter:
    backend = rk.RedisBackend(url)
    limiter = rk.Limiter(backend=backend, key=key, **kw)  # type: ignore[arg-type]
    assert isinstance(limiter, RedisLimiter)
    return limiter


def test_a_request_that_fits_rpm_but_not_tpm_charges_neither(
    redis_url: str, unique_key: str
) -> None:
    limiter = shared(redis_url, unique_key, rpm=10, tpm=100)
    with limiter.acquire(tokens=90):
        pass
    with pytest.raises(rk.RateLimitTimeout) as info:
        limiter.acquire(tokens=20, timeout=0)
    assert info.value.wait is not None and info.value.wait > 1.0
    assert limiter.available("rpm") == pytest.approx(9, abs=0.01)
    assert limiter.available("tpm") == pytest.approx(10, abs=0.1)
    assert limiter.stats()["rejected"] == 1
    assert limiter.stats()["granted"] == 1


def test_limiters_on_one_key_share_every_budget_and_the_pause(
    redis_url: str, unique_key: str
) -> None:
    a = shared(redis_url, unique_key, rpm=10, tpm=1000)
    b = shared(redis_url, unique_key, rpm=10, tpm=1000)
    other = shared(redis_url, unique_key + "-other", rpm=10, tpm=1000)
    a.acquire(tokens=600)
    assert b.available("tpm") == pytest.approx(400, abs=1)
    assert other.available("tpm") == pytest.approx(1000, abs=1e-6)
    a.pause(0.4)
    assert b.stats()["paused_for"] > 0.2
    with pytest.raises(rk.RateLimitTimeout):
        b.acquire(timeout=0.1)
    other.acquire(timeout=0)  # another key is not paused
    start = time.monotonic()
    b.acquire(tokens=1)
    assert time.monotonic() - start >= 0.2
    a.reset()
    assert b.available("tpm") == pytest.approx(1000, abs=1e-6)


def test_reconcile_refunds_or_charges_extra_on_redis(redis_url: str, unique_key: str) -> None:
    a = shared(redis_url, unique_key, rpm=100, tpm=1000)
    observer = shared(redis_url, unique_key, rpm=100, tpm=1000)
    with a.acquire(tokens=500) as permit:
        permit.reconcile(100)
        assert observer.available("tpm") == pytest.approx(900, abs=1)
        permit.reconcile(700)
        assert observer.available("tpm") == pytest.approx(300, abs=1)
        assert permit.tokens == 700
    assert permit.released
    assert a.stats()["in_flight"] == 0


def test_update_from_headers_tightens_the_shared_budget(redis_url: str, unique_key: str) -> None:
    a = shared(redis_url, unique_key, rpm=60, tpm=10_000)
    b = shared(redis_url, unique_key, rpm=60, tpm=10_000)
    a.update_from_headers(
        {"x-ratelimit-remaining-requests": "3", "x-ratelimit-remaining-tokens": "50"}
    )
    assert b.available("rpm") == pytest.approx(3, abs=0.05)
    assert b.available("tpm") == pytest.approx(50, abs=1)
    a.update_from_headers({"x-ratelimit-remaining-tokens": "5000"})  # never loosens
    assert b.available("tpm") < 100
    a.update_from_headers({"retry-after": "0.3"})
    with pytest.raises(rk.RateLimitTimeout):
        b.acquire(timeout=0.05)


def test_an_empty_minute_bucket_waits_one_interval_not_the_whole_reset(
    redis_url: str, unique_key: str
) -> None:
    # OpenAI's reset is the time until the bucket is full again: with none
    # left, the next request is one interval (60 s / 1200 = 50 ms) away.
    limiter = shared(redis_url, unique_key, rpm=1200)
    limiter.update_from_headers(
        {
            "x-ratelimit-limit-requests": "1200",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "59.9s",
        }
    )
    with pytest.raises(rk.RateLimitTimeout):
        limiter.acquire(timeout=0.0)
    limiter.acquire(timeout=1.0).release()


async def test_acquire_async_waits_and_a_cancelled_waiter_gives_back(
    redis_url: str, unique_key: str
) -> None:
    limiter = shared(redis_url, unique_key, rps=5, burst=1, tpm=1000)
    async with await limiter.acquire_async(tokens=10) as permit:
        assert permit.waited == 0.0
    start = time.monotonic()
    second = await limiter.acquire_async(tokens=10)
    assert time.monotonic() - start >= 0.1 and second.waited > 0.1
    second.release()
    with pytest.raises(rk.RateLimitTimeout):
        await limiter.acquire_async(tokens=10, timeout=0)
    before = limiter.available("tpm")
    assert before is not None
    waiter = asyncio.ensure_future(limiter.acquire_async(tokens=10))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.sleep(0.05)  # the refund goes out in the background
    after = limiter.available("tpm")
    assert after is not None and after >= before - 0.5  # not the 10 it reserved
    assert limiter.stats()["cancelled"] == 1


async def test_concurrency_stays_per_process(redis_url: str, unique_key: str) -> None:
    limiter = shared(redis_url, unique_key, rpm=1000, concurrency=1)
    other = shared(redis_url, unique_key, rpm=1000, concurrency=1)
    held = limiter.acquire()
    with pytest.raises(rk.RateLimitTimeout):
        limiter.acquire(timeout=0.05)
    with pytest.raises(rk.RateLimitTimeout):
        await limiter.acquire_async(timeout=0.05)
    other.acquire().release()  # its own slot
    held.release()
    limiter.acquire(timeout=0.05).release()
    assert limiter.concurrency == 1


def test_bad_input_raises_at_once(redis_url: str, unique_key: str) -> None:
    backend = rk.RedisBackend(redis_url)
    with pytest.raises(ValueError, match="key is required"):
        rk.Limiter(rpm=10, backend=backend)
    with pytest.raises(ValueError, match="give backend"):
        rk.Limiter(rpm=10, key="team-a")
    with pytest.raises(ValueError, match="needs at least one"):
        rk.Limiter(backend=backend, key="team-a", concurrency=2)
    with pytest.raises(ValueError, match="needs at least one"):
        rk.Limiter(backend=backend, key="team-a")
    with pytest.raises(ValueError, match="rpm"):
        rk.Limiter(rpm=-1, backend=backend, key="team-a")
    with pytest.raises(ValueError, match="clock"):
        rk.Limiter(rpm=1, backend=backend, key="team-a", clock=rk.ManualClock())
    with pytest.raises(TypeError, match="backend"):
        rk.Limiter(rpm=1, backend="redis://x", key="team-a")  # type: ignore[arg-type]
    limiter = shared(redis_url, unique_key, rpm=10, tpm=100)
    with pytest.raises(ValueError):
        limiter.acquire(tokens=101)
    with pytest.raises(ValueError, match="tokens"):
        limiter.acquire(tokens=-1)
    with pytest.raises(ValueError, match="timeout"):
        limiter.acquire(timeout=-1)
    with pytest.raises(ValueError, match="seconds"):
        limiter.pause(-1)
    with pytest.raises(ValueError, match="budget"):
        limiter.available("rpx")
    assert limiter.stats()["granted"] == 0
    with pytest.raises(ValueError, match="capacity"):
        rk.KeyedLimiter(1, 0, backend=backend)
    with pytest.raises(ValueError, match="clock"):
        rk.KeyedLimiter(1, 1, backend=backend, clock=rk.ManualClock())


def spend(url: str, key: str, seconds: float, tokens: float, ready, results) -> None:  # type: ignore[no-untyped-def]
    limiter = shared(url, key, rpm=1200, burst=5, tpm=1200)
    limiter.acquire(tokens=0.001, timeout=0)  # connected before the clock starts
    ready.wait()
    start = time.time()
    granted = 0
    while True:
        left = start + seconds - time.time()
        try:
            limiter.acquire(tokens=tokens, timeout=max(left, 0.0)).release()
        except rk.RateLimitTimeout:
            break
        granted += 1
    results.put((granted, start))


def test_two_processes_share_rpm_and_tpm_exactly(redis_url: str, unique_key: str) -> None:
    # rpm: 20/s, 5 at once; tpm: 20 tokens/s, 1200 at once. At 30 tokens a
    # request, rpm binds first and tpm after: both are in play.
    seconds, tokens = 2.0, 30.0
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Barrier(2), ctx.Queue()
    args = (redis_url, unique_key, seconds, tokens, ready, results)
    workers = [ctx.Process(target=spend, args=args) for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join()
    counts = [granted for granted, _ in outcomes]
    spread = abs(outcomes[0][1] - outcomes[1][1])
    requests = sum(counts)
    # The probe above took 0.001 tokens and one request per process.
    request_bound = 5 + 20 * (seconds + spread) - 2
    token_bound = 1200 + 20 * (seconds + spread)
    assert requests <= request_bound + 1
    assert requests * tokens <= token_bound + tokens
    assert requests * tokens >= 0.95 * (1200 + 20 * seconds)
    assert all(c > 0 for c in counts)


@pytest.mark.parametrize("on_error", ["local", "allow", "deny"])
def test_a_shared_limiter_follows_on_error_when_redis_is_killed(
    own_redis: RedisServer, unique_key: str, on_error: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ratekeeper")
    backend = rk.RedisBackend(own_redis.url, on_error=on_error, timeout=0.25)
    limiter = rk.Limiter(rpm=2, tpm=1000, backend=backend, key=unique_key)
    limiter.acquire(tokens=10).release()
    own_redis.kill()
    start = time.monotonic()
    if on_error == "local":
        # The in-process stand-ins start full: rpm's 2, then it limits.
        limiter.acquire(tokens=10).reconcile(5)
        limiter.acquire(tokens=10)
        with pytest.raises(rk.RateLimitTimeout):
            limiter.acquire(tokens=10, timeout=0.01)
    elif on_error == "allow":
        for _ in range(5):
            limiter.acquire(tokens=10, timeout=0).reconcile(20)
    else:
        with pytest.raises(rk.RateLimitError, match="deny"):
            limiter.acquire(tokens=10)
    limiter.pause(0.01)  # never raises while Redis is down
    assert limiter.stats()["paused_for"] == 0.0
    assert time.monotonic() - start < 3.0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and on_error in warnings[0].getMessage()
    if on_error != "local":
        return
    own_redis.start()  # same port: back to the shared budget after a probe
    time.sleep(1.1)
    deadline = time.monotonic() + 5
    while backend.is_down and time.monotonic() < deadline:
        limiter.available("rpm")
        time.sleep(0.05)
    assert not backend.is_down
    limiter.acquire(tokens=10)
    client = redis_py.Redis(port=own_redis.port)
    assert client.get(f"ratekeeper:{{limiter:{unique_key}}}:tpm") is not None
    client.close()


def test_keyed_limiter_keeps_each_key_in_redis(redis_url: str, unique_key: str) -> None:
    backend = rk.RedisBackend(redis_url, prefix=unique_key)
    users = rk.KeyedLimiter(0.01, 2, overrides={"vip": (0.01, 4)}, backend=backend)
    again = rk.KeyedLimiter(0.01, 2, overrides={"vip": (0.01, 4)}, backend=backend)
    assert isinstance(users, RedisKeyedLimiter)
    assert [users.try_acquire("u1") for _ in range(3)] == [True, True, False]
    assert again.try_acquire("u1") is False  # one budget for both
    assert [again.try_acquire("vip") for _ in range(5)] == [True] * 4 + [False]
    assert users.acquire("u1", timeout=0.01) is False
    assert users.wait_time("u1") > 10
    assert "u1" in users and "u2" not in users and 3 not in users
    assert users.available("u2") == pytest.approx(2)
    with pytest.raises(TypeError, match="len"):
        len(users)
    assert users  # truthy even though len() is unknown
    client = redis_py.Redis.from_url(redis_url)
    hashed = hashlib.sha256(b"u1").hexdigest()[:32]
    assert 0 < client.pttl(f"{unique_key}:{{keyed:{hashed}}}:bucket") <= 200_001
    client.close()
    users.reset("u1")
    assert users.try_acquire("u1")
    with pytest.raises(TypeError, match="needs a key"):
        users.reset()
    with pytest.raises(TypeError, match="key"):
        users.try_acquire(5)  # type: ignore[arg-type]


def test_keyed_limiter_refunds_a_key_on_redis(redis_url: str, unique_key: str) -> None:
    users = rk.KeyedLimiter(0.01, 2, backend=rk.RedisBackend(redis_url, prefix=unique_key))
    assert users.try_acquire("u1", 2)
    users.refund("u1", 1)
    assert users.available("u1") == pytest.approx(1, abs=0.01)
    assert users.try_acquire("u1") and not users.try_acquire("u1")
    assert users.available("u2") == pytest.approx(2)


async def test_keyed_limiter_acquire_async_on_redis(redis_url: str, unique_key: str) -> None:
    users = rk.KeyedLimiter(10, 1, backend=rk.RedisBackend(redis_url, prefix=unique_key))
    assert await users.acquire_async("u")
    start = time.monotonic()
    assert await users.acquire_async("u")
    assert time.monotonic() - start >= 0.05
    assert await users.acquire_async("u", timeout=0) is False


def keyed_spend(url: str, prefix: str, seconds: float, ready, results) -> None:  # type: ignore[no-untyped-def]
    users = rk.KeyedLimiter(20, 5, backend=rk.RedisBackend(url, prefix=prefix))
    users.wait_time("user")  # connected before the clock starts
    ready.wait()
    start = time.time()
    granted = 0
    while (left := start + seconds - time.time()) > 0 and users.acquire("user", timeout=left):
        granted += 1
    results.put((granted, start))


def test_two_processes_share_a_keyed_limiters_bucket(redis_url: str, unique_key: str) -> None:
    seconds = 1.0
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Barrier(2), ctx.Queue()
    workers = [
        ctx.Process(target=keyed_spend, args=(redis_url, unique_key, seconds, ready, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join()
    spread = abs(outcomes[0][1] - outcomes[1][1])
    total = sum(granted for granted, _ in outcomes)
    assert total <= 5 + 20 * (seconds + spread) + 1
    assert total >= 0.95 * (5 + 20 * seconds)


# ------------------------------------------- one rule with the core (SPEC 15)


async def test_after_a_pause_the_held_requests_do_not_bunch_up(
    redis_url: str, unique_key: str
) -> None:
    # rps=10: as in process, no herd: the request budget resumes empty at the
    # pause's end, so the 20 leave one every 0.1 s from it (it once granted
    # all 20 at that instant).
    limiter = shared(redis_url, unique_key, rps=10)
    limiter.pause(1.0)
    permits = await asyncio.gather(*(limiter.acquire_async() for _ in range(20)))
    waits = sorted(p.waited for p in permits)
    assert sum(w < 1.05 for w in waits) <= 1
    assert waits[-1] == pytest.approx(2.9, abs=0.1)


async def test_a_reconcile_below_the_estimate_never_lets_a_newcomer_beside_a_waiter(
    redis_url: str, unique_key: str
) -> None:
    # A 6-token TPM budget: the refund must not give a newcomer the time of
    # the waiter already queued (it granted 12 at once).
    limiter = shared(redis_url, unique_key, tpm=6)
    first = limiter.acquire(tokens=6)
    waiter = asyncio.create_task(limiter.acquire_async(tokens=6))
    await asyncio.sleep(0.2)
    first.reconcile(0)
    try:
        # The waiter's 6 tokens still count: a newcomer comes a minute after it.
        assert limiter.available("tpm") == pytest.approx(-6.0, abs=0.1)
        with pytest.raises(rk.RateLimitTimeout):
            limiter.acquire(tokens=6, timeout=90)
    finally:
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)


async def test_an_acquire_cancelled_before_redis_replies_gives_its_reservation_back(
    own_redis: RedisServer, unique_key: str
) -> None:
    limiter = shared(own_redis.url, unique_key, rps=1)
    limiter.acquire().release()
    assert own_redis.process is not None
    own_redis.process.send_signal(signal.SIGSTOP)  # the script waits in the socket
    try:
        waiter = asyncio.create_task(limiter.acquire_async())
        await asyncio.sleep(0.05)
        waiter.cancel()
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    await asyncio.gather(waiter, return_exceptions=True)
    await asyncio.sleep(0.3)  # the reply, then its give-back, arrive
    # Its reservation (due in ~1 s) was given back: a newcomer comes ~1 s
    # after the first grant, not ~2 s.
    started = time.monotonic()
    with limiter.acquire(timeout=5.0):
        pass
    assert time.monotonic() - started < 1.0


class _Interrupted(BaseException):
    """Stands in for KeyboardInterrupt, raised from a signal handler in the main thread."""


def test_interrupted_sync_redis_acquire_counts_cancelled_and_gives_back(
    redis_url: str, unique_key: str
) -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise _Interrupted

    limiter = rk.Limiter(rpm=1, tpm=1000, backend=rk.RedisBackend(redis_url), key=unique_key)
    limiter.acquire(tokens=10).release()  # the one request of this minute
    before = limiter.available("tpm")
    assert before is not None
    previous = signal.signal(signal.SIGUSR1, interrupt)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.start()
    try:
        with pytest.raises(_Interrupted):
            limiter.acquire(tokens=10)  # would wait about a minute
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    stats = limiter.stats()
    assert (stats["granted"], stats["cancelled"], stats["in_flight"]) == (1, 1, 0)
    after = limiter.available("tpm")
    assert after is not None and after >= before - 0.5  # not the 10 it reserved
