"""``rk.wrap(client)`` and ``@rk.rate_limited()`` with no budget given still retry and back off."""

from __future__ import annotations

import openai

import ratekeeper as rk
from ratekeeper.testing import MockProvider

MESSAGES = [{"role": "user", "content": "hi"}]


def test_wrap_without_budgets_retries_a_5xx_and_counts_it() -> None:
    with MockProvider(rpm=6000) as provider:
        provider.inject(500, times=1)
        client = rk.wrap(
            openai.OpenAI(base_url=provider.base_url, api_key="test"),
            retry=rk.Retry(max_retries=2, clock=rk.ManualClock()),
        )
        reply = client.chat.completions.create(model="m", messages=MESSAGES)
        assert reply.usage is not None
        assert provider.hits("/v1/chat/completions") == 2


def test_rate_limited_without_budgets_is_a_plain_retrying_decorator() -> None:
    calls = []

    @rk.rate_limited(retry=rk.Retry(max_retries=1, clock=rk.ManualClock()))
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError("first try times out")
        return "ok"

    assert flaky() == "ok"
    assert len(calls) == 2
