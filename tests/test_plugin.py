"""The pytest plugin: ``mock_provider`` and ``manual_clock`` fixtures, registered via pytest11."""

from __future__ import annotations

import openai
import pytest

import ratekeeper as rk
from ratekeeper.testing import MockProvider

pytest_plugins = ["pytester"]


def test_mock_provider_fixture_is_a_running_provider(mock_provider: MockProvider) -> None:
    client = openai.OpenAI(base_url=mock_provider.base_url, api_key="k", max_retries=0)
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert mock_provider.hits("/v1/chat/completions") == 1


def test_mock_provider_fixture_is_fresh_for_each_test(mock_provider: MockProvider) -> None:
    assert mock_provider.hits() == 0


def test_manual_clock_fixture_drives_limiters_in_virtual_time(manual_clock: rk.ManualClock) -> None:
    bucket = rk.TokenBucket(1.0, 1.0, clock=manual_clock)
    assert bucket.try_acquire() and not bucket.try_acquire()
    manual_clock.advance(1.0)
    assert bucket.try_acquire()


def test_fixtures_reach_user_test_files_through_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import openai

        def test_user_code(mock_provider, manual_clock):
            client = openai.OpenAI(base_url=mock_provider.base_url, api_key="k", max_retries=0)
            client.models.list()
            assert mock_provider.hits() == 1 and manual_clock.now() == 0.0
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


@pytest.mark.mock_provider(rpm=2, tolerance=0, faults=[{"status": 503}])
def test_mock_provider_fixture_takes_limits_and_faults_from_a_marker(
    mock_provider: MockProvider,
) -> None:
    client = openai.OpenAI(base_url=mock_provider.base_url, api_key="k", max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    for _ in range(2):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert mock_provider.rpm == 2


@pytest.mark.parametrize("mock_provider", [{"rpm": None, "reply": "fixed"}], indirect=True)
def test_mock_provider_fixture_takes_options_by_indirect_parametrization(
    mock_provider: MockProvider,
) -> None:
    client = openai.OpenAI(base_url=mock_provider.base_url, api_key="k", max_retries=0)
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content == "fixed" and mock_provider.rpm is None
