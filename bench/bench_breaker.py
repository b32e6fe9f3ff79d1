"""Circuit breaker, closed path: ratekeeper beside pybreaker, in one run.

Measures the cost a healthy service pays per call: a no-op function called
through a closed breaker, as a decorator and via ``call``, plus the async
decorator (ratekeeper only: pybreaker's async support needs Tornado). Prints
ns per call and the speed-up over pybreaker.

    python bench/bench_breaker.py [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import platform
import sys
import timeit
from typing import Callable, Optional

import pybreaker
import ratekeeper as rk


def best_ns(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Best of ``repeat`` runs of ``number`` calls, in ns per call (least disturbed run)."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e9


def noop() -> None:
    return None


async def anoop() -> None:
    return None


def async_ns(fn: Callable[[], object], number: int, repeat: int) -> float:
    async def run() -> float:
        best = float("inf")
        for _ in range(repeat):
            loop = asyncio.get_running_loop()
            start = loop.time()
            for _ in range(number):
                await fn()  # type: ignore[misc]
            best = min(best, (loop.time() - start) / number * 1e9)
        return best

    return asyncio.run(run())


def main() -> None:
    quick = "--quick" in sys.argv
    number, repeat = (20_000, 3) if quick else (200_000, 7)

    rk_breaker = rk.CircuitBreaker(failure_threshold=5, reset_timeout=60.0)
    pb_breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    rk_decorated = rk_breaker(noop)
    pb_decorated = pb_breaker(noop)
    rk_async = rk_breaker(anoop)

    def allow_then_record() -> None:
        if rk_breaker.allow():
            rk_breaker.record_success()

    rows: list[tuple[str, float, Optional[float]]] = [
        ("plain call of the no-op (floor)", best_ns(noop, number, repeat), None),
        (
            "decorator, closed",
            best_ns(rk_decorated, number, repeat),
            best_ns(pb_decorated, number, repeat),
        ),
        (
            "breaker.call(fn), closed",
            best_ns(lambda: rk_breaker.call(noop), number, repeat),
            best_ns(lambda: pb_breaker.call(noop), number, repeat),
        ),
        (
            "allow() + record_success()",
            best_ns(allow_then_record, number, repeat),
            None,
        ),
    ]
    rk_breaker.trip()
    pb_breaker.open()

    def rk_refused() -> None:
        with contextlib.suppress(rk.CircuitOpenError):
            rk_decorated()

    def pb_refused() -> None:
        with contextlib.suppress(pybreaker.CircuitBreakerError):
            pb_decorated()

    rows.append(
        (
            "decorator, open (refused)",
            best_ns(rk_refused, number, repeat),
            best_ns(pb_refused, number, repeat),
        )
    )
    rk_breaker.reset()
    async_number = number // 4
    rows.append(("await plain async no-op (floor)", async_ns(anoop, async_number, repeat), None))
    rows.append(("await async decorator, closed", async_ns(rk_async, async_number, repeat), None))

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
