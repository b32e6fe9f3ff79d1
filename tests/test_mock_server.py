"""MockProvider: limits with real headers and 429s, usage, streaming, faults, both SDKs."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest

import ratekeeper as rk
from ratekeeper.testing import MockProvider

HELLO = [{"role": "user", "content": "hello there"}]  # 11 chars -> 3 prompt tokens


def _openai(p: MockProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=p.base_url, api_key="k", max_retries=0)


def _anthropic(p: MockProvider) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=p.anthropic_base_url, api_key="k", max_retries=0)


def test_success_carries_openai_limit_headers_and_usage() -> None:
    with MockProvider(rpm=60, tpm=1000) as p:
        raw = _openai(p).chat.completions.with_raw_response.create(
            model="m", messages=HELLO, max_tokens=5
        )
    assert raw.headers["x-ratelimit-limit-requests"] == "60"
    assert raw.headers["x-ratelimit-remaining-requests"] == "59"
    assert raw.headers["x-ratelimit-limit-tokens"] == "1000"
    assert raw.headers["x-ratelimit-remaining-tokens"] == "992"
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    usage = raw.parse().usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 5, 8)
    assert len(raw.parse().choices[0].message.content.split()) == 5


def test_exceeding_rpm_answers_429_with_retry_after_and_headers() -> None:
    with MockProvider(rpm=20, tolerance=0) as p:
        client = _openai(p)
        errors = []
        for _ in range(25):
            try:
                client.chat.completions.create(model="m", messages=HELLO)
            except openai.RateLimitError as exc:
                errors.append(exc)
        assert len(errors) >= 4 and p.rate_limited == len(errors)
    headers = errors[0].response.headers
    assert float(headers["retry-after-ms"]) > 0 and int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert rk.errors is not None  # the package imports cleanly beside the mock


def test_client_that_respects_the_limit_sees_no_429s() -> None:
    with MockProvider(rpm=600, burst=5) as p:
        client = _openai(p)
        bucket = rk.TokenBucket.per_minute(600, burst=5)
        for _ in range(25):  # 5 at once, then 10/s: about 2 s
            bucket.acquire()
            client.chat.completions.create(model="m", messages=HELLO)
        assert p.rate_limited == 0 and p.hits() == 25


def test_tokens_budget_charges_prompt_plus_max_tokens() -> None:
    with MockProvider(rpm=None, tpm=100, tolerance=0) as p:
        client = _openai(p)
        client.chat.completions.create(model="m", messages=HELLO, max_tokens=60)  # 63 tokens
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="m", messages=HELLO, max_tokens=60)
        assert "tokens" in str(caught.value)
        assert "x-ratelimit-limit-requests" not in caught.value.response.headers
        with pytest.raises(openai.RateLimitError) as too_big:
            client.chat.completions.create(model="m", messages=HELLO, max_tokens=500)
        assert "too large" in str(too_big.value)
        assert "retry-after" not in too_big.value.response.headers


def test_manual_clock_refills_the_providers_budget() -> None:
    clock = rk.ManualClock()
    with MockProvider(rpm=2, tolerance=0, clock=clock) as p:
        client = _openai(p)
        for _ in range(2):
            client.chat.completions.create(model="m", messages=HELLO)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="m", messages=HELLO)
        clock.advance(30.0)
        client.chat.completions.create(model="m", messages=HELLO)


def test_anthropic_messages_carry_anthropic_headers_and_429s() -> None:
    with MockProvider(rpm=2, tpm=10_000, tolerance=0) as p:
        client = _anthropic(p)
        raw = client.messages.with_raw_response.create(model="c", max_tokens=7, messages=HELLO)
        assert raw.headers["anthropic-ratelimit-requests-limit"] == "2"
        assert raw.headers["anthropic-ratelimit-tokens-remaining"] == str(10_000 - 3 - 7)
        assert raw.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
        assert raw.parse().usage.input_tokens == 3 and raw.parse().usage.output_tokens == 7
        client.messages.create(model="c", max_tokens=7, messages=HELLO)
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model="c", max_tokens=7, messages=HELLO)
        assert caught.value.response.headers["retry-after"]
        assert caught.value.body["error"]["type"] == "rate_limit_error"


def test_streams_report_usage_at_the_end() -> None:
    with MockProvider(rpm=None) as p:
        chunks = list(
            _openai(p).chat.completions.create(
                model="m",
                messages=HELLO,
                max_tokens=20,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[-1].usage.completion_tokens == 20
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert len(text.split()) == 20
        with _anthropic(p).messages.stream(model="c", max_tokens=9, messages=HELLO) as stream:
            final = stream.get_final_message()
        assert final.usage.output_tokens == 9 and len(final.content[0].text.split()) == 9


def test_other_openai_routes_answer_with_usage() -> None:
    with MockProvider(rpm=None) as p:
        client = _openai(p)
        assert client.embeddings.create(model="e", input=["abcd", "efgh"]).usage.prompt_tokens == 2
        assert client.completions.create(model="m", prompt="abcdefgh").usage.prompt_tokens == 2
        response = client.responses.create(model="m", input="hello", max_output_tokens=4)
        assert response.output_text.split() == ["this", "is", "a", "mock"]
        assert [m.id for m in client.models.list()]
        assert set(p.counts()) == {
            "/v1/embeddings",
            "/v1/completions",
            "/v1/responses",
            "/v1/models",
        }


def test_scripted_faults_hit_the_next_requests_in_order() -> None:
    with MockProvider(rpm=None) as p:
        client = _openai(p)
        p.inject(503)
        p.inject(429, retry_after=0.25)
        p.inject(drop=True)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=HELLO)
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="m", messages=HELLO)
        assert limited.value.response.headers["retry-after-ms"] == "250"
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="m", messages=HELLO)
        client.chat.completions.create(model="m", messages=HELLO)
        outcomes = [h.outcome for h in p.requests]
        assert outcomes == ["injected", "injected", "dropped", "ok"]
        assert p.requests[2].status is None


def test_random_errors_and_latency_apply_to_every_request() -> None:
    with MockProvider(rpm=None, error_rate=1.0, error_status=502) as p:
        with pytest.raises(openai.InternalServerError) as caught:
            _openai(p).chat.completions.create(model="m", messages=HELLO)
        assert caught.value.status_code == 502
        p.error_rate, p.latency = 0.0, 0.3
        started = time.monotonic()
        _openai(p).chat.completions.create(model="m", messages=HELLO)
        assert time.monotonic() - started >= 0.3


def test_api_key_is_checked_when_set() -> None:
    with MockProvider(api_key="sk-right") as p:
        with pytest.raises(openai.AuthenticationError):
            _openai(p).chat.completions.create(model="m", messages=HELLO)
        client = openai.OpenAI(base_url=p.base_url, api_key="sk-right", max_retries=0)
        client.chat.completions.create(model="m", messages=HELLO)


async def test_async_with_serves_and_stops_cleanly() -> None:
    async with MockProvider(rpm=60) as p:
        client = openai.AsyncOpenAI(base_url=p.base_url, api_key="k", max_retries=0)
        reply = await client.chat.completions.create(model="m", messages=HELLO)
        assert reply.usage is not None
        await client.close()
        url = p.base_url
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/models")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rpm": 0}, "rpm"),
        ({"tpm": float("nan")}, "tpm"),
        ({"error_rate": 2}, "error_rate"),
        ({"latency": -1}, "latency"),
        ({"drop_rate": -0.1}, "drop_rate"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        MockProvider(**kwargs)


def test_kept_alive_requests_are_answered_without_a_nagle_delay() -> None:
    # Without TCP_NODELAY each answer on a kept-alive connection waited ~40 ms
    # for the client's delayed ACK: 20 of them took ~0.9 s.
    with MockProvider(rpm=None) as p, httpx.Client() as client:
        body = {"model": "m", "messages": HELLO}
        client.post(p.base_url + "/chat/completions", json=body)  # opens the connection
        started = time.monotonic()
        for _ in range(20):
            client.post(p.base_url + "/chat/completions", json=body)
        assert time.monotonic() - started < 0.5


def test_responses_stream_sends_the_events_the_sdk_assembles() -> None:
    with MockProvider(rpm=None) as p:
        events = list(
            _openai(p).responses.create(model="m", input="hello", max_output_tokens=12, stream=True)
        )
        with _openai(p).responses.stream(model="m", input="hi", max_output_tokens=5) as stream:
            final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed" and "response.output_text.delta" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == events[-1].response.output_text and len(deltas.split()) == 12
    assert events[-1].response.usage.output_tokens == 12
    assert final.output_text.split() == ["this", "is", "a", "mock", "reply"]


def test_anthropic_count_tokens_answers_without_spending_the_message_budget() -> None:
    with MockProvider(rpm=1, tolerance=0) as p:
        client = _anthropic(p)
        for _ in range(3):
            counted = client.messages.count_tokens(model="c", messages=HELLO)
            assert counted.input_tokens == 3
        client.messages.create(model="c", max_tokens=5, messages=HELLO)
        assert p.hits("/v1/messages/count_tokens") == 3 and p.rate_limited == 0


def test_gemini_generate_content_and_its_resource_exhausted_429() -> None:
    from google import genai
    from google.genai import errors, types

    with MockProvider(rpm=1, tolerance=0) as p:
        client = genai.Client(api_key="g-key", http_options=types.HttpOptions(base_url=p.url))
        reply = client.models.generate_content(
            model="gemini-2.0-flash",
            contents="hello there",
            config=types.GenerateContentConfig(max_output_tokens=6),
        )
        assert reply.text is not None and len(reply.text.split()) == 6
        assert reply.usage_metadata is not None and reply.usage_metadata.total_token_count == 9
        with pytest.raises(errors.ClientError) as caught:
            client.models.generate_content(model="gemini-2.0-flash", contents="again")
        (hit, limited) = p.requests
    assert hit.path.endswith("/models/gemini-2.0-flash:generateContent")
    assert hit.headers["x-goog-api-key"] == "g-key"
    assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"
    (detail,) = caught.value.details["error"]["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.RetryInfo"
    assert detail["retryDelay"].endswith("s") and int(detail["retryDelay"][:-1]) >= 1
    assert limited.outcome == "rate_limited"


def test_a_reply_with_half_a_utf16_pair_is_sent_as_valid_json() -> None:
    with MockProvider(rpm=None, reply="cut \ud83d") as p:
        raw = httpx.post(p.base_url + "/chat/completions", json={"model": "m", "messages": HELLO})
    assert b"\\ud83d" in raw.content
    assert raw.json()["choices"][0]["message"]["content"] == "cut \ud83d"


def test_requests_record_the_credentials_they_carried() -> None:
    with MockProvider(rpm=None) as p:
        _openai(p).chat.completions.create(model="m", messages=HELLO)
        _anthropic(p).messages.create(model="c", max_tokens=3, messages=HELLO)
        openai_hit, anthropic_hit = p.requests
    assert openai_hit.headers == {"authorization": "Bearer k"}
    assert set(anthropic_hit.headers.values()) <= {"k", "Bearer k"} and anthropic_hit.headers
