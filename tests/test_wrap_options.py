"""rk.wrap's options and edges: timeout, bad input, typing, the original client, events."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from scripted_server import rate_limited

import ratekeeper as rk

CHAT = [{"role": "user", "content": "hi"}]


def test_a_wait_longer_than_timeout_raises_rate_limit_timeout_through_the_sdk(scripted_server):
    clock = rk.ManualClock()
    limiter = rk.Limiter(rpm=1, clock=clock)
    plain = anthropic.Anthropic(base_url=scripted_server.anthropic_url, api_key="k")
    client = rk.wrap(plain, limiter=limiter, timeout=5.0)
    client.messages.create(model="m", max_tokens=10, messages=CHAT)
    # The next slot is 60 s away: anthropic would turn any other exception into
    # APIConnectionError; ratekeeper's own reaches the caller as itself.
    with pytest.raises(rk.RateLimitTimeout):
        client.messages.create(model="m", max_tokens=10, messages=CHAT)
    assert scripted_server.hit_count() == 1


def test_an_open_breaker_reaches_an_openai_caller_as_circuit_open_error(scripted_server):
    clock = rk.ManualClock()
    breaker = rk.CircuitBreaker(failure_threshold=1, reset_timeout=60.0, clock=clock)
    breaker.trip()
    plain = openai.OpenAI(base_url=scripted_server.openai_url, api_key="k")
    client = rk.wrap(plain, rpm=100, breaker=breaker)
    with pytest.raises(rk.CircuitOpenError) as caught:
        client.chat.completions.create(model="m", messages=CHAT)
    assert isinstance(caught.value, openai.OpenAIError)  # so that the SDK let it through
    assert scripted_server.hit_count() == 0


def test_the_original_client_is_left_as_it_was(scripted_server):
    plain = openai.OpenAI(base_url=scripted_server.openai_url, api_key="k", max_retries=1)
    limiter = rk.Limiter(rpm=100)
    rk.wrap(plain, limiter=limiter)
    scripted_server.queue(rate_limited(retry_after=0), rate_limited(retry_after=0))
    with pytest.raises(openai.RateLimitError):
        plain.chat.completions.create(model="m", messages=CHAT)
    assert scripted_server.hit_count() == 2  # its own retry, nothing of ours
    assert limiter.stats()["granted"] == 0


def test_with_options_keeps_the_sdk_retries_off_and_the_limiter(scripted_server):
    limiter = rk.Limiter(rpm=100)
    plain = openai.OpenAI(base_url=scripted_server.openai_url, api_key="k")
    client = rk.wrap(plain, limiter=limiter)
    other = client.with_options(max_retries=4, http_client=httpx_client_of(plain))
    assert other.max_retries == 0
    assert other.ratekeeper_limiter is limiter
    other.chat.completions.create(model="m", messages=CHAT)
    assert limiter.stats()["granted"] == 1


def httpx_client_of(client: openai.OpenAI) -> object:
    return type(client._client)(base_url=client.base_url)


def test_the_fallback_is_reported_as_an_event(scripted_server, monkeypatch):
    seen = []
    monkeypatch.setattr(
        "ratekeeper._events.emit", lambda kind, source, **fields: seen.append((kind, fields))
    )
    clock = rk.ManualClock()
    scripted_server.queue(rate_limited(retry_after=1), model="gpt-a")
    plain = openai.OpenAI(base_url=scripted_server.openai_url, api_key="k")
    client = rk.wrap(
        plain,
        limiter=rk.Limiter(rpm=100, clock=clock),
        retry=rk.Retry(max_retries=0, clock=clock),
        fallback_models=["gpt-b"],
    )
    assert client.chat.completions.create(model="gpt-a", messages=CHAT).model == "gpt-b"
    assert [kind for kind, _ in seen] == ["rate_limited", "giving_up", "fallback"]
    assert seen[-1][1] == {"model": "gpt-a", "to_model": "gpt-b", "reason": "retries_exhausted"}


class NotAnSdk:
    def with_options(self, **options: object) -> NotAnSdk:
        return self


@pytest.mark.parametrize(
    ("client", "options", "kind", "words"),
    [
        (object(), {"rpm": 10}, TypeError, "httpx"),
        (NotAnSdk(), {"rpm": 10}, TypeError, "rk.transport"),
        (httpx.Client(), {"rpm": 10}, TypeError, "SDK client"),
        (openai.OpenAI(api_key="k"), {"rpm": 0}, ValueError, "rpm"),
        (openai.OpenAI(api_key="k"), {"tpm": -1}, ValueError, "tpm"),
        (openai.OpenAI(api_key="k"), {"timeout": 0}, ValueError, "timeout"),
        (openai.OpenAI(api_key="k"), {"timeout": -1}, ValueError, "timeout"),
        (openai.OpenAI(api_key="k"), {"cache": {}}, TypeError, "cache"),
        (openai.OpenAI(api_key="k"), {"breaker": 3}, TypeError, "breaker"),
    ],
)
def test_bad_input_is_refused_at_creation(client, options, kind, words):
    with pytest.raises(kind, match=words):
        rk.wrap(client, **options)


FIRST_EXAMPLE = textwrap.dedent(
    """
    import anthropic
    import openai

    import ratekeeper as rk

    client = rk.wrap(openai.OpenAI(api_key="sk-test"), rpm=500, tpm=200_000, concurrency=16)
    same: openai.OpenAI = client
    granted: int = client.ratekeeper_limiter.stats()["granted"]
    aclient = rk.wrap(openai.AsyncOpenAI(api_key="sk-test"), rpm=500)
    claude = rk.wrap(anthropic.Anthropic(api_key="k"), retry=rk.Retry(max_retries=2))
    print(same, granted, aclient.ratekeeper_limiter, claude.ratekeeper_limiter.stats())
    """
)


def test_the_wrapped_clients_limiter_is_typed_under_mypy_strict(tmp_path: Path) -> None:
    program = tmp_path / "first_example.py"
    program.write_text(FIRST_EXAMPLE)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(program)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_error_under_the_cache_is_the_sdks_own_and_not_stored(scripted_server):
    from scripted_server import error

    scripted_server.queue(error(400))
    plain = openai.OpenAI(base_url=scripted_server.openai_url, api_key="k")
    client = rk.wrap(plain, rpm=100, cache=rk.ResponseCache())
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=CHAT)
    assert client.chat.completions.create(model="m", messages=CHAT).model == "m"
    assert scripted_server.hit_count() == 2


async def test_an_async_error_under_the_cache_is_the_sdks_own(scripted_server):
    from scripted_server import error

    scripted_server.queue(error(404))
    plain = anthropic.AsyncAnthropic(base_url=scripted_server.anthropic_url, api_key="k")
    client = rk.wrap(plain, rpm=100, cache=rk.ResponseCache())
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(model="m", max_tokens=5, messages=CHAT)


def test_a_dropped_connection_is_retried_by_ratekeeper_not_the_sdk(scripted_server):
    clock = rk.ManualClock()
    scripted_server.drop()
    limiter = rk.Limiter(rpm=100, clock=clock)
    plain = openai.OpenAI(base_url=scripted_server.openai_url, api_key="k", max_retries=3)
    client = rk.wrap(plain, limiter=limiter, retry=rk.Retry(clock=clock))
    assert client.models.list().data[0].id == "gpt-x"
    assert client.chat.completions.create(model="m", messages=CHAT).model == "m"
    assert scripted_server.hit_count() == 3
    assert limiter.stats()["retries"] == 1


def test_a_dropped_connection_that_outlives_the_retries_is_the_sdks_connection_error(
    scripted_server,
):
    clock = rk.ManualClock()
    scripted_server.drop(times=3)
    plain = anthropic.Anthropic(base_url=scripted_server.anthropic_url, api_key="k")
    client = rk.wrap(plain, rpm=100, retry=rk.Retry(max_retries=1, clock=clock))
    with pytest.raises(anthropic.APIConnectionError):
        client.messages.create(model="m", max_tokens=5, messages=CHAT)
    assert scripted_server.hit_count() == 2


def test_the_clients_event_hooks_see_every_attempt(scripted_server):
    seen: list[object] = []
    http = openai.DefaultHttpxClient(
        event_hooks={
            "request": [lambda request: seen.append(request.method)],
            "response": [lambda response: seen.append(response.status_code)],
        }
    )
    clock = rk.ManualClock()
    scripted_server.queue(rate_limited(retry_after=1), rate_limited(retry_after=1))
    plain = openai.OpenAI(base_url=scripted_server.openai_url, api_key="k", http_client=http)
    client = rk.wrap(plain, limiter=rk.Limiter(rpm=100, clock=clock), retry=rk.Retry(clock=clock))
    client.chat.completions.create(model="m", messages=CHAT)
    assert seen == ["POST", 429, "POST", 429, "POST", 200]


async def test_the_async_clients_event_hooks_see_every_attempt(scripted_server):
    seen: list[object] = []

    async def on_request(request: object) -> None:
        seen.append("request")

    async def on_response(response: httpx.Response) -> None:
        seen.append(response.status_code)

    http = anthropic.DefaultAsyncHttpxClient(
        event_hooks={"request": [on_request], "response": [on_response]}
    )
    clock = rk.ManualClock()
    scripted_server.queue(rate_limited(retry_after=1))
    plain = anthropic.AsyncAnthropic(
        base_url=scripted_server.anthropic_url, api_key="k", http_client=http
    )
    client = rk.wrap(plain, limiter=rk.Limiter(rpm=100, clock=clock), retry=rk.Retry(clock=clock))
    await client.messages.create(model="m", max_tokens=5, messages=CHAT)
    assert seen == ["request", 429, "request", 200]


def test_wrap_refuses_a_limiter_that_cannot_charge_tokens() -> None:
    # A TokenBucket counts one kind of unit: every model call would fail, so
    # wrapping with it fails at once.
    with pytest.raises(TypeError, match=r"rk\.Limiter"):
        rk.wrap(openai.OpenAI(api_key="k"), limiter=rk.TokenBucket(10, 10))
    with pytest.raises(TypeError, match=r"rk\.Limiter"):
        rk.transport(limiter=rk.SlidingWindow(10, 1.0))
