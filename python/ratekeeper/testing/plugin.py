"""The pytest plugin (entry point ``pytest11``): ``mock_provider`` and ``manual_clock`` fixtures.

>>> # def test_my_client(mock_provider): call_my_code(base_url=mock_provider.base_url)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from .._core import ManualClock

if TYPE_CHECKING:
    from .mock_server import MockProvider


@pytest.fixture
def mock_provider() -> Iterator[MockProvider]:
    """A fresh ``MockProvider`` (600 RPM, no token limit) running for one test.

    Change its limits by building your own: ``with MockProvider(rpm=60) as p``.
    """
    from .mock_server import MockProvider

    with MockProvider() as provider:
        yield provider


@pytest.fixture
def manual_clock() -> ManualClock:
    """A fresh ``ManualClock`` at 0.0, for virtual-time tests of limiters."""
    return ManualClock()
