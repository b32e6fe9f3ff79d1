"""The slow start's window (ratekeeper._slow_start), in virtual time against a token bucket."""

from __future__ import annotations

import pytest

import ratekeeper as rk
from ratekeeper._slow_start import ADMIT_AFTER, GROWTH, SlowStart

STEP = 0.001  # seconds between looks, as a waiter polls


def _discover(
    calls: int, burst: float, rate: float, rtt: float, work: float = 0.0
) -> tuple[int, int]:
    """``calls`` at once through a slow start to a server of ``burst`` at ``rate``/s.

    A 429 comes back after the round trip ``rtt``, a success after ``work``
    more (the model runs). Runs until the first 429 comes back (there the
    slow start ends) and returns (requests sent, 429s among them).
    """
    clock = rk.ManualClock()
    server = rk.TokenBucket(rate, burst, clock=clock)
    slow = SlowStart()
    waiting = [slow.enter() for _ in range(calls)]
    in_flight: list[tuple[float, int, bool]] = []  # (answered at, ticket, admitted)
    sent = limited = 0
    while waiting or in_flight:
        now = clock.now()
        for at, ticket, admitted in [f for f in in_flight if f[0] <= now]:
            in_flight.remove((at, ticket, admitted))
            slow.answered(ticket, ok=admitted)
            if not admitted:
                return sent, limited
        for ticket in [t for t in waiting if slow.go(t, now)]:
            waiting.remove(ticket)
            admitted = server.try_acquire()
            in_flight.append((now + rtt + (work if admitted else 0.0), ticket, admitted))
            sent, limited = sent + 1, limited + (not admitted)
        clock.advance(STEP)
    return sent, limited


@pytest.mark.parametrize("burst", [10, 20, 100])
@pytest.mark.parametrize("rtt", [0.005, 0.05, 0.2])
def test_the_burst_is_found_with_few_429s(burst: int, rtt: float) -> None:
    sent, limited = _discover(calls=4 * burst, burst=burst, rate=burst / 2, rtt=rtt)
    # Sent blind, 3 x burst of them would meet a 429. The window passes what
    # the server admits by about GROWTH of it (x1.1 a round trip), plus a step.
    assert sent > burst
    assert limited <= 2 + GROWTH * sent


def test_requests_go_one_at_a_time_in_arrival_order_at_first() -> None:
    slow = SlowStart()
    tickets = [slow.enter() for _ in range(4)]
    order: list[int] = []
    for step in range(4):
        # The later ones look first: they do not jump the line.
        gone = [t for t in reversed(tickets) if t not in order and slow.go(t, float(step))]
        assert len(gone) == 1
        order += gone
        slow.answered(gone[0], ok=False)  # no success: the window stays at one
    assert order == tickets


def test_a_429_or_a_broken_request_does_not_grow_the_window() -> None:
    slow = SlowStart()
    first, second, third = slow.enter(), slow.enter(), slow.enter()
    assert slow.go(first, 0.0)
    slow.answered(first, ok=False)
    assert slow.go(second, 0.0) and not slow.go(third, 0.0)
    slow.leave(second)  # cancelled in flight: its place is free, nothing learned
    assert slow.go(third, 0.0)
    assert slow.window == 1.0 and slow.admitted == 0


def test_a_waiter_that_leaves_holds_no_one_back() -> None:
    slow = SlowStart()
    first, second, third = slow.enter(), slow.enter(), slow.enter()
    assert slow.go(first, 0.0)
    slow.leave(second)  # gave up while waiting
    slow.answered(first, ok=True)
    assert slow.go(third, 0.0)


def test_without_any_answer_the_window_doubles_each_admit_after() -> None:
    slow = SlowStart()
    waiting = [slow.enter() for _ in range(64)]
    now, gone_at = 0.0, []
    while waiting:
        gone = [t for t in waiting if slow.go(t, now)]
        gone_at += [(t, now) for t in gone]
        waiting = [t for t in waiting if t not in gone]
        now += STEP
    # 1, 1, 2, 4, 8, 16, 32: the last go within 7 periods, none waits for ever.
    assert max(at for _, at in gone_at) <= 7 * ADMIT_AFTER
    assert [t for t, _ in gone_at] == sorted(t for t, _ in gone_at)


def test_once_ended_everyone_goes() -> None:
    slow = SlowStart()
    tickets = [slow.enter() for _ in range(10)]
    slow.end()
    assert all(slow.go(t, 0.0) for t in tickets)
