"""Backoff: SPEC section 5 — growth, cap, every jitter's range, and bad input."""

from __future__ import annotations

import math
import pickle
from typing import Any

import pytest
import ratekeeper as rk
from hypothesis import given
from hypothesis import strategies as st

JITTERS = ["none", "full", "equal", "decorrelated"]
ATTEMPTS = [*range(0, 40), 100, 1023, 1024, 1025, 10**6, 2**63, 2**64 + 5, 10**100]


def ceiling(backoff: rk.Backoff, attempt: int) -> float:
    try:
        return min(backoff.max_delay, backoff.base * backoff.multiplier**attempt)
    except OverflowError:
        return backoff.max_delay


def test_no_jitter_doubles_from_base_then_caps_at_max_delay() -> None:
    backoff = rk.Backoff(0.5, 10.0, jitter="none")
    assert [backoff.delay(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_multiplier_sets_the_growth() -> None:
    backoff = rk.Backoff(1.0, 1000.0, multiplier=3.0, jitter="none")
    assert [backoff.delay(n) for n in range(4)] == [1.0, 3.0, 9.0, 27.0]
    assert rk.Backoff(2.0, 5.0, multiplier=1.0, jitter="none").delay(10**9) == 2.0


@pytest.mark.parametrize("attempt", [1100, 10**6, 2**64, 10**100])
def test_huge_attempts_saturate_at_max_delay_without_overflow(attempt: int) -> None:
    assert rk.Backoff(1.0, 60.0, jitter="none").delay(attempt) == 60.0
    assert 0.0 <= rk.Backoff(1.0, 60.0, jitter="full").delay(attempt) <= 60.0


@pytest.mark.parametrize("jitter", JITTERS)
def test_every_delay_is_within_zero_and_max_delay(jitter: str) -> None:
    backoff = rk.Backoff(0.25, 7.0, multiplier=1.7, jitter=jitter)
    for attempt in ATTEMPTS:
        for _ in range(50):
            delay = backoff.delay(attempt)
            assert 0.0 <= delay <= 7.0
            assert math.isfinite(delay)


def test_full_jitter_is_uniform_over_zero_to_the_ceiling() -> None:
    backoff = rk.Backoff(1.0, 60.0, jitter="full")
    for attempt in ATTEMPTS:
        d = ceiling(backoff, attempt)
        delays = [backoff.delay(attempt) for _ in range(400)]
        assert all(0.0 <= x <= d for x in delays)
        # Spread over the whole range, not stuck at one end.
        assert min(delays) < 0.1 * d
        assert max(delays) > 0.9 * d


def test_equal_jitter_stays_in_the_upper_half() -> None:
    backoff = rk.Backoff(1.0, 60.0, jitter="equal")
    for attempt in ATTEMPTS:
        d = ceiling(backoff, attempt)
        delays = [backoff.delay(attempt) for _ in range(400)]
        assert all(d / 2 <= x <= d for x in delays)
        assert min(delays) < 0.55 * d
        assert max(delays) > 0.95 * d


def test_decorrelated_jitter_is_base_first_then_between_base_and_three_times_the_last() -> None:
    backoff = rk.Backoff(0.5, 30.0, multiplier=2.0, jitter="decorrelated")
    assert backoff.delay(0) == 0.5
    for attempt in ATTEMPTS[1:]:
        high = min(30.0, 3 * ceiling(backoff, attempt - 1))
        delays = [backoff.delay(attempt) for _ in range(400)]
        assert all(0.5 <= x <= high for x in delays)
        assert max(delays) > 0.5 + 0.9 * (high - 0.5)


def test_jittered_delays_vary_between_calls() -> None:
    for jitter in ["full", "equal", "decorrelated"]:
        backoff = rk.Backoff(1.0, 60.0, jitter=jitter)
        assert len({backoff.delay(4) for _ in range(20)}) > 1


@given(
    base=st.floats(1e-6, 100.0),
    spread=st.floats(1.0, 1000.0),
    multiplier=st.floats(1.0, 10.0),
    jitter=st.sampled_from(JITTERS),
    attempt=st.integers(0, 2**70),
)
def test_delay_is_never_negative_nor_above_max_delay(
    base: float, spread: float, multiplier: float, jitter: str, attempt: int
) -> None:
    backoff = rk.Backoff(base, base * spread, multiplier=multiplier, jitter=jitter)
    delay = backoff.delay(attempt)
    assert 0.0 <= delay <= backoff.max_delay
    if jitter == "none":
        assert delay == pytest.approx(ceiling(backoff, attempt))


def test_defaults_and_properties() -> None:
    backoff = rk.Backoff()
    assert (backoff.base, backoff.max_delay, backoff.multiplier, backoff.jitter) == (
        1.0,
        60.0,
        2.0,
        "full",
    )
    assert repr(backoff) == "Backoff(base=1.0, max_delay=60.0, multiplier=2.0, jitter='full')"


def test_backoff_pickles_and_compares_by_settings() -> None:
    backoff = rk.Backoff(0.5, 8.0, multiplier=3.0, jitter="equal")
    again = pickle.loads(pickle.dumps(backoff))
    assert again == backoff
    assert hash(again) == hash(backoff)
    assert again != rk.Backoff(0.5, 8.0, multiplier=3.0, jitter="full")


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"base": 0.0}, "base"),
        ({"base": -1.0}, "base"),
        ({"base": math.nan}, "base"),
        ({"base": math.inf}, "base"),
        ({"max_delay": 0.5}, "max_delay"),
        ({"max_delay": math.nan}, "max_delay"),
        ({"max_delay": math.inf}, "max_delay"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"multiplier": -2.0}, "multiplier"),
        ({"multiplier": math.nan}, "multiplier"),
        ({"multiplier": math.inf}, "multiplier"),
    ],
)
def test_bad_settings_raise_value_error_naming_the_argument(
    options: dict[str, Any], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        rk.Backoff(**options)


def test_unknown_jitter_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="jitter") as caught:
        rk.Backoff(jitter="random")  # type: ignore[arg-type]
    for name in JITTERS:
        assert name in str(caught.value)


def test_negative_attempt_raises_value_error() -> None:
    with pytest.raises(ValueError, match="attempt"):
        rk.Backoff().delay(-1)
    with pytest.raises(ValueError, match="attempt"):
        rk.Backoff().delay(-(10**30))


@pytest.mark.parametrize("attempt", [1.0, "1", None, True])
def test_non_int_attempt_raises_type_error(attempt: Any) -> None:
    with pytest.raises(TypeError, match="attempt"):
        rk.Backoff().delay(attempt)
