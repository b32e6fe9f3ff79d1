"""KeyedLimiter: one token bucket per key (SPEC section 2)."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ratekeeper as rk


def keyed(rate: float = 1.0, capacity: float = 2.0, **kwargs: object) -> rk.KeyedLimiter:
    return rk.KeyedLimiter(rate, capacity, **kwargs)  # type: ignore[arg-type]


# --- unit behaviour -----------------------------------------------------------


def test_each_key_gets_its_own_full_bucket() -> None:
    limiter = keyed(clock=rk.ManualClock())
    assert limiter.try_acquire("alice", 2)
    assert not limiter.try_acquire("alice")
    assert limiter.try_acquire("bob")
    assert limiter.try_acquire("bob")
    assert not limiter.try_acquire("bob")


def test_buckets_refill_at_rate() -> None:
    clock = rk.ManualClock()
    limiter = keyed(2.0, 2.0, clock=clock)
    assert limiter.try_acquire("a", 2)
    assert limiter.wait_time("a") == pytest.approx(0.5)
    clock.advance(0.5)
    assert limiter.wait_time("a") == 0.0
    assert limiter.try_acquire("a")
    assert not limiter.try_acquire("a")


def test_overrides_give_a_key_its_own_rate_and_capacity() -> None:
    clock = rk.ManualClock()
    limiter = keyed(1.0, 1.0, overrides={"gpt-4o": (10.0, 5.0)}, clock=clock)
    assert limiter.available("gpt-4o") == 5.0
    assert limiter.try_acquire("gpt-4o", 5)
    with pytest.raises(ValueError, match="capacity"):
        limiter.try_acquire("other", 5)
    clock.advance(0.1)
    assert limiter.try_acquire("gpt-4o")
    assert not limiter.try_acquire("gpt-4o")


def test_available_is_capacity_for_an_unseen_key_and_negative_while_reserved() -> None:
    limiter = keyed(clock=rk.ManualClock())
    assert limiter.available("new") == 2.0
    assert "new" not in limiter
    limiter.try_acquire("a", 2)
    assert limiter._reserve("a", 1, None) > 0
    assert limiter.available("a") == pytest.approx(-1.0)


def test_blocking_acquire_waits_in_virtual_time() -> None:
    clock = rk.ManualClock()
    limiter = keyed(1.0, 1.0, clock=clock)
    assert limiter.acquire("a")
    assert limiter.acquire("a")
    assert clock.now() == pytest.approx(1.0)


def test_acquire_with_too_short_a_timeout_returns_false_and_takes_nothing() -> None:
    clock = rk.ManualClock()
    limiter = keyed(1.0, 1.0, clock=clock)
    limiter.try_acquire("a")
    assert limiter.acquire("a", timeout=0.5) is False
    assert clock.now() == 0.0
    assert limiter.wait_time("a") == pytest.approx(1.0)
    assert limiter.acquire("a", timeout=1.0) is True


async def test_acquire_async_grants_at_once_then_waits_in_virtual_time() -> None:
    clock = rk.ManualClock()
    limiter = keyed(1.0, 1.0, clock=clock)
    assert await limiter.acquire_async("a")
    assert await limiter.acquire_async("a", timeout=0.5) is False
    assert await limiter.acquire_async("a")
    assert clock.now() == pytest.approx(1.0)


def test_len_and_contains_count_live_keys() -> None:
    clock = rk.ManualClock()
    limiter = keyed(1.0, 2.0, idle_timeout=10.0, clock=clock)
    for key in ("a", "b", "c"):
        limiter.try_acquire(key)
    assert len(limiter) == 3
    assert "a" in limiter
    assert 42 not in limiter
    clock.advance(10.5)  # full at 1 s, idle from 11 s
    assert len(limiter) == 3
    clock.advance(0.5)
    assert "a" not in limiter
    assert len(limiter) == 0


def test_a_dropped_key_comes_back_full() -> None:
    clock = rk.ManualClock()
    limiter = keyed(1.0, 2.0, idle_timeout=1.0, clock=clock)
    limiter.try_acquire("a", 2)
    clock.advance(3.0)
    assert len(limiter) == 0
    assert limiter.try_acquire("a", 2)
    assert not limiter.try_acquire("a")


def test_a_key_with_an_outstanding_reservation_is_never_dropped() -> None:
    clock = rk.ManualClock()
    limiter = keyed(1.0, 1.0, idle_timeout=1.0, clock=clock)
    limiter.try_acquire("a")
    dues = [limiter._reserve("a", 1, None) for _ in range(10)]
    # All but the first waiter give up, latest first: each is then the last
    # in line, so its units come back.
    for due in reversed(dues[1:]):
        limiter._cancel("a", 1, due)
    clock.advance(5.0)  # the bucket's own time says full and idle
    assert len(limiter) == 1
    assert "a" in limiter
    limiter._finish("a")
    clock.advance(1.0)
    assert len(limiter) == 0


def test_reset_refills_one_key_or_all() -> None:
    limiter = keyed(clock=rk.ManualClock())
    limiter.try_acquire("a", 2)
    limiter.try_acquire("b", 2)
    limiter.reset("a")
    assert limiter.available("a") == 2.0
    assert limiter.available("b") == 0.0
    limiter.reset()
    assert limiter.available("b") == 2.0
    assert len(limiter) == 0


def test_properties_and_repr_show_the_configuration() -> None:
    limiter = keyed(3.0, 9.0, idle_timeout=30.0)
    assert (limiter.rate, limiter.capacity, limiter.idle_timeout) == (3.0, 9.0, 30.0)
    assert repr(limiter) == "KeyedLimiter(rate=3.0, capacity=9.0, idle_timeout=30.0)"
    assert isinstance(limiter, rk.KeyedLimiter)


def test_non_ascii_keys_are_distinct_keys() -> None:
    limiter = keyed(clock=rk.ManualClock())
    assert limiter.try_acquire("ключ", 2)
    assert limiter.try_acquire("键", 2)
    assert not limiter.try_acquire("ключ")
    assert len(limiter) == 2


# --- bad input ----------------------------------------------------------------

BAD_NUMBERS = [math.nan, math.inf, -math.inf, 0.0, -1.0]


@pytest.mark.parametrize("bad", BAD_NUMBERS)
@pytest.mark.parametrize("name", ["rate", "capacity", "idle_timeout"])
def test_bad_configuration_names_the_argument(name: str, bad: float) -> None:
    kwargs: dict[str, float] = {"rate": 1.0, "capacity": 1.0, "idle_timeout": 1.0, name: bad}
    with pytest.raises(ValueError, match=name):
        rk.KeyedLimiter(kwargs["rate"], kwargs["capacity"], idle_timeout=kwargs["idle_timeout"])


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"m": (0.0, 1.0)}, ValueError, r"overrides\[\"m\"\]: rate"),
        ({"m": (1.0, math.nan)}, ValueError, r"overrides\[\"m\"\]: capacity"),
        ({"m": (1.0,)}, TypeError, "rate, capacity"),
        ({"m": "fast"}, TypeError, "rate, capacity"),
        ({1: (1.0, 1.0)}, TypeError, "overrides keys must be str"),
        ([("m", (1.0, 1.0))], TypeError, "overrides must be a mapping"),
    ],
)
def test_bad_overrides_are_refused(overrides: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        rk.KeyedLimiter(1.0, 1.0, overrides=overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad_key", [1, None, b"bytes", ("a",)])
def test_keys_must_be_str(bad_key: object) -> None:
    limiter = keyed()
    for method in (limiter.try_acquire, limiter.wait_time, limiter.acquire, limiter.available):
        with pytest.raises(TypeError, match="key must be str"):
            method(bad_key)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [*BAD_NUMBERS, 3.0])
async def test_bad_amounts_are_refused_by_every_variant(bad: float) -> None:
    limiter = keyed(1.0, 2.0, clock=rk.ManualClock())
    with pytest.raises(ValueError, match="n"):
        limiter.try_acquire("a", bad)
    with pytest.raises(ValueError, match="n"):
        limiter.acquire("a", bad)
    with pytest.raises(ValueError, match="n"):
        await limiter.acquire_async("a", bad)
    with pytest.raises(ValueError, match="n"):
        limiter.wait_time("a", bad)
    assert len(limiter) == 0, "a refused request creates no key"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
async def test_bad_timeouts_are_refused(bad: float) -> None:
    limiter = keyed()
    with pytest.raises(ValueError, match="timeout"):
        limiter.acquire("a", 1, timeout=bad)
    with pytest.raises(ValueError, match="timeout"):
        await limiter.acquire_async("a", 1, timeout=bad)


# --- properties in virtual time -----------------------------------------------

KEYS = ["free", "pro", "gpt-4o"]
OVERRIDES = {"pro": (5.0, 10.0), "gpt-4o": (0.5, 3.0)}
DEFAULT = (1.0, 2.0)
IDLE = 4.0

operation = st.tuples(
    st.sampled_from(KEYS),
    st.sampled_from([0.5, 1.0, 2.0]),
    st.integers(min_value=0, max_value=3000).map(lambda ms: ms / 1000),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(operation, max_size=80))
def test_each_key_behaves_exactly_like_its_own_token_bucket(
    ops: list[tuple[str, float, float]],
) -> None:
    clock = rk.ManualClock()
    limiter = rk.KeyedLimiter(*DEFAULT, overrides=OVERRIDES, idle_timeout=IDLE, clock=clock)
    twins = {k: rk.TokenBucket(*OVERRIDES.get(k, DEFAULT), clock=clock) for k in KEYS}
    granted = dict.fromkeys(KEYS, 0.0)
    full_at: dict[str, float] = {}
    for key, n, dt in ops:
        clock.advance(dt)
        rate, capacity = OVERRIDES.get(key, DEFAULT)
        if n > capacity:
            continue
        decision = limiter.try_acquire(key, n)
        assert decision == twins[key].try_acquire(n), "keys are independent buckets"
        if decision:
            granted[key] += n
        now = clock.now()
        assert granted[key] <= capacity + rate * now + 1e-9
        full_at[key] = now + (capacity - twins[key].available) / rate
        # Keys clearly past full + idle are dropped; keys clearly before it live.
        live = [k for k, t in full_at.items() if t + IDLE > now + 1e-6]
        unsure = [k for k, t in full_at.items() if abs(t + IDLE - now) <= 1e-6]
        assert len(live) <= len(limiter) <= len(live) + len(unsure)
        for k in live:
            assert k in limiter


# --- real threads and real asyncio --------------------------------------------


def run_threads(count: int, target: object) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_threads_on_distinct_keys_each_get_their_whole_capacity() -> None:
    limiter = keyed(1e-6, 500.0)
    counts = [0] * 4

    def worker(i: int) -> None:
        counts[i] = sum(limiter.try_acquire(f"user-{i}") for _ in range(2000))

    run_threads(4, worker)
    assert counts == [500] * 4


def test_threads_on_one_key_never_exceed_the_bound() -> None:
    rate, capacity = 2000.0, 50.0
    limiter = keyed(rate, capacity)
    counts = [0] * 4
    start = time.monotonic()

    def worker(i: int) -> None:
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            counts[i] += limiter.try_acquire("shared")

    run_threads(4, worker)
    elapsed = time.monotonic() - start
    assert sum(counts) <= capacity + rate * elapsed
    assert sum(counts) >= capacity


def test_blocking_acquire_lets_other_threads_run_and_keeps_the_rate() -> None:
    limiter = keyed(100.0, 1.0)
    limiter.try_acquire("a")
    ticks = 0
    done = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    start = time.monotonic()
    for _ in range(10):
        limiter.acquire("a")
    elapsed = time.monotonic() - start
    done.set()
    spinner.join()
    assert elapsed >= 0.09  # ten units at 100/s after an empty bucket
    assert ticks > 0


async def test_async_waiters_on_one_key_are_served_in_arrival_order() -> None:
    limiter = keyed(200.0, 1.0)
    served: list[int] = []

    async def waiter(i: int) -> None:
        await limiter.acquire_async("a")
        served.append(i)

    await asyncio.gather(*(waiter(i) for i in range(20)))
    assert served == list(range(20))


async def test_cancelled_waiter_returns_its_reservation() -> None:
    clock = rk.ManualClock()
    limiter = keyed(1.0, 1.0, idle_timeout=1.0, clock=clock)
    limiter.try_acquire("a")
    task = asyncio.ensure_future(limiter.acquire_async("a"))
    await asyncio.sleep(0)  # the task reserves, then yields once
    assert limiter.available("a") == pytest.approx(-1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limiter.available("a") == pytest.approx(0.0)
    assert clock.now() == 0.0
    clock.advance(2.0)
    assert len(limiter) == 0, "a cancelled waiter does not pin its key"


async def test_finished_async_waiter_lets_its_key_expire() -> None:
    clock = rk.ManualClock()
    limiter = keyed(1.0, 1.0, idle_timeout=1.0, clock=clock)
    limiter.try_acquire("a")
    assert await limiter.acquire_async("a")
    clock.advance(2.0)
    assert len(limiter) == 0


# --- waiters that move up (SPEC 15) -------------------------------------------


async def test_cancelling_every_other_waiter_halves_the_survivors_wait() -> None:
    # rate 10/s, capacity 1: 40 waiters due every 0.1 s on one key; the 20
    # that stay move up into the gaps and are all served by 2 s, not 4 s.
    clock = rk.ManualClock()
    limiter = keyed(10.0, 1.0, clock=clock)
    assert limiter.try_acquire("k")
    granted: list[tuple[int, float]] = []

    async def wait(i: int) -> None:
        await limiter.acquire_async("k")
        granted.append((i, clock.now()))

    tasks = [asyncio.create_task(wait(i)) for i in range(40)]
    await asyncio.sleep(0)  # all have reserved
    assert limiter.available("k") == pytest.approx(-40.0)
    for task in tasks[::2]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert [i for i, _ in granted] == list(range(1, 40, 2))
    times = [t for _, t in granted]
    assert times == pytest.approx([0.1 * (k + 1) for k in range(20)], abs=1e-6)
    # Nobody jumped ahead either: the bucket is empty after the survivors.
    assert not limiter.try_acquire("k")
    assert limiter.wait_time("k") == pytest.approx(0.1, abs=1e-6)


async def test_a_newcomer_queues_behind_the_waiter_that_moved_up() -> None:
    clock = rk.ManualClock()
    limiter = keyed(1.0, 1.0, clock=clock)
    assert limiter.try_acquire("k")
    first = asyncio.create_task(limiter.acquire_async("k"))
    second = asyncio.create_task(limiter.acquire_async("k"))
    await asyncio.sleep(0)
    first.cancel()
    assert limiter.wait_time("k") == pytest.approx(3.0)  # before the cancel lands
    await asyncio.gather(first, second, return_exceptions=True)
    assert second.result() is True
    assert clock.now() == pytest.approx(1.0)  # moved up from 2 s
    assert limiter.wait_time("k") == pytest.approx(1.0)


async def test_a_refund_goes_to_the_waiters_not_to_a_newcomer() -> None:
    clock = rk.ManualClock()
    limiter = keyed(1.0, 6.0, clock=clock)
    assert limiter.try_acquire("k", 6)
    waiter = asyncio.create_task(limiter.acquire_async("k", 6))
    await asyncio.sleep(0)  # reserved, due in 6 s
    limiter.refund("k", 6)
    assert await waiter
    assert clock.now() == 0.0  # granted at once, no virtual wait
    assert not limiter.try_acquire("k")
    assert limiter.wait_time("k", 6) == pytest.approx(6.0)
    limiter.refund("unknown", 1)  # a key never seen is full: nothing to give
    assert "unknown" not in limiter


def test_a_refund_never_fills_a_key_above_capacity() -> None:
    limiter = keyed(1.0, 3.0, clock=rk.ManualClock())
    assert limiter.try_acquire("k", 2)
    limiter.refund("k", 10)
    assert limiter.available("k") == 3.0
    with pytest.raises(ValueError, match=r"^n must"):
        limiter.refund("k", 0)


def test_a_blocked_thread_behind_a_cancelled_reservation_moves_up() -> None:
    limiter = keyed(2.0, 1.0)
    assert limiter.try_acquire("k")
    ahead = limiter._reserve("k", 1, None)  # due in 0.5 s
    took: list[float] = []

    def blocked() -> None:
        started = time.monotonic()
        limiter.acquire("k")
        took.append(time.monotonic() - started)

    thread = threading.Thread(target=blocked)
    thread.start()
    time.sleep(0.05)
    limiter._cancel("k", 1, ahead)
    thread.join()
    # Due ~1 s behind the reservation; ~0.5 s once it was given back.
    assert took[0] < 0.8


async def test_reset_lets_the_waiters_of_a_key_go_at_once() -> None:
    clock = rk.ManualClock()
    limiter = keyed(1.0, 1.0, clock=clock)
    assert limiter.try_acquire("k")
    waiters = [asyncio.create_task(limiter.acquire_async("k")) for _ in range(3)]
    await asyncio.sleep(0)
    limiter.reset("k")
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert clock.now() == 0.0
