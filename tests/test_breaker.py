"""CircuitBreaker: SPEC section 4, its decorator, and its state machine under any outcomes."""

from __future__ import annotations

import functools
import gc
import logging
import math
import weakref
from typing import Any, Optional

import pytest
from breaker_helpers import ServiceDown, fail, make, open_breaker
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import ratekeeper as rk
from ratekeeper import _core
from ratekeeper._guarding import clone_breaker

# --- transitions -----------------------------------------------------------


def test_starts_closed_and_lets_calls_through() -> None:
    breaker, _ = make()
    assert breaker.state == "closed"
    assert breaker.allow()
    assert breaker.retry_after == 0.0
    assert breaker.failure_count == 0


def test_opens_after_failure_threshold_consecutive_failures() -> None:
    breaker, _ = make(failure_threshold=3)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"
    assert breaker.failure_count == 2
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()


def test_a_success_resets_the_consecutive_failure_count() -> None:
    breaker, _ = make(failure_threshold=2)
    breaker.record_failure()
    breaker.record_success()
    assert breaker.failure_count == 0
    breaker.record_failure()
    assert breaker.state == "closed"


def test_retry_after_counts_down_while_open() -> None:
    breaker, clock = open_breaker(reset_timeout=10.0)
    assert breaker.retry_after == 10.0
    clock.advance(4.0)
    assert breaker.retry_after == pytest.approx(6.0)
    clock.advance(6.0)
    assert breaker.retry_after == 0.0


def test_turns_half_open_once_reset_timeout_has_passed() -> None:
    breaker, clock = open_breaker(reset_timeout=10.0)
    clock.advance(9.999)
    assert breaker.state == "open"
    clock.advance(0.001)
    assert breaker.state == "half_open"
    assert breaker.retry_after == 0.0


def test_half_open_lets_at_most_half_open_max_calls_probes_through() -> None:
    breaker, clock = open_breaker(half_open_max_calls=2, success_threshold=5)
    clock.advance(10.0)
    assert breaker.allow()
    assert breaker.allow()
    assert not breaker.allow()
    breaker.record_success()
    assert breaker.allow()


def test_success_threshold_probe_successes_close_it() -> None:
    breaker, clock = open_breaker(success_threshold=2)
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "half_open"
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.failure_count == 0


def test_a_probe_failure_reopens_it_and_restarts_reset_timeout() -> None:
    breaker, clock = open_breaker(reset_timeout=10.0)
    clock.advance(25.0)
    assert breaker.allow()
    clock.advance(3.0)
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.retry_after == 10.0


def test_reset_closes_and_clears_the_count() -> None:
    breaker, _ = make(failure_threshold=2)
    breaker.record_failure()
    breaker.trip()
    breaker.reset()
    assert breaker.state == "closed"
    assert breaker.failure_count == 0
    assert breaker.allow()


def test_trip_forces_it_open_from_any_state() -> None:
    breaker, clock = make(reset_timeout=5.0)
    breaker.trip()
    assert breaker.state == "open"
    clock.advance(5.0)
    assert breaker.state == "half_open"
    breaker.trip()
    assert breaker.state == "open"
    assert breaker.retry_after == 5.0


def test_records_while_open_change_nothing() -> None:
    breaker, _ = open_breaker()
    breaker.record_success()
    assert breaker.state == "open"
    breaker.record_failure()
    assert breaker.retry_after == 10.0


# --- configuration ---------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_threshold": -1}, "failure_threshold"),
        ({"reset_timeout": 0.0}, "reset_timeout"),
        ({"reset_timeout": -1.0}, "reset_timeout"),
        ({"reset_timeout": math.nan}, "reset_timeout"),
        ({"reset_timeout": math.inf}, "reset_timeout"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
        ({"success_threshold": 0}, "success_threshold"),
        ({"failure_threshold": 2**31}, "failure_threshold"),
    ],
)
def test_bad_settings_raise_value_error_naming_the_argument(
    options: dict[str, Any], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        rk.CircuitBreaker(**options)


@pytest.mark.parametrize(
    "options",
    [
        {"failure_threshold": 2.5},
        {"failure_threshold": "5"},
        {"failure_on": 42},
        {"failure_on": (ValueError, "nope")},
        {"clock": object()},
    ],
)
def test_wrongly_typed_settings_raise_type_error(options: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        rk.CircuitBreaker(**options)


def test_settings_are_readable_and_copy_makes_a_fresh_closed_twin() -> None:
    predicate = functools.partial(isinstance, __class_or_tuple=ServiceDown)
    breaker, clock = make(
        4, 2.5, half_open_max_calls=3, success_threshold=2, failure_on=(ServiceDown, OSError)
    )
    assert breaker.failure_threshold == 4
    assert breaker.reset_timeout == 2.5
    assert breaker.half_open_max_calls == 3
    assert breaker.success_threshold == 2
    assert breaker.failure_on == (ServiceDown, OSError)
    assert breaker.clock is clock
    breaker.trip()
    twin = breaker.copy()
    assert type(twin) is rk.CircuitBreaker
    assert twin.state == "closed"
    assert (twin.failure_threshold, twin.reset_timeout, twin.failure_on, twin.clock) == (
        4,
        2.5,
        (ServiceDown, OSError),
        clock,
    )
    assert rk.CircuitBreaker(failure_on=predicate).failure_on is predicate
    assert rk.CircuitBreaker().failure_on is None


def test_repr_shows_the_configuration_and_state() -> None:
    breaker, _ = make(3, 2.0)
    assert repr(breaker) == (
        "CircuitBreaker(failure_threshold=3, reset_timeout=2.0, half_open_max_calls=1, "
        "success_threshold=1, failure_on=None, state='closed')"
    )


# --- the state machine against a model of SPEC section 4 --------------------


class SpecModel:
    """SPEC section 4, written as plainly as possible, for manual outcomes."""

    def __init__(self, threshold: int, timeout: float, max_calls: int, successes: int) -> None:
        self.threshold, self.timeout = threshold, timeout
        self.max_calls, self.successes_needed = max_calls, successes
        self.state = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.in_flight = 0
        self.successes = 0

    def look(self, now: float) -> str:
        if self.state == "open" and now >= self.opened_at + self.timeout:
            self.state, self.in_flight, self.successes = "half_open", 0, 0
        return self.state

    def open(self, now: float) -> None:
        self.state, self.opened_at, self.in_flight, self.successes = "open", now, 0, 0

    def allow(self, now: float) -> bool:
        state = self.look(now)
        if state == "closed":
            return True
        if state == "half_open" and self.in_flight < self.max_calls:
            self.in_flight += 1
            return True
        return False

    def success(self, now: float) -> None:
        state = self.look(now)
        if state == "closed":
            self.failures = 0
        elif state == "half_open":
            self.in_flight = max(0, self.in_flight - 1)
            self.successes += 1
            if self.successes >= self.successes_needed:
                self.state, self.failures = "closed", 0

    def failure(self, now: float) -> None:
        state = self.look(now)
        if state == "closed":
            self.failures += 1
            if self.failures >= self.threshold:
                self.open(now)
        elif state == "half_open":
            self.failures += 1
            self.open(now)


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.breaker: Optional[rk.CircuitBreaker] = None

    @precondition(lambda self: self.breaker is None)
    @rule(
        threshold=st.integers(1, 4),
        timeout=st.sampled_from([1.0, 2.5, 10.0]),
        max_calls=st.integers(1, 3),
        successes=st.integers(1, 3),
    )
    def build(self, threshold: int, timeout: float, max_calls: int, successes: int) -> None:
        self.clock = rk.ManualClock()
        self.breaker = rk.CircuitBreaker(
            threshold,
            timeout,
            half_open_max_calls=max_calls,
            success_threshold=successes,
            clock=self.clock,
        )
        self.model = SpecModel(threshold, timeout, max_calls, successes)

    def now(self) -> float:
        return self.clock.now()

    @precondition(lambda self: self.breaker is not None)
    @rule()
    def allow(self) -> None:
        assert self.breaker is not None
        assert self.breaker.allow() == self.model.allow(self.now())

    @precondition(lambda self: self.breaker is not None)
    @rule()
    def success(self) -> None:
        assert self.breaker is not None
        self.breaker.record_success()
        self.model.success(self.now())

    @precondition(lambda self: self.breaker is not None)
    @rule()
    def failure(self) -> None:
        assert self.breaker is not None
        self.breaker.record_failure()
        self.model.failure(self.now())

    @precondition(lambda self: self.breaker is not None)
    @rule(ok=st.booleans())
    def call(self, ok: bool) -> None:
        assert self.breaker is not None
        allowed = self.model.allow(self.now())
        try:
            self.breaker.call(int) if ok else self.breaker.call(fail, ServiceDown())
        except rk.CircuitOpenError:
            assert not allowed
            return
        except ServiceDown:
            pass
        assert allowed
        (self.model.success if ok else self.model.failure)(self.now())

    @precondition(lambda self: self.breaker is not None)
    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 10.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: self.breaker is not None)
    @rule()
    def trip(self) -> None:
        assert self.breaker is not None
        self.breaker.trip()
        self.model.look(self.now())
        self.model.open(self.now())

    @precondition(lambda self: self.breaker is not None)
    @rule()
    def reset(self) -> None:
        assert self.breaker is not None
        self.breaker.reset()
        self.model.state, self.model.failures = "closed", 0
        self.model.in_flight = self.model.successes = 0

    @invariant()
    def agrees_with_the_model(self) -> None:
        if self.breaker is None:
            return
        now = self.now()
        assert self.breaker.state == self.model.look(now)
        expected_wait = (
            max(0.0, self.model.opened_at + self.model.timeout - now)
            if self.model.state == "open"
            else 0.0
        )
        assert self.breaker.retry_after == pytest.approx(expected_wait)
        if self.model.state == "closed":
            assert self.breaker.failure_count == self.model.failures


BreakerMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_breaker_follows_the_spec_for_any_sequence_of_outcomes = BreakerMachine.TestCase


# --- on_state_change and the breaker_state event ----------------------------


class Heard:
    """An on_state_change hook that records what it is called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, str, str]] = []

    def __call__(self, breaker: Any, old: str, new: str) -> None:
        # The breaker's lock is free: the hook may look at it (a deadlock would hang here).
        self.looked = breaker.failure_count + len(breaker.state)
        self.calls.append((breaker, old, new))

    def changes(self) -> list[tuple[str, str]]:
        return [(old, new) for _, old, new in self.calls]


def test_on_state_change_hears_every_transition_in_order() -> None:
    heard = Heard()
    breaker, clock = make(failure_threshold=2, reset_timeout=10.0, on_state_change=heard)
    assert breaker.on_state_change is heard
    breaker.record_failure()
    assert heard.calls == []
    breaker.record_failure()
    clock.advance(10.0)
    assert breaker.allow()  # the probe
    breaker.record_failure()
    clock.advance(10.0)
    assert breaker.state == "half_open"
    breaker.record_success()
    breaker.trip()
    breaker.trip()
    breaker.reset()
    breaker.reset()
    assert heard.changes() == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("closed", "open"),
        ("open", "closed"),
    ]
    assert all(called is breaker for called, _, _ in heard.calls)


def test_on_state_change_hears_the_rust_call_paths() -> None:
    heard = Heard()
    breaker, clock = make(failure_threshold=1, reset_timeout=5.0, on_state_change=heard)
    guarded = breaker(fail)
    with pytest.raises(ServiceDown):
        guarded(ServiceDown())
    with pytest.raises(rk.CircuitOpenError):
        breaker.call(abs, -1)
    clock.advance(5.0)
    assert breaker.call(abs, -1) == 1
    assert heard.changes() == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


async def test_on_state_change_hears_the_async_paths() -> None:
    heard = Heard()
    breaker, clock = make(failure_threshold=1, reset_timeout=5.0, on_state_change=heard)

    @breaker
    async def down() -> None:
        raise ServiceDown

    async def up() -> int:
        return 1

    with pytest.raises(ServiceDown):
        await down()
    clock.advance(5.0)
    with pytest.raises(ServiceDown):
        await down()
    clock.advance(5.0)
    assert await breaker.call_async(up) == 1
    assert heard.changes() == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_a_hook_that_raises_is_logged_and_the_call_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(breaker: Any, old: str, new: str) -> None:
        raise RuntimeError("hook bug")

    breaker, _ = make(failure_threshold=1, on_state_change=broken)
    with caplog.at_level(logging.ERROR, logger="ratekeeper.breaker"), pytest.raises(ServiceDown):
        breaker.call(fail, ServiceDown())
    assert breaker.state == "open"
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "hook bug" in str(record.exc_info[1])  # type: ignore[index]


def test_state_changes_are_logged_and_emitted(caplog: pytest.LogCaptureFixture) -> None:
    breaker, clock = make(failure_threshold=1, reset_timeout=5.0)
    seen: list[rk.Event] = []
    rk.subscribe(breaker, seen.append)
    with caplog.at_level(logging.INFO, logger="ratekeeper.breaker"):
        breaker.record_failure()
        clock.advance(5.0)
        breaker.record_success()  # half-open probe outcome, recorded by hand
    assert [(r.levelno, r.state) for r in caplog.records] == [  # type: ignore[attr-defined]
        (logging.WARNING, "open"),
        (logging.INFO, "half_open"),
        (logging.INFO, "closed"),
    ]
    assert [e.fields["state"] for e in seen] == ["open", "half_open", "closed"]
    assert all(e.source is breaker for e in seen)


def test_copies_keep_the_hook_and_a_breaker_is_not_kept_alive_by_it() -> None:
    heard = Heard()
    breaker, _ = make(failure_threshold=1, on_state_change=heard)
    copy = breaker.copy()
    assert copy.on_state_change is heard
    copy.trip()
    assert heard.calls == [(copy, "closed", "open")]
    gone = weakref.ref(breaker)
    del breaker
    gc.collect()
    assert gone() is None


def test_on_state_change_must_be_a_plain_callable() -> None:
    with pytest.raises(TypeError, match="on_state_change"):
        rk.CircuitBreaker(on_state_change="print")  # type: ignore[arg-type]

    async def later(breaker: Any, old: str, new: str) -> None: ...

    with pytest.raises(TypeError, match="on_state_change"):
        rk.CircuitBreaker(on_state_change=later)


def test_clone_of_a_rust_breaker_is_a_fresh_one_with_its_settings():
    template = _core.CircuitBreaker(4, 7.0, half_open_max_calls=2)
    template.record_failure()
    clone = clone_breaker(template)
    assert type(clone) is _core.CircuitBreaker
    assert clone is not template
    assert (clone.failure_threshold, clone.reset_timeout, clone.half_open_max_calls) == (4, 7.0, 2)
    assert rk.CircuitBreaker(3).copy().failure_threshold == 3
