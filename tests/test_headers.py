"""Retry-After and rate-limit header parsing: every format, edge cases and nonsense."""

from __future__ import annotations

import email.utils
import math
import time
from typing import Any, Optional

import anthropic
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted_server import ScriptedServer, ok, openrouter_body

import ratekeeper as rk
from ratekeeper.headers import ServerLimits

NOW = 1_750_000_000.0  # a fixed "now" (epoch seconds) for absolute reset times


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"Retry-After": "0.5"}, 0.5),
        ({"RETRY-AFTER": "0"}, 0.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),  # ms is the finer of the two
        ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),  # past: now
        ({"x-ratelimit-reset-requests": "1s"}, 1.0),
        ({"x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        ({"x-ratelimit-reset-tokens": "20ms"}, 0.02),
        ({"x-ratelimit-reset-requests": "1h2m3.5s"}, 3723.5),
        ({"x-ratelimit-reset-requests": "0.5s"}, 0.5),
        ({"x-ratelimit-reset-requests": "150us"}, 0.00015),
        ({"anthropic-ratelimit-requests-reset": iso(NOW + 12)}, 12.0),
        ({"anthropic-ratelimit-tokens-reset": "2025-06-15T15:07:00+02:00"}, None),  # checked below
        ({"X-RateLimit-Reset": str(int((NOW + 7) * 1000))}, 7.0),  # OpenRouter: epoch ms
        ({"X-RateLimit-Reset": str(int(NOW + 9))}, 9.0),  # epoch seconds, lenient
        ({"X-RateLimit-Reset": str(int((NOW - 5) * 1000))}, 0.0),  # past: never negative
        ({"content-type": "application/json"}, None),
        ({}, None),
    ],
)
def test_retry_after_reads_every_format(headers: dict[str, str], expected: Optional[float]) -> None:
    got = rk.retry_after(headers, now=NOW)
    if "anthropic-ratelimit-tokens-reset" in headers:
        # 2025-06-15T13:07:00Z is 1749992820
        assert got == pytest.approx(max(0.0, 1749992820 - NOW))
        return
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "value",
    ["-1", "soon", "", "   ", "nan", "inf", "-5ms", "1x", "2025-13-45T99:99:99Z", "1.2.3s"],
)
def test_nonsense_retry_after_is_ignored_not_raised(value: str) -> None:
    assert rk.retry_after({"retry-after": value}, now=NOW) is None
    assert rk.retry_after({"x-ratelimit-reset-requests": value}, now=NOW) is None
    assert rk.retry_after({"retry-after-ms": value}, now=NOW) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1e3", 1000.0), ("1e+3", 1000.0), ("2.5e1", 25.0), ("1.750000007e12", 7.0)],
)
def test_retry_after_in_exponent_notation_is_read_like_the_digits(
    value: str, expected: float
) -> None:
    # Large values are epochs in milliseconds, as when spelled in digits.
    assert rk.retry_after({"retry-after": value}, now=NOW) == pytest.approx(expected)
    assert rk.retry_after({"x-ratelimit-reset": value}, now=NOW) == pytest.approx(expected)


def test_nonsense_retry_after_falls_back_to_the_reset_headers() -> None:
    headers = {"retry-after": "garbage", "x-ratelimit-reset-requests": "3s"}
    assert rk.retry_after(headers, now=NOW) == 3.0


def test_retry_after_takes_the_explicit_header_over_the_resets() -> None:
    headers = {"retry-after": "4", "x-ratelimit-reset-tokens": "6m0s"}
    assert rk.retry_after(headers) == 4.0


def test_retry_after_waits_for_the_exhausted_budget() -> None:
    # Requests are left, tokens are not: the 429 was about tokens.
    headers = {
        "x-ratelimit-remaining-requests": "99",
        "x-ratelimit-reset-requests": "59m0s",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "6s",
    }
    assert rk.retry_after(headers) == 6.0


def test_retry_after_waits_for_the_last_of_several_exhausted_budgets() -> None:
    headers = {
        "anthropic-ratelimit-input-tokens-remaining": "0",
        "anthropic-ratelimit-input-tokens-reset": iso(NOW + 5),
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": iso(NOW + 20),
        "anthropic-ratelimit-requests-remaining": "10",
        "anthropic-ratelimit-requests-reset": iso(NOW + 50),
    }
    assert rk.retry_after(headers, now=NOW) == 20.0


def test_retry_after_without_remaining_counts_takes_the_largest_reset() -> None:
    headers = {"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "8s"}
    assert rk.retry_after(headers) == 8.0


def test_headers_may_be_a_list_of_pairs_or_bytes() -> None:
    assert rk.retry_after([("Retry-After", "3")]) == 3.0
    assert rk.retry_after([(b"retry-after-ms", b"40")]) == 0.04


def test_retry_after_reads_a_response_and_an_object_with_response() -> None:
    class Response:
        headers = {"Retry-After": "6"}  # noqa: RUF012

    class Failure(Exception):
        response = Response()

    assert rk.retry_after(Response()) == 6.0
    assert rk.retry_after(Failure()) == 6.0
    assert rk.retry_after(ValueError("no response")) is None
    assert rk.retry_after(None) is None


def test_read_limits_reads_openai_headers() -> None:
    limits = rk.read_limits(
        {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-reset-requests": "120ms",
            "x-ratelimit-limit-tokens": "200000",
            "x-ratelimit-remaining-tokens": "199000",
            "x-ratelimit-reset-tokens": "1m30s",
        }
    )
    assert limits == ServerLimits(
        requests_limit=500.0,
        requests_remaining=499.0,
        requests_reset=pytest.approx(0.12),
        tokens_limit=200000.0,
        tokens_remaining=199000.0,
        tokens_reset=90.0,
    )


def test_read_limits_reads_anthropic_headers() -> None:
    headers: dict[str, str] = {"retry-after": "3"}
    for i, budget in enumerate(("requests", "tokens", "input-tokens", "output-tokens")):
        headers[f"anthropic-ratelimit-{budget}-limit"] = str(1000 * (i + 1))
        headers[f"anthropic-ratelimit-{budget}-remaining"] = str(10 * i)
        headers[f"anthropic-ratelimit-{budget}-reset"] = iso(NOW + 10 * (i + 1))
    limits = rk.read_limits(headers, now=NOW)
    assert (limits.requests_limit, limits.requests_remaining, limits.requests_reset) == (
        1000.0,
        0.0,
        10.0,
    )
    assert (limits.tokens_limit, limits.tokens_remaining, limits.tokens_reset) == (
        2000.0,
        10.0,
        20.0,
    )
    assert limits.input_tokens_limit == 3000.0 and limits.input_tokens_reset == 30.0
    assert limits.output_tokens_remaining == 30.0 and limits.output_tokens_reset == 40.0
    assert limits.retry_after == 3.0


def test_read_limits_reads_openrouter_headers_as_requests() -> None:
    limits = rk.read_limits(
        {
            "X-RateLimit-Limit": "20",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int((NOW + 15) * 1000)),
        },
        now=NOW,
    )
    assert (limits.requests_limit, limits.requests_remaining) == (20.0, 0.0)
    assert limits.requests_reset == pytest.approx(15.0)


def test_read_limits_prefers_the_specific_header_over_openrouters_bare_one() -> None:
    limits = rk.read_limits({"x-ratelimit-limit": "7", "x-ratelimit-limit-requests": "500"})
    assert limits.requests_limit == 500.0
    limits = rk.read_limits({"x-ratelimit-limit-requests": "500", "x-ratelimit-limit": "7"})
    assert limits.requests_limit == 500.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-ratelimit-limit-requests", "0"),  # a zero limit is no limit we can use
        ("x-ratelimit-limit-requests", "-1"),
        ("x-ratelimit-remaining-tokens", "-1"),
        ("x-ratelimit-remaining-tokens", "lots"),
        ("anthropic-ratelimit-tokens-limit", "nan"),
        ("anthropic-ratelimit-tokens-reset", "tomorrow"),
    ],
)
def test_read_limits_ignores_nonsense(name: str, value: str) -> None:
    assert rk.read_limits({name: value}) == ServerLimits()


def test_read_limits_keeps_a_remaining_of_zero() -> None:
    assert rk.read_limits({"x-ratelimit-remaining-tokens": "0"}).tokens_remaining == 0.0


def test_read_limits_of_unrelated_headers_is_empty() -> None:
    assert rk.read_limits({"content-type": "text/plain", "server": "x"}) == ServerLimits()


def test_server_limits_is_frozen() -> None:
    with pytest.raises(AttributeError):
        ServerLimits().requests_limit = 1.0  # type: ignore[misc]


# -- against the exceptions the real SDKs raise --------------------------------


def openai_error(server: ScriptedServer, **reply: Any) -> openai.APIStatusError:
    server.reply(**reply)
    client = openai.OpenAI(base_url=server.openai_url, api_key="k", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    return caught.value


def anthropic_error(server: ScriptedServer, **reply: Any) -> anthropic.APIStatusError:
    server.reply(**reply)
    client = anthropic.Anthropic(base_url=server.anthropic_url, api_key="k", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="m", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    return caught.value


def test_openai_429_with_retry_after_ms(scripted_server: ScriptedServer) -> None:
    exc = openai_error(scripted_server, status=429, headers={"retry-after-ms": "1250"})
    assert rk.retry_after(exc) == 1.25
    assert rk.retry_after(exc.response) == 1.25
    assert rk.retry_after(exc.response.headers) == 1.25


def test_openai_429_with_reset_headers(scripted_server: ScriptedServer) -> None:
    exc = openai_error(
        scripted_server,
        status=429,
        headers={
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1m2s",
            "x-ratelimit-remaining-tokens": "100",
            "x-ratelimit-reset-tokens": "20ms",
        },
    )
    assert rk.retry_after(exc) == 62.0
    assert rk.read_limits(exc.response.headers).tokens_remaining == 100.0


def test_anthropic_429_with_rfc3339_reset(scripted_server: ScriptedServer) -> None:
    reset = iso(time.time() + 30)
    exc = anthropic_error(
        scripted_server,
        status=429,
        headers={
            "anthropic-ratelimit-output-tokens-remaining": "0",
            "anthropic-ratelimit-output-tokens-reset": reset,
        },
    )
    wait = rk.retry_after(exc)
    assert wait is not None and 25.0 < wait <= 30.0


def test_anthropic_429_with_retry_after_seconds(scripted_server: ScriptedServer) -> None:
    exc = anthropic_error(scripted_server, status=429, headers={"retry-after": "17"})
    assert rk.retry_after(exc) == 17.0


def test_openrouter_reset_in_the_error_body_counts(scripted_server: ScriptedServer) -> None:
    reset_ms = int((time.time() + 40) * 1000)
    exc = openai_error(scripted_server, status=429, body=openrouter_body(reset_ms))
    wait = rk.retry_after(exc)
    assert wait is not None and 35.0 < wait <= 40.0


def test_openrouter_body_is_read_from_a_plain_response(scripted_server: ScriptedServer) -> None:
    reset_ms = int((time.time() + 40) * 1000)
    exc = openai_error(scripted_server, status=429, body=openrouter_body(reset_ms))
    wait = rk.retry_after(exc.response)  # no .body: the response JSON is read instead
    assert wait is not None and 35.0 < wait <= 40.0


def test_a_header_beats_the_error_body(scripted_server: ScriptedServer) -> None:
    reset_ms = int((time.time() + 40) * 1000)
    exc = openai_error(
        scripted_server, status=429, headers={"retry-after": "1"}, body=openrouter_body(reset_ms)
    )
    assert rk.retry_after(exc) == 1.0


def test_a_429_without_any_hint_has_no_retry_after(scripted_server: ScriptedServer) -> None:
    exc = openai_error(scripted_server, status=429, body="not json")
    assert rk.retry_after(exc) is None


# -- bounded: hostile or absurd values ----------------------------------------

HEADER_NAMES = [
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-reset",
    "x-ratelimit-reset-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-limit-tokens",
    "anthropic-ratelimit-output-tokens-reset",
    "anthropic-ratelimit-input-tokens-remaining",
]
LIMIT_FIELDS = [
    f"{budget}_{kind}"
    for budget in ("requests", "tokens", "input_tokens", "output_tokens")
    for kind in ("limit", "remaining", "reset")
] + ["retry_after"]


def assert_sane(limits: ServerLimits) -> None:
    for field in LIMIT_FIELDS:
        value = getattr(limits, field)
        assert value is None or (math.isfinite(value) and value >= 0), (field, value)


@pytest.mark.parametrize("name", HEADER_NAMES)
@pytest.mark.parametrize(
    "value",
    [
        "9" * 400,  # float() reads it as inf
        "1e300",
        "1e300s",
        "9" * 320 + "h",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "9999-12-31T23:59:59Z",
        str(10**30),
    ],
)
def test_a_number_too_large_to_use_is_ignored(name: str, value: str) -> None:
    assert rk.read_limits({name: value}, now=NOW) == ServerLimits()
    assert rk.retry_after({name: value}, now=NOW) is None


def test_values_up_to_the_bounds_are_kept() -> None:
    month = iso(NOW + 30 * 86400)
    assert rk.retry_after({"anthropic-ratelimit-tokens-reset": month}, now=NOW) == 30 * 86400
    assert rk.retry_after({"x-ratelimit-reset-requests": "23h59m"}, now=NOW) == 86340.0
    assert rk.read_limits({"x-ratelimit-limit-tokens": "30000000000"}).tokens_limit == 3e10


@pytest.mark.parametrize(
    "value",
    [
        "1" * 1_000_000 + "xs",  # was quadratic: a long run of digits before no unit
        "1" * 40_000 + ".xs",
        "1m" * 500_000 + "x",
        " " * 1_000_000,
        "1" * 1_000_000,
        b"1" * 1_000_000 + b"xs",
    ],
    ids=["digits", "digits-dot", "units", "spaces", "number", "bytes"],
)
def test_a_megabyte_value_is_ignored_without_freezing(value: Any) -> None:
    for name in ("retry-after", "x-ratelimit-reset-tokens", "x-ratelimit-remaining-tokens"):
        assert rk.read_limits([(name, value)]) == ServerLimits()


def test_a_huge_number_in_an_error_body_is_ignored() -> None:
    body = {"error": {"metadata": {"headers": {"X-RateLimit-Reset": 10**5000}}}}

    class Failure(Exception):
        status_code = 429

    exc = Failure()
    exc.body = body  # type: ignore[attr-defined]
    assert rk.retry_after(exc) is None


header_values = st.one_of(
    st.text(max_size=64),
    st.from_regex(r"[0-9.eE+\-]{1,40}[a-zµ]{0,3}", fullmatch=True),
    st.from_regex(r"([0-9]{1,6}(\.[0-9]{0,3})?(h|m|s|ms|us|ns)){1,6}", fullmatch=True),
    st.floats().map(repr),
    st.integers().map(str),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.binary(max_size=64),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=6))
def test_random_header_values_never_raise_and_stay_finite(
    pairs: list[tuple[str, Any]],
) -> None:
    assert_sane(rk.read_limits(pairs))
    wait = rk.retry_after(pairs)
    assert wait is None or (math.isfinite(wait) and 0 <= wait <= rk.headers.MAX_WAIT)


# -- no server value pauses a limiter beyond max_retry_after ------------------


@pytest.mark.parametrize("value", ["1e300", "Fri, 31 Dec 9999 23:59:59 GMT", "9" * 400])
def test_an_absurd_retry_after_on_a_success_does_not_pause(value: str) -> None:
    limiter = rk.Limiter(rpm=60, clock=rk.ManualClock())
    limiter.update_from_headers({"retry-after": value})
    assert limiter.stats()["paused_for"] == 0.0


def test_a_long_retry_after_pauses_for_max_retry_after_at_most() -> None:
    limiter = rk.Limiter(rpm=60, clock=rk.ManualClock())
    limiter.update_from_headers({"retry-after": "86400"})
    assert limiter.stats()["paused_for"] == pytest.approx(120.0)
    limiter = rk.Limiter(rpm=60, clock=rk.ManualClock())
    limiter.update_from_headers({"retry-after": "86400"}, max_retry_after=5.0)
    assert limiter.stats()["paused_for"] == pytest.approx(5.0)
    limiter = rk.Limiter(rpm=60, clock=rk.ManualClock())
    limiter.update_from_headers({"retry-after": "3"}, max_retry_after=5.0)
    assert limiter.stats()["paused_for"] == pytest.approx(3.0)
    limiter.update_from_headers({"retry-after": "86400"}, max_retry_after=None)
    assert limiter.stats()["paused_for"] == pytest.approx(86400.0)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), 10**400])
def test_update_from_headers_refuses_a_bad_max_retry_after(bad: float) -> None:
    with pytest.raises(ValueError, match="max_retry_after"):
        rk.Limiter(rpm=60).update_from_headers({}, max_retry_after=bad)


def test_a_wrapped_call_answered_200_with_absurd_headers_returns(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.queue(
        ok(
            headers={
                "retry-after": "1e300",
                "x-ratelimit-remaining-requests": "9" * 400,
                "x-ratelimit-limit-requests": "9" * 400,
                "x-ratelimit-reset-requests": "9" * 400 + "s",
            }
        ),
        ok(headers={"retry-after": "100000"}),
    )
    limiter = rk.Limiter(rpm=600)
    client = rk.wrap(
        openai.OpenAI(base_url=scripted_server.openai_url, api_key="k"), limiter=limiter
    )
    messages = [{"role": "user", "content": "x"}]
    assert client.chat.completions.create(model="m", messages=messages).choices
    assert limiter.stats()["paused_for"] == 0.0
    assert client.chat.completions.create(model="m", messages=messages).choices
    assert 0.0 < limiter.stats()["paused_for"] <= 120.0


# -- Gemini: RetryInfo.retryDelay in the JSON error body ------------------------


def gemini_body(delay: Any) -> dict[str, Any]:
    """Gemini's 429: no Retry-After header, the wait in a RetryInfo detail."""
    return {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
            ],
        }
    }


def test_gemini_sdk_429_reads_retry_delay_from_the_body(scripted_server: ScriptedServer) -> None:
    from google import genai
    from google.genai import errors, types

    scripted_server.reply(status=429, body=gemini_body("30s"))
    client = genai.Client(
        api_key="k", http_options=types.HttpOptions(base_url=scripted_server.base_url)
    )
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="gemini-2.0-flash", contents="hi")
    assert caught.value.code == 429 and scripted_server.hit_count() == 1
    assert rk.retry_after(caught.value) == 30.0
    assert rk.retry_after(caught.value.response) == 30.0  # the read httpx response


def test_gemini_body_through_the_openai_sdk(scripted_server: ScriptedServer) -> None:
    # Gemini's OpenAI-compatible endpoint sends the same body in a one-item list.
    exc = openai_error(scripted_server, status=429, body=[gemini_body("1.5s")])
    assert rk.retry_after(exc) == 1.5


@pytest.mark.parametrize(
    ("delay", "expected"),
    [
        ("30s", 30.0),
        ("1.5s", 1.5),
        ("0.5s", 0.5),
        ("0s", 0.0),
        ("0.000001s", 1e-6),
        ({"seconds": 30, "nanos": 500_000_000}, 30.5),  # google.protobuf.Duration as a dict
        ({"seconds": "2"}, 2.0),  # int64 in JSON is a string
        ("-1s", None),
        ("30", None),
        ("soon", None),
        ("1" * 40 + "s", None),  # bounded: long strings are not parsed
        ({"seconds": -3}, None),
        ({"seconds": "nan"}, None),
        (None, None),
        ([1, 2], None),
    ],
)
def test_gemini_retry_delay_forms(delay: Any, expected: Optional[float]) -> None:
    got = rk.retry_after(gemini_body(delay))
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    "body",
    [{"error": "x"}, {"error": {"details": "x"}}, {"error": {"details": [1, None, []]}}, []],
)
def test_odd_error_bodies_have_no_wait_and_never_raise(body: Any) -> None:
    assert rk.retry_after(body) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "²"},
        {"retry-after-ms": "³"},
        {"x-ratelimit-remaining-requests": "²"},
        {"x-ratelimit-limit-tokens": "1²"},
        {"x-ratelimit-reset-tokens": "²s"},
        {"x-ratelimit-reset-requests": "²ms"},
        {b"retry-after": b"\xb2"},  # latin-1 bytes that decode to "²"
    ],
)
def test_header_of_digits_float_refuses_is_ignored_not_raised(headers: dict) -> None:
    # "²" passes str.isdigit() but float() refuses it: such a value is
    # nonsense, to be skipped like any other, never an exception.
    assert rk.read_limits(headers) == rk.ServerLimits()
    assert rk.retry_after(headers) is None


def test_unicode_decimal_digits_still_read_as_numbers() -> None:
    assert rk.retry_after({"retry-after": "٣"}) == 3.0
    assert rk.read_limits({"x-ratelimit-reset-tokens": "٣s"}).tokens_reset == 3.0
