"""Ratekeeper's metrics as a ``prometheus_client`` collector (extra ``prometheus``).

``register(obj)`` adds ``obj`` to the one collector of the registry; each
scrape reads ``stats()`` of every registered source (nothing runs per
grant). Metric names follow Prometheus conventions: counters end in
``_total``, seconds in ``_seconds``; every sample is labelled ``name``.

>>> import prometheus_client, ratekeeper as rk
>>> registry = prometheus_client.CollectorRegistry(); limiter = rk.Limiter(rpm=60)
>>> stop = register(limiter, registry=registry, name="openai")
>>> registry.get_sample_value("ratekeeper_available", {"name": "openai", "budget": "rpm"})
60.0
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterator
from typing import Any, Callable, Optional

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ratekeeper.metrics.prometheus needs prometheus-client: "
        "pip install 'ratekeeper[prometheus]'"
    ) from exc

from . import METRICS, Reading, Sources, read

__all__ = ["register"]

_UNIT_SUFFIX = {"s": "_seconds"}


def prometheus_name(key: str, unit: str) -> str:
    """``ratekeeper_`` + the key with underscores, + ``_seconds`` for seconds.

    >>> prometheus_name("pause.remaining", "s")
    'ratekeeper_pause_remaining_seconds'
    """
    return "ratekeeper_" + key.replace(".", "_") + _UNIT_SUFFIX.get(unit, "")


class RatekeeperCollector(Collector):
    """Reads every source registered in one registry, when scraped."""

    def __init__(self) -> None:
        self.sources = Sources()

    def describe(self) -> list[Metric]:
        # No fixed names to check: the families depend on what is registered.
        return []

    def collect(self) -> Iterator[Metric]:
        readings = [(name, read(obj)) for name, obj in self.sources.live()]
        for metric in METRICS:
            if metric.key == "wait.duration":
                continue
            name = prometheus_name(metric.key, metric.unit)
            labels = ["name", *metric.labels]
            family: Any = (
                CounterMetricFamily(name, metric.doc, labels=labels)
                if metric.kind == "counter"
                else GaugeMetricFamily(name, metric.doc, labels=labels)
            )
            for source, reading in readings:
                for sample_labels, value in reading.samples[metric.key]:
                    family.add_metric(
                        [source, *(sample_labels.get(k, "") for k in metric.labels)], value
                    )
            if family.samples:
                yield family
        yield from _wait_histogram(readings)


def _wait_histogram(readings: list[tuple[str, Reading]]) -> Iterator[Metric]:
    """``ratekeeper_wait_seconds``: each grant's wait for its budgets.

    ``rk.Limiter`` buckets the waits itself, on the waiting path only; a
    source that does not (a Redis-backed limiter) gives its grants and
    seconds waited as the ``+Inf`` bucket and the sum: still the mean wait.
    """
    family = HistogramMetricFamily(
        "ratekeeper_wait_seconds", "Wait for the budgets before each grant.", labels=["name"]
    )
    for source, reading in readings:
        if reading.wait_buckets is not None:
            buckets = [(_le(bound), count) for bound, count in reading.wait_buckets]
            family.add_metric([source], buckets, sum_value=reading.wait_sum)
            continue
        granted = reading.samples["requests.granted"]
        waited = reading.samples["wait.duration"]
        if granted and waited:
            family.add_metric([source], [("+Inf", granted[0][1])], sum_value=waited[0][1])
    if family.samples:
        yield family


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, RatekeeperCollector] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def register(
    obj: Any, *, registry: Optional[CollectorRegistry] = None, name: Optional[str] = None
) -> Callable[[], None]:
    """Exports ``obj``'s metrics in ``registry`` (default: the global one), labelled ``name``.

    ``obj`` is a limiter, a ``CircuitBreaker`` or a client from ``rk.wrap``;
    ``name`` defaults to its type's name in lower case and must be unique in
    the registry. Returns a function that stops exporting it. The registry
    holds ``obj`` weakly: a dropped limiter stops being exported.

    >>> # stop = register(client, name="openai"); prometheus_client.start_http_server(9464)
    """
    registry = REGISTRY if registry is None else registry
    with _lock:
        collector = _collectors.get(registry)
        if collector is None:
            collector = RatekeeperCollector()
            registry.register(collector)
            _collectors[registry] = collector
    added = collector.sources.add(obj, name)
    return lambda: collector.sources.remove(added)
