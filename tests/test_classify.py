"""is_rate_limited / is_retryable against the exceptions the real SDKs raise over HTTP."""

from __future__ import annotations

import asyncio
import tarfile
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from scripted_server import ScriptedServer, closed_port

import ratekeeper as rk
from ratekeeper import classify

MESSAGES = [{"role": "user", "content": "hi"}]


def openai_failure(server: ScriptedServer, base_url: str = "", **client: Any) -> Exception:
    sdk = openai.OpenAI(base_url=(base_url or server.base_url) + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.OpenAIError) as caught:
        sdk.with_options(**client).chat.completions.create(model="m", messages=MESSAGES)
    return caught.value


def anthropic_failure(server: ScriptedServer, base_url: str = "", **client: Any) -> Exception:
    sdk = anthropic.Anthropic(base_url=base_url or server.base_url, api_key="k", max_retries=0)
    with pytest.raises(anthropic.AnthropicError) as caught:
        sdk.with_options(**client).messages.create(model="m", max_tokens=8, messages=MESSAGES)
    return caught.value


FAILURES = {"openai": openai_failure, "anthropic": anthropic_failure}


@pytest.mark.parametrize("sdk", FAILURES)
@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (422, False),
        (408, True),
        (409, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (529, True),  # Anthropic's overloaded_error
    ],
)
def test_status_decides_retryability(
    scripted_server: ScriptedServer, sdk: str, status: int, retryable: bool
) -> None:
    scripted_server.reply(status)
    exc = FAILURES[sdk](scripted_server)
    assert rk.is_retryable(exc) is retryable
    assert rk.is_rate_limited(exc) is (status == 429)


def test_the_sdks_rate_limit_errors_are_rate_limited(scripted_server: ScriptedServer) -> None:
    scripted_server.reply(429).reply(429)
    assert isinstance(exc := openai_failure(scripted_server), openai.RateLimitError)
    assert rk.is_rate_limited(exc)
    assert isinstance(exc := anthropic_failure(scripted_server), anthropic.RateLimitError)
    assert rk.is_rate_limited(exc)


def test_anthropic_overloaded_is_retryable_not_rate_limited(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.reply(529)
    exc = anthropic_failure(scripted_server)
    assert isinstance(exc, anthropic.InternalServerError)
    assert rk.is_retryable(exc) and not rk.is_rate_limited(exc)


@pytest.mark.parametrize("sdk", FAILURES)
@pytest.mark.parametrize(
    ("status", "header", "retryable"),
    [(400, "true", True), (500, "false", False), (429, "false", False), (503, "TRUE", True)],
)
def test_x_should_retry_header_overrides_the_status(
    scripted_server: ScriptedServer, sdk: str, status: int, header: str, retryable: bool
) -> None:
    scripted_server.reply(status, {"x-should-retry": header})
    assert rk.is_retryable(FAILURES[sdk](scripted_server)) is retryable


@pytest.mark.parametrize("sdk", FAILURES)
def test_connection_refused_is_retryable(scripted_server: ScriptedServer, sdk: str) -> None:
    exc = FAILURES[sdk](scripted_server, base_url=f"http://127.0.0.1:{closed_port()}")
    assert type(exc).__name__ == "APIConnectionError"
    assert rk.is_retryable(exc) and not rk.is_rate_limited(exc)


@pytest.mark.parametrize("sdk", FAILURES)
def test_dropped_connection_is_retryable(scripted_server: ScriptedServer, sdk: str) -> None:
    scripted_server.drop()
    exc = FAILURES[sdk](scripted_server)
    assert type(exc).__name__ == "APIConnectionError"
    assert rk.is_retryable(exc)


@pytest.mark.parametrize("sdk", FAILURES)
def test_timeout_is_retryable(scripted_server: ScriptedServer, sdk: str) -> None:
    scripted_server.reply(200, delay=1.0)
    exc = FAILURES[sdk](scripted_server, timeout=0.1)
    assert type(exc).__name__ == "APITimeoutError"
    assert rk.is_retryable(exc)


async def test_async_clients_raise_classifiable_errors(scripted_server: ScriptedServer) -> None:
    scripted_server.reply(429, {"retry-after": "1"}).reply(404)
    oai = openai.AsyncOpenAI(base_url=scripted_server.openai_url, api_key="k", max_retries=0)
    with pytest.raises(openai.RateLimitError) as rate_limited:
        await oai.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    ant = anthropic.AsyncAnthropic(
        base_url=scripted_server.anthropic_url, api_key="k", max_retries=0
    )
    with pytest.raises(anthropic.NotFoundError) as not_found:
        await ant.messages.create(model="m", max_tokens=8, messages=MESSAGES)  # type: ignore[arg-type]
    assert rk.is_rate_limited(rate_limited.value) and rk.is_retryable(rate_limited.value)
    assert not rk.is_retryable(not_found.value)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
        httpx.ReadError("reset"),
        httpx.PoolTimeout("pool"),
        httpx2.ConnectError("refused"),
        httpx2.TimeoutException("slow"),
        httpx2.RemoteProtocolError("dropped"),
        httpx2.WriteError("broken"),
        TimeoutError(),
        asyncio.TimeoutError(),
        ConnectionRefusedError(),
        ConnectionResetError(),
        BrokenPipeError(),
    ],
    ids=lambda exc: f"{type(exc).__module__}.{type(exc).__name__}",
)
def test_transport_errors_are_retryable(exc: Exception) -> None:
    assert rk.is_retryable(exc)
    assert not rk.is_rate_limited(exc)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.UnsupportedProtocol("ftp"),
        httpx.LocalProtocolError("bad request"),
        httpx2.UnsupportedProtocol("ftp"),
        ValueError("bad"),
        KeyError("k"),
        tarfile.ReadError("not a network error despite its name"),
        RuntimeError("boom"),
    ],
    ids=lambda exc: f"{type(exc).__module__}.{type(exc).__name__}",
)
def test_programming_errors_are_not_retryable(exc: Exception) -> None:
    assert not rk.is_retryable(exc)


@pytest.mark.parametrize(
    "exc", [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(1), GeneratorExit()]
)
def test_base_exceptions_are_never_retryable(exc: BaseException) -> None:
    assert not rk.is_retryable(exc)


def test_status_is_read_from_status_status_code_or_response() -> None:
    class WithStatus(Exception):
        status = 429

    class Response:
        status_code = 503

    class WithResponse(Exception):
        response = Response()

    assert rk.is_rate_limited(WithStatus())
    assert rk.is_retryable(WithResponse()) and not rk.is_rate_limited(WithResponse())


def test_httpx_status_error_is_classified_by_its_response() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(429, headers={"Retry-After": "3"}, request=request)
    exc = httpx.HTTPStatusError("429", request=request, response=response)
    assert rk.is_rate_limited(exc) and rk.is_retryable(exc)
    assert rk.retry_after(exc) == 3.0
    gone = httpx.Response(404, headers={"X-Should-Retry": "true"}, request=request)
    assert rk.is_retryable(httpx.HTTPStatusError("404", request=request, response=gone))


def test_a_boolean_status_is_not_a_status() -> None:
    class Odd(Exception):
        status = True

    assert not rk.is_rate_limited(Odd()) and not rk.is_retryable(Odd())


def test_user_defined_network_error_names_are_recognised() -> None:
    class UpstreamConnectError(Exception):
        pass

    class GatewayTimeoutError(Exception):
        pass

    assert rk.is_retryable(UpstreamConnectError()) and rk.is_retryable(GatewayTimeoutError())


def test_verdict_cache_of_exception_classes_stays_bounded():
    for index in range(classify._VERDICT_CACHE_SIZE * 2):
        kind = type(f"Made{index}Error", (Exception,), {})
        assert classify.is_retryable(kind()) is False
    assert len(classify._verdict_by_type) <= classify._VERDICT_CACHE_SIZE
    assert classify.is_retryable(TimeoutError()) is True
