"""RateLimitMiddleware on a real Starlette app under uvicorn, driven with httpx."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_py
import uvicorn
from redis_server import free_port, wait_for_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import ratekeeper as rk


def serve(app: object) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


class Counted:
    def __init__(self) -> None:
        self.calls = 0

    async def handler(self, request: Request) -> PlainTextResponse:
        self.calls += 1
        return PlainTextResponse("ok", headers={"x-app": "yes"})


@pytest.fixture
def counted() -> Counted:
    return Counted()


@pytest.fixture
def local_server(counted: Counted) -> Iterator[str]:
    app = Starlette(routes=[Route("/", counted.handler)])
    limited = rk.asgi.RateLimitMiddleware(
        app, rate=0.5, capacity=3, key=lambda s: dict(s["headers"]).get(b"x-api-key", b"").decode()
    )
    yield from serve(limited)


def test_rejected_requests_never_reach_the_app(local_server: str, counted: Counted) -> None:
    with httpx.Client(base_url=local_server) as client:
        replies = [client.get("/", headers={"x-api-key": "alice"}) for _ in range(6)]
        other = client.get("/", headers={"x-api-key": "bob"})
    assert [r.status_code for r in replies] == [200] * 3 + [429] * 3
    assert counted.calls == 4  # alice's 3 and bob's 1
    assert other.status_code == 200
    first, rejected = replies[0], replies[-1]
    assert first.headers["x-app"] == "yes"
    assert first.headers["x-ratelimit-limit"] == "3"
    assert first.headers["x-ratelimit-remaining"] == "2"
    assert 1 <= int(first.headers["x-ratelimit-reset"]) <= 2
    assert rejected.json() == {"error": {"code": 429, "message": "Rate limit exceeded"}}
    assert rejected.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(rejected.headers["retry-after"]) <= 2
    assert 5 <= int(rejected.headers["x-ratelimit-reset"]) <= 6


def test_bad_limits_are_refused_at_once(counted: Counted) -> None:
    with pytest.raises(ValueError, match="rate"):
        rk.asgi.RateLimitMiddleware(counted.handler, rate=0, capacity=1)  # type: ignore[arg-type]


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: object, receive: object, send: object) -> None:
        seen.append(scope["type"])  # type: ignore[index]

    limited = rk.asgi.RateLimitMiddleware(app, rate=0.001, capacity=1)  # type: ignore[arg-type]
    for _ in range(3):
        await limited({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
        await limited({"type": "websocket", "client": ("1.2.3.4", 1)}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket"] * 3


def test_two_uvicorn_workers_sharing_redis_share_one_budget(
    redis_url: str, unique_key: str
) -> None:
    # Two uvicorn worker processes, each on its own port, so that requests can
    # be sent to both in turn (with `--workers 2` on one socket the kernel may
    # hand every connection to the same worker, and the test would prove nothing).
    env = {**os.environ, "RK_TEST_REDIS_URL": redis_url, "RK_TEST_PREFIX": unique_key}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    ports = [free_port(), free_port()]
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "asgi_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "error",
            ],
            env=env,
        )
        for port in ports
    ]
    try:
        for port in ports:
            wait_for_port(port, deadline=30)
        start = time.monotonic()
        codes, pids = [], set()
        limits = httpx.Limits(max_keepalive_connections=0)
        clients = [
            httpx.Client(base_url=f"http://127.0.0.1:{port}", limits=limits) for port in ports
        ]
        try:
            for i in range(40):
                reply = clients[i % 2].get("/")
                codes.append(reply.status_code)
                if reply.status_code == 200:
                    pids.add(reply.json()["pid"])
        finally:
            for client in clients:
                client.close()
        elapsed = time.monotonic() - start
        hits = int(redis_py.Redis.from_url(redis_url).get(f"{unique_key}:hits") or 0)
        granted = codes.count(200)
        assert granted == hits  # every 429 was answered before the app ran
        assert 10 <= granted <= 10 + 5 * elapsed + 1  # one budget, not one per worker
        assert codes.count(429) == 40 - granted
        assert len(pids) == 2  # both workers granted requests from the one budget
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(15)
