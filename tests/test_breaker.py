"""CircuitBreaker: SPEC section 4, its decorator, and its state machine under any outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import math
import pickle
import threading
import weakref
from typing import Any, Optional

import pytest
import ratekeeper as rk
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule


class ServiceDown(Exception):
    pass


class NotTheService(Exception):
    pass


def fail(exc: BaseException) -> None:
    raise exc


def make(
    failure_threshold: int = 3,
    reset_timeout: float = 10.0,
    **options: Any,
) -> tuple[rk.CircuitBreaker, rk.ManualClock]:
    clock = rk.ManualClock()
    return rk.CircuitBreaker(failure_threshold, reset_timeout, clock=clock, **options), clock


def open_breaker(**options: Any) -> tuple[rk.CircuitBreaker, rk.ManualClock]:
    breaker, clock = make(**options)
    breaker.trip()
    return breaker, clock


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


# --- call and the sync decorator -------------------------------------------


def test_call_passes_arguments_and_returns_the_result() -> None:
    breaker, _ = make()
    assert breaker.call(lambda a, b=0: (a, b), 1, b=2) == (1, 2)
    assert breaker.call(dict, func=3) == {"func": 3}


def test_call_reraises_the_same_exception_and_counts_it() -> None:
    breaker, _ = make(failure_threshold=2)
    error = ServiceDown("down")
    with pytest.raises(ServiceDown) as caught:
        breaker.call(fail, error)
    assert caught.value is error
    assert caught.value.__traceback__ is not None
    assert breaker.failure_count == 1


def test_refused_call_raises_circuit_open_error_without_calling() -> None:
    breaker, clock = open_breaker(reset_timeout=10.0)
    clock.advance(4.0)
    calls: list[int] = []
    with pytest.raises(rk.CircuitOpenError) as caught:
        breaker.call(calls.append, 1)
    assert calls == []
    assert caught.value.retry_after == pytest.approx(6.0)
    assert isinstance(caught.value, rk.RateLimitError)


def test_half_open_with_every_slot_taken_refuses_with_retry_after_zero() -> None:
    breaker, clock = open_breaker()
    clock.advance(10.0)
    assert breaker.allow()
    with pytest.raises(rk.CircuitOpenError) as caught:
        breaker.call(int)
    assert caught.value.retry_after == 0.0


def test_decorated_function_opens_the_breaker_and_is_then_refused() -> None:
    breaker, clock = make(failure_threshold=2)
    calls = []

    @breaker
    def flaky(ok: bool) -> str:
        calls.append(ok)
        if not ok:
            raise ServiceDown
        return "ok"

    for _ in range(2):
        with pytest.raises(ServiceDown):
            flaky(False)
    with pytest.raises(rk.CircuitOpenError):
        flaky(True)
    assert calls == [False, False]
    clock.advance(10.0)
    assert flaky(True) == "ok"
    assert breaker.state == "closed"


def test_decorator_keeps_the_function_metadata() -> None:
    breaker, _ = make()

    def documented(x: int, *, scale: float = 1.0) -> float:
        """Scales x."""
        return x * scale

    wrapped = breaker(documented)
    assert wrapped.__name__ == "documented"
    assert wrapped.__qualname__ == documented.__qualname__
    assert wrapped.__doc__ == "Scales x."
    assert wrapped.__module__ == __name__
    assert wrapped.__wrapped__ is documented
    assert wrapped.breaker is breaker
    assert inspect.signature(wrapped) == inspect.signature(documented)
    assert callable(wrapped)
    assert wrapped(2, scale=1.5) == 3.0


@rk.CircuitBreaker()
def module_level_guarded(x: int) -> int:
    return x * 2


def test_decorated_function_pickles_by_reference_like_a_function() -> None:
    again = pickle.loads(pickle.dumps(module_level_guarded))
    assert again is module_level_guarded
    assert again(2) == 4


def build_cycle() -> tuple[weakref.ref[Any], weakref.ref[Any]]:
    breaker = rk.CircuitBreaker(failure_on=lambda exc: exc is not breaker)

    @breaker
    def recursive() -> object:
        return recursive  # the closure refers to the wrapper: a cycle

    return weakref.ref(recursive), weakref.ref(breaker)


def test_a_decorated_function_in_a_reference_cycle_is_collected() -> None:
    function_alive, breaker_alive = build_cycle()
    gc.collect()
    assert function_alive() is None
    assert breaker_alive() is None


def test_decorator_works_on_methods_classmethods_and_staticmethods() -> None:
    breaker, _ = make()

    class Client:
        def __init__(self, name: str) -> None:
            self.name = name

        @breaker
        def fetch(self, path: str) -> str:
            return f"{self.name}:{path}"

        @classmethod
        @breaker
        def kind(cls) -> str:
            return cls.__name__

        @staticmethod
        @breaker
        def static(x: int) -> int:
            return x + 1

    client = Client("a")
    assert client.fetch("/x") == "a:/x"
    assert Client.fetch(client, "/y") == "a:/y"
    assert client.fetch.__self__ is client
    assert Client.kind() == "Client"
    assert Client.static(1) == 2


def test_decorating_a_non_callable_raises_type_error() -> None:
    with pytest.raises(TypeError, match="callable"):
        rk.CircuitBreaker()(42)  # type: ignore[call-overload]


# --- failure_on -------------------------------------------------------------


@pytest.mark.parametrize(
    "failure_on",
    [
        ServiceDown,
        (ServiceDown, OSError),
        lambda exc: isinstance(exc, ServiceDown),
    ],
    ids=["type", "tuple", "predicate"],
)
def test_failure_on_counts_matching_exceptions_and_passes_the_others(failure_on: Any) -> None:
    breaker, _ = make(failure_threshold=1, failure_on=failure_on)
    with pytest.raises(NotTheService):
        breaker.call(fail, NotTheService())
    assert breaker.state == "closed"
    with pytest.raises(ServiceDown):
        breaker.call(fail, ServiceDown())
    assert breaker.state == "open"


def test_a_non_matching_exception_counts_as_a_success() -> None:
    breaker, clock = make(failure_threshold=2, failure_on=ServiceDown)
    breaker.record_failure()
    with pytest.raises(KeyError):
        breaker.call(fail, KeyError("k"))
    assert breaker.failure_count == 0
    breaker.trip()
    clock.advance(10.0)
    with pytest.raises(KeyError):
        breaker.call(fail, KeyError("k"))
    assert breaker.state == "closed"


def test_a_raising_predicate_counts_a_failure_and_raises_its_own_error() -> None:
    def broken(exc: BaseException) -> bool:
        raise RuntimeError("predicate bug")

    breaker, _ = make(failure_threshold=1, failure_on=broken)
    with pytest.raises(RuntimeError, match="predicate bug") as caught:
        breaker.call(fail, ServiceDown())
    assert isinstance(caught.value.__context__, ServiceDown)
    assert breaker.state == "open"


# --- exceptions that are not service failures -------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, asyncio.CancelledError])
def test_base_exceptions_pass_through_and_release_the_probe_slot(
    exc_type: type[BaseException],
) -> None:
    breaker, clock = open_breaker()
    clock.advance(10.0)
    with pytest.raises(exc_type):
        breaker.call(fail, exc_type())
    assert breaker.state == "half_open"
    assert breaker.failure_count == 0
    assert breaker.allow(), "the interrupted probe gave its slot back"


def test_base_exceptions_do_not_count_while_closed() -> None:
    breaker, _ = make(failure_threshold=1)
    with pytest.raises(KeyboardInterrupt):
        breaker.call(fail, KeyboardInterrupt())
    assert breaker.state == "closed"


def test_an_outcome_from_before_the_breaker_opened_does_not_close_it() -> None:
    breaker, clock = make(failure_threshold=1)
    release = threading.Event()
    started = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return "late"

    results: list[str] = []
    worker = threading.Thread(target=lambda: results.append(breaker.call(slow)))
    worker.start()
    assert started.wait(5)
    breaker.record_failure()  # opens it
    clock.advance(10.0)
    assert breaker.allow()  # the one probe slot is now taken
    release.set()
    worker.join(5)
    assert results == ["late"]
    assert breaker.state == "half_open"
    assert not breaker.allow(), "the late success did not free the probe slot"


# --- async ------------------------------------------------------------------


async def test_async_decorator_counts_failures_and_refuses_when_open() -> None:
    breaker, clock = make(failure_threshold=2)
    calls: list[bool] = []

    @breaker
    async def fetch(ok: bool) -> str:
        """Fetches."""
        calls.append(ok)
        await asyncio.sleep(0)
        if not ok:
            raise ServiceDown
        return "ok"

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetches."
    assert fetch.breaker is breaker  # type: ignore[attr-defined]
    assert await fetch(True) == "ok"
    for _ in range(2):
        with pytest.raises(ServiceDown):
            await fetch(False)
    with pytest.raises(rk.CircuitOpenError) as caught:
        await fetch(True)
    assert caught.value.retry_after == 10.0
    assert calls == [True, False, False]
    clock.advance(10.0)
    assert await fetch(True) == "ok"
    assert breaker.state == "closed"


async def test_async_decorator_binds_to_methods() -> None:
    breaker, _ = make()

    class Client:
        @breaker
        async def get(self, x: int) -> tuple[Client, int]:
            return self, x

    client = Client()
    assert await client.get(1) == (client, 1)


async def test_call_async_uses_failure_on() -> None:
    breaker, _ = make(failure_threshold=1, failure_on=ServiceDown)

    async def raise_(exc: Exception) -> None:
        raise exc

    with pytest.raises(NotTheService):
        await breaker.call_async(raise_, NotTheService())
    assert breaker.state == "closed"
    with pytest.raises(ServiceDown):
        await breaker.call_async(raise_, ServiceDown())
    assert breaker.state == "open"


async def test_a_cancelled_async_probe_gives_its_slot_back() -> None:
    breaker, clock = open_breaker()
    clock.advance(10.0)
    started = asyncio.Event()

    @breaker
    async def hang() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.ensure_future(hang())
    await started.wait()
    assert not breaker.allow(), "the running probe holds the only slot"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state == "half_open"
    assert breaker.allow()


# --- concurrency -------------------------------------------------------------


def test_concurrent_probes_from_threads_never_exceed_half_open_max_calls() -> None:
    breaker, clock = open_breaker(half_open_max_calls=3, success_threshold=10**6)
    clock.advance(10.0)
    lock = threading.Lock()
    running = 0
    most = 0
    admitted = 0

    def probe() -> None:
        nonlocal running, most, admitted
        with lock:
            running += 1
            admitted += 1
            most = max(most, running)
        # Stay inside long enough for the other threads to try to get in.
        threading.Event().wait(0.0005)
        with lock:
            running -= 1

    def worker() -> None:
        for _ in range(300):
            with contextlib.suppress(rk.CircuitOpenError):
                breaker.call(probe)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert 1 <= most <= 3
    assert admitted > 3
    assert breaker.state == "half_open"


def test_threads_hammering_a_closed_breaker_keep_it_closed() -> None:
    breaker, _ = make(failure_threshold=1)
    counter = iter(range(10**9))

    def worker() -> None:
        for _ in range(5000):
            breaker.call(next, counter)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert next(counter) == 20000
    assert breaker.state == "closed"


def test_circuit_open_error_pickles_with_retry_after() -> None:
    breaker, _ = open_breaker()
    with pytest.raises(rk.CircuitOpenError) as caught:
        breaker.call(int)
    again = pickle.loads(pickle.dumps(caught.value))
    assert again.retry_after == caught.value.retry_after


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
