"""RateTracker: requests and tokens per key over a sliding window (SPEC section 3)."""

from __future__ import annotations

import math
import threading

import pytest
import ratekeeper as rk
from hypothesis import given, settings
from hypothesis import strategies as st


def test_records_count_requests_and_tokens_under_the_default_key() -> None:
    tracker = rk.RateTracker(clock=rk.ManualClock())
    tracker.record()
    tracker.record(tokens=120)
    assert tracker.requests() == 2
    assert tracker.tokens() == 120
    assert tracker.keys() == ["default"]


def test_keys_are_counted_apart_and_listed_sorted() -> None:
    tracker = rk.RateTracker(clock=rk.ManualClock())
    tracker.record("gpt-4o", tokens=10)
    tracker.record("claude", tokens=5)
    tracker.record("gpt-4o", tokens=1)
    assert (tracker.requests("gpt-4o"), tracker.tokens("gpt-4o")) == (2, 11)
    assert (tracker.requests("claude"), tracker.tokens("claude")) == (1, 5)
    assert (tracker.requests("unseen"), tracker.tokens("unseen")) == (0, 0)
    assert tracker.keys() == ["claude", "gpt-4o"]


def test_records_leave_the_window_after_window_seconds() -> None:
    clock = rk.ManualClock()
    tracker = rk.RateTracker(10.0, clock=clock)
    tracker.record("a", 1)
    clock.advance(5.0)
    tracker.record("a", 2)
    clock.advance(5.0)
    assert (tracker.requests("a"), tracker.tokens("a")) == (1, 2)
    clock.advance(5.0)
    assert tracker.requests("a") == 0
    assert tracker.keys() == []


def test_counts_are_exact_to_one_slot() -> None:
    clock = rk.ManualClock()
    tracker = rk.RateTracker(60.0, slots=60, clock=clock)
    tracker.record("a")
    clock.advance(59.5)  # still inside the window
    assert tracker.requests("a") == 1
    clock.advance(1.0)  # now more than a window after the record
    assert tracker.requests("a") == 0


def test_should_throttle_compares_requests_to_a_share_of_the_limit() -> None:
    tracker = rk.RateTracker(clock=rk.ManualClock())
    for _ in range(8):
        tracker.record("a")
    assert not tracker.should_throttle("a", 10)
    tracker.record("a")
    assert tracker.should_throttle("a", 10)  # 9 >= 10 * 0.9
    assert not tracker.should_throttle("a", 10, threshold=1.0)
    assert tracker.should_throttle("a", 10, threshold=0.5)


def test_properties_and_repr() -> None:
    tracker = rk.RateTracker(30.0, slots=10)
    assert (tracker.window, tracker.slots) == (30.0, 10)
    assert repr(tracker) == "RateTracker(window=30.0, slots=10)"


def test_memory_per_key_does_not_grow_with_requests() -> None:
    # The ring has a fixed number of slots: a million records are a million
    # increments, not a million entries. Counts stay exact.
    clock = rk.ManualClock()
    tracker = rk.RateTracker(1.0, clock=clock)
    for _ in range(1000):
        for _ in range(100):
            tracker.record("a", 3)
        clock.advance(0.0009)  # all 1000 steps inside the 1 s window
    assert tracker.requests("a") == 100_000
    assert tracker.tokens("a") == 300_000


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, -1.0])
def test_bad_window_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="window"):
        rk.RateTracker(bad)


@pytest.mark.parametrize("bad", [0, -1, 10**6])
def test_bad_slots_are_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="slots"):
        rk.RateTracker(60.0, slots=bad)


def test_bad_tokens_are_refused() -> None:
    tracker = rk.RateTracker()
    with pytest.raises(ValueError, match="tokens"):
        tracker.record("a", -1)
    with pytest.raises(TypeError):
        tracker.record("a", 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tracker.record(1)  # type: ignore[arg-type]
    assert tracker.keys() == []


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, -5.0])
def test_bad_limit_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="limit"):
        rk.RateTracker().should_throttle("a", bad)


@pytest.mark.parametrize("bad", [math.nan, 0.0, -0.5, 1.5])
def test_bad_threshold_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        rk.RateTracker().should_throttle("a", 10, threshold=bad)


def test_threads_recording_at_once_lose_nothing() -> None:
    tracker = rk.RateTracker(3600.0)

    def worker(i: int) -> None:
        for _ in range(5000):
            tracker.record(f"k{i % 2}", 2)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracker.requests("k0") + tracker.requests("k1") == 20_000
    assert tracker.tokens("k0") == 20_000


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.integers(min_value=0, max_value=50),
            st.integers(min_value=0, max_value=4000),  # milliseconds to advance
        ),
        max_size=60,
    )
)
def test_counts_match_a_log_of_every_record_to_the_slot(
    ops: list[tuple[str, int, int]],
) -> None:
    # window 10 s in 10 slots of 1 s: a record made in slot s is counted while
    # the current slot is below s + 10.
    clock = rk.ManualClock()
    tracker = rk.RateTracker(10.0, slots=10, clock=clock)
    log: list[tuple[str, int, int]] = []
    now_ms = 0
    for key, tokens, advance_ms in ops:
        clock.advance(advance_ms / 1000)
        now_ms += advance_ms
        tracker.record(key, tokens)
        log.append((key, tokens, now_ms // 1000))
        current = now_ms // 1000
        for k in ("a", "b"):
            kept = [t for kk, t, slot in log if kk == k and current - slot < 10]
            assert tracker.requests(k) == len(kept)
            assert tracker.tokens(k) == sum(kept)
        assert tracker.keys() == sorted({k for k, _, s in log if current - s < 10})
