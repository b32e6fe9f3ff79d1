"""Property tests for rk.Limiter in virtual time, through the public API.

Every budget's bound and FIFO under any sequence of acquires, cancels,
reconciles, pauses and adoptions (waiters moving up included) are Rust property
tests on the core (`src/core/limiter_props.rs`).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import ratekeeper as rk


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 100), min_size=2, max_size=30))
def test_a_large_request_is_served_before_later_small_ones(sizes: list[int]) -> None:
    clock = rk.ManualClock()
    limiter = rk.Limiter(tpm=100, clock=clock)
    dues = []
    for size in sizes:
        permit = limiter._reserve(size, None)
        assert permit is not None
        dues.append(permit._due or int(clock.now() * 1e9))
    assert dues == sorted(dues)
