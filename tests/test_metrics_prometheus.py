"""ratekeeper.metrics.prometheus: a real CollectorRegistry, scraped and parsed."""

from __future__ import annotations

import asyncio
import gc

import openai
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from scripted_server import ScriptedServer

import ratekeeper as rk
from ratekeeper._events import link
from ratekeeper.metrics.prometheus import register


def scrape(registry: CollectorRegistry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` from the text exposition."""
    text = generate_latest(registry).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def types_of(registry: CollectorRegistry) -> dict[str, str]:
    text = generate_latest(registry).decode()
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_a_limiter_exports_its_counters_gauges_and_wait_histogram() -> None:
    clock = rk.ManualClock()
    limiter = rk.Limiter(rpm=60, tpm=10_000, concurrency=4, clock=clock)
    registry = CollectorRegistry()
    register(limiter, registry=registry, name="openai")
    held = [limiter.acquire(tokens=100) for _ in range(3)]
    held[0].release()
    with pytest.raises(rk.RateLimitTimeout):
        limiter.acquire(tokens=9_800, timeout=0.0)
    limiter.pause(5.0)
    got = scrape(registry)
    name = (("name", "openai"),)
    assert got["ratekeeper_requests_granted_total"][name] == 3
    assert got["ratekeeper_requests_rejected_total"][name] == 1
    assert got["ratekeeper_rate_limited_total"][name] == 0
    assert got["ratekeeper_retries_total"][name] == 0
    assert got["ratekeeper_requests_in_flight"][name] == 2
    assert got["ratekeeper_requests_waiting"][name] == 0
    assert got["ratekeeper_pause_remaining_seconds"][name] == pytest.approx(5.0)
    # The pause drains the request budget (no herd at its end): its first unit is
    # due 5 s from now, so 4 units are owed now.
    assert got["ratekeeper_available"][(("budget", "rpm"), ("name", "openai"))] == pytest.approx(-4)
    assert got["ratekeeper_available"][(("budget", "tpm"), ("name", "openai"))] == pytest.approx(
        9_700
    )
    assert got["ratekeeper_wait_seconds_count"][name] == 3
    assert got["ratekeeper_wait_seconds_bucket"][(("le", "+Inf"), ("name", "openai"))] == 3
    assert got["ratekeeper_wait_seconds_sum"][name] == 0.0
    types = types_of(registry)
    assert types["ratekeeper_requests_granted"] == "counter"
    assert types["ratekeeper_available"] == "gauge"
    assert types["ratekeeper_wait_seconds"] == "histogram"


def test_a_scrape_reads_the_counters_as_they_are_then() -> None:
    limiter = rk.Limiter(rpm=600, clock=rk.ManualClock())
    registry = CollectorRegistry()
    register(limiter, registry=registry)
    before = scrape(registry)["ratekeeper_requests_granted_total"][(("name", "limiter"),)]
    limiter.acquire().release()
    after = scrape(registry)["ratekeeper_requests_granted_total"][(("name", "limiter"),)]
    assert (before, after) == (0, 1)


def test_each_grants_wait_lands_in_its_histogram_bucket() -> None:
    limiter = rk.Limiter(rps=10, burst=1, clock=rk.ManualClock())
    registry = CollectorRegistry()
    register(limiter, registry=registry, name="x")
    limiter.acquire().release()  # no wait
    limiter.acquire().release()  # 0.1 s (the manual clock moves by the wait)
    limiter.pause(2.0)
    limiter.acquire().release()  # 2 s
    got = scrape(registry)
    buckets = {dict(k)["le"]: v for k, v in got["ratekeeper_wait_seconds_bucket"].items()}
    assert buckets["0.005"] == buckets["0.05"] == 1
    assert buckets["0.1"] == buckets["1.0"] == 2
    assert buckets["2.5"] == buckets["300.0"] == buckets["+Inf"] == 3
    assert list(buckets) == sorted(buckets, key=float)
    assert got["ratekeeper_wait_seconds_count"][(("name", "x"),)] == 3
    assert got["ratekeeper_wait_seconds_sum"][(("name", "x"),)] == pytest.approx(2.1)


def test_a_cancelled_wait_leaves_the_histogram() -> None:
    limiter = rk.Limiter(rps=10, burst=1, clock=rk.ManualClock())
    registry = CollectorRegistry()
    register(limiter, registry=registry, name="x")
    limiter.acquire().release()

    async def cancelled() -> None:
        task = asyncio.ensure_future(limiter.acquire_async())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    assert limiter.stats()["cancelled"] == 1
    got = scrape(registry)
    buckets = {dict(k)["le"]: v for k, v in got["ratekeeper_wait_seconds_bucket"].items()}
    assert buckets["0.005"] == buckets["+Inf"] == 1
    assert got["ratekeeper_wait_seconds_sum"][(("name", "x"),)] == 0.0


def test_a_breaker_exports_its_state() -> None:
    breaker = rk.CircuitBreaker(failure_threshold=2, clock=rk.ManualClock())
    registry = CollectorRegistry()
    register(breaker, registry=registry, name="claude")
    breaker.record_failure()
    got = scrape(registry)
    claude = (("model", ""), ("name", "claude"))
    state = got["ratekeeper_breaker_state"]
    assert state[(*claude, ("state", "closed"))] == 1
    assert state[(*claude, ("state", "open"))] == 0
    assert got["ratekeeper_breaker_failures"][claude] == 1
    breaker.record_failure()
    state = scrape(registry)["ratekeeper_breaker_state"]
    assert state[(*claude, ("state", "open"))] == 1
    assert state[(*claude, ("state", "closed"))] == 0


def test_a_limiter_exports_the_breakers_linked_to_it_per_model() -> None:
    limiter = rk.Limiter(rpm=60)
    first, second = rk.CircuitBreaker(failure_threshold=1), rk.CircuitBreaker()
    link(first, limiter, model="gpt-4o")  # what rk.wrap does for each model's breaker
    link(second, limiter, model="gpt-4o-mini")
    registry = CollectorRegistry()
    register(limiter, registry=registry, name="openai")
    first.record_failure()
    state = scrape(registry)["ratekeeper_breaker_state"]
    assert state[(("model", "gpt-4o"), ("name", "openai"), ("state", "open"))] == 1
    assert state[(("model", "gpt-4o-mini"), ("name", "openai"), ("state", "closed"))] == 1


def test_primitives_export_what_they_know() -> None:
    registry = CollectorRegistry()
    bucket = rk.TokenBucket(rate=1.0, capacity=10, clock=rk.ManualClock())
    window = rk.SlidingWindow(5, 1.0)
    keyed = rk.KeyedLimiter(1.0, 3, clock=rk.ManualClock())
    register(bucket, registry=registry, name="bucket")
    register(window, registry=registry, name="window")
    register(keyed, registry=registry, name="keyed")
    bucket.try_acquire(4)
    keyed.try_acquire("alice")
    keyed.try_acquire("bob")
    got = scrape(registry)
    units = ("budget", "units")
    assert got["ratekeeper_available"][(units, ("name", "bucket"))] == pytest.approx(6)
    assert got["ratekeeper_limit"][(units, ("name", "bucket"))] == 10
    assert got["ratekeeper_limit"][(units, ("name", "window"))] == 5
    assert got["ratekeeper_keys"][(("name", "keyed"),)] == 2


def test_a_wrapped_client_is_read_through_its_limiter(scripted_server: ScriptedServer) -> None:
    client = rk.wrap(openai.OpenAI(base_url=scripted_server.openai_url, api_key="k"), rpm=600)
    registry = CollectorRegistry()
    register(client, registry=registry, name="openai")
    client.chat.completions.create(model="gpt-a", messages=[{"role": "user", "content": "hi"}])
    got = scrape(registry)
    assert got["ratekeeper_requests_granted_total"][(("name", "openai"),)] == 1
    assert got["ratekeeper_available"][(("budget", "rpm"), ("name", "openai"))] < 600


def test_several_sources_share_one_registry_and_names_must_differ() -> None:
    registry = CollectorRegistry()
    first, second = rk.Limiter(rpm=10), rk.Limiter(rpm=20)
    register(first, registry=registry, name="a")
    register(second, registry=registry, name="b")
    with pytest.raises(ValueError, match="already registered"):
        register(rk.Limiter(rpm=1), registry=registry, name="a")
    available = scrape(registry)["ratekeeper_available"]
    assert available[(("budget", "rpm"), ("name", "a"))] == 10
    assert available[(("budget", "rpm"), ("name", "b"))] == 20
    assert generate_latest(registry).decode().count("# TYPE ratekeeper_available gauge") == 1


def test_unregister_and_a_dropped_limiter_leave_the_scrape() -> None:
    registry = CollectorRegistry()
    kept, dropped = rk.Limiter(rpm=10), rk.Limiter(rpm=20)
    stop = register(kept, registry=registry, name="kept")
    register(dropped, registry=registry, name="dropped")
    del dropped
    gc.collect()
    assert set(scrape(registry)["ratekeeper_available"]) == {(("budget", "rpm"), ("name", "kept"))}
    stop()
    assert "ratekeeper_available" not in scrape(registry)
    register(rk.Limiter(rpm=5), registry=registry, name="dropped")  # the name is free again


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="cannot read metrics"):
        register(object(), registry=CollectorRegistry())
    with pytest.raises(ValueError, match="non-empty str"):
        register(rk.Limiter(rpm=1), registry=CollectorRegistry(), name="")


def test_redis_backed_limiters_are_exported(redis_url: str, unique_key: str) -> None:
    registry = CollectorRegistry()
    limiter = rk.Limiter(rpm=60, backend=rk.RedisBackend(redis_url), key=unique_key)
    bucket = rk.RedisTokenBucket(rk.RedisBackend(redis_url), unique_key + "-b", 1.0, 5)
    register(limiter, registry=registry, name="shared")
    register(bucket, registry=registry, name="bucket")
    limiter.acquire().release()
    bucket.try_acquire(2)
    got = scrape(registry)
    assert got["ratekeeper_requests_granted_total"][(("name", "shared"),)] == 1
    assert got["ratekeeper_available"][(("budget", "rpm"), ("name", "shared"))] == pytest.approx(
        59, abs=0.5
    )
    assert got["ratekeeper_wait_seconds_count"][(("name", "shared"),)] == 1  # +Inf bucket only
    assert got["ratekeeper_limit"][(("budget", "units"), ("name", "bucket"))] == 5


def test_learned_limits_are_exported_flat_or_per_model() -> None:
    class Learning:
        """A source whose stats() reports limits learned from the server."""

        def __init__(self, learned: dict[str, object]) -> None:
            self.learned = learned

        def stats(self) -> dict[str, object]:
            return {"granted": 1, "learned": self.learned}

    registry = CollectorRegistry()
    flat = Learning({"rpm": 500.0, "tpm": 30_000.0})
    per_model = Learning({"gpt-4o": {"tpm": 30_000.0}, "gpt-4o-mini": {"tpm": 200_000.0}})
    register(flat, registry=registry, name="flat")
    register(per_model, registry=registry, name="models")
    learned = scrape(registry)["ratekeeper_learned_limit"]
    assert learned[(("budget", "rpm"), ("model", ""), ("name", "flat"))] == 500
    assert learned[(("budget", "tpm"), ("model", "gpt-4o"), ("name", "models"))] == 30_000
    assert learned[(("budget", "tpm"), ("model", "gpt-4o-mini"), ("name", "models"))] == 200_000
