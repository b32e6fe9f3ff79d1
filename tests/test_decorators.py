"""@rk.rate_limited on sync and async functions and methods."""

from __future__ import annotations

import asyncio
import time

import pytest

import ratekeeper as rk


class Status(Exception):
    """An HTTP-shaped error, as the SDKs raise: a status and the response's headers."""

    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"status {status_code}")
        self.status_code = status_code
        self.response = type(
            "Response", (), {"headers": headers or {}, "status_code": status_code}
        )()


def flaky(*failures: BaseException, result: str = "ok"):
    """A function failing with ``failures`` in turn, then returning ``result``; counts calls."""
    calls = []

    def fn(*args, **kwargs):
        calls.append((args, kwargs))
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return result

    return fn, calls


def test_wraps_keeps_the_name_doc_and_wrapped_function():
    def ask(prompt: str) -> str:
        """Asks."""
        return prompt

    async def ask_async(prompt: str) -> str:
        """Asks later."""
        return prompt

    limited = rk.rate_limited(rpm=60)(ask)
    limited_async = rk.rate_limited(rpm=60)(ask_async)
    assert (limited.__name__, limited.__doc__, limited.__wrapped__) == ("ask", "Asks.", ask)
    assert limited_async.__name__ == "ask_async"
    assert asyncio.iscoroutinefunction(limited_async)


def test_every_call_acquires_from_the_limiter_with_its_token_cost():
    clock = rk.ManualClock()
    limiter = rk.Limiter(rpm=10, tpm=1000, clock=clock)

    @rk.rate_limited(limiter, tokens=lambda prompt, **_: len(prompt))
    def ask(prompt: str, *, temperature: float = 0.0) -> str:
        return prompt.upper()

    assert ask("x" * 100, temperature=0.5) == "X" * 100
    assert ask("y" * 50) == "Y" * 50
    assert limiter.stats()["granted"] == 2
    assert limiter.available("tpm") == pytest.approx(850)
    assert limiter.available("rpm") == pytest.approx(8)


def test_retryable_errors_are_retried_and_every_retry_spends_budget():
    clock = rk.ManualClock()
    limiter = rk.Limiter(rpm=100, clock=clock)
    fn, calls = flaky(Status(503), Status(500))
    limited = rk.rate_limited(limiter, retry=rk.Retry(clock=clock))(fn)
    assert limited() == "ok"
    assert len(calls) == 3
    stats = limiter.stats()
    assert (stats["granted"], stats["retries"], stats["rate_limited"]) == (3, 2, 0)


def test_a_429_waits_the_servers_retry_after_and_pauses_the_limiter():
    clock = rk.ManualClock()
    limiter = rk.Limiter(rpm=100, clock=clock)
    fn, calls = flaky(Status(429, {"retry-after": "7"}))
    limited = rk.rate_limited(limiter, retry=rk.Retry(clock=clock))(fn)
    assert limited() == "ok"
    assert len(calls) == 2
    assert clock.now() == pytest.approx(7.0, abs=0.01)
    assert limiter.stats()["rate_limited"] == 1


def test_non_retryable_errors_surface_at_once_unwrapped():
    error = Status(400)
    fn, calls = flaky(error)
    limited = rk.rate_limited(rpm=100)(fn)
    with pytest.raises(Status) as caught:
        limited()
    assert caught.value is error
    assert len(calls) == 1


def test_exhausted_retries_raise_retry_error_with_the_attempts():
    clock = rk.ManualClock()
    fn, calls = flaky(*[Status(500)] * 10)
    limited = rk.rate_limited(rpm=100, retry=rk.Retry(max_retries=2, clock=clock))(fn)
    with pytest.raises(rk.RetryError) as caught:
        limited()
    assert caught.value.attempts == 3
    assert isinstance(caught.value.last_exception, Status)
    assert len(calls) == 3


def test_retry_false_makes_a_single_attempt():
    fn, calls = flaky(Status(500))
    with pytest.raises(Status):
        rk.rate_limited(rpm=100, retry=False)(fn)()
    assert len(calls) == 1


def test_keyboard_interrupt_is_not_retried_and_frees_the_concurrency_slot():
    limiter = rk.Limiter(concurrency=1)
    fn, calls = flaky(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        rk.rate_limited(limiter)(fn)()
    assert len(calls) == 1
    with limiter.acquire(timeout=0):
        pass


def test_methods_are_limited_and_get_their_instance():
    class Bot:
        def __init__(self) -> None:
            self.name = "bot"

        @rk.rate_limited(rpm=60, tokens=lambda self, prompt: len(prompt))
        def ask(self, prompt: str) -> str:
            return f"{self.name}:{prompt}"

    assert Bot().ask("hi") == "bot:hi"
    assert Bot.ask.limiter.stats()["granted"] == 1


def test_a_full_limiter_with_a_timeout_raises_rate_limit_timeout():
    limiter = rk.Limiter(rpm=1)
    limited = rk.rate_limited(limiter, timeout=0.01)(lambda: "ok")
    assert limited() == "ok"
    with pytest.raises(rk.RateLimitTimeout):
        limited()


def test_breaker_counts_5xx_but_not_429():
    clock = rk.ManualClock()
    breaker = rk.CircuitBreaker(failure_threshold=2, reset_timeout=30.0, clock=clock)
    limiter = rk.Limiter(rpm=1000, clock=clock)
    only_429s, _ = flaky(*[Status(429, {"retry-after": "0"})] * 3)
    with pytest.raises(Status):
        rk.rate_limited(limiter, retry=False, breaker=breaker)(only_429s)()
    assert breaker.state == "closed"
    failing, calls = flaky(*[Status(500)] * 10)
    limited = rk.rate_limited(limiter, retry=rk.Retry(max_retries=5, clock=clock), breaker=breaker)(
        failing
    )
    with pytest.raises(rk.CircuitOpenError):
        limited()
    assert breaker.state == "open"
    assert len(calls) == 2


async def test_async_retries_and_counts():
    clock = rk.ManualClock()
    limiter = rk.Limiter(rpm=100, clock=clock)
    failures = [Status(429, {"retry-after-ms": "1500"}), Status(502)]

    @rk.rate_limited(limiter, retry=rk.Retry(clock=clock))
    async def ask() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    assert await ask() == "ok"
    stats = limiter.stats()
    assert (stats["granted"], stats["retries"], stats["rate_limited"]) == (3, 2, 1)
    assert clock.now() >= 1.5


async def test_one_429_pauses_every_concurrent_caller():
    limiter = rk.Limiter(rpm=6000)
    started: list[float] = []
    first = asyncio.Event()

    @rk.rate_limited(limiter)
    async def ask(n: int) -> int:
        started.append(time.monotonic())
        if n == 0 and not first.is_set():
            first.set()
            raise Status(429, {"retry-after": "0.3"})
        return n

    told = asyncio.ensure_future(ask(0))
    await first.wait()
    told_at = started[0]
    others = await asyncio.gather(*(ask(n) for n in range(1, 5)))
    assert others == [1, 2, 3, 4]
    assert await told == 0
    assert len(started) == 6
    # Everyone who came after the 429 waited for the pause (0.3 s; generous bound).
    assert min(started[1:]) - told_at >= 0.25


async def test_a_cancelled_waiter_returns_its_reservation():
    clock = rk.ManualClock()
    limiter = rk.Limiter(rpm=1, clock=clock)

    @rk.rate_limited(limiter)
    async def ask() -> str:
        return "ok"

    assert await ask() == "ok"
    waiter = asyncio.ensure_future(ask())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    clock.advance(60.0)
    assert limiter.available("rpm") == pytest.approx(1.0)


async def test_cancellation_during_the_call_passes_through_and_frees_the_slot():
    limiter = rk.Limiter(concurrency=1)
    calls = 0

    @rk.rate_limited(limiter)
    async def hang() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(30)

    task = asyncio.ensure_future(hang())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1
    with limiter.acquire(timeout=0):
        pass


def test_bad_arguments_are_refused_at_once():
    with pytest.raises(ValueError, match="tokens"):
        rk.rate_limited(rpm=60, tokens=-1)
    with pytest.raises(TypeError, match="tokens"):
        rk.rate_limited(rpm=60, tokens="many")
    with pytest.raises(ValueError, match="not both"):
        rk.rate_limited(rk.Limiter(rpm=60), rpm=60)
    with pytest.raises(TypeError, match="retry"):
        rk.rate_limited(rpm=60, retry=3)


def half_open_breaker() -> tuple[rk.CircuitBreaker, rk.ManualClock]:
    clock = rk.ManualClock()
    breaker = rk.CircuitBreaker(1, 1.0, clock=clock)
    breaker.trip()
    clock.advance(1.0)
    assert breaker.state == "half_open"
    return breaker, clock


def test_an_interrupted_probe_gives_its_half_open_slot_back() -> None:
    breaker, _ = half_open_breaker()

    @rk.rate_limited(rpm=600, breaker=breaker, retry=False)
    def interrupted() -> None:
        raise KeyboardInterrupt

    @rk.rate_limited(rpm=600, breaker=breaker, retry=False)
    def healthy() -> str:
        return "ok"

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert healthy() == "ok"  # the probe slot is free again
    assert breaker.state == "closed"


def test_a_probe_that_times_out_on_the_limiter_gives_its_half_open_slot_back() -> None:
    breaker, clock = half_open_breaker()
    limiter = rk.Limiter(rpm=1, clock=clock)
    limiter.acquire().release()

    @rk.rate_limited(limiter, breaker=breaker, retry=False, timeout=0.5)
    def call() -> str:
        return "ok"

    with pytest.raises(rk.RateLimitTimeout):
        call()
    assert breaker.state == "half_open"
    clock.advance(60.0)
    assert call() == "ok"
    assert breaker.state == "closed"


async def test_a_cancelled_async_probe_gives_its_half_open_slot_back() -> None:
    breaker, _ = half_open_breaker()
    started = asyncio.Event()

    @rk.rate_limited(rpm=600, breaker=breaker, retry=False)
    async def slow() -> None:
        started.set()
        await asyncio.sleep(30)

    @rk.rate_limited(rpm=600, breaker=breaker, retry=False)
    async def healthy() -> str:
        return "ok"

    task = asyncio.create_task(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await healthy() == "ok"
    assert breaker.state == "closed"


class Reply:
    """A return value with an SDK-shaped ``usage``."""

    def __init__(self, prompt: int, completion: int) -> None:
        self.usage = {"prompt_tokens": prompt, "completion_tokens": completion}


def test_the_charge_is_reconciled_with_the_return_values_usage():
    limiter = rk.Limiter(tpm=10_000, clock=rk.ManualClock())

    @rk.rate_limited(limiter, tokens=600)
    def ask() -> Reply:
        return Reply(30, 12)

    ask()
    assert limiter.available("tpm") == pytest.approx(10_000 - 42)


async def test_usage_can_be_computed_from_the_return_value_or_ignored():
    limiter = rk.Limiter(tpm=10_000, clock=rk.ManualClock())

    @rk.rate_limited(limiter, tokens=600, usage=lambda text: len(text))
    async def counted() -> str:
        return "x" * 70

    @rk.rate_limited(limiter, tokens=600, usage=False)
    async def estimated() -> Reply:
        return Reply(1, 1)

    await counted()
    assert limiter.available("tpm") == pytest.approx(10_000 - 70)
    await estimated()
    assert limiter.available("tpm") == pytest.approx(10_000 - 670)


@pytest.mark.parametrize(
    ("options", "kind"),
    [
        ({"rpm": 60, "timeout": -1}, ValueError),
        ({"rpm": 60, "timeout": 0}, ValueError),
        ({"rpm": 60, "timeout": "1"}, TypeError),
        ({"rpm": 0}, ValueError),
        ({"tpm": float("nan")}, ValueError),
        ({"rpm": 60, "usage": "yes"}, TypeError),
    ],
)
def test_bad_options_are_refused_when_decorating(options, kind):
    with pytest.raises(kind):
        rk.rate_limited(**options)


def test_a_method_of_a_client_that_retries_by_itself_warns(scripted_server):
    import openai

    client = openai.OpenAI(base_url=scripted_server.openai_url, api_key="k", max_retries=2)
    with pytest.warns(RuntimeWarning, match="max_retries=2"):
        rk.rate_limited(rpm=60)(client.chat.completions.create)
    quiet = [
        client.with_options(max_retries=0).chat.completions.create,
        rk.wrap(client, rpm=60).chat.completions.create,
    ]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method in quiet:
            rk.rate_limited(rpm=60)(method)
        rk.rate_limited(rpm=60, retry=False)(client.chat.completions.create)


def test_giving_up_is_reported_as_an_event(monkeypatch):
    seen = []
    monkeypatch.setattr(
        "ratekeeper._events.emit", lambda kind, source, **fields: seen.append((kind, fields))
    )
    limiter = rk.Limiter(rpm=100, clock=rk.ManualClock())
    fn, _ = flaky(Status(503), Status(503))
    limited = rk.rate_limited(limiter, retry=rk.Retry(max_retries=1, clock=rk.ManualClock()))(fn)
    with pytest.raises(rk.RetryError):
        limited()
    assert [kind for kind, _ in seen] == ["retry", "giving_up"]
    assert seen[1][1] == {"model": None, "attempt": 2, "reason": "503"}
