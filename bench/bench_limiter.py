"""rk.Limiter (rpm + tpm [+ concurrency]) beside what a user combines today, in one run.

    python bench/bench_limiter.py            # full run (~30 s)
    python bench/bench_limiter.py --quick    # fewer calls

One permit per request, granted at once (limits no run reaches), the way a
user writes it: ``with limiter.acquire(tokens=100): pass`` and ``async with
await limiter.acquire_async(tokens=100): pass``. The peers: aiolimiter (one
AsyncLimiter for requests, one for tokens, plus an asyncio.Semaphore for the
concurrency cap) and pyrate-limiter (one Limiter per budget, plus a
threading.BoundedSemaphore). Neither peer grants all budgets at once or in
arrival order; they do less. Ratios are peer ns / ratekeeper ns.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from typing import Any, Callable

from _timing import machine, ns_per_call, table

import ratekeeper as rk

HUGE = 10**12  # a limit no benchmark run reaches: the granting path


def async_ns_per_statement(
    body: str, make_env: Callable[[], dict[str, Any]], number: int = 100_000, repeat: int = 5
) -> float:
    """Best-of-``repeat`` nanoseconds per run of the async statement ``body``.

    ``make_env`` builds the names ``body`` uses inside the running loop (an
    aiolimiter instance belongs to one loop).
    """
    source = (
        "async def _bench(number):\n"
        "    start = _perf_counter()\n"
        "    for _ in range(number):\n"
        + "".join(f"        {line}\n" for line in body.splitlines())
        + "    return _perf_counter() - start\n"
    )

    async def run() -> float:
        namespace = {**make_env(), "_perf_counter": time.perf_counter}
        exec(source, namespace)  # the statement is inlined, as timeit inlines stmt
        bench = namespace["_bench"]
        return min([await bench(number) for _ in range(repeat)])

    return asyncio.run(run()) / number * 1e9


def sync_cases() -> dict[str, tuple[str, dict[str, Any]]]:
    from pyrate_limiter import Duration, Limiter, Rate

    limiter = rk.Limiter(rpm=HUGE, tpm=HUGE)
    capped = rk.Limiter(rpm=HUGE, tpm=HUGE, concurrency=16)
    pyrate_requests = Limiter(Rate(HUGE, Duration.MINUTE))
    pyrate_tokens = Limiter(Rate(HUGE, Duration.MINUTE))
    slots = threading.BoundedSemaphore(16)
    env = locals()
    pyrate = (
        'pyrate_requests.try_acquire("r", blocking=False)\n'
        'pyrate_tokens.try_acquire("t", weight=100, blocking=False)'
    )
    return {
        "ratekeeper rpm+tpm": ("with limiter.acquire(tokens=100): pass", env),
        "ratekeeper rpm+tpm+concurrency": ("with capped.acquire(tokens=100): pass", env),
        "pyrate-limiter rpm+tpm": (pyrate, env),
        "pyrate-limiter rpm+tpm + BoundedSemaphore": (
            "with slots:\n    " + pyrate.replace("\n", "\n    "),
            env,
        ),
    }


def async_cases() -> dict[str, tuple[str, Callable[[], dict[str, Any]]]]:
    from aiolimiter import AsyncLimiter

    def env() -> dict[str, Any]:
        return {
            "limiter": rk.Limiter(rpm=HUGE, tpm=HUGE),
            "capped": rk.Limiter(rpm=HUGE, tpm=HUGE, concurrency=16),
            "requests": AsyncLimiter(HUGE, 60),
            "tokens": AsyncLimiter(HUGE, 60),
            "slots": asyncio.Semaphore(16),
        }

    return {
        "ratekeeper rpm+tpm": (
            "async with await limiter.acquire_async(tokens=100): pass",
            env,
        ),
        "ratekeeper rpm+tpm+concurrency": (
            "async with await capped.acquire_async(tokens=100): pass",
            env,
        ),
        "aiolimiter rpm+tpm": ("await requests.acquire()\nawait tokens.acquire(100)", env),
        "aiolimiter rpm+tpm + asyncio.Semaphore": (
            "async with slots:\n    await requests.acquire()\n    await tokens.acquire(100)",
            env,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, rougher figures")
    args = parser.parse_args()
    calls = 30_000 if args.quick else 200_000
    print(f"# rk.Limiter benchmark — {machine()}\n")

    sync = {name: ns_per_call(stmt, env, calls) for name, (stmt, env) in sync_cases().items()}
    # Each peer is compared with the ratekeeper case that does the same job.
    rows = []
    for name, ns in sync.items():
        ours = sync[
            "ratekeeper rpm+tpm+concurrency" if "Semaphore" in name else "ratekeeper rpm+tpm"
        ]
        ratio = "" if name.startswith("ratekeeper") else f"{ns / ours:.1f}x"
        rows.append((name, f"{ns:,.0f}", ratio))
    print("sync: one permit, granted at once")
    print(table(rows, ("case", "ns/op", "peer / ratekeeper")))

    number = max(calls // 2, 10_000)
    asynchronous = {
        name: async_ns_per_statement(body, env, number)
        for name, (body, env) in async_cases().items()
    }
    rows = []
    for name, ns in asynchronous.items():
        ours = asynchronous[
            "ratekeeper rpm+tpm+concurrency" if "Semaphore" in name else "ratekeeper rpm+tpm"
        ]
        ratio = "" if name.startswith("ratekeeper") else f"{ns / ours:.1f}x"
        rows.append((name, f"{ns:,.0f}", ratio))
    print("\nasync: one permit, granted at once")
    print(table(rows, ("case", "ns/op", "peer / ratekeeper")))


if __name__ == "__main__":
    main()
