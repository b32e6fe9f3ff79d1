"""rk.wrap around the real openai SDK (sync and async), over HTTP to a scripted server."""

from __future__ import annotations

import asyncio
import time

import openai
import pytest
from scripted_server import (
    ScriptedServer,
    error,
    ok,
    openrouter_rate_limited,
    rate_limited,
    slow,
)

import ratekeeper as rk

MESSAGES = [{"role": "user", "content": "x" * 400}]  # about 100 tokens


def client_for(server: ScriptedServer, **wrap_args) -> openai.OpenAI:
    # max_retries=7 on purpose: wrap must turn the SDK's own retries off.
    plain = openai.OpenAI(base_url=server.openai_url, api_key="k", max_retries=7)
    return rk.wrap(plain, **wrap_args)


def async_client_for(server: ScriptedServer, **wrap_args) -> openai.AsyncOpenAI:
    plain = openai.AsyncOpenAI(base_url=server.openai_url, api_key="k", max_retries=7)
    return rk.wrap(plain, **wrap_args)


def chat(client, model: str = "gpt-a", **extra):
    return client.chat.completions.create(model=model, messages=MESSAGES, **extra)


def test_the_wrapped_client_keeps_its_class_and_passes_the_rest_through(scripted_server):
    limiter = rk.Limiter(rpm=100)
    client = client_for(scripted_server, limiter=limiter)
    assert isinstance(client, openai.OpenAI)
    assert client.max_retries == 0
    assert [model.id for model in client.models.list()] == ["gpt-x"]
    assert limiter.stats()["granted"] == 0  # models.list is not limited
    assert (
        client.base_url == openai.OpenAI(base_url=scripted_server.openai_url, api_key="k").base_url
    )


def test_with_options_returns_a_wrapped_client_on_the_same_limiter(scripted_server):
    limiter = rk.Limiter(rpm=100)
    client = client_for(scripted_server, limiter=limiter).with_options(timeout=5.0)
    assert isinstance(client, openai.OpenAI)
    chat(client)
    assert limiter.stats()["granted"] == 1
    assert client.with_options(max_retries=3).max_retries == 0


def test_every_endpoint_goes_through_the_limiter(scripted_server):
    limiter = rk.Limiter(rpm=100)
    client = client_for(scripted_server, limiter=limiter)
    assert chat(client).choices[0].message.content == "ok"
    assert client.completions.create(model="m", prompt="hello").choices[0].text == "ok"
    assert client.embeddings.create(model="m", input="hello").data[0].embedding == [0.0, 1.0]
    assert client.responses.create(model="m", input="hello").output_text == "ok"
    assert limiter.stats()["granted"] == 4
    assert scripted_server.hit_count() == 4


def test_tokens_are_estimated_then_reconciled_with_usage():
    clock = rk.ManualClock()
    limiter = rk.Limiter(tpm=10_000, clock=clock)
    with ScriptedServer() as server:
        server.queue(ok(usage=(30, 12)))
        client = client_for(server, limiter=limiter)
        chat(client, max_tokens=500)
    # The estimate (100 + 500) was charged, then corrected to the 42 used.
    assert limiter.available("tpm") == pytest.approx(10_000 - 42)


def test_a_custom_token_estimator_is_used(scripted_server):
    seen = []
    clock = rk.ManualClock()
    limiter = rk.Limiter(tpm=10_000, clock=clock)
    scripted_server.queue(slow(0.0))

    def estimator(kwargs):
        seen.append(kwargs["model"])
        return 777

    client = client_for(scripted_server, limiter=limiter, token_estimator=estimator)
    chat(client)
    assert seen == ["gpt-a"]


@pytest.mark.parametrize(
    "reply",
    [
        lambda: rate_limited(retry_after=0.2),
        lambda: rate_limited(retry_after_ms=200),
        lambda: rate_limited(headers={"x-ratelimit-reset-requests": "200ms"}),
        lambda: openrouter_rate_limited(reset_in=0.6),  # made at run time; room for a slow start
    ],
    ids=["retry-after", "retry-after-ms", "x-ratelimit-reset", "openrouter-body"],
)
def test_a_429_is_retried_after_the_wait_the_server_gave(scripted_server, reply):
    limiter = rk.Limiter(rpm=1000)
    scripted_server.queue(reply())
    client = client_for(scripted_server, limiter=limiter)
    started = time.monotonic()
    assert chat(client).choices[0].message.content == "ok"
    assert scripted_server.hit_count() == 2
    assert scripted_server.hits[1].at - scripted_server.hits[0].at >= 0.1
    assert time.monotonic() - started < 30
    stats = limiter.stats()
    assert (stats["rate_limited"], stats["retries"], stats["granted"]) == (1, 1, 2)


def test_no_double_retries_each_attempt_is_one_request(scripted_server):
    clock = rk.ManualClock()
    scripted_server.queue(*[rate_limited(retry_after=1)] * 10)
    limiter = rk.Limiter(rpm=1000, clock=clock)
    client = client_for(
        scripted_server, limiter=limiter, retry=rk.Retry(max_retries=2, clock=clock)
    )
    # Retries spent, the SDK raises its own error for the last 429, as after its own retries.
    with pytest.raises(openai.RateLimitError):
        chat(client)
    assert scripted_server.hit_count() == 3
    assert limiter.stats()["retries"] == 2


def test_5xx_is_retried(scripted_server):
    scripted_server.queue(error(500), error(503))
    clock = rk.ManualClock()
    client = client_for(
        scripted_server, limiter=rk.Limiter(rpm=1000, clock=clock), retry=rk.Retry(clock=clock)
    )
    assert chat(client).choices[0].message.content == "ok"
    assert scripted_server.hit_count() == 3


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, openai.BadRequestError), (401, openai.AuthenticationError), (404, openai.NotFoundError)],
)
def test_client_errors_surface_at_once_unwrapped(scripted_server, status, kind):
    scripted_server.queue(error(status))
    client = client_for(scripted_server, rpm=1000, fallback_models=["gpt-b"])
    with pytest.raises(kind):
        chat(client)
    assert scripted_server.hit_count() == 1


def test_fallback_moves_on_and_the_429d_model_sits_out(scripted_server):
    scripted_server.queue(*[rate_limited(retry_after=30)] * 5, model="gpt-a")
    client = client_for(
        scripted_server,
        limiter=rk.Limiter(rpm=1000),
        retry=rk.Retry(max_retries=3, max_retry_after=5.0),
        fallback_models=["gpt-b", "gpt-c"],
    )
    assert chat(client, model="gpt-a").model == "gpt-b"
    assert chat(client, model="gpt-a").model == "gpt-b"
    # gpt-a asked for 30 s (more than max_retry_after): one try, then it sits out.
    assert scripted_server.models_hit() == ["gpt-a", "gpt-b", "gpt-b"]


def test_fallback_follows_the_order_given(scripted_server):
    clock = rk.ManualClock()
    scripted_server.queue(*[rate_limited(retry_after=1)] * 2, model="gpt-a")
    scripted_server.queue(*[rate_limited(retry_after=1)] * 2, model="gpt-b")
    client = client_for(
        scripted_server,
        limiter=rk.Limiter(rpm=1000, clock=clock),
        retry=rk.Retry(max_retries=1, clock=clock),
        fallback_models=["gpt-b", "gpt-c"],
    )
    assert chat(client, model="gpt-a").model == "gpt-c"
    assert scripted_server.models_hit() == ["gpt-a", "gpt-a", "gpt-b", "gpt-b", "gpt-c"]


def test_breaker_is_per_model(scripted_server):
    clock = rk.ManualClock()
    breaker = rk.CircuitBreaker(failure_threshold=2, reset_timeout=60.0, clock=clock)
    scripted_server.queue(*[error(500)] * 10, model="gpt-a")
    client = client_for(
        scripted_server, limiter=rk.Limiter(rpm=1000, clock=clock), retry=False, breaker=breaker
    )
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            chat(client, model="gpt-a")
    with pytest.raises(rk.CircuitOpenError):
        chat(client, model="gpt-a")
    assert scripted_server.hit_count(model="gpt-a") == 2
    assert chat(client, model="gpt-b").model == "gpt-b"  # another model still works


def test_breaker_does_not_count_429s(scripted_server):
    clock = rk.ManualClock()
    breaker = rk.CircuitBreaker(failure_threshold=1, reset_timeout=60.0, clock=clock)
    scripted_server.queue(rate_limited(retry_after=1), rate_limited(retry_after=1))
    client = client_for(
        scripted_server, limiter=rk.Limiter(rpm=1000, clock=clock), retry=False, breaker=breaker
    )
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            chat(client)
    assert breaker.state == "closed"


def test_identical_requests_are_answered_once_by_the_cache(scripted_server):
    cache = rk.ResponseCache()
    client = client_for(scripted_server, rpm=1000, cache=cache)
    first = chat(client)
    second = chat(client)
    assert second.to_dict() == first.to_dict() and second is not first  # its own copy
    chat(client, model="gpt-other")
    assert scripted_server.hit_count() == 2


def test_streams_are_not_cached_and_reconcile_when_usage_arrives(scripted_server):
    clock = rk.ManualClock()
    limiter = rk.Limiter(tpm=10_000, concurrency=1, clock=clock)
    scripted_server.queue(ok(usage=(20, 7)))
    client = client_for(scripted_server, limiter=limiter, cache=rk.ResponseCache())
    stream = chat(client, stream=True, stream_options={"include_usage": True}, max_tokens=300)
    assert isinstance(stream, openai.Stream)
    with pytest.raises(rk.RateLimitTimeout):
        limiter.acquire(timeout=0)  # the stream still holds the only slot
    chunks = list(stream)
    assert chunks[-1].usage.total_tokens == 27
    assert limiter.available("tpm") == pytest.approx(10_000 - 27)
    with limiter.acquire(timeout=0):
        pass


def test_with_raw_response_is_limited_and_still_raw(scripted_server):
    limiter = rk.Limiter(rpm=1000)
    scripted_server.queue(ok(headers={"x-request-id": "abc"}))
    client = client_for(scripted_server, limiter=limiter)
    raw = client.chat.completions.with_raw_response.create(model="gpt-a", messages=MESSAGES)
    assert raw.headers["x-request-id"] == "abc"
    assert raw.parse().choices[0].message.content == "ok"
    assert limiter.stats()["granted"] == 1


def test_response_headers_are_adopted_by_the_limiter(scripted_server):
    clock = rk.ManualClock()
    limiter = rk.Limiter(rpm=1000, clock=clock)
    scripted_server.queue(
        ok(
            headers={
                "x-ratelimit-limit-requests": "10",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "20s",  # full again in 20 s: one per 2 s
            }
        )
    )
    client = client_for(scripted_server, limiter=limiter)
    chat(client)
    with pytest.raises(rk.RateLimitTimeout):
        limiter.acquire(timeout=1.0)


async def test_async_client_keeps_its_class_and_retries(scripted_server):
    limiter = rk.Limiter(rpm=1000)
    scripted_server.queue(rate_limited(retry_after_ms=100))
    client = async_client_for(scripted_server, limiter=limiter)
    assert isinstance(client, openai.AsyncOpenAI)
    response = await client.chat.completions.create(model="gpt-a", messages=MESSAGES)
    assert response.choices[0].message.content == "ok"
    assert scripted_server.hit_count() == 2
    assert [model.id async for model in client.models.list()] == ["gpt-x"]


async def test_one_429_pauses_every_concurrent_task(scripted_server):
    limiter = rk.Limiter(rpm=100_000)
    scripted_server.queue(rate_limited(retry_after=0.4))
    client = async_client_for(scripted_server, limiter=limiter)
    first = asyncio.ensure_future(client.chat.completions.create(model="gpt-a", messages=MESSAGES))
    while limiter.stats()["rate_limited"] == 0:
        await asyncio.sleep(0.005)
    rest = [client.chat.completions.create(model="gpt-a", messages=MESSAGES) for _ in range(4)]
    await asyncio.gather(first, *rest)
    assert scripted_server.hit_count() == 6  # one 429, then one request each: nobody else got a 429
    after_429 = [hit.at - scripted_server.hits[0].at for hit in scripted_server.hits[1:]]
    assert min(after_429) >= 0.3


async def test_concurrent_identical_async_requests_share_one_call(scripted_server):
    scripted_server.queue(slow(0.1))
    client = async_client_for(scripted_server, rpm=1000, cache=rk.ResponseCache())
    results = await asyncio.gather(
        *(client.chat.completions.create(model="gpt-a", messages=MESSAGES) for _ in range(5))
    )
    assert scripted_server.hit_count() == 1
    assert all(result.to_dict() == results[0].to_dict() for result in results)
    assert len({id(result) for result in results}) == len(results)  # each its own object


async def test_a_cancelled_call_returns_its_reservation(scripted_server):
    clock = rk.ManualClock()
    limiter = rk.Limiter(rpm=1, clock=clock)
    client = async_client_for(scripted_server, limiter=limiter)
    await client.chat.completions.create(model="gpt-a", messages=MESSAGES)
    waiting = asyncio.ensure_future(
        client.chat.completions.create(model="gpt-a", messages=MESSAGES)
    )
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    clock.advance(60.0)
    assert limiter.available("rpm") == pytest.approx(1.0)
    assert scripted_server.hit_count() == 1


async def test_an_async_stream_reconciles_when_it_reports_usage(scripted_server):
    clock = rk.ManualClock()
    limiter = rk.Limiter(tpm=10_000, clock=clock)
    scripted_server.queue(ok(usage=(11, 4)))
    client = async_client_for(scripted_server, limiter=limiter)
    stream = await client.chat.completions.create(
        model="gpt-a", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert isinstance(stream, openai.AsyncStream)
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage.total_tokens == 15
    assert limiter.available("tpm") == pytest.approx(10_000 - 15)


def test_wrap_refuses_what_is_not_a_client():
    with pytest.raises(TypeError, match="client"):
        rk.wrap(object(), rpm=10)
    with pytest.raises(TypeError, match="fallback_models"):
        rk.wrap(openai.OpenAI(api_key="k"), rpm=10, fallback_models="gpt-b")


async def test_a_cancelled_call_through_a_half_open_breaker_gives_its_probe_slot_back(
    scripted_server,
):
    clock = rk.ManualClock()
    breaker = rk.CircuitBreaker(1, 1.0, clock=clock)
    breaker.trip()
    clock.advance(1.0)
    assert breaker.state == "half_open"
    scripted_server.queue(slow(30.0), ok())
    client = async_client_for(scripted_server, rpm=1000, retry=False, breaker=breaker)
    call = asyncio.ensure_future(client.chat.completions.create(model="gpt-a", messages=MESSAGES))
    while scripted_server.hit_count() == 0:
        await asyncio.sleep(0.01)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # The probe slot came back: the next call is let through and closes the breaker.
    reply = await client.chat.completions.create(model="gpt-a", messages=MESSAGES)
    assert reply.choices[0].message.content == "ok"
    assert breaker.state == "closed"
