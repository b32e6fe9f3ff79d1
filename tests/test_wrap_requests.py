"""Every kind of request of a wrapped openai / anthropic client (sync and async), over HTTP.

For each: the server answers a 429 first, then success. The caller sees the
success, the server saw exactly two requests, and a model call's charge was
reconciled with the usage its response reported (JSON body, event stream, raw
and streaming-response wrappers); a request that is not a model call
(``models.list``, ``count_tokens``, ``batches``) took no budget.
"""

from __future__ import annotations

from typing import Any, Callable

import anthropic
import openai
import pytest
from scripted_server import ScriptedServer, ok, rate_limited

import ratekeeper as rk

CHAT = [{"role": "user", "content": "x" * 400}]
WITH_USAGE = {"stream_options": {"include_usage": True}}
USAGE = (21, 8)  # what the success reports: prompt, completion


def _consume(stream: Any) -> None:
    for _ in stream:
        pass


async def _aconsume(stream: Any) -> None:
    async for _ in stream:
        pass


def _streamed_body(response: Any) -> Any:
    with response as opened:
        return opened.parse()


# name -> (sync call, async call, path suffix, model call?)
Case = tuple[Callable[[Any], Any], Callable[[Any], Any], str, bool]


def _openai_stream_helper(client: Any) -> Any:
    with client.chat.completions.stream(model="m", messages=CHAT, **WITH_USAGE) as stream:
        _consume(stream)
        return stream.get_final_completion()


async def _aopenai_stream_helper(client: Any) -> Any:
    async with client.chat.completions.stream(model="m", messages=CHAT, **WITH_USAGE) as stream:
        await _aconsume(stream)
        return await stream.get_final_completion()


def _responses_stream(client: Any) -> Any:
    with client.responses.stream(model="m", input="hi") as stream:
        _consume(stream)
        return stream.get_final_response()


async def _aresponses_stream(client: Any) -> Any:
    async with client.responses.stream(model="m", input="hi") as stream:
        await _aconsume(stream)
        return await stream.get_final_response()


async def _acreate_stream(client: Any) -> Any:
    stream = await client.chat.completions.create(
        model="m", messages=CHAT, stream=True, **WITH_USAGE
    )
    await _aconsume(stream)
    return stream


async def _astreaming_response(resource: Any, **kwargs: Any) -> Any:
    async with resource.with_streaming_response.create(**kwargs) as response:
        return await response.parse()


async def _alist(page: Any) -> list[Any]:
    return [item async for item in page]


OPENAI: dict[str, Case] = {
    "chat.completions.create": (
        lambda c: c.chat.completions.create(model="m", messages=CHAT),
        lambda c: c.chat.completions.create(model="m", messages=CHAT),
        "/chat/completions",
        True,
    ),
    "chat.completions.create(stream=True)": (
        lambda c: _consume(
            c.chat.completions.create(model="m", messages=CHAT, stream=True, **WITH_USAGE)
        ),
        _acreate_stream,
        "/chat/completions",
        True,
    ),
    "chat.completions.parse": (
        lambda c: c.chat.completions.parse(model="m", messages=CHAT),
        lambda c: c.chat.completions.parse(model="m", messages=CHAT),
        "/chat/completions",
        True,
    ),
    "chat.completions.stream": (
        _openai_stream_helper,
        _aopenai_stream_helper,
        "/chat/completions",
        True,
    ),
    "chat.completions.with_raw_response": (
        lambda c: c.chat.completions.with_raw_response.create(model="m", messages=CHAT).parse(),
        lambda c: c.chat.completions.with_raw_response.create(model="m", messages=CHAT),
        "/chat/completions",
        True,
    ),
    "chat.completions.with_streaming_response": (
        lambda c: _streamed_body(
            c.chat.completions.with_streaming_response.create(model="m", messages=CHAT)
        ),
        lambda c: _astreaming_response(c.chat.completions, model="m", messages=CHAT),
        "/chat/completions",
        True,
    ),
    "beta.chat.completions.parse": (
        lambda c: c.beta.chat.completions.parse(model="m", messages=CHAT),
        lambda c: c.beta.chat.completions.parse(model="m", messages=CHAT),
        "/chat/completions",
        True,
    ),
    "completions.create": (
        lambda c: c.completions.create(model="m", prompt="hello"),
        lambda c: c.completions.create(model="m", prompt="hello"),
        "/completions",
        True,
    ),
    "embeddings.create": (
        lambda c: c.embeddings.create(model="m", input="hello"),
        lambda c: c.embeddings.create(model="m", input="hello"),
        "/embeddings",
        True,
    ),
    "responses.create": (
        lambda c: c.responses.create(model="m", input="hi"),
        lambda c: c.responses.create(model="m", input="hi"),
        "/responses",
        True,
    ),
    "responses.parse": (
        lambda c: c.responses.parse(model="m", input="hi"),
        lambda c: c.responses.parse(model="m", input="hi"),
        "/responses",
        True,
    ),
    "responses.stream": (_responses_stream, _aresponses_stream, "/responses", True),
    "models.list": (
        lambda c: list(c.models.list()),
        lambda c: _alist(c.models.list()),
        "/models",
        False,
    ),
    "batches.list": (
        lambda c: list(c.batches.list()),
        lambda c: _alist(c.batches.list()),
        "/batches",
        False,
    ),
}


def _anthropic_stream_helper(client: Any, resource: str = "messages") -> Any:
    messages = client.beta.messages if resource == "beta" else client.messages
    with messages.stream(model="m", max_tokens=100, messages=CHAT) as stream:
        return stream.get_final_message()


async def _aanthropic_stream_helper(client: Any, resource: str = "messages") -> Any:
    messages = client.beta.messages if resource == "beta" else client.messages
    async with messages.stream(model="m", max_tokens=100, messages=CHAT) as stream:
        return await stream.get_final_message()


async def _amessages_stream(client: Any) -> Any:
    await _aconsume(
        await client.messages.create(model="m", max_tokens=100, messages=CHAT, stream=True)
    )


ASK = {"model": "m", "max_tokens": 100, "messages": CHAT}
ANTHROPIC: dict[str, Case] = {
    "messages.create": (
        lambda c: c.messages.create(**ASK),
        lambda c: c.messages.create(**ASK),
        "/messages",
        True,
    ),
    "messages.create(stream=True)": (
        lambda c: _consume(c.messages.create(**ASK, stream=True)),
        _amessages_stream,
        "/messages",
        True,
    ),
    "messages.stream": (_anthropic_stream_helper, _aanthropic_stream_helper, "/messages", True),
    "messages.with_raw_response": (
        lambda c: c.messages.with_raw_response.create(**ASK).parse(),
        lambda c: c.messages.with_raw_response.create(**ASK),
        "/messages",
        True,
    ),
    "messages.with_streaming_response": (
        lambda c: _streamed_body(c.messages.with_streaming_response.create(**ASK)),
        lambda c: _astreaming_response(c.messages, **ASK),
        "/messages",
        True,
    ),
    "beta.messages.create": (
        lambda c: c.beta.messages.create(**ASK),
        lambda c: c.beta.messages.create(**ASK),
        "/messages",
        True,
    ),
    "beta.messages.stream": (
        lambda c: _anthropic_stream_helper(c, "beta"),
        lambda c: _aanthropic_stream_helper(c, "beta"),
        "/messages",
        True,
    ),
    "messages.count_tokens": (
        lambda c: c.messages.count_tokens(model="m", messages=CHAT),
        lambda c: c.messages.count_tokens(model="m", messages=CHAT),
        "/count_tokens",
        False,
    ),
    "models.list": (
        lambda c: list(c.models.list()),
        lambda c: _alist(c.models.list()),
        "/models",
        False,
    ),
}


def _limiter(clock: rk.ManualClock) -> rk.Limiter:
    return rk.Limiter(rpm=1_000, tpm=100_000, clock=clock)


def _check(server: ScriptedServer, limiter: rk.Limiter, suffix: str, model_call: bool) -> None:
    assert server.hit_count() == 2
    assert server.hit_count(suffix) == 2
    stats = limiter.stats()
    assert stats["rate_limited"] == 1
    assert stats["retries"] == 1
    if model_call:
        assert stats["granted"] == 2  # the 429's attempt and the retry both acquired
        # Embeddings report input tokens only.
        used = USAGE[0] if suffix == "/embeddings" else sum(USAGE)
        assert limiter.available("tpm") == pytest.approx(100_000 - used)
    else:
        assert stats["granted"] == 0
        assert limiter.available("tpm") == pytest.approx(100_000)
    assert stats["in_flight"] == 0  # every permit went back, streams included


def _script(server: ScriptedServer) -> None:
    server.queue(rate_limited(retry_after=2), ok(usage=USAGE))


def _wrapped(plain: Any, clock: rk.ManualClock) -> Any:
    return rk.wrap(plain, limiter=_limiter(clock), retry=rk.Retry(clock=clock))


@pytest.mark.parametrize("name", list(OPENAI))
def test_openai_sync_request_survives_a_429_and_is_reconciled(scripted_server, name):
    call, _, suffix, model_call = OPENAI[name]
    clock = rk.ManualClock()
    _script(scripted_server)
    client = _wrapped(
        openai.OpenAI(base_url=scripted_server.openai_url, api_key="k", max_retries=5), clock
    )
    call(client)
    _check(scripted_server, client.ratekeeper_limiter, suffix, model_call)


@pytest.mark.parametrize("name", list(OPENAI))
async def test_openai_async_request_survives_a_429_and_is_reconciled(scripted_server, name):
    _, call, suffix, model_call = OPENAI[name]
    clock = rk.ManualClock()
    _script(scripted_server)
    client = _wrapped(
        openai.AsyncOpenAI(base_url=scripted_server.openai_url, api_key="k", max_retries=5), clock
    )
    await call(client)
    _check(scripted_server, client.ratekeeper_limiter, suffix, model_call)


@pytest.mark.parametrize("name", list(ANTHROPIC))
def test_anthropic_sync_request_survives_a_429_and_is_reconciled(scripted_server, name):
    call, _, suffix, model_call = ANTHROPIC[name]
    clock = rk.ManualClock()
    _script(scripted_server)
    plain = anthropic.Anthropic(base_url=scripted_server.anthropic_url, api_key="k")
    client = _wrapped(plain, clock)
    call(client)
    _check(scripted_server, client.ratekeeper_limiter, suffix, model_call)


@pytest.mark.parametrize("name", list(ANTHROPIC))
async def test_anthropic_async_request_survives_a_429_and_is_reconciled(scripted_server, name):
    _, call, suffix, model_call = ANTHROPIC[name]
    clock = rk.ManualClock()
    _script(scripted_server)
    plain = anthropic.AsyncAnthropic(base_url=scripted_server.anthropic_url, api_key="k")
    client = _wrapped(plain, clock)
    await call(client)
    _check(scripted_server, client.ratekeeper_limiter, suffix, model_call)
