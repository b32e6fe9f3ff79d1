"""pytest plugin (entry point ``pytest11``): fixtures for testing rate-limited code.

>>> def test_waits(manual_clock): rk.TokenBucket(1, 1, clock=manual_clock).acquire()
"""

from __future__ import annotations

import pytest

from .._core import ManualClock


@pytest.fixture
def manual_clock() -> ManualClock:
    """A fresh ``rk.ManualClock`` at 0.0: waits on it advance it instead of sleeping."""
    return ManualClock()
