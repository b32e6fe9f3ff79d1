"""Shared pytest fixtures."""

pytest_plugins = ["redis_server"]
