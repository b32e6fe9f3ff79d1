"""rk.transport / rk.async_transport under real SDKs (groq, google-genai, openai, anthropic).

Each SDK is given an HTTP client whose transport is ratekeeper's, and talks
over real HTTP to the scripted server: a 429 then success reaches the caller
as success, with exactly two requests seen by the server and the charge
reconciled with the usage the response reported.
"""

from __future__ import annotations

import anthropic
import groq
import httpx
import httpx2
import openai
import pytest
from google import genai
from google.genai import types as genai_types
from scripted_server import Reply, ScriptedServer, error, ok, rate_limited
from sdk_bodies import gemini_rate_limited_body

import ratekeeper as rk
from ratekeeper import _events

CHAT = [{"role": "user", "content": "x" * 400}]


def _limiter(clock: rk.ManualClock) -> rk.Limiter:
    return rk.Limiter(rpm=1_000, tpm=100_000, clock=clock)


def _two_hits_and_reconciled(server: ScriptedServer, limiter: rk.Limiter, used: int) -> None:
    assert server.hit_count() == 2
    stats = limiter.stats()
    assert (stats["rate_limited"], stats["retries"], stats["granted"]) == (1, 1, 2)
    assert limiter.available("tpm") == pytest.approx(100_000 - used)
    assert stats["in_flight"] == 0


def test_groq_through_the_transport(scripted_server):
    clock = rk.ManualClock()
    limiter = _limiter(clock)
    scripted_server.queue(rate_limited(retry_after=3), ok(usage=(40, 2)))
    http = httpx.Client(transport=rk.transport(limiter, retry=rk.Retry(clock=clock)))
    client = groq.Groq(base_url=scripted_server.base_url, api_key="k", http_client=http)
    reply = client.chat.completions.create(model="llama-x", messages=CHAT)
    assert reply.choices[0].message.content == "ok"
    assert scripted_server.hits[0].path == "/openai/v1/chat/completions"
    _two_hits_and_reconciled(scripted_server, limiter, 42)


async def test_async_groq_through_the_async_transport(scripted_server):
    clock = rk.ManualClock()
    limiter = _limiter(clock)
    scripted_server.queue(rate_limited(retry_after=3), ok(usage=(40, 2)))
    transport = rk.async_transport(limiter, retry=rk.Retry(clock=clock))
    http = httpx.AsyncClient(transport=transport)
    client = groq.AsyncGroq(base_url=scripted_server.base_url, api_key="k", http_client=http)
    reply = await client.chat.completions.create(model="llama-x", messages=CHAT)
    assert reply.choices[0].message.content == "ok"
    _two_hits_and_reconciled(scripted_server, limiter, 42)


def _gemini(server: ScriptedServer, transport: object, *, is_async: bool = False) -> genai.Client:
    # An httpx client (not client_args={"transport": ...}): google-genai picks its
    # backend from the classes' module names, and importing groq renames httpx's
    # BaseTransport.
    if is_async:
        args = {"httpx_async_client": httpx.AsyncClient(transport=transport)}
    else:
        args = {"httpx_client": httpx.Client(transport=transport)}
    options = genai_types.HttpOptions(base_url=server.base_url, **args)
    return genai.Client(api_key="k", http_options=options)


def test_gemini_through_the_transport_retries_resource_exhausted(scripted_server):
    clock = rk.ManualClock()
    limiter = _limiter(clock)
    scripted_server.queue(Reply(429, gemini_rate_limited_body("2s")), ok(usage=(30, 6)))
    client = _gemini(scripted_server, rk.transport(limiter, retry=rk.Retry(clock=clock)))
    reply = client.models.generate_content(model="gemini-x", contents="hi")
    assert reply.text == "ok"
    assert scripted_server.hits[0].path.endswith("/models/gemini-x:generateContent")
    _two_hits_and_reconciled(scripted_server, limiter, 36)


def test_gemini_stream_is_reconciled_from_its_last_chunk(scripted_server):
    clock = rk.ManualClock()
    limiter = _limiter(clock)
    scripted_server.queue(Reply(429, gemini_rate_limited_body("1s")), ok(usage=(30, 9)))
    client = _gemini(scripted_server, rk.transport(limiter, retry=rk.Retry(clock=clock)))
    chunks = list(client.models.generate_content_stream(model="gemini-x", contents="hi"))
    assert "".join(chunk.text or "" for chunk in chunks) == "okok"
    _two_hits_and_reconciled(scripted_server, limiter, 39)


async def test_async_gemini_through_the_async_transport(scripted_server):
    clock = rk.ManualClock()
    limiter = _limiter(clock)
    scripted_server.queue(Reply(429, gemini_rate_limited_body("2s")), ok(usage=(30, 6)))
    transport = rk.async_transport(limiter, retry=rk.Retry(clock=clock))
    client = _gemini(scripted_server, transport, is_async=True)
    reply = await client.aio.models.generate_content(model="gemini-x", contents="hi")
    assert reply.text == "ok"
    _two_hits_and_reconciled(scripted_server, limiter, 36)


def test_openai_on_an_httpx2_client_with_the_httpx2_transport(scripted_server):
    clock = rk.ManualClock()
    limiter = _limiter(clock)
    scripted_server.queue(rate_limited(retry_after=1), ok(usage=(11, 4)))
    transport = rk.transport(limiter, backend="httpx2", retry=rk.Retry(clock=clock))
    assert isinstance(transport, httpx2.BaseTransport)
    client = openai.OpenAI(
        base_url=scripted_server.openai_url,
        api_key="k",
        max_retries=0,
        http_client=httpx2.Client(transport=transport),
    )
    assert client.chat.completions.create(model="m", messages=CHAT).usage.total_tokens == 15
    _two_hits_and_reconciled(scripted_server, limiter, 15)


async def test_anthropic_on_an_async_httpx2_client(scripted_server):
    clock = rk.ManualClock()
    limiter = _limiter(clock)
    scripted_server.queue(rate_limited(retry_after=1), ok(usage=(11, 4)))
    inner = httpx2.AsyncHTTPTransport()
    transport = rk.async_transport(limiter, transport=inner, retry=rk.Retry(clock=clock))
    assert isinstance(transport, httpx2.AsyncBaseTransport)
    client = anthropic.AsyncAnthropic(
        base_url=scripted_server.anthropic_url,
        api_key="k",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=transport),
    )
    reply = await client.messages.create(model="m", max_tokens=50, messages=CHAT)
    assert reply.content[0].text == "ok"
    _two_hits_and_reconciled(scripted_server, limiter, 15)


def test_the_transport_falls_back_by_rewriting_the_body_model(scripted_server):
    clock = rk.ManualClock()
    scripted_server.queue(*[rate_limited(retry_after=1)] * 3, model="gpt-a")
    transport = rk.transport(
        _limiter(clock),
        retry=rk.Retry(max_retries=1, clock=clock),
        fallback_models=["gpt-b"],
    )
    client = groq.Groq(
        base_url=scripted_server.base_url,
        api_key="k",
        http_client=httpx.Client(transport=transport),
    )
    assert client.chat.completions.create(model="gpt-a", messages=CHAT).model == "gpt-b"
    assert scripted_server.models_hit() == ["gpt-a", "gpt-a", "gpt-b"]


def test_when_retries_run_out_the_sdk_raises_its_own_error(scripted_server):
    clock = rk.ManualClock()
    scripted_server.queue(error(503), error(503), error(503))
    transport = rk.transport(_limiter(clock), retry=rk.Retry(max_retries=1, clock=clock))
    client = groq.Groq(
        base_url=scripted_server.base_url,
        api_key="k",
        max_retries=0,
        http_client=httpx.Client(transport=transport),
    )
    with pytest.raises(groq.InternalServerError):
        client.chat.completions.create(model="m", messages=CHAT)
    assert scripted_server.hit_count() == 2


def test_events_report_the_429_the_retry_and_the_pause(scripted_server, monkeypatch):
    seen: list[tuple[str, object, dict[str, object]]] = []
    monkeypatch.setattr(
        "ratekeeper._events.emit",
        lambda kind, source, **fields: seen.append((kind, source, fields)),
    )
    clock = rk.ManualClock()
    limiter = _limiter(clock)
    scripted_server.queue(rate_limited(retry_after=2))
    transport = rk.transport(limiter, retry=rk.Retry(clock=clock))
    with httpx.Client(transport=transport) as http:
        reply = http.post(scripted_server.openai_url + "/chat/completions", json={"model": "m"})
    assert reply.status_code == 200
    assert [kind for kind, _, _ in seen] == ["rate_limited", "retry", "pause"]
    assert all(source is limiter for _, source, _ in seen)
    assert seen[0][2] == {"model": "m", "wait": 2.0, "attempt": 1}
    assert seen[1][2] == {"model": "m", "wait": 2.0, "attempt": 1, "reason": "429"}
    assert seen[2][2] == {"wait": 2.0}
    assert all(kind in _events.EVENT_KINDS for kind, _, _ in seen)


def test_a_request_that_is_not_a_model_call_waits_out_a_pause_but_takes_no_budget(
    scripted_server,
):
    clock = rk.ManualClock()
    limiter = _limiter(clock)
    limiter.pause(5.0)
    with httpx.Client(transport=rk.transport(limiter, retry=rk.Retry(clock=clock))) as http:
        assert http.get(scripted_server.openai_url + "/models").status_code == 200
    assert clock.now() >= 5.0
    assert limiter.stats()["granted"] == 0


@pytest.mark.parametrize(
    ("options", "kind", "words"),
    [
        ({"rpm": 0}, ValueError, "rpm"),
        ({"tpm": -5}, ValueError, "tpm"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"backend": "requests"}, ValueError, "backend"),
        ({"transport": object()}, TypeError, "transport"),
        ({"retry": "yes"}, TypeError, "retry"),
        ({"fallback_models": "gpt-b"}, TypeError, "fallback_models"),
        ({"rpmm": 5}, TypeError, "rpmm"),
    ],
)
def test_bad_options_are_refused_at_creation(options, kind, words):
    with pytest.raises(kind, match=words):
        rk.transport(**options)
    with pytest.raises(kind, match=words):
        rk.async_transport(**options)
