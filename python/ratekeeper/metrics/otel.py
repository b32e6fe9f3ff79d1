"""Ratekeeper's metrics through the OpenTelemetry metrics API (extra ``otel``).

``instrument(obj)`` adds ``obj`` to the observable instruments of one meter
(``"ratekeeper"``) of the meter provider; their callbacks read ``stats()``
when the SDK collects, so nothing runs per grant. Names use dots and units
(``ratekeeper.requests.granted``, unit ``{request}``;
``ratekeeper.wait.duration``, unit ``s``); every point carries the attribute
``name``. The OpenTelemetry API has no asynchronous histogram, so the wait
is a counter of seconds waited: with ``ratekeeper.requests.granted`` it
gives the mean wait.

>>> # instrument(client, name="openai")  # with the SDK's MeterProvider set up
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any, Callable, Optional

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ratekeeper.metrics.otel needs opentelemetry-api: pip install 'ratekeeper[otel]'"
    ) from exc

from . import METRICS, Metric, Reading, Sources, read

__all__ = ["instrument"]


class _Instruments:
    """The observable instruments of one meter provider, reading every source once per collection."""

    def __init__(self, provider: MeterProvider) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            release: Optional[str] = version("ratekeeper")
        except PackageNotFoundError:
            release = None
        meter = provider.get_meter("ratekeeper", release)
        self.sources = Sources()
        self._lock = threading.Lock()
        self._readings: dict[str, Reading] = {}
        self._read_at = -1.0
        self._first = METRICS[0].key
        for metric in METRICS:
            create = (
                meter.create_observable_counter
                if metric.kind == "counter"
                else meter.create_observable_gauge
            )
            create(
                "ratekeeper." + metric.key,
                callbacks=[self._callback(metric)],
                unit=metric.unit,
                description=metric.doc,
            )

    def _callback(self, metric: Metric) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return list(self._observe(metric))

        return observe

    def _observe(self, metric: Metric) -> Iterable[Observation]:
        # The first instrument's callback reads every source; the others
        # reuse that reading (if fresh), so one collection calls stats()
        # once per source.
        with self._lock:
            now = time.monotonic()
            if metric.key == self._first or now - self._read_at > 1.0:
                self._readings = {name: read(obj) for name, obj in self.sources.live()}
                self._read_at = now
            readings = self._readings
        for source, reading in readings.items():
            for labels, value in reading.samples[metric.key]:
                yield Observation(value, {"name": source, **labels})


_instruments: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def instrument(
    obj: Any, *, meter_provider: Optional[MeterProvider] = None, name: Optional[str] = None
) -> Callable[[], None]:
    """Reports ``obj``'s metrics through ``meter_provider`` (default: the global one).

    ``obj`` is a limiter, a ``CircuitBreaker`` or a client from ``rk.wrap``;
    ``name`` (the ``name`` attribute of every point) defaults to its type's
    name in lower case and must be unique per provider. Returns a function
    that stops reporting it; ``obj`` is held weakly.

    >>> # stop = instrument(limiter, meter_provider=provider, name="openai")
    """
    provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
    with _lock:
        instruments = _instruments.get(provider)
        if instruments is None:
            instruments = _Instruments(provider)
            _instruments[provider] = instruments
    added = instruments.sources.add(obj, name)
    return lambda: instruments.sources.remove(added)
