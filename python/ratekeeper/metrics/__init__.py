"""What the metrics exporters read, the same for Prometheus and OpenTelemetry.

Nothing here runs per grant: an exporter calls ``read(obj)`` when it is
scraped (Prometheus) or collected (OpenTelemetry), which reads ``stats()``
and a few properties of ``obj`` once. ``obj`` is any limiter, a
``CircuitBreaker`` or a client from ``rk.wrap`` (read through its limiter).

Exporters: ``ratekeeper.metrics.prometheus.register`` (extra ``prometheus``)
and ``ratekeeper.metrics.otel.instrument`` (extra ``otel``).

>>> import ratekeeper as rk
>>> read(rk.Limiter(rpm=60)).samples["available"]
[({'budget': 'rpm'}, 60.0)]
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

from .._events import linked_to

__all__ = ["METRICS", "Metric", "Reading", "Sources", "read"]

Samples = list[tuple[dict[str, str], float]]


@dataclass(frozen=True)
class Metric:
    """One metric: its key in ``read``'s result, its kind, OTel unit and help text.

    >>> METRICS[0].key
    'requests.granted'
    """

    key: str
    kind: Literal["counter", "gauge"]
    unit: str
    doc: str
    labels: tuple[str, ...] = ()


# Every metric is labelled ``name`` (the source) besides ``labels``.
METRICS = (
    Metric("requests.granted", "counter", "{request}", "Requests granted by the limiter."),
    Metric("requests.rejected", "counter", "{request}", "Acquires refused (timed out)."),
    Metric("requests.cancelled", "counter", "{request}", "Waits cancelled before their grant."),
    Metric("rate_limited", "counter", "{response}", "HTTP 429 responses seen."),
    Metric("retries", "counter", "{retry}", "Retries scheduled."),
    Metric("wait.duration", "counter", "s", "Seconds spent waiting for a grant, summed."),
    Metric("requests.in_flight", "gauge", "{request}", "Permits held and not released."),
    Metric("requests.waiting", "gauge", "{request}", "Callers waiting for a slot."),
    Metric("pause.remaining", "gauge", "s", "Seconds left of a pause after a 429."),
    Metric("available", "gauge", "{unit}", "Units available now, per budget.", ("budget",)),
    Metric("limit", "gauge", "{unit}", "Capacity of the budget.", ("budget",)),
    Metric(
        "learned_limit", "gauge", "{unit}", "Limit learned from the server.", ("model", "budget")
    ),
    Metric("keys", "gauge", "{key}", "Keys with a live bucket (KeyedLimiter)."),
    Metric("breaker.state", "gauge", "1", "1 for the breaker's current state.", ("model", "state")),
    Metric("breaker.failures", "gauge", "{failure}", "Consecutive failures counted.", ("model",)),
)


@dataclass
class Reading:
    """One source's metrics at one moment.

    ``samples`` maps each metric key to ``[(labels, value), ...]`` (no
    ``name`` label); ``wait_buckets`` is ``[(upper bound s, cumulative
    grants), ..., (inf, grants)]`` and ``wait_sum`` their seconds, or
    ``None`` for a source that does not bucket its waits (the exporter then
    has the ``+Inf`` bucket only).

    >>> Reading().samples["retries"]
    []
    """

    samples: dict[str, Samples] = field(default_factory=lambda: {m.key: [] for m in METRICS})
    wait_buckets: Optional[list[tuple[float, float]]] = None
    wait_sum: float = 0.0


_COUNTERS = {
    "granted": "requests.granted",
    "rejected": "requests.rejected",
    "cancelled": "requests.cancelled",
    "rate_limited": "rate_limited",
    "retries": "retries",
    "waited_seconds": "wait.duration",
    "in_flight": "requests.in_flight",
    "waiting": "requests.waiting",
    "paused_for": "pause.remaining",
}
BREAKER_STATES = ("closed", "open", "half_open")


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _per_budget(table: Any, out: Samples, labels: Optional[dict[str, str]] = None) -> None:
    """Appends ``{budget: value}`` (or ``{model: {budget: value}}``) as labelled samples."""
    if not isinstance(table, dict):
        return
    for budget, value in table.items():
        if isinstance(value, dict):
            _per_budget(value, out, {**(labels or {}), "model": str(budget)})
        elif (number := _number(value)) is not None:
            out.append(({**(labels or {}), "budget": str(budget)}, number))


def _read_stats(stats: dict[str, Any], reading: Reading) -> None:
    out = reading.samples
    for stat, key in _COUNTERS.items():
        number = _number(stats.get(stat))
        if number is not None:
            out[key].append(({}, number))
    _per_budget(stats.get("available"), out["available"])
    _per_budget(stats.get("capacity"), out["limit"])
    _per_budget(stats.get("learned"), out["learned_limit"])
    histogram = stats.get("wait_histogram")
    if isinstance(histogram, dict) and isinstance(histogram.get("buckets"), list):
        reading.wait_buckets = [(float(le), float(n)) for le, n in histogram["buckets"]]
        reading.wait_sum = float(histogram.get("sum", 0.0))


def _read_breaker(breaker: Any, out: dict[str, Samples], labels: dict[str, str]) -> None:
    state = breaker.state
    for each in BREAKER_STATES:
        out["breaker.state"].append(({**labels, "state": each}, 1.0 if each == state else 0.0))
    out["breaker.failures"].append((dict(labels), float(breaker.failure_count)))


def _read_primitive(obj: Any, out: dict[str, Samples]) -> None:
    """A TokenBucket, window or KeyedLimiter: no counters (they count nothing, to stay fast)."""
    capacity = _number(getattr(obj, "capacity", None))
    if capacity is None:
        capacity = _number(getattr(obj, "limit", None))
    if capacity is not None:
        out["limit"].append(({"budget": "units"}, capacity))
    available = _number(getattr(obj, "available", None))
    if available is not None:
        out["available"].append(({"budget": "units"}, available))
    if hasattr(obj, "__len__"):
        out["keys"].append(({}, float(len(obj))))


def target_of(obj: Any) -> Any:
    """What is read for ``obj``: a wrapped client's limiter, else ``obj``.

    >>> import ratekeeper as rk; limiter = rk.Limiter(rpm=1); target_of(limiter) is limiter
    True
    """
    limiter = getattr(obj, "ratekeeper_limiter", None)
    return obj if limiter is None else limiter


def readable(obj: Any) -> bool:
    """Whether ``read`` knows ``obj``: something with ``stats()``, a breaker or a limiter.

    >>> readable(object())
    False
    """
    target = target_of(obj)
    return callable(getattr(target, "stats", None)) or any(
        hasattr(target, attr) for attr in ("failure_count", "try_acquire", "capacity", "limit")
    )


def read(obj: Any) -> Reading:
    """Every metric of ``obj`` now: one ``stats()`` call (or a few properties)."""
    target = target_of(obj)
    reading = Reading()
    stats = getattr(target, "stats", None)
    if callable(stats):
        _read_stats(stats(), reading)
        # The breakers rk.wrap linked to this limiter, one per model.
        for child, fields in linked_to(target):
            if hasattr(child, "failure_count"):
                model = {"model": str(fields["model"])} if "model" in fields else {}
                _read_breaker(child, reading.samples, model)
    elif hasattr(target, "failure_count"):
        _read_breaker(target, reading.samples, {})
    else:
        _read_primitive(target, reading.samples)
    return reading


def _ref(obj: Any) -> Callable[[], Any]:
    """A weak reference to ``obj``, or a strong one if it has none (kept until removed)."""
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: obj


class Sources:
    """The objects one exporter reads, by name, held weakly (a dropped limiter disappears).

    >>> import ratekeeper as rk
    >>> sources = Sources(); limiter = rk.Limiter(rpm=1); _ = sources.add(limiter, "api")
    >>> [name for name, _ in sources.live()]
    ['api']
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: dict[str, Callable[[], Any]] = {}

    def add(self, obj: Any, name: Optional[str]) -> str:
        """Adds ``obj`` under ``name`` (default: its type's name); returns the name."""
        if not readable(obj):
            raise TypeError(
                f"cannot read metrics of a {type(obj).__name__}: pass a limiter, "
                "a CircuitBreaker or a client from rk.wrap"
            )
        if name is None:
            name = type(obj).__name__.lower()
        elif not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        with self._lock:
            old = self._refs.get(name)
            if old is not None and old() is not None:
                raise ValueError(
                    f"a source named {name!r} is already registered here; pass another name="
                )
            self._refs[name] = _ref(obj)
        return name

    def remove(self, name: str) -> None:
        """Stops reading the source named ``name`` (no error if it is gone)."""
        with self._lock:
            self._refs.pop(name, None)

    def live(self) -> Iterator[tuple[str, Any]]:
        """``(name, obj)`` for every source still alive, forgetting the dead ones."""
        with self._lock:
            items = list(self._refs.items())
        for name, ref in items:
            obj = ref()
            if obj is None:
                self.remove(name)
            else:
                yield name, obj

    def __bool__(self) -> bool:
        return any(True for _ in self.live())
