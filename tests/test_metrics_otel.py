"""ratekeeper.metrics.otel: observable instruments read by the SDK's InMemoryMetricReader."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import ratekeeper as rk
from ratekeeper.metrics.otel import instrument

Points = dict[str, dict[tuple[tuple[str, object], ...], float]]


def collect(reader: InMemoryMetricReader) -> tuple[Points, dict[str, str]]:
    """``({instrument: {sorted attributes: value}}, {instrument: unit})``."""
    points: Points = {}
    units: dict[str, str] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "ratekeeper"
            for metric in scope.metrics:
                units[metric.name] = metric.unit or ""
                for point in metric.data.data_points:
                    key = tuple(sorted((point.attributes or {}).items()))
                    points.setdefault(metric.name, {})[key] = point.value  # type: ignore[union-attr]
    return points, units


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> MeterProvider:
    return MeterProvider(metric_readers=[reader])


def test_a_limiter_reports_counters_and_gauges_with_units(
    reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    limiter = rk.Limiter(rpm=60, tpm=1000, clock=rk.ManualClock())
    instrument(limiter, meter_provider=provider, name="openai")
    limiter.acquire(tokens=100).release()
    limiter.acquire(tokens=100)
    points, units = collect(reader)
    name = (("name", "openai"),)
    assert points["ratekeeper.requests.granted"][name] == 2
    assert points["ratekeeper.requests.rejected"][name] == 0
    assert points["ratekeeper.rate_limited"][name] == 0
    assert points["ratekeeper.retries"][name] == 0
    assert points["ratekeeper.requests.in_flight"][name] == 1
    assert points["ratekeeper.wait.duration"][name] == 0.0
    assert points["ratekeeper.available"][(("budget", "tpm"), ("name", "openai"))] == (
        pytest.approx(800)
    )
    assert units["ratekeeper.requests.granted"] == "{request}"
    assert units["ratekeeper.wait.duration"] == "s"
    assert units["ratekeeper.pause.remaining"] == "s"


def test_counters_are_cumulative_sums(
    reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    limiter = rk.Limiter(rpm=600, clock=rk.ManualClock())
    instrument(limiter, meter_provider=provider, name="a")
    limiter.acquire().release()
    collect(reader)
    limiter.acquire().release()
    data = reader.get_metrics_data()
    assert data is not None
    [granted] = [
        m
        for r in data.resource_metrics
        for s in r.scope_metrics
        for m in s.metrics
        if m.name == "ratekeeper.requests.granted"
    ]
    assert granted.data.is_monotonic  # type: ignore[union-attr]
    assert [p.value for p in granted.data.data_points] == [2]  # type: ignore[union-attr]


def test_a_breaker_and_several_limiters_on_one_provider(
    reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    breaker = rk.CircuitBreaker(failure_threshold=1, clock=rk.ManualClock())
    first, second = rk.Limiter(rpm=10), rk.Limiter(rpm=20)
    instrument(breaker, meter_provider=provider, name="claude")
    instrument(first, meter_provider=provider, name="a")
    stop = instrument(second, meter_provider=provider, name="b")
    with pytest.raises(ValueError, match="already registered"):
        instrument(rk.Limiter(rpm=1), meter_provider=provider, name="a")
    breaker.trip()
    points, _ = collect(reader)
    assert points["ratekeeper.breaker.state"][(("name", "claude"), ("state", "open"))] == 1
    assert points["ratekeeper.breaker.state"][(("name", "claude"), ("state", "closed"))] == 0
    available = points["ratekeeper.available"]
    assert available[(("budget", "rpm"), ("name", "a"))] == 10
    assert available[(("budget", "rpm"), ("name", "b"))] == 20
    stop()
    points, _ = collect(reader)
    assert (("budget", "rpm"), ("name", "b")) not in points["ratekeeper.available"]


def test_stats_is_read_once_per_source_per_collection(
    reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    class Counting:
        calls = 0

        def stats(self) -> dict[str, object]:
            Counting.calls += 1
            return {"granted": 7, "available": {"rpm": 3.0}}

    source = Counting()
    instrument(source, meter_provider=provider, name="counting")
    points, _ = collect(reader)
    assert points["ratekeeper.requests.granted"][(("name", "counting"),)] == 7
    assert Counting.calls == 1
