"""Retry and @retry: real SDK calls against a scripted server, waits in virtual time."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import anthropic
import openai
import pytest
from scripted_server import ScriptedServer, rate_limited

import ratekeeper as rk

MESSAGES: Any = [{"role": "user", "content": "hi"}]


class StepBackoff:
    """A deterministic backoff: attempt n waits n + 1 seconds."""

    def delay(self, attempt: int) -> float:
        return float(attempt + 1)


def openai_client(server: ScriptedServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_url, api_key="k", max_retries=0)


def ask(client: openai.OpenAI) -> str:
    reply = client.chat.completions.create(model="m", messages=MESSAGES)
    return reply.choices[0].message.content or ""


# -- waits ----------------------------------------------------------------------


def test_waits_what_the_server_said_then_succeeds(scripted_server: ScriptedServer) -> None:
    scripted_server.reply(429, {"retry-after": "2"}).reply(429, {"retry-after-ms": "1500"})
    clock = rk.ManualClock()
    policy = rk.Retry(max_retries=3, backoff=StepBackoff(), clock=clock)
    assert policy.call(ask, openai_client(scripted_server)) == "ok"
    assert scripted_server.hit_count() == 3
    assert clock.now() == pytest.approx(3.5)


def test_reset_headers_give_the_wait_when_retry_after_is_absent(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.reply(
        429, {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m5s"}
    )
    waits: list[float] = []
    policy = rk.Retry(backoff=StepBackoff(), sleep=waits.append)
    assert policy.call(ask, openai_client(scripted_server)) == "ok"
    assert waits == [65.0]


def test_backoff_is_used_when_the_server_gives_no_wait(scripted_server: ScriptedServer) -> None:
    scripted_server.reply(500, times=3)
    waits: list[float] = []
    policy = rk.Retry(max_retries=5, backoff=StepBackoff(), sleep=waits.append)
    assert policy.call(ask, openai_client(scripted_server)) == "ok"
    assert waits == [1.0, 2.0, 3.0]
    assert scripted_server.hit_count() == 4


def test_server_wait_is_ignored_when_told_not_to_respect_it(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.reply(429, {"retry-after": "50"})
    waits: list[float] = []
    policy = rk.Retry(backoff=StepBackoff(), respect_retry_after=False, sleep=waits.append)
    assert policy.call(ask, openai_client(scripted_server)) == "ok"
    assert waits == [1.0]


# -- giving up --------------------------------------------------------------------


def test_exhausted_retries_raise_retry_error_with_the_last_failure(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.reply(429, {"retry-after": "1"}, times=10)
    policy = rk.Retry(max_retries=2, sleep=lambda _s: None)
    with pytest.raises(rk.RetryError) as caught:
        policy.call(ask, openai_client(scripted_server))
    assert caught.value.attempts == 3 == scripted_server.hit_count()
    assert isinstance(caught.value.last_exception, openai.RateLimitError)
    assert caught.value.__cause__ is caught.value.last_exception
    assert isinstance(caught.value, rk.RateLimitError)


def test_a_server_wait_beyond_max_retry_after_gives_up_at_once(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.reply(429, {"retry-after": "121"})
    waits: list[float] = []
    policy = rk.Retry(max_retries=5, max_retry_after=120.0, sleep=waits.append)
    with pytest.raises(rk.RetryError) as caught:
        policy.call(ask, openai_client(scripted_server))
    assert waits == [] and scripted_server.hit_count() == 1
    assert caught.value.attempts == 1
    assert "max_retry_after" in str(caught.value)


def test_max_retry_after_none_sleeps_through_any_wait(scripted_server: ScriptedServer) -> None:
    scripted_server.reply(429, {"retry-after": "3600"})
    clock = rk.ManualClock()
    assert rk.Retry(max_retry_after=None, clock=clock).call(ask, openai_client(scripted_server))
    assert clock.now() == 3600.0


@pytest.mark.parametrize(("status", "error"), [(400, openai.BadRequestError),
                                               (401, openai.AuthenticationError),
                                               (404, openai.NotFoundError),
                                               (422, openai.UnprocessableEntityError)])  # fmt: skip
def test_non_retryable_errors_pass_through_unwrapped_at_once(
    scripted_server: ScriptedServer, status: int, error: type[Exception]
) -> None:
    scripted_server.reply(status)
    with pytest.raises(error) as caught:
        rk.Retry(sleep=lambda _s: None).call(ask, openai_client(scripted_server))
    assert scripted_server.hit_count() == 1
    assert type(caught.value) is error


def test_a_non_retryable_error_after_retries_passes_through_unchanged(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.reply(503).reply(400)
    with pytest.raises(openai.BadRequestError) as caught:
        rk.Retry(sleep=lambda _s: None).call(ask, openai_client(scripted_server))
    assert scripted_server.hit_count() == 2
    # Raised as the SDK raised it: not chained to the earlier 503 by the retry loop.
    assert not isinstance(caught.value.__context__, openai.APIError)


def test_anthropic_overloaded_and_dropped_connections_are_retried(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.reply(529).drop()
    client = anthropic.Anthropic(base_url=scripted_server.anthropic_url, api_key="k", max_retries=0)

    @rk.retry(backoff=StepBackoff(), clock=rk.ManualClock())
    def claude() -> Any:
        return client.messages.create(model="m", max_tokens=8, messages=MESSAGES)

    assert claude().content[0].text == "ok"
    assert scripted_server.hit_count() == 3


# -- async --------------------------------------------------------------------------


async def test_async_waits_what_the_server_said(scripted_server: ScriptedServer) -> None:
    scripted_server.reply(429, {"retry-after-ms": "250"}).reply(502)
    client = openai.AsyncOpenAI(base_url=scripted_server.openai_url, api_key="k", max_retries=0)
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    @rk.retry(max_retries=4, backoff=StepBackoff(), sleep=fake_sleep)
    async def ask_async(prompt: str) -> str:
        messages: Any = [{"role": "user", "content": prompt}]
        reply = await client.chat.completions.create(model="m", messages=messages)
        return reply.choices[0].message.content or ""

    assert await ask_async("hi") == "ok"
    assert waits == [0.25, 2.0]
    assert scripted_server.hit_count() == 3


async def test_async_exhaustion_raises_retry_error(scripted_server: ScriptedServer) -> None:
    scripted_server.reply(529, times=5)
    client = anthropic.AsyncAnthropic(
        base_url=scripted_server.anthropic_url, api_key="k", max_retries=0
    )
    policy = rk.Retry(max_retries=1, clock=rk.ManualClock())
    with pytest.raises(rk.RetryError) as caught:
        await policy.call_async(client.messages.create, model="m", max_tokens=8, messages=MESSAGES)
    assert caught.value.attempts == 2 == scripted_server.hit_count()
    assert isinstance(caught.value.last_exception, anthropic.InternalServerError)


async def test_cancellation_mid_backoff_is_not_retried(scripted_server: ScriptedServer) -> None:
    scripted_server.reply(500, times=5)
    client = openai.AsyncOpenAI(base_url=scripted_server.openai_url, api_key="k", max_retries=0)
    backing_off = asyncio.Event()

    async def long_sleep(seconds: float) -> None:
        backing_off.set()
        await asyncio.sleep(3600)

    policy = rk.Retry(sleep=long_sleep)
    task = asyncio.create_task(
        policy.call_async(client.chat.completions.create, model="m", messages=MESSAGES)
    )
    await asyncio.wait_for(backing_off.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert scripted_server.hit_count() == 1


async def test_cancellation_during_a_real_sleep_is_not_retried() -> None:
    calls = 0

    @rk.retry(backoff=StepBackoff())  # real asyncio.sleep of 1 s, cancelled long before
    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionResetError

    task = asyncio.create_task(flaky())
    while calls == 0:
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1


async def test_cancelled_error_raised_by_the_callee_passes_straight_through() -> None:
    calls = 0

    @rk.retry(retry_on=BaseException, sleep=lambda _s: None)
    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await cancelled()
    assert calls == 1


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_interrupts_are_never_retried(interrupt: type[BaseException]) -> None:
    calls = 0

    @rk.retry(retry_on=BaseException, sleep=lambda _s: None)
    def interrupted() -> None:
        nonlocal calls
        calls += 1
        raise interrupt

    with pytest.raises(interrupt):
        interrupted()
    assert calls == 1


# -- decorator shape ----------------------------------------------------------------


def test_bare_decorator_uses_the_defaults_and_keeps_the_function_identity() -> None:
    @rk.retry
    def documented(x: int) -> int:
        """Doubles x."""
        return 2 * x

    assert documented(4) == 8
    assert documented.__name__ == "documented" and documented.__doc__ == "Doubles x."
    assert documented.__wrapped__(3) == 6  # type: ignore[attr-defined]
    assert documented.retry_policy.max_retries == 5  # type: ignore[attr-defined]


def test_async_functions_stay_coroutine_functions() -> None:
    @rk.retry(max_retries=2)
    async def coroutine() -> int:
        return 1

    assert inspect.iscoroutinefunction(coroutine)
    assert coroutine.__name__ == "coroutine"


async def test_methods_are_retried_with_their_instance() -> None:
    class Service:
        def __init__(self) -> None:
            self.calls = 0

        @rk.retry(max_retries=3, sleep=lambda _s: None)
        def fetch(self, value: str) -> str:
            self.calls += 1
            if self.calls < 3:
                raise TimeoutError
            return value

        @rk.retry(max_retries=3, sleep=lambda _s: None)
        async def fetch_async(self, value: str) -> str:
            self.calls += 1
            if self.calls < 5:
                raise ConnectionError
            return value

    service = Service()
    assert service.fetch("a") == "a" and service.calls == 3
    assert await service.fetch_async("b") == "b" and service.calls == 5


def test_a_retry_instance_is_a_decorator() -> None:
    calls: list[int] = []

    @rk.Retry(max_retries=1, sleep=lambda _s: None)
    def always_down() -> None:
        calls.append(1)
        raise ConnectionRefusedError

    with pytest.raises(rk.RetryError) as caught:
        always_down()
    assert caught.value.attempts == 2 == len(calls)


def test_retry_on_accepts_exception_types() -> None:
    calls: list[int] = []

    @rk.retry(retry_on=(KeyError,), max_retries=2, sleep=lambda _s: None)
    def lookup() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise KeyError("later")
        return len(calls)

    assert lookup() == 3
    with pytest.raises(TimeoutError):  # not in retry_on: passes through
        rk.Retry(retry_on=KeyError, sleep=lambda _s: None).call(_raise, TimeoutError())


def _raise(exc: BaseException) -> None:
    raise exc


# -- the engine the other decorators build on ----------------------------------------


def test_decide_describes_each_outcome() -> None:
    class TooMany(Exception):
        status_code = 429

        class response:
            status_code = 429
            headers = {"retry-after": "7"}  # noqa: RUF012

    policy = rk.Retry(max_retries=2, backoff=StepBackoff(), max_retry_after=10.0)
    first = policy.decide(TooMany(), 1)
    assert (first.retry, first.delay, first.rate_limited, first.server_wait) == (
        True,
        7.0,
        True,
        7.0,
    )
    assert first.give_up is None
    last = policy.decide(TooMany(), 3)
    assert not last.retry and isinstance(last.give_up, rk.RetryError)
    assert last.give_up.attempts == 3
    assert policy.decide(TimeoutError(), 2).delay == 2.0
    bad = ValueError("bad")
    not_retryable = policy.decide(bad, 1)
    assert not not_retryable.retry and not_retryable.give_up is None
    assert not_retryable.error_for(bad) is bad
    strict = rk.Retry(max_retry_after=5.0).decide(TooMany(), 1)
    assert not strict.retry and strict.server_wait == 7.0 and strict.give_up is not None


def test_zero_retries_calls_once() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise TimeoutError

    with pytest.raises(rk.RetryError) as caught:
        rk.Retry(max_retries=0).call(down)
    assert caught.value.attempts == 1 == len(calls)


def test_default_backoff_grows_and_stays_bounded() -> None:
    backoff = rk.Retry().backoff
    for attempt in range(100):
        assert 0.0 <= backoff.delay(attempt) <= 60.0


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"max_retries": "3"}, TypeError, "max_retries"),
        ({"max_retries": True}, TypeError, "max_retries"),
        ({"max_retry_after": float("nan")}, ValueError, "max_retry_after"),
        ({"max_retry_after": -1.0}, ValueError, "max_retry_after"),
        ({"backoff": object()}, TypeError, "backoff"),
        ({"retry_on": 5}, TypeError, "retry_on"),
        ({"retry_on": (KeyError, 5)}, TypeError, "retry_on"),
        ({"clock": "monotonic"}, TypeError, "clock"),
        ({"sleep": 1.0}, TypeError, "sleep"),
        ({"sleep": print, "clock": rk.ManualClock()}, ValueError, "clock"),
    ],
)
def test_bad_arguments_are_refused_by_name(
    kwargs: dict[str, Any], error: type[Exception], names: str
) -> None:
    with pytest.raises(error, match=names):
        rk.Retry(**kwargs)
    with pytest.raises(error, match=names):
        rk.retry(**kwargs)


def test_the_retry_module_is_importable_beside_the_retry_function() -> None:
    import importlib

    module = importlib.import_module("ratekeeper.retrying")
    assert module.Retry is rk.Retry
    assert module.retry is rk.retry
    assert callable(rk.retry) and not isinstance(rk.retry, type(module))


# -- before_sleep ---------------------------------------------------------------


def test_before_sleep_is_told_each_attempt_its_error_and_the_wait() -> None:
    clock = rk.ManualClock()
    seen: list[rk.RetryState] = []
    failures = [TimeoutError("first"), ConnectionResetError("second")]

    def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    policy = rk.Retry(backoff=StepBackoff(), clock=clock, before_sleep=seen.append)
    assert policy.call(flaky) == "ok"
    assert [(state.attempt, type(state.exception), state.wait) for state in seen] == [
        (1, TimeoutError, 1.0),
        (2, ConnectionResetError, 2.0),
    ]
    assert clock.now() == pytest.approx(3.0)  # called before each sleep, not instead of it


async def test_before_sleep_runs_on_the_async_path_and_can_stop_the_retries() -> None:
    class Enough(Exception):
        pass

    def stop(state: rk.RetryState) -> None:
        raise Enough(state.attempt)

    async def always_times_out() -> None:
        raise TimeoutError

    policy = rk.Retry(clock=rk.ManualClock(), before_sleep=stop)
    with pytest.raises(Enough):
        await policy.call_async(always_times_out)


def test_before_sleep_must_be_callable() -> None:
    with pytest.raises(TypeError, match="before_sleep"):
        rk.Retry(before_sleep=3)  # type: ignore[arg-type]


def test_deadline_bounds_a_run_against_a_server_that_only_answers_429() -> None:
    clock = rk.ManualClock()
    with ScriptedServer() as server:
        server.responder = lambda hit: rate_limited(retry_after=0.7)
        client = rk.wrap(
            openai.OpenAI(base_url=server.openai_url, api_key="k"),
            limiter=rk.Limiter(clock=clock),
            retry=rk.Retry(max_retries=1000, deadline=10.0, clock=clock),
        )
        with pytest.raises(openai.RateLimitError):
            ask(client)
        hits = server.hit_count()
    # Attempts at 0, 0.7, ... 9.8: the 16th would start past the deadline.
    assert hits == 15
    assert clock.now() <= 10.0


def test_deadline_raises_retry_error_for_a_plain_call() -> None:
    clock = rk.ManualClock()
    calls: list[float] = []

    def failing() -> None:
        calls.append(clock.now())
        raise TimeoutError("slow")

    policy = rk.Retry(max_retries=100, backoff=StepBackoff(), deadline=7.0, clock=clock)
    with pytest.raises(rk.RetryError, match="deadline"):
        policy.call(failing)
    assert calls == [0.0, 1.0, 3.0, 6.0]  # the next, at 10.0, is past 7.0


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan")])
def test_deadline_must_be_a_positive_number_of_seconds(bad: float) -> None:
    with pytest.raises(ValueError, match="deadline"):
        rk.Retry(deadline=bad)
    with pytest.raises(TypeError, match="deadline"):
        rk.Retry(deadline="5")  # type: ignore[arg-type]


def test_retry_refuses_to_decorate_what_is_not_a_function() -> None:
    with pytest.raises(TypeError, match="decorates a function"):
        rk.retry(max_retries=2)(5)
