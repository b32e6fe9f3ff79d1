"""Redis-backed limiters, sequential acquires/s and 32-task throughput, beside the peers.

Run: python bench/bench_redis.py [--url redis://127.0.0.1:6379/0] [-n 5000]
(without --url it starts its own redis-server on a free loopback port).
Every limiter is set far above the request rate, so each call is one full
atomic acquire on the server, never a wait. Ratios are against redis-py's
bare PING on the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from typing import Any, Callable, Optional

import redis
import redis.asyncio as aredis

import ratekeeper as rk
from ratekeeper import _core

HUGE = 10**9


def rate_of(fn: Callable[[], Any], n: int) -> float:
    for _ in range(min(200, n)):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


async def arate_of(fn: Callable[[], Any], n: int) -> float:
    for _ in range(min(200, n)):
        await fn()
    start = time.perf_counter()
    for _ in range(n):
        await fn()
    return n / (time.perf_counter() - start)


async def concurrent_rate(fn: Callable[[], Any], n: int, tasks: int = 32) -> float:
    per_task = max(1, n // tasks)

    async def worker() -> None:
        for _ in range(per_task):
            await fn()

    await worker()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return per_task * tasks / (time.perf_counter() - start)


def peers(url: str, n: int) -> dict[str, Optional[float]]:
    out: dict[str, Optional[float]] = {}
    try:
        from limits import RateLimitItemPerSecond
        from limits.storage import RedisStorage
        from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

        storage = RedisStorage(url)
        item = RateLimitItemPerSecond(HUGE)
        fixed, moving = FixedWindowRateLimiter(storage), MovingWindowRateLimiter(storage)
        out["limits fixed window (RedisStorage)"] = rate_of(lambda: fixed.hit(item, "b-fw"), n)
        out["limits moving window (RedisStorage)"] = rate_of(lambda: moving.hit(item, "b-mw"), n)
    except Exception as exc:  # a peer's failure must not hide the others
        print(f"limits: {exc!r}", file=sys.stderr)
    try:
        from pyrate_limiter import Duration, Limiter, Rate, RedisStateStore, StateBucket

        store = RedisStateStore(redis.Redis.from_url(url), "bench-pyrate")
        limiter = Limiter(StateBucket([Rate(HUGE, Duration.SECOND)], store=store))
        out["pyrate-limiter GCRA (RedisStateStore)"] = rate_of(
            lambda: limiter.try_acquire("b", blocking=False), n
        )
    except Exception as exc:
        print(f"pyrate-limiter: {exc!r}", file=sys.stderr)
    try:
        from throttled import RedisStore, Throttled, per_sec

        throttle = Throttled(
            key="b-thr", using="gcra", quota=per_sec(HUGE), store=RedisStore(server=url)
        )
        out["throttled-py GCRA (RedisStore)"] = rate_of(lambda: throttle.limit("b-thr"), n)
    except Exception as exc:
        print(f"throttled-py: {exc!r}", file=sys.stderr)
    return out


async def async_figures(url: str, bucket: rk.RedisTokenBucket, n: int) -> dict[str, float]:
    client = aredis.Redis.from_url(url)
    sha = await client.script_load(_core.REDIS_GCRA_SCRIPT)
    key = "{ratekeeper:bench-py}:bucket"

    async def evalsha() -> Any:
        # The same script, the same arguments as RedisTokenBucket sends.
        return await client.evalsha(sha, 1, key, "acquire", "0", "", "1", str(HUGE))

    async def bridged() -> Any:
        return await bucket._reserve_async(1, None)

    out = {
        "redis-py asyncio PING": await arate_of(client.ping, n),
        "rk RedisTokenBucket.acquire_async (kept)": await arate_of(bucket.acquire_async, n),
        "rk via pyo3-async-runtimes future_into_py": await arate_of(bridged, n),
        "redis-py asyncio EVALSHA, same script": await arate_of(evalsha, n),
        "32 tasks: rk acquire_async": await concurrent_rate(bucket.acquire_async, n),
        "32 tasks: rk via future_into_py": await concurrent_rate(bridged, n),
        "32 tasks: redis-py asyncio EVALSHA": await concurrent_rate(evalsha, n),
    }
    await client.aclose()
    return out


async def limiter_figures(limiter: Any, n: int) -> dict[str, float]:
    async def acquire() -> None:
        (await limiter.acquire_async(tokens=100)).release()

    return {
        "rk Limiter(rpm, tpm, backend).acquire_async": await arate_of(acquire, n),
        "32 tasks: rk Limiter(backend).acquire_async": await concurrent_rate(acquire, n),
    }


def start_server() -> tuple[str, subprocess.Popen[bytes], str]:
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server not found; pass --url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="rk-bench-")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.02)
    return f"redis://127.0.0.1:{port}/0", proc, workdir


def network_floor(url: str, n: int) -> Optional[float]:
    """What one round trip of ratekeeper's own GCRA script allows, from a C client.

    redis-benchmark (one connection) runs the very script a RedisTokenBucket
    runs, admitting every time: no client can do a full acquire much faster,
    so this shows how much of each figure above is client overhead.
    """
    tool = shutil.which("redis-benchmark")
    if tool is None:
        return None
    parsed = urllib.parse.urlparse(url)
    where = ["-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 6379)]
    sha = redis.Redis.from_url(url).script_load(_core.REDIS_GCRA_SCRIPT)
    # KEYS: one budget; ARGV: mode, max wait (-1: any), now ('' = server TIME), cost, tau (µs).
    script_args = ["1", "{bench:floor}:b", "acquire", "-1", "", "1", str(10**12)]
    done = subprocess.run(
        [tool, *where, "-n", str(max(n, 5000)), "-c", "1", "-q", "evalsha", sha, *script_args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.findall(r"([\d.]+) requests per second", done.stdout)
    return float(found[-1]) if found else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("RATEKEEPER_REDIS_URL"))
    parser.add_argument("-n", type=int, default=5000)
    args = parser.parse_args()
    proc = None
    url = args.url
    if url is None:
        url, proc, workdir = start_server()
    try:
        n = args.n
        bucket = rk.RedisTokenBucket(rk.RedisBackend(url), "bench", rate=HUGE, capacity=HUGE)
        client = redis.Redis.from_url(url)
        ping = rate_of(client.ping, n)
        rows: list[tuple[str, float]] = [
            ("redis-py PING (baseline)", ping),
            ("rk RedisTokenBucket.try_acquire", rate_of(bucket.try_acquire, n)),
            ("rk RedisTokenBucket.acquire", rate_of(bucket.acquire, n)),
        ]
        # A shared Limiter: rpm and tpm checked and charged by one script call.
        limiter = rk.Limiter(rpm=HUGE, tpm=HUGE, backend=rk.RedisBackend(url), key="bench-lim")

        def limiter_acquire() -> None:
            limiter.acquire(tokens=100).release()

        users = rk.KeyedLimiter(HUGE, HUGE, backend=rk.RedisBackend(url))
        rows += [
            ("rk Limiter(rpm, tpm, backend).acquire", rate_of(limiter_acquire, n)),
            ("rk KeyedLimiter(backend).try_acquire", rate_of(lambda: users.try_acquire("u"), n)),
        ]
        rows += [(name, r) for name, r in peers(url, n).items() if r is not None]
        print(f"Sequential acquires/s on {url} (n={n}); ratio = x redis-py PING")
        for name, ops in rows:
            print(f"  {name:45s} {ops:10,.0f}/s  {ops / ping:5.2f}x")
        gcra_peers = [r for name, r in rows if "GCRA" in name]
        if gcra_peers:
            best = max(gcra_peers)
            print(f"  rk try_acquire vs fastest GCRA peer: {rows[1][1] / best:.2f}x")
        floor = network_floor(url, n)
        if floor is not None:
            print(
                f"  round-trip floor: redis-benchmark (C client, 1 connection) running "
                f"the same GCRA script: {floor:,.0f}/s; "
                f"rk try_acquire is {rows[1][1] / floor:.2f}x of it"
            )
        print("Async (one task sequential, then 32 concurrent tasks: throughput)")
        for name, ops in asyncio.run(async_figures(url, bucket, n)).items():
            print(f"  {name:45s} {ops:10,.0f}/s")
        for name, ops in asyncio.run(limiter_figures(limiter, n)).items():
            print(f"  {name:45s} {ops:10,.0f}/s")
        client.close()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
