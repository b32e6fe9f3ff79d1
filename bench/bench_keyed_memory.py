"""Memory and speed of per-key buckets: ratekeeper.KeyedLimiter beside its peers.

Each measurement runs in a fresh Python process, which reads its resident set
size (``/proc/self/statm``) after its imports and again after creating one
bucket per key (``f"user-{i}"``, one ``try_acquire`` each); the difference
divided by the number of keys is the memory per key, key string included.
It then times ``try_acquire`` on a key that exists (hot) and on keys seen
for the first time (fresh), both over the same Python loop.

Peers: ``limits`` (MemoryStorage, moving and fixed window, one ``hit`` per
key) and ``pyrate-limiter`` (a ``BucketFactory`` giving each name its own
``InMemoryBucket``, the documented way to key it). They are measured with
fewer keys to keep the run under a minute; bytes per key hardly depend on it.

Run: ``python bench/bench_keyed_memory.py`` (Linux; about 30-40 s).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from typing import Any, Callable

RATEKEEPER_KEYS = 1_000_000
PEER_KEYS = 200_000
TIMED_CALLS = 200_000


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_ratekeeper() -> Callable[[str], Any]:
    import ratekeeper as rk

    limiter = rk.KeyedLimiter(1.0, 10.0)
    return limiter.try_acquire


def make_limits(strategy: str) -> Callable[[str], Any]:
    from limits import RateLimitItemPerMinute, storage, strategies

    cls = {
        "moving": strategies.MovingWindowRateLimiter,
        "fixed": strategies.FixedWindowRateLimiter,
    }[strategy]
    limiter = cls(storage.MemoryStorage())
    item = RateLimitItemPerMinute(10)
    return lambda key: limiter.hit(item, key)


def make_pyrate() -> Callable[[str], Any]:
    from pyrate_limiter import (
        BucketFactory,
        Duration,
        InMemoryBucket,
        Limiter,
        Rate,
        RateItem,
    )

    rates = [Rate(10, Duration.MINUTE)]

    class PerKey(BucketFactory):  # type: ignore[misc]
        def __init__(self) -> None:
            self.buckets: dict[str, InMemoryBucket] = {}

        def wrap_item(self, name: str, weight: int = 1) -> RateItem:
            return RateItem(name, time.time_ns() // 1_000_000, weight)

        def get(self, item: RateItem) -> InMemoryBucket:
            bucket = self.buckets.get(item.name)
            if bucket is None:
                bucket = self.buckets[item.name] = InMemoryBucket(rates)
            return bucket

    limiter = Limiter(PerKey())
    return lambda key: limiter.try_acquire(key, blocking=False)


MAKERS: dict[str, tuple[Callable[[], Callable[[str], Any]], int]] = {
    "ratekeeper KeyedLimiter": (make_ratekeeper, RATEKEEPER_KEYS),
    "limits moving window": (lambda: make_limits("moving"), PEER_KEYS),
    "limits fixed window": (lambda: make_limits("fixed"), PEER_KEYS),
    "pyrate-limiter per-key": (make_pyrate, PEER_KEYS),
}


def ns_per_call(call: Callable[[str], Any], keys: list[str]) -> float:
    start = time.perf_counter_ns()
    for key in keys:
        call(key)
    return (time.perf_counter_ns() - start) / len(keys)


def child(name: str) -> None:
    maker, count = MAKERS[name]
    call = maker()
    call("warm-up")
    gc.collect()
    before = resident_bytes()
    for i in range(count):
        call(f"user-{i}")
    gc.collect()
    per_key = (resident_bytes() - before) / count
    timed = min(TIMED_CALLS, count)
    hot = ns_per_call(call, ["user-1"] * timed)
    fresh = ns_per_call(call, [f"fresh-{i}" for i in range(timed)])
    print(f"{per_key:.1f} {hot:.0f} {fresh:.0f} {count}")


def async_ns_per_call() -> dict[str, float]:
    """``await acquire_async`` granted at once: one pyo3 call, no Python sleep."""
    import asyncio

    import aiolimiter
    import ratekeeper as rk

    keyed = rk.KeyedLimiter(1e12, 1e12)
    bucket = rk.TokenBucket(1e12, 1e12)
    peer = aiolimiter.AsyncLimiter(1e12, 1)
    calls = 100_000

    async def run() -> dict[str, float]:
        async def keyed_call() -> None:
            await keyed.acquire_async("user-1")

        async def bucket_call() -> None:
            await bucket.acquire_async()

        async def peer_call() -> None:
            await peer.acquire()

        async def baseline() -> None:
            return None

        results = {}
        for name, call in [
            ("empty coroutine", baseline),
            ("ratekeeper KeyedLimiter", keyed_call),
            ("ratekeeper TokenBucket", bucket_call),
            ("aiolimiter AsyncLimiter", peer_call),
        ]:
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter_ns()
                for _ in range(calls):
                    await call()
                best = min(best, (time.perf_counter_ns() - start) / calls)
            results[name] = best
        return results

    return asyncio.run(run())


def main() -> None:
    rows = []
    for name in MAKERS:
        out = subprocess.run(
            [sys.executable, __file__, "--child", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            print(f"{name}: skipped ({out.stderr.strip().splitlines()[-1:]})")
            continue
        per_key, hot, fresh, count = out.stdout.split()
        rows.append((name, float(per_key), float(hot), float(fresh), int(count)))

    ours = rows[0]
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print(
        f"{'':26}{'keys':>10}{'bytes/key':>11}{'x ours':>8}"
        f"{'hot ns':>9}{'x ours':>8}{'fresh ns':>10}{'x ours':>8}"
    )
    for name, per_key, hot, fresh, count in rows:
        print(
            f"{name:26}{count:>10,}{per_key:>11.1f}{per_key / ours[1]:>8.1f}"
            f"{hot:>9.0f}{hot / ours[2]:>8.1f}{fresh:>10.0f}{fresh / ours[3]:>8.1f}"
        )
    print()
    print("await acquire_async(), granted at once (hot key)")
    timings = async_ns_per_call()
    keyed_ns = timings["ratekeeper KeyedLimiter"]
    for name, ns in timings.items():
        print(f"{name:26}{ns:>9.0f} ns{ns / keyed_ns:>8.1f} x ours")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
