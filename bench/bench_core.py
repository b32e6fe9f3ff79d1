"""Issue 2's speed targets: ratekeeper's core limiters beside the peers, in one run.

    python bench/bench_core.py            # full run (~1 min)
    python bench/bench_core.py --quick    # fewer calls

Prints ns per call and ratios: TokenBucket.try_acquire (admitting and
rejecting) against a no-op pyo3 method and against pyrate-limiter, limits
(fixed and moving window, memory storage) and throttled-py; await
acquire_async against aiolimiter; 4 threads on one bucket against one thread.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from _timing import async_ns_per_call, machine, ns_per_call, table

import ratekeeper as rk
from ratekeeper import _core

HUGE = 10**12  # a limit no benchmark run reaches: the admitting path


def peers_admitting() -> dict[str, tuple[str, dict[str, Any]]]:
    from limits import RateLimitItemPerSecond, storage, strategies
    from pyrate_limiter import Duration, Limiter, Rate
    from throttled import MemoryStore, Throttled, per_sec

    item = RateLimitItemPerSecond(HUGE)
    fixed = strategies.FixedWindowRateLimiter(storage.MemoryStorage())
    moving = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
    pyrate = Limiter(Rate(HUGE, Duration.SECOND))
    throttled_gcra = Throttled(key="k", using="gcra", quota=per_sec(HUGE), store=MemoryStore())
    throttled_tb = Throttled(
        key="k", using="token_bucket", quota=per_sec(HUGE), store=MemoryStore()
    )
    env = locals()
    return {
        "limits fixed window": ('fixed.hit(item, "k")', env),
        "limits moving window": ('moving.hit(item, "k")', env),
        "pyrate-limiter": ('pyrate.try_acquire("k", blocking=False)', env),
        "throttled-py gcra": ("throttled_gcra.limit()", env),
        "throttled-py token bucket": ("throttled_tb.limit()", env),
    }


def peers_rejecting() -> dict[str, tuple[str, dict[str, Any]]]:
    from limits import RateLimitItemPerHour, storage, strategies
    from pyrate_limiter import Duration, Limiter, Rate
    from throttled import MemoryStore, Throttled, per_hour

    item = RateLimitItemPerHour(1)
    fixed = strategies.FixedWindowRateLimiter(storage.MemoryStorage())
    moving = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
    pyrate = Limiter(Rate(1, Duration.HOUR))
    throttled_gcra = Throttled(key="k", using="gcra", quota=per_hour(1), store=MemoryStore())
    for limiter in (fixed, moving):
        limiter.hit(item, "k")
    pyrate.try_acquire("k", blocking=False)
    throttled_gcra.limit()
    env = locals()
    return {
        "limits fixed window": ('fixed.hit(item, "k")', env),
        "limits moving window": ('moving.hit(item, "k")', env),
        "pyrate-limiter": ('pyrate.try_acquire("k", blocking=False)', env),
        "throttled-py gcra": ("throttled_gcra.limit()", env),
    }


def sync_section(calls: int) -> list[tuple[str, ...]]:
    floor_obj = _core._Baseline()
    admitting = rk.TokenBucket(HUGE, HUGE)
    rejecting = rk.TokenBucket(1 / 3600, 1)
    rejecting.try_acquire()
    env = {"floor_obj": floor_obj, "admitting": admitting, "rejecting": rejecting}
    baseline = ns_per_call("floor_obj.noop()", env, calls)
    same_shape = ns_per_call("floor_obj.noop_like_try_acquire()", env, calls)
    ours = {
        "admitting": ns_per_call("admitting.try_acquire()", env, calls),
        "rejecting": ns_per_call("rejecting.try_acquire()", env, calls),
    }
    peer_calls = max(calls // 20, 2_000)
    peers = {
        "admitting": {
            n: ns_per_call(st, e, peer_calls) for n, (st, e) in peers_admitting().items()
        },
        "rejecting": {
            n: ns_per_call(st, e, peer_calls) for n, (st, e) in peers_rejecting().items()
        },
    }
    rows = [
        ("no-op pyo3 method call (floor)", f"{baseline:,.0f}", "1.00x floor", ""),
        (
            "no-op pyo3 method, try_acquire's signature",
            f"{same_shape:,.0f}",
            f"{same_shape / baseline:.2f}x floor",
            "",
        ),
    ]
    for case, ns in ours.items():
        fastest = min(peers[case].values())
        rows.append(
            (
                f"rk.TokenBucket.try_acquire() {case}",
                f"{ns:,.0f}",
                f"{ns / baseline:.2f}x floor",
                f"{fastest / ns:,.0f}x faster than the fastest peer",
            )
        )
        for name, peer_ns in sorted(peers[case].items(), key=lambda kv: kv[1]):
            rows.append(
                (f"  {name} {case}", f"{peer_ns:,.0f}", "", f"rk is {peer_ns / ns:,.0f}x faster")
            )
    return rows


async def _empty_coroutine() -> bool:
    return True


def async_section(calls: int) -> list[tuple[str, ...]]:
    from aiolimiter import AsyncLimiter

    env = {
        "bucket": rk.TokenBucket(HUGE, HUGE),
        "peer": AsyncLimiter(HUGE, 1),
        "empty": _empty_coroutine,
    }
    floor = async_ns_per_call("empty()", env, calls)
    ours = async_ns_per_call("bucket.acquire_async()", env, calls)
    theirs = async_ns_per_call("peer.acquire()", env, calls)
    return [
        ("await an empty coroutine (async floor)", f"{floor:,.0f}", "", ""),
        (
            "await rk.TokenBucket.acquire_async() granted",
            f"{ours:,.0f}",
            f"{ours / floor:.2f}x async floor",
            f"{theirs / ours:.1f}x faster",
        ),
        ("  aiolimiter AsyncLimiter.acquire()", f"{theirs:,.0f}", "", ""),
    ]


def threads_section(calls: int) -> list[tuple[str, ...]]:
    def throughput(threads: int) -> float:
        bucket = rk.TokenBucket(HUGE, HUGE)
        per_thread = calls // threads
        barrier = threading.Barrier(threads + 1)

        def work() -> None:
            take = bucket.try_acquire
            barrier.wait()
            for _ in range(per_thread):
                take()

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for w in workers:
            w.start()
        barrier.wait()
        start = time.perf_counter()
        for w in workers:
            w.join()
        return per_thread * threads / (time.perf_counter() - start)

    one = max(throughput(1) for _ in range(3))
    four = max(throughput(4) for _ in range(3))
    return [
        ("1 thread on one bucket (calls/s)", f"{one:,.0f}", "", ""),
        (
            "4 threads on one bucket (calls/s, total)",
            f"{four:,.0f}",
            "",
            f"{four / one:.2f}x one thread",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, rougher figures")
    args = parser.parse_args()
    calls = 50_000 if args.quick else 300_000
    print(f"# ratekeeper core benchmark — {machine()}")
    rows = sync_section(calls) + async_section(calls // 3) + threads_section(calls * 4)
    print(table(rows, ("case", "ns/call", "vs floor", "vs peers")))


if __name__ == "__main__":
    main()
