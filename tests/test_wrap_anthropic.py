"""rk.wrap around the real anthropic SDK (sync and async), over HTTP to a scripted server."""

from __future__ import annotations

import asyncio

import anthropic
import pytest
from scripted_server import ScriptedServer, error, ok, rate_limited

import ratekeeper as rk

MESSAGES = [{"role": "user", "content": "y" * 400}]  # about 100 tokens


def client_for(server: ScriptedServer, **wrap_args) -> anthropic.Anthropic:
    plain = anthropic.Anthropic(base_url=server.anthropic_url, api_key="k", max_retries=7)
    return rk.wrap(plain, **wrap_args)


def async_client_for(server: ScriptedServer, **wrap_args) -> anthropic.AsyncAnthropic:
    plain = anthropic.AsyncAnthropic(base_url=server.anthropic_url, api_key="k", max_retries=7)
    return rk.wrap(plain, **wrap_args)


def ask(client, model: str = "claude-a", **extra):
    return client.messages.create(model=model, max_tokens=1000, messages=MESSAGES, **extra)


def test_the_wrapped_client_keeps_its_class_and_passes_the_rest_through(scripted_server):
    limiter = rk.Limiter(rpm=100)
    client = client_for(scripted_server, limiter=limiter)
    assert isinstance(client, anthropic.Anthropic)
    assert client.max_retries == 0
    assert [model.id for model in client.models.list()] == ["claude-x"]
    assert isinstance(client.with_options(timeout=3.0), anthropic.Anthropic)
    assert limiter.stats()["granted"] == 0


def test_input_and_output_tokens_are_charged_apart_then_reconciled(scripted_server):
    clock = rk.ManualClock()
    limiter = rk.Limiter(itpm=50_000, otpm=8_000, clock=clock)
    scripted_server.queue(ok(usage=(90, 40)))
    client = client_for(scripted_server, limiter=limiter)
    response = ask(client)
    assert response.content[0].text == "ok"
    assert limiter.available("itpm") == pytest.approx(50_000 - 90)
    assert limiter.available("otpm") == pytest.approx(8_000 - 40)


def test_max_tokens_is_charged_to_output_up_front(scripted_server):
    clock = rk.ManualClock()
    limiter = rk.Limiter(otpm=1_500, clock=clock)
    client = client_for(scripted_server, limiter=limiter)
    ask(client)  # charged 1000 of output up front, reconciled to the 5 used
    assert limiter.available("otpm") == pytest.approx(1_500 - 5)
    with pytest.raises(rk.RateLimitTimeout):
        limiter.acquire(output_tokens=1_496, timeout=0)


def test_overloaded_529_is_retried(scripted_server):
    clock = rk.ManualClock()
    scripted_server.queue(error(529), error(529))
    limiter = rk.Limiter(rpm=1000, clock=clock)
    client = client_for(scripted_server, limiter=limiter, retry=rk.Retry(clock=clock))
    assert ask(client).content[0].text == "ok"
    assert scripted_server.hit_count() == 3
    assert limiter.stats()["retries"] == 2


def test_529_counts_against_the_breaker_of_that_model_only(scripted_server):
    clock = rk.ManualClock()
    breaker = rk.CircuitBreaker(failure_threshold=1, reset_timeout=60.0, clock=clock)
    scripted_server.queue(error(529), model="claude-a")
    client = client_for(
        scripted_server, limiter=rk.Limiter(rpm=1000, clock=clock), retry=False, breaker=breaker
    )
    with pytest.raises(anthropic.OverloadedError):
        ask(client, model="claude-a")
    with pytest.raises(rk.CircuitOpenError):
        ask(client, model="claude-a")
    assert ask(client, model="claude-b").model == "claude-b"
    assert scripted_server.models_hit() == ["claude-a", "claude-b"]


def test_an_overloaded_model_falls_back_once_its_breaker_opens(scripted_server):
    clock = rk.ManualClock()
    breaker = rk.CircuitBreaker(failure_threshold=2, reset_timeout=60.0, clock=clock)
    scripted_server.queue(*[error(529)] * 5, model="claude-a")
    client = client_for(
        scripted_server,
        limiter=rk.Limiter(rpm=1000, clock=clock),
        retry=rk.Retry(max_retries=5, clock=clock),
        breaker=breaker,
        fallback_models=["claude-b"],
    )
    assert ask(client, model="claude-a").model == "claude-b"
    assert scripted_server.models_hit() == ["claude-a", "claude-a", "claude-b"]


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_surface_at_once_unwrapped(scripted_server, status):
    scripted_server.queue(error(status))
    client = client_for(scripted_server, rpm=1000)
    with pytest.raises(anthropic.APIStatusError) as caught:
        ask(client)
    assert caught.value.status_code == status
    assert scripted_server.hit_count() == 1


def test_a_stream_reconciles_input_and_output_from_its_events(scripted_server):
    clock = rk.ManualClock()
    limiter = rk.Limiter(itpm=50_000, otpm=8_000, clock=clock)
    scripted_server.queue(ok(usage=(33, 21)))
    client = client_for(scripted_server, limiter=limiter)
    stream = ask(client, stream=True)
    assert isinstance(stream, anthropic.Stream)
    kinds = [event.type for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert limiter.available("itpm") == pytest.approx(50_000 - 33)
    assert limiter.available("otpm") == pytest.approx(8_000 - 21)


def test_anthropic_reset_headers_drive_the_retry(scripted_server):
    scripted_server.queue(rate_limited(retry_after_ms=150))
    limiter = rk.Limiter(rpm=1000)
    client = client_for(scripted_server, limiter=limiter)
    assert ask(client).content[0].text == "ok"
    assert scripted_server.hit_count() == 2
    assert scripted_server.hits[1].at - scripted_server.hits[0].at >= 0.1


async def test_async_client_retries_and_shares_identical_calls(scripted_server):
    scripted_server.queue(rate_limited(retry_after=0.1))
    limiter = rk.Limiter(rpm=1000)
    client = async_client_for(scripted_server, limiter=limiter, cache=rk.ResponseCache())
    assert isinstance(client, anthropic.AsyncAnthropic)
    results = await asyncio.gather(
        *(
            client.messages.create(model="claude-a", max_tokens=100, messages=MESSAGES)
            for _ in range(3)
        )
    )
    assert all(result.to_dict() == results[0].to_dict() for result in results)
    assert len({id(result) for result in results}) == len(results)  # each its own object
    assert scripted_server.hit_count() == 2  # one 429, one success, shared by all three
    assert limiter.stats()["rate_limited"] == 1


async def test_async_stream_reconciles(scripted_server):
    clock = rk.ManualClock()
    limiter = rk.Limiter(itpm=50_000, otpm=8_000, clock=clock)
    scripted_server.queue(ok(usage=(12, 9)))
    client = async_client_for(scripted_server, limiter=limiter)
    stream = await client.messages.create(
        model="claude-a", max_tokens=500, messages=MESSAGES, stream=True
    )
    assert isinstance(stream, anthropic.AsyncStream)
    async for _ in stream:
        pass
    assert limiter.available("otpm") == pytest.approx(8_000 - 9)
    assert limiter.available("itpm") == pytest.approx(50_000 - 12)
