"""Shared timing helpers for the benchmark scripts (numbers, not verdicts).

Every figure is timed the way a user writes the call: ``timeit`` of a
statement such as ``bucket.try_acquire()``, attribute lookup and loop
included, best of several repeats. The floor, ratekeeper and the peers are
all timed the same way in the same run, so the ratios compare like with like.
"""

from __future__ import annotations

import asyncio
import os
import platform
import timeit
from typing import Any


def ns_per_call(stmt: str, env: dict[str, Any], number: int = 200_000, repeat: int = 5) -> float:
    """Best-of-``repeat`` nanoseconds per execution of ``stmt`` with names from ``env``."""
    timer = timeit.Timer(stmt, globals=env)
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e9


def async_ns_per_call(
    expr: str, env: dict[str, Any], number: int = 100_000, repeat: int = 5
) -> float:
    """Best-of-``repeat`` nanoseconds per ``await <expr>`` inside one running loop."""
    source = (
        "async def _bench(number):\n"
        "    import time\n"
        "    start = time.perf_counter()\n"
        "    for _ in range(number):\n"
        f"        await {expr}\n"
        "    return time.perf_counter() - start\n"
    )
    namespace = dict(env)
    exec(source, namespace)  # the awaited expression is inlined, as timeit inlines stmt
    bench = namespace["_bench"]

    async def run() -> float:
        return min([await bench(number) for _ in range(repeat)])

    return asyncio.run(run()) / number * 1e9


def machine() -> str:
    """One line naming the machine, for the tables in the README."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """A plain-text table with aligned columns."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()

    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])
