"""Bad input to the three limiters: a clear error naming the argument, at once.

Every check runs against a drained limiter whose next unit is an hour away,
so that an argument checked after the wait instead of before would hang
(and fail the one-second budget) rather than pass.

pyo3 names the argument of a failed type conversion in the exception's notes
("while processing 'rate'"), so the name is looked for in message and notes.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any, Callable

import pytest

import ratekeeper as rk

NOT_POSITIVE = [math.nan, math.inf, -math.inf, 0.0, -1.0]
WRONG_TYPES = ["1", None, [1]]


def full_text(error: BaseException) -> str:
    return " ".join([str(error), *getattr(error, "__notes__", [])])


def assert_refused(call: Callable[[], Any], error: type[Exception], argument: str) -> None:
    began = time.monotonic()
    with pytest.raises(error) as caught:
        call()
    assert time.monotonic() - began < 1.0
    # "n must ...", "n=2.5 is more ...", or pyo3's note "while processing 'n'".
    pattern = rf"(^|\W){re.escape(argument)}( must|=|')"
    assert re.search(pattern, full_text(caught.value)), full_text(caught.value)


def drained(kind: str) -> Any:
    """A limiter of ``kind`` whose next unit is an hour away."""
    limiter: Any = {
        "TokenBucket": lambda: rk.TokenBucket(1 / 3600, 2),
        "SlidingWindow": lambda: rk.SlidingWindow(2, 3600.0),
        "FixedWindow": lambda: rk.FixedWindow(2, 3600.0),
    }[kind]()
    assert limiter.try_acquire(2)
    return limiter


KINDS = ["TokenBucket", "SlidingWindow", "FixedWindow"]
CONSTRUCTORS: list[tuple[Callable[..., Any], tuple[str, str]]] = [
    (rk.TokenBucket, ("rate", "capacity")),
    (rk.SlidingWindow, ("limit", "window")),
    (rk.FixedWindow, ("limit", "window")),
]


@pytest.mark.parametrize(("cls", "names"), CONSTRUCTORS)
@pytest.mark.parametrize("bad", NOT_POSITIVE)
def test_constructors_refuse_non_positive_or_non_finite_values(
    cls: Callable[..., Any], names: tuple[str, str], bad: float
) -> None:
    assert_refused(lambda: cls(bad, 1.0), ValueError, names[0])
    assert_refused(lambda: cls(1.0, bad), ValueError, names[1])


@pytest.mark.parametrize(("cls", "names"), CONSTRUCTORS)
@pytest.mark.parametrize("bad", WRONG_TYPES)
def test_constructors_refuse_wrong_types(
    cls: Callable[..., Any], names: tuple[str, str], bad: object
) -> None:
    assert_refused(lambda: cls(bad, 1.0), TypeError, names[0])
    assert_refused(lambda: cls(1.0, bad), TypeError, names[1])


@pytest.mark.parametrize(("cls", "names"), CONSTRUCTORS)
@pytest.mark.parametrize("bad", [3, "monotonic", object(), time.monotonic])
def test_a_clock_of_the_wrong_type_is_a_type_error(
    cls: Callable[..., Any], names: tuple[str, str], bad: object
) -> None:
    assert_refused(lambda: cls(1.0, 1.0, clock=bad), TypeError, "clock")


@pytest.mark.parametrize(("cls", "names"), CONSTRUCTORS)
def test_absurdly_long_windows_and_refills_are_refused(
    cls: Callable[..., Any], names: tuple[str, str]
) -> None:
    if cls is rk.TokenBucket:
        assert_refused(lambda: cls(1e-3, 1e12), ValueError, "capacity/rate")
    else:
        assert_refused(lambda: cls(1.0, 1e12), ValueError, "window")
        assert_refused(lambda: cls(1.0, 1e-12), ValueError, "window")


def waiting_methods(limiter: Any) -> list[Callable[..., Any]]:
    return [limiter.try_acquire, limiter.acquire, limiter.wait_time, limiter._reserve]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", NOT_POSITIVE)
def test_every_method_refuses_a_non_positive_amount(kind: str, bad: float) -> None:
    limiter = drained(kind)
    for method in waiting_methods(limiter):
        assert_refused(lambda method=method: method(bad), ValueError, "n")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", WRONG_TYPES)
def test_every_method_refuses_an_amount_of_the_wrong_type(kind: str, bad: object) -> None:
    limiter = drained(kind)
    for method in waiting_methods(limiter):
        assert_refused(lambda method=method: method(bad), TypeError, "n")


@pytest.mark.parametrize("kind", KINDS)
def test_more_than_the_limiter_can_ever_hold_is_refused_at_once(kind: str) -> None:
    limiter = drained(kind)
    for method in waiting_methods(limiter):
        assert_refused(lambda method=method: method(2.5), ValueError, "n")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1.0])
def test_acquire_refuses_a_bad_timeout(kind: str, bad: float) -> None:
    limiter = drained(kind)
    assert_refused(lambda: limiter.acquire(1, timeout=bad), ValueError, "timeout")
    assert_refused(lambda: limiter._reserve(1, timeout=bad), ValueError, "timeout")
    assert_refused(lambda: limiter.acquire(1, timeout="1"), TypeError, "timeout")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [*NOT_POSITIVE, 2.5])
async def test_acquire_async_refuses_bad_amounts_at_once(kind: str, bad: float) -> None:
    limiter = drained(kind)
    began = time.monotonic()
    with pytest.raises(ValueError, match=r"^n( must|=)"):
        await limiter.acquire_async(bad)
    with pytest.raises(ValueError, match=r"^timeout must"):
        await limiter.acquire_async(1, timeout=-1.0)
    with pytest.raises(TypeError):
        await limiter.acquire_async("1")
    assert time.monotonic() - began < 1.0


@pytest.mark.parametrize("bad", [*NOT_POSITIVE, *WRONG_TYPES])
def test_refund_refuses_bad_amounts(bad: object) -> None:
    bucket = drained("TokenBucket")
    error = TypeError if isinstance(bad, (str, list, type(None))) else ValueError
    assert_refused(lambda: bucket.refund(bad), error, "n")
    # Nothing was given back (a refund would add a whole unit); the real clock
    # may add a few millionths while a loaded machine stalls.
    assert bucket.available < 0.01


@pytest.mark.parametrize(
    "factory", [rk.TokenBucket.per_second, rk.TokenBucket.per_minute, rk.TokenBucket.per_hour]
)
@pytest.mark.parametrize("bad", [*NOT_POSITIVE, *WRONG_TYPES])
def test_per_period_constructors_name_n_and_burst(factory: Callable[..., Any], bad: object) -> None:
    error = TypeError if isinstance(bad, (str, list, type(None))) else ValueError
    assert_refused(lambda: factory(bad), error, "n")
    if bad is not None:  # burst=None means "default"
        assert_refused(lambda: factory(10, burst=bad), error, "burst")


def test_nothing_was_taken_by_refused_calls() -> None:
    limiter = rk.SlidingWindow(2, 1.0, clock=rk.ManualClock())
    for bad in NOT_POSITIVE:
        with pytest.raises(ValueError):
            limiter.try_acquire(bad)
    with pytest.raises(ValueError):
        limiter.acquire(3)
    assert limiter.try_acquire(2)


# -- numbers too large or too small to use (SPEC 15) ---------------------------

HUGE = 10**400  # an int no float can hold: pyo3 alone raises OverflowError


TOO_LARGE_FOR_A_FLOAT: list[tuple[str, Callable[[Any], Any]]] = [
    ("rate", lambda v: rk.TokenBucket(v, 1)),
    ("capacity", lambda v: rk.TokenBucket(1, v)),
    ("n", lambda v: rk.TokenBucket.per_minute(v)),
    ("burst", lambda v: rk.TokenBucket.per_second(1, v)),
    ("limit", lambda v: rk.SlidingWindow(v, 1)),
    ("window", lambda v: rk.FixedWindow(1, v)),
    ("window", lambda v: rk.RateTracker(v)),
    ("reset_timeout", lambda v: rk.CircuitBreaker(reset_timeout=v)),
    ("base", lambda v: rk.Backoff(base=v)),
    ("max_delay", lambda v: rk.Backoff(max_delay=v)),
    ("multiplier", lambda v: rk.Backoff(multiplier=v)),
    ("start", lambda v: rk.ManualClock(start=v)),
    ("seconds", lambda v: rk.ManualClock().advance(v)),
    ("ttl", lambda v: rk.ResponseCache(ttl=v)),
    ("max_retry_after", lambda v: rk.Limiter(rpm=1).update_from_headers({}, max_retry_after=v)),
]


@pytest.mark.parametrize(("argument", "call"), TOO_LARGE_FOR_A_FLOAT)
@pytest.mark.parametrize("sign", [1, -1])
def test_an_int_too_large_for_a_float_is_a_value_error_naming_it(
    argument: str, call: Callable[[Any], Any], sign: int
) -> None:
    assert_refused(lambda: call(sign * HUGE), ValueError, argument)


COUNTS: list[tuple[str, Callable[[Any], Any]]] = [
    ("failure_threshold", lambda v: rk.CircuitBreaker(failure_threshold=v)),
    ("half_open_max_calls", lambda v: rk.CircuitBreaker(half_open_max_calls=v)),
    ("success_threshold", lambda v: rk.CircuitBreaker(success_threshold=v)),
    ("slots", lambda v: rk.RateTracker(slots=v)),
    ("tokens", lambda v: rk.RateTracker().record("k", tokens=v)),
]


@pytest.mark.parametrize(("argument", "call"), COUNTS)
@pytest.mark.parametrize("bad", [2**64, -(2**64), 2**200, HUGE, -1])
def test_an_int_count_out_of_range_is_a_value_error_naming_it(
    argument: str, call: Callable[[Any], Any], bad: int
) -> None:
    assert_refused(lambda: call(bad), ValueError, argument)


@pytest.mark.parametrize(("argument", "call"), COUNTS)
def test_a_bool_is_not_a_count(argument: str, call: Callable[[Any], Any]) -> None:
    assert_refused(lambda: call(True), TypeError, argument)


@pytest.mark.parametrize(
    ("argument", "call"),
    [
        ("rate", lambda: rk.TokenBucket(1e-300, 1e-299)),
        ("rate", lambda: rk.TokenBucket(1e-305, 1e-304)),
        ("rate", lambda: rk.TokenBucket(1e-11, 1e-11)),
        ("rate", lambda: rk.KeyedLimiter(1e-305, 1e-304)),
        ("rpm", lambda: rk.Limiter(rpm=1e-300)),
        ("rps", lambda: rk.Limiter(rps=1e-305)),
        ("tpm", lambda: rk.Limiter(tpm=1e-320)),
        ("rpd", lambda: rk.Limiter(rpd=1e-6)),
        ("rate", lambda: rk.asgi.RateLimitMiddleware(None, rate=1e-300, capacity=1e-299)),  # type: ignore[arg-type]
    ],
)
def test_a_rate_too_small_to_represent_is_refused(argument: str, call: Callable[[], Any]) -> None:
    # Before: a unit's cost overflowed to "free", and these granted without limit.
    with pytest.raises(ValueError, match="too small") as caught:
        call()
    assert argument in str(caught.value)


def test_the_smallest_usable_rates_still_limit() -> None:
    clock = rk.ManualClock()
    slow = rk.TokenBucket(1e-9, 1, clock=clock)  # one unit every ~32 years
    assert slow.try_acquire(1) and not slow.try_acquire(1)
    assert slow.wait_time(1) == pytest.approx(1e9)
    limiter = rk.Limiter(rpd=1e-4, burst=1, clock=clock)  # one request every ~27 years
    limiter.acquire(timeout=0)
    with pytest.raises(rk.RateLimitTimeout):
        limiter.acquire(timeout=0)


# -- OverflowError never escapes (SPEC 15) -------------------------------------

permit_of = lambda: rk.Limiter(tpm=1000).acquire(tokens=10)  # noqa: E731

NEVER_OVERFLOW: list[tuple[str, Callable[[Any], Any]]] = [
    ("rpm", lambda v: rk.Limiter(rpm=v)),
    ("tpm", lambda v: rk.Limiter(tpm=v)),
    ("rps", lambda v: rk.Limiter(rps=v)),
    ("rph", lambda v: rk.Limiter(rph=v)),
    ("rpd", lambda v: rk.Limiter(rpd=v)),
    ("itpm", lambda v: rk.Limiter(itpm=v)),
    ("otpm", lambda v: rk.Limiter(otpm=v)),
    ("burst", lambda v: rk.Limiter(rpm=10, burst=v)),
    ("rate", lambda v: rk.KeyedLimiter(v, 1)),
    ("capacity", lambda v: rk.KeyedLimiter(1, v)),
    ("idle_timeout", lambda v: rk.KeyedLimiter(1, 1, idle_timeout=v)),
    ('overrides["a"]: rate', lambda v: rk.KeyedLimiter(1, 1, overrides={"a": (v, 1)})),
    ("actual_tokens", lambda v: permit_of().reconcile(v)),
    ("input_tokens", lambda v: permit_of().reconcile(input_tokens=v)),
    ("output_tokens", lambda v: permit_of().reconcile(output_tokens=v)),
    ("tokens", lambda v: rk.Limiter(tpm=1000).acquire(tokens=v)),
    ("timeout", lambda v: rk.Limiter(tpm=1000).acquire(tokens=1, timeout=v)),
    ("seconds", lambda v: rk.Limiter(rpm=1).pause(v)),
    ("n", lambda v: rk.KeyedLimiter(1, 1).try_acquire("k", v)),
    ("n", lambda v: rk.KeyedLimiter(1, 1).acquire("k", v)),
    ("n", lambda v: rk.KeyedLimiter(1, 1).wait_time("k", v)),
    ("n", lambda v: rk.KeyedLimiter(1, 1).refund("k", v)),
    ("timeout", lambda v: rk.KeyedLimiter(1, 1).acquire("k", 1, timeout=v)),
    ("n", lambda v: rk.TokenBucket(1, 1).try_acquire(v)),
    ("n", lambda v: rk.TokenBucket(1, 1).acquire(v)),
    ("n", lambda v: rk.TokenBucket(1, 1).refund(v)),
    ("n", lambda v: rk.SlidingWindow(1, 1).try_acquire(v)),
    ("timeout", lambda v: rk.FixedWindow(1, 1).acquire(1, timeout=v)),
    ("max_retry_after", lambda v: rk.Retry(max_retry_after=v)),
    ("deadline", lambda v: rk.Retry(deadline=v)),
    ("rpm", lambda v: rk.rate_limited(rpm=v)),
    ("timeout", lambda v: rk.rate_limited(rpm=1, timeout=v)),
]


@pytest.mark.parametrize(("argument", "call"), NEVER_OVERFLOW)
@pytest.mark.parametrize("sign", [1, -1])
def test_no_overflow_error_escapes_a_huge_int(
    argument: str, call: Callable[[Any], Any], sign: int
) -> None:
    assert_refused(lambda: call(sign * HUGE), ValueError, argument)


@pytest.mark.parametrize("argument", ["rpm", "tpm", "rps", "itpm", "otpm", "burst"])
@pytest.mark.parametrize("bad", [2**64, 2**200, 1e16])
def test_a_limiter_budget_past_any_real_api_is_refused(argument: str, bad: float) -> None:
    kwargs = {"rpm": 10, argument: bad} if argument == "burst" else {argument: bad}
    assert_refused(lambda: rk.Limiter(**kwargs), ValueError, argument)


@pytest.mark.parametrize("bad", [2**32, 2**64, HUGE, -1])
def test_retry_counts_out_of_range_are_value_errors(bad: int) -> None:
    assert_refused(lambda: rk.Retry(max_retries=bad), ValueError, "max_retries")
    assert rk.Retry(max_retries=2**32 - 1).max_retries == 2**32 - 1
