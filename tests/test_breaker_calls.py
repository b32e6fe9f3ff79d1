"""CircuitBreaker around calls: `call`, the sync and async decorators, failure_on, threads."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import pickle
import threading
import weakref
from typing import Any

import pytest
from breaker_helpers import NotTheService, ServiceDown, fail, make, open_breaker

import ratekeeper as rk

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
