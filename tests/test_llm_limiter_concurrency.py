"""rk.Limiter under real threads and real asyncio: the concurrency cap, FIFO
hand-off, cancellation and timeouts that hold nothing, a pause shared by tasks."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import ratekeeper as rk


class Gauge:
    """Counts holders at once and remembers the most seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.total = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.total += 1
            self.most = max(self.most, self.now)

    def exit(self) -> None:
        with self.lock:
            self.now -= 1


def test_threads_never_exceed_the_concurrency_cap() -> None:
    limiter = rk.Limiter(rps=1e6, concurrency=3)
    gauge = Gauge()

    def work() -> None:
        for _ in range(100):
            with limiter.acquire(tokens=0):
                gauge.enter()
                time.sleep(0.0001)
                gauge.exit()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert gauge.total == 800
    assert 1 <= gauge.most <= 3
    stats = limiter.stats()
    assert (stats["granted"], stats["in_flight"], stats["waiting"]) == (800, 0, 0)


def test_a_blocked_thread_gets_the_released_slot() -> None:
    limiter = rk.Limiter(concurrency=1)
    held = limiter.acquire()
    got: list[rk.Permit] = []
    waiter = threading.Thread(target=lambda: got.append(limiter.acquire()))
    waiter.start()
    time.sleep(0.05)
    assert not got and limiter.stats()["waiting"] == 1
    held.release()
    waiter.join(timeout=10)
    assert len(got) == 1 and got[0].waited > 0
    got[0].release()


def test_a_timed_out_thread_holds_nothing() -> None:
    limiter = rk.Limiter(rpm=1000, concurrency=1)
    held = limiter.acquire()
    with pytest.raises(rk.RateLimitTimeout):
        limiter.acquire(timeout=0.05)
    assert limiter.stats()["waiting"] == 0
    assert limiter.stats()["rejected"] == 1
    held.release()
    limiter.acquire(timeout=0).release()
    assert limiter.stats()["granted"] == 2


async def test_tasks_never_exceed_the_concurrency_cap() -> None:
    limiter = rk.Limiter(rpm=1e6, tpm=1e9, concurrency=3)
    gauge = Gauge()

    async def work() -> None:
        async with await limiter.acquire_async(tokens=10):
            gauge.enter()
            await asyncio.sleep(0.001)
            gauge.exit()

    await asyncio.gather(*(work() for _ in range(60)))
    assert gauge.total == 60
    assert gauge.most == 3
    assert limiter.stats()["in_flight"] == 0


async def test_waiting_tasks_get_slots_in_arrival_order() -> None:
    limiter = rk.Limiter(concurrency=1)
    held = limiter.acquire()
    order: list[int] = []

    async def work(i: int) -> None:
        async with await limiter.acquire_async():
            order.append(i)

    tasks = [asyncio.create_task(work(i)) for i in range(5)]
    await asyncio.sleep(0.01)
    held.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_a_cancelled_slot_waiter_holds_nothing() -> None:
    limiter = rk.Limiter(rpm=1000, concurrency=1)
    held = limiter.acquire()
    task = asyncio.create_task(limiter.acquire_async())
    await asyncio.sleep(0.01)
    assert limiter.stats()["waiting"] == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limiter.stats()["waiting"] == 0
    held.release()
    permit = await limiter.acquire_async(timeout=0)
    assert limiter.stats()["in_flight"] == 1
    permit.release()


async def test_a_cancelled_budget_waiter_gives_its_budget_and_slot_back() -> None:
    limiter = rk.Limiter(rps=1, tpm=600, concurrency=2)
    first = await limiter.acquire_async(tokens=600)  # tpm now empty for a minute
    before = limiter.available("tpm")
    task = asyncio.create_task(limiter.acquire_async(tokens=300))
    await asyncio.sleep(0.02)
    assert limiter.available("tpm") == pytest.approx(before - 300, abs=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limiter.available("tpm") == pytest.approx(before, abs=5)
    assert (limiter.stats()["granted"], limiter.stats()["cancelled"]) == (1, 1)
    assert limiter.stats()["in_flight"] == 1  # only the first
    first.release()
    assert limiter.stats()["in_flight"] == 0


async def test_a_timed_out_task_holds_nothing() -> None:
    limiter = rk.Limiter(rpm=1000, concurrency=1)
    held = await limiter.acquire_async()
    with pytest.raises(rk.RateLimitTimeout):
        await limiter.acquire_async(timeout=0.02)
    assert limiter.stats()["waiting"] == 0
    held.release()
    (await limiter.acquire_async(timeout=0)).release()


async def test_a_thread_release_wakes_an_async_waiter() -> None:
    limiter = rk.Limiter(concurrency=1)
    held = limiter.acquire()
    timer = threading.Timer(0.05, held.release)
    timer.start()
    permit = await asyncio.wait_for(limiter.acquire_async(), timeout=10)
    assert permit.waited > 0
    permit.release()
    timer.join()


async def test_a_pause_holds_every_concurrent_task() -> None:
    clock = rk.ManualClock()
    limiter = rk.Limiter(rps=100, clock=clock)
    limiter.pause(5.0)
    permits = await asyncio.gather(*(limiter.acquire_async() for _ in range(10)))
    assert all(p.waited >= 5.0 for p in permits)
    assert clock.now() >= 5.0
    assert limiter.stats()["granted"] == 10


async def test_a_pause_after_a_429_holds_tasks_in_real_time() -> None:
    limiter = rk.Limiter(rps=1000)
    limiter.pause(0.2)
    started = time.monotonic()
    await asyncio.gather(*(limiter.acquire_async() for _ in range(5)))
    assert time.monotonic() - started >= 0.19


async def test_async_timeout_on_budgets_is_decided_at_once() -> None:
    clock = rk.ManualClock()
    limiter = rk.Limiter(tpm=100, clock=clock)
    await limiter.acquire_async(tokens=100)
    with pytest.raises(rk.RateLimitTimeout):
        await limiter.acquire_async(tokens=50, timeout=10)
    assert clock.now() == 0.0
    assert limiter.available("tpm") == pytest.approx(0.0, abs=1e-6)


async def test_a_waiter_cancelled_after_the_hand_off_passes_the_slot_on() -> None:
    limiter = rk.Limiter(concurrency=1)
    held = limiter.acquire()
    task = asyncio.create_task(limiter.acquire_async())
    await asyncio.sleep(0.01)
    held.release()  # hands the slot to the task and schedules its wake-up
    task.cancel()  # ...but the task is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await task
    (await limiter.acquire_async(timeout=0)).release()
    assert limiter.stats()["in_flight"] == 0


async def test_slot_waits_count_in_waited() -> None:
    limiter = rk.Limiter(concurrency=1)
    held = limiter.acquire()
    task = asyncio.create_task(limiter.acquire_async())
    await asyncio.sleep(0.05)
    held.release()
    permit = await task
    assert permit.waited >= 0.04
    assert limiter.stats()["waited_seconds"] >= 0.04
    permit.release()


# ------------------------------------------------ waiters that move up (SPEC 15)


async def test_cancelled_waiters_move_those_behind_them_up_in_order() -> None:
    # rps=20, burst 1: 40 waiters due every 50 ms; every other one is
    # cancelled at once, so the 20 that stay are all granted within ~1 s.
    loop = asyncio.get_running_loop()
    limiter = rk.Limiter(rps=20, burst=1)
    limiter.acquire().release()
    granted: list[int] = []

    async def wait(i: int) -> None:
        async with await limiter.acquire_async():
            granted.append(i)

    started = loop.time()
    tasks = [asyncio.create_task(wait(i)) for i in range(40)]
    await asyncio.sleep(0.01)  # all have reserved
    for task in tasks[::2]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    took = loop.time() - started
    assert granted == list(range(1, 40, 2))
    assert took < 1.5, f"20 survivors took {took:.2f} s"
    assert limiter.stats()["cancelled"] == 20


async def test_a_reconcile_below_the_estimate_goes_to_the_queued_waiter() -> None:
    # A 6-token TPM budget must never grant 12 at once.
    limiter = rk.Limiter(tpm=6)
    first = limiter.acquire(tokens=6)
    waiter = asyncio.create_task(limiter.acquire_async(tokens=6))
    await asyncio.sleep(0.01)
    first.reconcile(0)
    permit = await asyncio.wait_for(waiter, 1.0)  # woken now, not after 60 s
    assert permit.waited < 1.0
    with pytest.raises(rk.RateLimitTimeout):
        limiter.acquire(tokens=1, timeout=0)


async def test_a_pause_holds_the_queued_waiters_too() -> None:
    clock = rk.ManualClock()
    limiter = rk.Limiter(rps=10, clock=clock)
    for _ in range(10):
        limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire_async())
    await asyncio.sleep(0)
    limiter.pause(1.0)
    permit = await waiter
    assert permit.waited == pytest.approx(1.0)
