"""The invariants every limiter must keep, checked on a log of grants.

A grant is ``(time in clock nanoseconds, units)``. Shared by the property
tests of the limiters (test_limiter_properties.py, test_cancel_properties.py).
"""

from __future__ import annotations

NS = 1_000_000_000
EPSILON = 1e-6  # float slack on sums of fractional units

Grants = list[tuple[int, float]]


def ns(seconds: float) -> int:
    """Seconds to clock nanoseconds, rounded as the limiters round them."""
    return round(seconds * NS)


def assert_bucket_bound(grants: Grants, rate: float, capacity: float) -> None:
    """Over any interval starting full (at 0 or at a grant), at most ``capacity + rate*t``."""
    times = sorted({t for t, _ in grants})
    for start in [0, *times]:
        for end in times:
            if end < start:
                continue
            granted = sum(n for t, n in grants if start <= t <= end)
            bound = capacity + rate * (end - start) / NS
            assert granted <= bound + EPSILON, (start, end, granted, bound)


def assert_sliding_bound(grants: Grants, limit: float, window: float) -> None:
    """At most ``limit`` in any window of ``window`` seconds (the busiest starts at a grant)."""
    width = ns(window)
    for start, _ in grants:
        inside = sum(n for t, n in grants if start <= t < start + width)
        assert inside <= limit + EPSILON, (start, inside)


def assert_fixed_bound(grants: Grants, limit: float, window: float) -> None:
    """At most ``limit`` per aligned window ``[k*window, (k+1)*window)``."""
    width = ns(window)
    per_window: dict[int, float] = {}
    for t, n in grants:
        per_window[t // width] = per_window.get(t // width, 0.0) + n
    assert all(used <= limit + EPSILON for used in per_window.values()), per_window
