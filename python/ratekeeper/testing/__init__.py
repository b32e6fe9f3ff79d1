"""Testing helpers: ``MockProvider`` (a local provider with real limits) and a pytest plugin.

``MockProvider`` needs starlette and uvicorn; they are imported only when it
is first used, so that the pytest plugin costs nothing to load.

>>> # from ratekeeper.testing import MockProvider
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .mock_server import MockProvider

__all__ = ["MockProvider"]


def __getattr__(name: str) -> Any:
    if name == "MockProvider":
        from .mock_server import MockProvider

        return MockProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
