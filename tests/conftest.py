"""Shared fixtures for the test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scripted_server import ScriptedServer

# The Redis fixtures (a real redis-server per session) live in redis_server.py.
pytest_plugins = ["redis_server"]


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    """A fresh ScriptedServer on 127.0.0.1 (ephemeral port), stopped after the test.

    Used by every test that drives the real openai/anthropic SDKs over HTTP.
    """
    with ScriptedServer() as server:
        yield server
