"""Events (SPEC section 14): one log record per event, no secret in any, and subscriptions."""

from __future__ import annotations

import gc
import logging
import weakref
from typing import Any

import openai
import pytest
from scripted_server import ScriptedServer, error, ok, rate_limited

import ratekeeper as rk
from ratekeeper._events import EVENT_KINDS, emit, link

SECRET = "sk-secret-4f9a8b7c6d5e4f3a2b1c"


def records_of(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


# --- logging ------------------------------------------------------------------

LEVELS = {
    "rate_limited": ("ratekeeper.retry", logging.WARNING),
    "retry": ("ratekeeper.retry", logging.INFO),
    "giving_up": ("ratekeeper.retry", logging.WARNING),
    "pause": ("ratekeeper.limiter", logging.INFO),
    "learned_limit": ("ratekeeper.limiter", logging.INFO),
    "fallback": ("ratekeeper.wrap", logging.WARNING),
    "redis_outage": ("ratekeeper.redis", logging.WARNING),
    "redis_recovered": ("ratekeeper.redis", logging.INFO),
}


@pytest.mark.parametrize("kind", sorted(LEVELS))
def test_each_event_is_one_record_on_its_area_logger_at_its_level(
    caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="ratekeeper")
    emit(kind, None, model="gpt-4o", wait=1.5, attempt=2, reason="429")
    [record] = caplog.records
    assert (record.name, record.levelno) == LEVELS[kind]
    assert record.event == kind  # type: ignore[attr-defined]
    assert record.model == "gpt-4o"  # type: ignore[attr-defined]
    assert record.wait == 1.5  # type: ignore[attr-defined]


def test_every_kind_has_a_logging_rule() -> None:
    assert set(LEVELS) | {"breaker_state"} == EVENT_KINDS


def test_a_429_record_reads_well(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ratekeeper")
    emit("rate_limited", None, model="gpt-4o", wait=2.0, attempt=1)
    assert caplog.records[0].getMessage() == "429 from gpt-4o: waiting 2s (attempt 1)"


def test_nothing_is_logged_below_the_configured_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ratekeeper")
    emit("retry", None, model="m", wait=0.1, attempt=1, reason="429")
    emit("rate_limited", None, model="m", wait=0.1, attempt=1)
    assert [r.event for r in caplog.records] == ["rate_limited"]  # type: ignore[attr-defined]


def test_a_field_that_clashes_with_a_record_attribute_is_renamed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ratekeeper")
    emit("pause", None, wait=1.0, name="openai", message="x")
    record = caplog.records[0]
    assert record.rk_name == "openai"  # type: ignore[attr-defined]
    assert record.rk_message == "x"  # type: ignore[attr-defined]
    assert record.name == "ratekeeper.limiter"


def every_text_of(record: logging.LogRecord) -> str:
    return " ".join([record.getMessage(), *map(repr, vars(record).values())])


@pytest.mark.parametrize(
    "fields",
    [
        {"api_key": SECRET},
        {"reason": f"Incorrect API key provided: {SECRET}"},
        {"error": ConnectionError(f"redis://:{SECRET}@localhost:6379 refused")},
        {"reason": f"Authorization: Bearer {SECRET}"},
        {"headers": {"x-api-key": SECRET, "retry-after": "2"}},
        {"reason": f"url?api_key={SECRET}&x=1"},
        {"password": SECRET, "token": SECRET},
    ],
)
def test_no_record_and_no_event_holds_a_secret(
    caplog: pytest.LogCaptureFixture, fields: dict[str, Any]
) -> None:
    caplog.set_level(logging.DEBUG, logger="ratekeeper")
    seen: list[rk.Event] = []
    stop = rk.subscribe(None, seen.append)
    try:
        emit("redis_outage", None, **fields)
    finally:
        stop()
    [record] = caplog.records
    assert SECRET not in every_text_of(record)
    assert "4f9a8b7c" not in repr(seen[0])
    assert "***" in every_text_of(record)


def test_fields_that_are_not_secrets_are_kept(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ratekeeper")
    emit("learned_limit", None, model="gpt-4o-mini", budget="tokens", value=30000.0)
    record = caplog.records[0]
    assert (record.model, record.budget, record.value) == ("gpt-4o-mini", "tokens", 30000.0)  # type: ignore[attr-defined]


def test_emit_never_raises_even_on_an_unknown_kind_or_a_bad_field(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    caplog.set_level(logging.DEBUG, logger="ratekeeper")
    emit("no_such_kind", None, x=1)
    emit("pause", None, wait=Unprintable())
    assert caplog.records[0].event == "no_such_kind"  # type: ignore[attr-defined]
    assert any(r.name == "ratekeeper.events" for r in caplog.records)


# --- subscriptions ------------------------------------------------------------


def test_a_subscription_on_a_limiter_gets_its_events_only() -> None:
    ours, other = rk.Limiter(rpm=60), rk.Limiter(rpm=60)
    seen: list[rk.Event] = []
    stop = rk.subscribe(ours, seen.append)
    emit("pause", ours, wait=1.0)
    emit("pause", other, wait=2.0)
    emit("pause", None, wait=3.0)
    stop()
    emit("pause", ours, wait=4.0)
    assert [(e.kind, e.source, e.fields["wait"]) for e in seen] == [("pause", ours, 1.0)]
    assert seen[0].time > 0


def test_a_global_subscription_gets_every_event_in_order() -> None:
    limiter = rk.Limiter(rpm=60)
    seen: list[tuple[str, object]] = []
    stop = rk.subscribe(None, lambda event: seen.append((event.kind, event.source)))
    emit("retry", limiter, model="m", wait=0.1, attempt=1, reason="429")
    emit("pause", None, wait=1.0)
    stop()
    stop()  # twice is harmless
    emit("pause", None, wait=1.0)
    assert seen == [("retry", limiter), ("pause", None)]


def test_a_subscription_on_a_wrapped_client_gets_its_limiter_and_breaker_events(
    scripted_server: ScriptedServer,
) -> None:
    breaker = rk.CircuitBreaker(failure_threshold=1)
    client = rk.wrap(
        openai.OpenAI(base_url=scripted_server.openai_url, api_key=SECRET),
        rpm=600,
        retry=False,
        breaker=breaker,
    )
    seen: list[rk.Event] = []
    rk.subscribe(client, seen.append)
    link(breaker, client)  # what wrap does for the breakers it uses
    emit("pause", client.ratekeeper_limiter, wait=1.0)
    scripted_server.queue(error(500))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-a", messages=[{"role": "user", "content": "x"}])
    assert [(e.kind, e.source) for e in seen] == [
        ("pause", client.ratekeeper_limiter),
        ("breaker_state", breaker),
    ]
    assert seen[1].fields == {"state": "open", "previous": "closed", "model": "gpt-a"}


def test_a_subscription_never_keeps_its_limiter_alive() -> None:
    limiter = rk.Limiter(rpm=60)
    seen: list[rk.Event] = []
    rk.subscribe(limiter, seen.append)
    gone = weakref.ref(limiter)
    del limiter
    gc.collect()
    assert gone() is None
    # A new object at the same address does not inherit the subscription.
    for _ in range(50):
        fresh = rk.Limiter(rpm=60)
        emit("pause", fresh, wait=1.0)
    assert seen == []


def test_a_subscriber_that_raises_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = rk.Limiter(rpm=60)
    seen: list[str] = []

    def broken(event: rk.Event) -> None:
        raise ValueError("subscriber bug")

    rk.subscribe(limiter, broken)
    rk.subscribe(limiter, lambda event: seen.append(event.kind))
    with caplog.at_level(logging.ERROR, logger="ratekeeper.events"):
        emit("pause", limiter, wait=1.0)
    assert seen == ["pause"]
    [record] = caplog.records
    assert record.exc_info is not None and "subscriber bug" in str(record.exc_info[1])


def test_subscribe_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="callable"):
        rk.subscribe(None, "print")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot subscribe"):
        rk.subscribe(42, print)

    async def later(event: rk.Event) -> None: ...

    with pytest.raises(TypeError, match="plain function"):
        rk.subscribe(None, later)


def test_every_limiter_kind_can_be_subscribed_to() -> None:
    for limiter in (
        rk.TokenBucket.per_second(1),
        rk.SlidingWindow(1, 1.0),
        rk.FixedWindow(1, 1.0),
        rk.KeyedLimiter(1, 1),
        rk.Limiter(rpm=1),
        rk.CircuitBreaker(),
    ):
        seen: list[rk.Event] = []
        stop = rk.subscribe(limiter, seen.append)
        emit("pause", limiter, wait=1.0)
        stop()
        assert len(seen) == 1


# --- end to end through rk.wrap (needs the retry loop's emit calls) -----------


def test_a_wrapped_client_logs_without_ever_writing_its_api_key(
    scripted_server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ratekeeper")
    caplog.set_level(logging.DEBUG, logger="openai")
    caplog.set_level(logging.DEBUG, logger="httpx")
    client = rk.wrap(
        openai.OpenAI(base_url=scripted_server.openai_url, api_key=SECRET),
        rpm=600,
        retry=False,
        breaker=rk.CircuitBreaker(failure_threshold=1),
    )
    scripted_server.queue(error(500))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-a", messages=[{"role": "user", "content": "x"}])
    ours = [r for r in caplog.records if r.name.startswith("ratekeeper")]
    assert ours, "the breaker opening must be logged"
    for record in ours:
        assert SECRET not in every_text_of(record)


def test_a_429_then_a_success_logs_a_warning_and_a_retry(
    scripted_server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ratekeeper")
    client = rk.wrap(openai.OpenAI(base_url=scripted_server.openai_url, api_key=SECRET), rpm=600)
    seen: list[rk.Event] = []
    rk.subscribe(client, seen.append)
    scripted_server.queue(rate_limited(retry_after=0.01), ok())
    client.chat.completions.create(model="gpt-a", messages=[{"role": "user", "content": "x"}])
    [warning] = records_of(caplog, "rate_limited")
    assert warning.levelno == logging.WARNING and warning.model == "gpt-a"  # type: ignore[attr-defined]
    assert warning.attempt == 1  # type: ignore[attr-defined]
    assert records_of(caplog, "retry")[0].levelno == logging.INFO
    assert [e.kind for e in seen][:2] == ["rate_limited", "retry"]
    assert all(SECRET not in every_text_of(r) for r in caplog.records)


def test_a_link_adds_its_fields_to_the_childs_events(caplog: pytest.LogCaptureFixture) -> None:
    limiter = rk.Limiter(rpm=60)
    breaker = rk.CircuitBreaker(failure_threshold=1)
    link(breaker, limiter, model="gpt-4o")
    seen: list[rk.Event] = []
    rk.subscribe(limiter, seen.append)
    caplog.set_level(logging.INFO, logger="ratekeeper")
    breaker.trip()
    assert seen[0].fields == {"model": "gpt-4o", "state": "open", "previous": "closed"}
    assert caplog.records[0].getMessage() == "circuit breaker closed -> open (model=gpt-4o)"
    assert caplog.records[0].model == "gpt-4o"  # type: ignore[attr-defined]


def test_redis_limiters_can_be_subscribed_to_and_are_released_on_unsubscribe(
    redis_url: str, unique_key: str
) -> None:
    bucket = rk.RedisTokenBucket(rk.RedisBackend(redis_url), unique_key, 1.0, 5)
    limiter = rk.Limiter(rpm=60, backend=rk.RedisBackend(redis_url), key=unique_key + "-l")
    for source in (bucket, limiter):
        seen: list[rk.Event] = []
        stop = rk.subscribe(source, seen.append)
        emit("redis_outage", source, error="refused")
        stop()
        emit("redis_outage", source, error="refused")
        assert [e.source for e in seen] == [source]


def test_an_event_is_a_read_only_value() -> None:
    seen: list[rk.Event] = []
    stop = rk.subscribe(None, seen.append)
    emit("pause", None, wait=1.0)
    stop()
    event = seen[0]
    with pytest.raises(TypeError):
        event.fields["wait"] = 2.0  # type: ignore[index]
    with pytest.raises(AttributeError):
        event.kind = "retry"  # type: ignore[misc]
    assert event == rk.Event("pause", None, {"wait": 1.0}, event.time)
