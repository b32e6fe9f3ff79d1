"""Circuit breaker, closed path: ratekeeper beside pybreaker, in one run.

Measures what a healthy service pays per call: a no-op function called
through a closed breaker, as a decorator and via ``call``; then a refused call
on an open breaker, and the async decorator (ratekeeper only: pybreaker's
async support needs Tornado). Statements are timed as ``timeit`` strings, so
no extra Python frame is counted, and each repeat times ratekeeper and
pybreaker back to back, so that load on a shared machine hits both alike.
Prints the best ns per call of each and the speed-up over pybreaker.

    python bench/bench_breaker.py [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import platform
import sys
import timeit
from typing import Any, Callable, Optional

import pybreaker
import ratekeeper as rk


def noop() -> None:
    return None


async def anoop() -> None:
    return None


def best_pair(
    ours: str, theirs: Optional[str], env: dict[str, Any], number: int, repeat: int
) -> tuple[float, Optional[float]]:
    """Best ns per run of each statement, timed alternately."""
    timers = [timeit.Timer(stmt, globals=env) for stmt in (ours, theirs) if stmt is not None]
    best = [float("inf")] * len(timers)
    for _ in range(repeat):
        for i, timer in enumerate(timers):
            best[i] = min(best[i], timer.timeit(number) / number * 1e9)
    return best[0], (best[1] if len(best) > 1 else None)


def async_ns(fn: Callable[[], Any], number: int, repeat: int) -> float:
    async def run() -> float:
        loop = asyncio.get_running_loop()
        best = float("inf")
        for _ in range(repeat):
            start = loop.time()
            for _ in range(number):
                await fn()
            best = min(best, (loop.time() - start) / number * 1e9)
        return best

    return asyncio.run(run())


def main() -> None:
    quick = "--quick" in sys.argv
    number, repeat = (20_000, 3) if quick else (200_000, 7)

    rk_breaker = rk.CircuitBreaker(failure_threshold=5, reset_timeout=60.0)
    pb_breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)

    def rk_refused() -> None:
        with contextlib.suppress(rk.CircuitOpenError):
            rk_decorated()

    def pb_refused() -> None:
        with contextlib.suppress(pybreaker.CircuitBreakerError):
            pb_decorated()

    rk_decorated = rk_breaker(noop)
    pb_decorated = pb_breaker(noop)
    env: dict[str, Any] = {
        "noop": noop,
        "rk_breaker": rk_breaker,
        "pb_breaker": pb_breaker,
        "rk_decorated": rk_decorated,
        "pb_decorated": pb_decorated,
        "rk_refused": rk_refused,
        "pb_refused": pb_refused,
    }

    def row(name: str, ours: str, theirs: Optional[str]) -> tuple[str, float, Optional[float]]:
        return (name, *best_pair(ours, theirs, env, number, repeat))

    rows = [
        row("plain call of the no-op (floor)", "noop()", None),
        row("decorator, closed", "rk_decorated()", "pb_decorated()"),
        row("breaker.call(fn), closed", "rk_breaker.call(noop)", "pb_breaker.call(noop)"),
        row("allow() + record_success()", "rk_breaker.allow(); rk_breaker.record_success()", None),
    ]
    rk_breaker.trip()
    pb_breaker.open()
    rows.append(row("decorator, open (refused, caught)", "rk_refused()", "pb_refused()"))
    rk_breaker.reset()
    async_number = number // 4
    rows.append(("await plain async no-op (floor)", async_ns(anoop, async_number, repeat), None))
    rows.append(
        ("await async decorator, closed", async_ns(rk_breaker(anoop), async_number, repeat), None)
    )

    print(
        f"Python {platform.python_version()}, {platform.machine()}, pybreaker "
        f"{importlib.metadata.version('pybreaker')}; best of {repeat} x {number} calls"
    )
    print(f"{'case':<36}{'ratekeeper ns':>15}{'pybreaker ns':>15}{'speed-up':>10}")
    for name, ours, theirs in rows:
        peer = f"{theirs:15.0f}" if theirs is not None else f"{'-':>15}"
        ratio = f"{theirs / ours:9.1f}x" if theirs is not None else f"{'-':>10}"
        print(f"{name:<36}{ours:15.0f}{peer}{ratio}")


if __name__ == "__main__":
    main()
