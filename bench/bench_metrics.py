"""The hot path with metrics exported and without, in one run (issue 12).

Registering a source with ``ratekeeper.metrics.prometheus`` (or
``metrics.otel``) adds nothing to a grant: the collector reads ``stats()``
when scraped. This prints, for the same calls on twin objects, one exported
(Prometheus collector registered and OpenTelemetry instruments on an SDK
MeterProvider) and one not: ``try_acquire``, ``Limiter.acquire`` + release,
``@rk.rate_limited`` sync and async, and the breaker's decorator. The twins
are timed alternately, repeat by repeat, so load on a shared machine hits
both alike. Then what a scrape costs (off the hot path) and what ``emit``
costs when nobody listens.

    python bench/bench_metrics.py [--quick]
"""

from __future__ import annotations

import logging
import sys
import timeit
from typing import Any, Callable

from _timing import async_ns_per_call, machine, table
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest

import ratekeeper as rk
from ratekeeper._events import emit
from ratekeeper.metrics.otel import instrument
from ratekeeper.metrics.prometheus import register


def noop() -> None:
    return None


async def anoop() -> None:
    return None


def alternate(stmts: tuple[str, str], env: dict[str, Any], number: int, repeat: int) -> list[float]:
    """Best ns per run of each statement, timed one after the other in each repeat.

    The order flips every repeat, so neither statement always runs first.
    """
    timers = [timeit.Timer(stmt, globals=env) for stmt in stmts]
    best = [float("inf")] * len(timers)
    for round_ in range(repeat):
        order = range(len(timers)) if round_ % 2 == 0 else reversed(range(len(timers)))
        for i in order:
            best[i] = min(best[i], timers[i].timeit(number) / number * 1e9)
    return best


def twins(make: Callable[[], Any], registry: CollectorRegistry, provider: Any, name: str) -> Any:
    """Two objects from ``make``: the first exported under ``name``, the second not."""
    exported, plain = make(), make()
    register(exported, registry=registry, name=name)
    instrument(exported, meter_provider=provider, name=name)
    return exported, plain


def main() -> None:
    quick = "--quick" in sys.argv
    number, repeat = (20_000, 3) if quick else (200_000, 7)
    registry = CollectorRegistry()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])

    buckets = twins(lambda: rk.TokenBucket(rate=1e12, capacity=1e12), registry, provider, "bkt")
    limiters = twins(lambda: rk.Limiter(rpm=10**12, tpm=10**15), registry, provider, "lim")
    breakers = twins(rk.CircuitBreaker, registry, provider, "brk")
    env: dict[str, Any] = {
        "bucket_on": buckets[0],
        "bucket_off": buckets[1],
        "limiter_on": limiters[0],
        "limiter_off": limiters[1],
        "decorated_on": rk.rate_limited(limiters[0], tokens=10)(noop),
        "decorated_off": rk.rate_limited(limiters[1], tokens=10)(noop),
        "guarded_on": breakers[0](noop),
        "guarded_off": breakers[1](noop),
    }
    cases = [
        ("TokenBucket.try_acquire()", "bucket_{}.try_acquire()"),
        ("Limiter.acquire(tokens=10).release()", "limiter_{}.acquire(tokens=10).release()"),
        ("@rk.rate_limited sync call", "decorated_{}()"),
        ("@CircuitBreaker sync call", "guarded_{}()"),
    ]
    rows = []
    for label, stmt in cases:
        on, off = alternate((stmt.format("on"), stmt.format("off")), env, number, repeat)
        rows.append((label, f"{off:.0f}", f"{on:.0f}", f"{on / off:.2f}"))
    async_number = number // 4
    async_env = {
        "on": rk.rate_limited(limiters[0], tokens=10)(anoop),
        "off": rk.rate_limited(limiters[1], tokens=10)(anoop),
    }
    off = on = float("inf")
    for round_ in range(repeat):  # alternately, like the sync cases
        for which in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
            ns = async_ns_per_call(f"{which}()", async_env, async_number, 1)
            off, on = (min(off, ns), on) if which == "off" else (off, min(on, ns))
    rows.append(("@rk.rate_limited async call", f"{off:.0f}", f"{on:.0f}", f"{on / off:.2f}"))

    print(f"ratekeeper with and without metrics exported — {machine()}")
    print(f"best of {repeat} x {number} calls, ns per call\n")
    print(table(rows, ("call", "not exported", "exported", "ratio")))

    scrape_ns = timeit.timeit(lambda: generate_latest(registry), number=200) / 200 * 1e9
    collect_ns = timeit.timeit(reader.get_metrics_data, number=200) / 200 * 1e9
    logging.getLogger("ratekeeper").setLevel(logging.WARNING)
    quiet = timeit.Timer(
        "emit('retry', None, model='m', wait=0.1, attempt=1, reason='429')", globals={"emit": emit}
    )
    emit_ns = min(quiet.repeat(repeat=repeat, number=number)) / number * 1e9
    print()
    print(
        table(
            [
                ("Prometheus scrape (generate_latest), 6 sources", f"{scrape_ns / 1000:.0f} us"),
                ("OpenTelemetry collection, 6 sources", f"{collect_ns / 1000:.0f} us"),
                ("emit() with no subscriber, its logger off", f"{emit_ns:.0f} ns"),
            ],
            ("off the hot path", "cost"),
        )
    )


if __name__ == "__main__":
    main()
