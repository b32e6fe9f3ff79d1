"""The pytest plugin (entry point ``pytest11``): ``mock_provider`` and ``manual_clock`` fixtures.

>>> # def test_my_client(mock_provider): call_my_code(base_url=mock_provider.base_url)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .._core import ManualClock

if TYPE_CHECKING:
    from .mock_server import MockProvider


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mock_provider(**options): options of the mock_provider fixture's MockProvider "
        "(rpm, tpm, burst, latency, error_rate, reply, ...) and faults=[inject kwargs]",
    )


@pytest.fixture
def mock_provider(request: pytest.FixtureRequest) -> Iterator[MockProvider]:
    """A fresh ``MockProvider`` (600 RPM, no token limit by default) running for one test.

    Configure it with a marker, ``@pytest.mark.mock_provider(rpm=60, tpm=10_000,
    faults=[{"status": 503, "times": 2}])``, or by indirect parametrization
    (``@pytest.mark.parametrize("mock_provider", [{"rpm": 60}], indirect=True)``).
    ``faults`` are ``MockProvider.inject`` keyword arguments, applied in order.
    """
    from .mock_server import MockProvider

    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("mock_provider"))):
        options.update(marker.kwargs)  # the closest marker wins
    options.update(getattr(request, "param", None) or {})
    faults = options.pop("faults", ())
    with MockProvider(**options) as provider:
        for fault in faults:
            provider.inject(**fault)
        yield provider


@pytest.fixture
def manual_clock() -> ManualClock:
    """A fresh ``ManualClock`` at 0.0, for virtual-time tests of limiters."""
    return ManualClock()
