"""rk.Limiter and rk.Permit (SPEC section 7): budgets, pause, reconcile, headers, errors."""

from __future__ import annotations

import math

import pytest

import ratekeeper as rk


def manual(**budgets: float) -> tuple[rk.Limiter, rk.ManualClock]:
    clock = rk.ManualClock()
    return rk.Limiter(clock=clock, **budgets), clock  # type: ignore[arg-type]


# ---------------------------------------------------------------- budgets


def test_a_request_budget_holds_one_period_and_refills_at_its_rate() -> None:
    limiter, clock = manual(rpm=60)
    for _ in range(60):
        limiter.acquire(timeout=0)
    with pytest.raises(rk.RateLimitTimeout):
        limiter.acquire(timeout=0)
    clock.advance(1.0)
    limiter.acquire(timeout=0)


@pytest.mark.parametrize(
    ("budget", "period"), [("rps", 1.0), ("rpm", 60.0), ("rph", 3600.0), ("rpd", 86400.0)]
)
def test_each_request_budget_refills_over_its_period(budget: str, period: float) -> None:
    limiter, _ = manual(**{budget: 10})
    for _ in range(10):
        limiter.acquire(timeout=0)
    assert limiter._reserve(0, None)._due / 1e9 == pytest.approx(period / 10)


def test_burst_sets_the_request_budgets_capacity() -> None:
    limiter, _ = manual(rpm=600, burst=5)
    for _ in range(5):
        limiter.acquire(timeout=0)
    with pytest.raises(rk.RateLimitTimeout):
        limiter.acquire(timeout=0)
    assert limiter.available("rpm") == pytest.approx(0.0, abs=1e-6)


def test_the_token_budget_holds_a_minute_of_tokens() -> None:
    limiter, _ = manual(tpm=1000)
    limiter.acquire(tokens=1000, timeout=0)
    with pytest.raises(rk.RateLimitTimeout) as caught:
        limiter.acquire(tokens=500, timeout=10)
    assert caught.value.wait == pytest.approx(30.0)


def test_a_blocking_acquire_waits_in_virtual_time() -> None:
    limiter, clock = manual(rps=1)
    limiter.acquire()
    permit = limiter.acquire()
    assert permit.waited == pytest.approx(1.0)
    assert clock.now() == pytest.approx(1.0)


def test_a_refused_acquire_takes_nothing_from_any_budget() -> None:
    limiter, _ = manual(rpm=60, tpm=1000)
    limiter.acquire(tokens=900)
    before = limiter.stats()["available"]
    with pytest.raises(rk.RateLimitTimeout):
        limiter.acquire(tokens=500, timeout=1.0)
    assert limiter.stats()["available"] == before
    assert limiter.stats()["rejected"] == 1


def test_a_large_request_is_not_starved_by_small_ones() -> None:
    limiter, _ = manual(tpm=600)
    limiter.acquire(tokens=600)
    big = limiter._reserve(600, None)
    small = limiter._reserve(1, None)
    assert big is not None and small is not None
    assert small._due >= big._due


def test_a_budget_that_binds_later_is_charged_at_the_grant_time() -> None:
    # tpm pushes the grant a minute out; rps must count it there, so the
    # next request is a second after it, not granted at once.
    limiter, _ = manual(rps=1, tpm=60)
    limiter.acquire(tokens=60)
    second = limiter._reserve(60, None)
    third = limiter._reserve(0, None)
    assert second is not None and third is not None
    assert (third._due - second._due) / 1e9 == pytest.approx(1.0)


def test_tokens_above_the_token_budget_are_refused_at_once() -> None:
    limiter, _ = manual(tpm=1000, itpm=500, otpm=100)
    for kwargs in ({"tokens": 1001}, {"input_tokens": 501}, {"output_tokens": 101}):
        with pytest.raises(ValueError, match="capacity"):
            limiter.acquire(**kwargs)  # type: ignore[arg-type]
    assert limiter.stats()["granted"] == 0


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf])
def test_bad_token_amounts_raise_value_error(bad: float) -> None:
    limiter, _ = manual(tpm=1000)
    with pytest.raises(ValueError, match="tokens"):
        limiter.acquire(tokens=bad)
    with pytest.raises(ValueError, match="input_tokens"):
        limiter.acquire(input_tokens=bad)


def test_tokens_count_as_input_when_only_itpm_and_otpm_are_set() -> None:
    limiter, _ = manual(itpm=1000, otpm=100)
    permit = limiter.acquire(tokens=300)
    assert (permit.tokens, permit.input_tokens, permit.output_tokens) == (300, 300, 0)
    assert limiter.available("itpm") == pytest.approx(700)
    limiter.acquire(input_tokens=100, output_tokens=50)
    assert limiter.available("itpm") == pytest.approx(600)
    assert limiter.available("otpm") == pytest.approx(50)


# ---------------------------------------------------------------- pause


def test_pause_holds_every_permit_until_it_ends() -> None:
    limiter, clock = manual(rps=100)
    limiter.pause(5.0)
    assert limiter.stats()["paused_for"] == pytest.approx(5.0)
    permit = limiter.acquire()
    assert permit.waited == pytest.approx(5.0)
    assert clock.now() == pytest.approx(5.0)


def test_pause_extends_but_never_shortens() -> None:
    limiter, _ = manual(rps=100)
    limiter.pause(5.0)
    limiter.pause(1.0)
    assert limiter.stats()["paused_for"] == pytest.approx(5.0)
    limiter.pause(8.0)
    assert limiter.stats()["paused_for"] == pytest.approx(8.0)


def test_after_a_pause_held_and_new_requests_do_not_bunch_up() -> None:
    limiter, _ = manual(rps=1)
    limiter.pause(10.0)
    dues = [limiter._reserve(0, None)._due for _ in range(5)]  # type: ignore[union-attr]
    assert [round((b - a) / 1e9, 6) for a, b in zip(dues, dues[1:])] == [1.0] * 4


def test_after_a_pause_many_waiters_leave_at_the_budgets_pace_in_arrival_order() -> None:
    import asyncio

    limiter, clock = manual(rpm=600)  # a full bucket of 600: without care, a burst of 20
    granted: list[tuple[int, float]] = []

    async def one(index: int) -> None:
        await limiter.acquire_async()
        granted.append((index, round(clock.now(), 6)))

    async def run() -> None:
        limiter.pause(2.0)
        await asyncio.gather(*(one(i) for i in range(20)))

    asyncio.run(run())
    assert granted == [(i, round(2.0 + i * 0.1, 6)) for i in range(20)]


# ---------------------------------------------------------------- permits


def test_reconcile_refunds_and_charges_the_difference() -> None:
    limiter, _ = manual(tpm=1000)
    permit = limiter.acquire(tokens=500)
    permit.reconcile(200)
    assert limiter.available("tpm") == pytest.approx(800)
    assert permit.tokens == 200
    permit.reconcile(700)
    assert limiter.available("tpm") == pytest.approx(300)


def test_reconcile_input_and_output_apart() -> None:
    limiter, _ = manual(tpm=10_000, itpm=1000, otpm=1000)
    permit = limiter.acquire(input_tokens=400, output_tokens=500)
    assert permit.tokens == 900
    permit.reconcile(input_tokens=300, output_tokens=100)
    assert limiter.available("itpm") == pytest.approx(700)
    assert limiter.available("otpm") == pytest.approx(900)
    assert limiter.available("tpm") == pytest.approx(9600)
    with pytest.raises(ValueError, match="actual_tokens"):
        permit.reconcile(-5)


def test_permit_release_is_idempotent_and_frees_the_slot() -> None:
    limiter, _ = manual(concurrency=1)
    permit = limiter.acquire()
    assert not permit.released
    permit.release()
    permit.release()
    assert permit.released
    with limiter.acquire(timeout=0) as again:
        assert limiter.stats()["in_flight"] == 1
    assert again.released
    assert limiter.stats()["in_flight"] == 0


def test_a_dropped_permit_still_frees_its_slot() -> None:
    limiter, _ = manual(concurrency=1)
    limiter.acquire()  # never released, dropped at once
    assert limiter.stats()["in_flight"] == 0
    again = limiter.acquire(timeout=0)  # raises RateLimitTimeout if the slot leaked
    assert limiter.stats()["in_flight"] == 1
    again.release()
    assert limiter.stats()["in_flight"] == 0


async def test_permit_is_an_async_context_manager() -> None:
    limiter, _ = manual(rpm=60, concurrency=1)
    async with await limiter.acquire_async(tokens=0) as permit:
        assert isinstance(permit, rk.Permit)
        assert not permit.released
    assert permit.released


# ---------------------------------------------------------------- headers


def test_adopt_tightens_to_the_server_remaining_and_never_loosens() -> None:
    limiter, _ = manual(rpm=100, tpm=10_000)
    limiter._adopt("rpm", 10)
    assert limiter.available("rpm") == pytest.approx(10)
    limiter._adopt("rpm", 90)
    assert limiter.available("rpm") == pytest.approx(10)
    limiter._adopt("tpm", 0, 30.0, 10_000, True)  # a window: nothing before its reset
    assert limiter._reserve(100, None)._due / 1e9 == pytest.approx(30.594)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="budget"):
        limiter._adopt("rpx", 1)


def test_update_from_headers_adopts_openai_headers() -> None:
    limiter, _ = manual(rpm=500, tpm=200_000)
    limiter.update_from_headers(
        {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "7",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-remaining-tokens": "1000",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert limiter.available("rpm") == pytest.approx(7)
    assert limiter.available("tpm") == pytest.approx(1000)


def test_update_from_headers_adopts_anthropic_headers_and_retry_after() -> None:
    limiter, _ = manual(rpm=50, itpm=40_000, otpm=8_000)
    limiter.update_from_headers(
        {
            "anthropic-ratelimit-input-tokens-remaining": "100",
            "anthropic-ratelimit-output-tokens-remaining": "20",
            "retry-after": "3",
        }
    )
    assert limiter.available("itpm") == pytest.approx(100)
    assert limiter.available("otpm") == pytest.approx(20)
    assert limiter.stats()["paused_for"] == pytest.approx(3.0)


def test_update_from_headers_ignores_a_more_generous_server() -> None:
    limiter, _ = manual(rpm=10)
    limiter.acquire()
    limiter.update_from_headers({"x-ratelimit-remaining-requests": "1000"})
    assert limiter.available("rpm") == pytest.approx(9)


# ---------------------------------------------------------------- config


def test_a_limiter_without_budgets_grants_at_once_but_honours_pause() -> None:
    limiter, clock = manual()
    with limiter.acquire(tokens=10_000):
        pass
    limiter.pause(5.0)
    with pytest.raises(rk.RateLimitTimeout):
        limiter.acquire(timeout=1.0)
    limiter.acquire().release()
    assert clock.now() == pytest.approx(5.0)
    assert limiter.stats()["granted"] == 2


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"rpm": 0}, "rpm"),
        ({"rpm": -1}, "rpm"),
        ({"tpm": math.nan}, "tpm"),
        ({"itpm": math.inf}, "itpm"),
        ({"rpd": -5}, "rpd"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 1.5}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"concurrency": "4"}, "concurrency"),
        ({"rpm": 10, "burst": 0}, "burst"),
        ({"rpm": 10, "burst": math.nan}, "burst"),
        ({"tpm": 10, "burst": 5}, "burst"),
    ],
)
def test_bad_configuration_raises_value_error_naming_it(
    kwargs: dict[str, object], names: str
) -> None:
    with pytest.raises(ValueError, match=names):
        rk.Limiter(**kwargs)  # type: ignore[arg-type]


def test_bad_arguments_raise_at_once() -> None:
    limiter, _ = manual(rpm=10)
    with pytest.raises(ValueError, match="timeout"):
        limiter.acquire(timeout=-1)
    with pytest.raises(ValueError, match="seconds"):
        limiter.pause(math.nan)
    with pytest.raises(TypeError):
        rk.Limiter(rpm=10, clock=object())  # type: ignore[arg-type]


def test_stats_and_counters() -> None:
    limiter, _ = manual(rps=1)
    limiter.acquire()
    limiter.acquire()
    limiter._count_rate_limited()
    limiter._count_retry()
    limiter._count_retry()
    stats = limiter.stats()
    assert stats["granted"] == 2
    assert stats["waited_seconds"] == pytest.approx(1.0)
    assert (stats["rate_limited"], stats["retries"], stats["rejected"]) == (1, 2, 0)


def test_repr_shows_the_configuration() -> None:
    assert repr(rk.Limiter(rpm=500, tpm=200_000, concurrency=16)) == (
        "Limiter(rpm=500.0, tpm=200000.0, concurrency=16)"
    )
