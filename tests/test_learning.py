"""Budgets learned from the server when the user gave none (SPEC 12, "Limits it learns")."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import anthropic
import openai
import pytest
from scripted_server import ScriptedServer, ok

import ratekeeper as rk
from ratekeeper._learning import adaptive_pace
from ratekeeper.testing import MockProvider

MESSAGES = [{"role": "user", "content": "hi"}]


def _ask(client: openai.OpenAI, model: str) -> None:
    client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=4)


def test_openai_limits_are_learned_per_model_from_the_first_response() -> None:
    events: list[rk.Event] = []
    with MockProvider(rpm=600, tpm=90_000) as provider:
        client = rk.wrap(openai.OpenAI(base_url=provider.base_url, api_key="k"))
        stop = rk.subscribe(client, events.append)
        _ask(client, "gpt-a")
        assert client.ratekeeper_limiter.stats()["learned"] == {
            "gpt-a": {"rpm": 600.0, "tpm": 90_000.0}
        }
        _ask(client, "gpt-b")
        _ask(client, "gpt-a")
        stop()
    learned = client.ratekeeper_limiter.stats()["learned"]
    assert learned == {
        "gpt-a": {"rpm": 600.0, "tpm": 90_000.0},
        "gpt-b": {"rpm": 600.0, "tpm": 90_000.0},
    }
    told = [(e.fields["model"], e.fields["budget"]) for e in events if e.kind == "learned_limit"]
    assert sorted(told) == [("gpt-a", "rpm"), ("gpt-a", "tpm"), ("gpt-b", "rpm"), ("gpt-b", "tpm")]


def test_a_budget_the_user_gave_is_never_learned_over() -> None:
    with MockProvider(rpm=600, tpm=90_000) as provider:
        client = rk.wrap(openai.OpenAI(base_url=provider.base_url, api_key="k"), rpm=60)
        _ask(client, "gpt-a")
    stats = client.ratekeeper_limiter.stats()
    assert stats["learned"] == {"gpt-a": {"tpm": 90_000.0}}
    assert stats["capacity"] == {"rpm": 60.0}


def test_anthropic_input_and_output_token_limits_are_learned() -> None:
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-input-tokens-limit": "40000",
        "anthropic-ratelimit-input-tokens-remaining": "39000",
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "7990",
    }
    with ScriptedServer() as server:
        server.queue(ok(headers=headers))
        client = rk.wrap(anthropic.Anthropic(base_url=server.anthropic_url, api_key="k"))
        client.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES)  # type: ignore[arg-type]
    assert client.ratekeeper_limiter.stats()["learned"] == {
        "claude-x": {"rpm": 50.0, "itpm": 40_000.0, "otpm": 8_000.0}
    }


def test_openrouter_limit_is_one_for_every_model() -> None:
    headers = {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "19"}
    with ScriptedServer() as server:
        server.queue(ok(headers=headers), ok(headers=headers))
        client = rk.wrap(openai.OpenAI(base_url=server.openai_url, api_key="k"))
        _ask(client, "meta/llama")
        _ask(client, "mistral/small")
    assert client.ratekeeper_limiter.stats()["learned"] == {"*": {"rpm": 20.0}}


def test_the_learned_budget_paces_the_calls_at_the_servers_rate() -> None:
    clock = rk.ManualClock()
    with MockProvider(rpm=600, burst=10, tolerance=0.0, clock=clock) as provider:
        client = rk.wrap(
            openai.OpenAI(base_url=provider.base_url, api_key="k"),
            limiter=rk.Limiter(clock=clock),
            retry=rk.Retry(clock=clock),
        )
        for _ in range(50):
            _ask(client, "gpt-a")
        assert provider.rate_limited == 0
    # 10 at once (the server's burst, told by `remaining`), then 10 a second.
    assert clock.now() == pytest.approx(4.0, abs=0.15)


def test_without_limit_headers_the_rate_adapts_to_the_server_limit() -> None:
    clock = rk.ManualClock()
    calls = 400
    with MockProvider(rpm=600, burst=10, limit_headers=False, clock=clock) as provider:
        client = rk.wrap(
            openai.OpenAI(base_url=provider.base_url, api_key="k"),
            limiter=rk.Limiter(clock=clock),
            retry=rk.Retry(clock=clock),
        )
        for _ in range(100):
            _ask(client, "gpt-a")
        started, limited = clock.now(), provider.rate_limited
        for _ in range(calls):
            _ask(client, "gpt-a")
        rate = calls / (clock.now() - started)
        later_429s = provider.rate_limited - limited
    learned = client.ratekeeper_limiter.stats()["learned"]["gpt-a"]["rpm"]
    # Near the server's 10 a second, never much above it, and few 429s on the way.
    assert 7.0 <= rate <= 10.5
    assert 400 <= learned <= 800
    assert later_429s < calls * 0.05


def test_the_adaptive_rate_does_not_grow_while_the_load_stays_below_it() -> None:
    clock = rk.ManualClock()
    with MockProvider(rpm=600, burst=10, limit_headers=False, clock=clock) as provider:
        client = rk.wrap(
            openai.OpenAI(base_url=provider.base_url, api_key="k"),
            limiter=rk.Limiter(clock=clock),
            retry=rk.Retry(clock=clock),
        )
        while provider.rate_limited == 0:
            _ask(client, "gpt-a")
        _ask(client, "gpt-a")
        before = client.ratekeeper_limiter.stats()["learned"]["gpt-a"]["rpm"]
        for _ in range(60):  # one call a second for a minute
            clock.advance(1.0)
            _ask(client, "gpt-a")
    assert client.ratekeeper_limiter.stats()["learned"]["gpt-a"]["rpm"] == pytest.approx(before)


def test_without_limit_headers_nothing_is_paced_before_a_429() -> None:
    with MockProvider(rpm=None, limit_headers=False) as provider:
        client = rk.wrap(openai.OpenAI(base_url=provider.base_url, api_key="k"))
        for _ in range(5):
            _ask(client, "gpt-a")
    assert client.ratekeeper_limiter.stats()["learned"] == {}


def test_without_limit_headers_a_concurrent_burst_meets_few_429s() -> None:
    async def run() -> tuple[list[BaseException], int, int]:
        with MockProvider(rpm=1200, burst=10, tolerance=0.0, limit_headers=False) as provider:
            raw = openai.AsyncOpenAI(base_url=provider.base_url, api_key="k")
            client = rk.wrap(raw)

            async def one() -> None:
                await client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=4)  # type: ignore[arg-type]

            results = await asyncio.gather(*(one() for _ in range(40)), return_exceptions=True)
            await client.close()
            await raw.close()
            return [r for r in results if isinstance(r, BaseException)], *_tally(provider)

    errors, limited, hits = asyncio.run(run())
    # Sent at once, 30 of the 40 would meet a 429; the slow start finds the
    # burst with a few (about a tenth of it), then the adaptive rate paces.
    assert errors == []
    assert limited < 0.1 * hits


def test_without_limit_headers_concurrent_threads_meet_few_429s() -> None:
    with MockProvider(rpm=1200, burst=10, tolerance=0.0, limit_headers=False) as provider:
        client = rk.wrap(openai.OpenAI(base_url=provider.base_url, api_key="k"))
        with ThreadPoolExecutor(20) as pool:
            list(pool.map(lambda _: _ask(client, "m"), range(40)))
        limited, hits = _tally(provider)
    assert hits >= 40
    assert limited < 0.1 * hits


def _tally(provider: MockProvider) -> tuple[int, int]:
    return provider.rate_limited, provider.hits()


def test_concurrent_first_calls_wait_for_the_first_response() -> None:
    async def run() -> int:
        with MockProvider(rpm=600, burst=10, tolerance=0.0) as provider:
            client = rk.wrap(openai.AsyncOpenAI(base_url=provider.base_url, api_key="k"))

            async def one() -> None:
                await client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=4)  # type: ignore[arg-type]

            await asyncio.gather(*(one() for _ in range(25)))
            return provider.rate_limited

    # Without the wait, 15 of the 25 would have gone out before any limit was known.
    assert asyncio.run(run()) == 0


def test_learned_budgets_are_shared_through_redis_with_the_users_limiter(
    redis_url: str, unique_key: str
) -> None:
    backend = rk.RedisBackend(redis_url)
    with MockProvider(rpm=600, burst=10, tolerance=0.0) as provider:
        clients = [
            rk.wrap(
                openai.OpenAI(base_url=provider.base_url, api_key="k"),
                limiter=rk.Limiter(tpm=1_000_000, backend=backend, key=unique_key),
            )
            for _ in range(2)
        ]
        for client in clients:
            _ask(client, "gpt-a")
        for client in clients:
            assert client.ratekeeper_limiter.stats()["learned"] == {"gpt-a": {"rpm": 600.0}}
        # Both learned limiters spend one budget on Redis: 10 more go at once
        # between them (the server's burst, from `remaining`), not 10 each.
        shared = rk.Limiter(rpm=600, backend=backend, key=f"{unique_key}:learned:gpt-a")
        assert shared.available("rpm") == pytest.approx(8.0, abs=1.0)
        for index in range(30):
            _ask(clients[index % 2], "gpt-a")
        assert provider.rate_limited == 0


@pytest.mark.parametrize(("wait", "rpm"), [(0.1, 480.0), (1.0, 960.0), (None, 960.0)])
def test_the_first_rate_is_capped_by_a_first_429s_wait_under_a_second(
    wait: Optional[float], rpm: float
) -> None:
    clock = rk.ManualClock()
    pace = adaptive_pace(clock)
    for _ in range(20):  # the slow start passed 20 in the last second
        pace.succeeded()
        clock.advance(0.01)
    pace.rate_limited(pace.decreases, wait)
    assert pace.slow.over  # the limit is met: the rate takes over from the window
    pace.pace()
    # 0.1 s to refill one request: 10 a second, x0.8. A whole second says
    # little: 0.8 x the 20 successes of the last second.
    assert pace.values()["rpm"] == pytest.approx(rpm)
