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
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

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
    with pytest.raises(ValueError, match="rate"):
        rk.asgi.RateLimitMiddleware(counted.handler, rate=10**400, capacity=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="capacity"):
        rk.asgi.RateLimitMiddleware(counted.handler, rate=1, capacity=-(10**400))  # type: ignore[arg-type]


async def test_lifespan_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: object, receive: object, send: object) -> None:
        seen.append(scope["type"])  # type: ignore[index]

    limited = rk.asgi.RateLimitMiddleware(app, rate=0.001, capacity=1)  # type: ignore[arg-type]
    for _ in range(3):
        await limited({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"] * 3


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


# -- websockets, key functions that fail, idle time ------------------------------


def api_key(scope: dict) -> str:
    return dict(scope["headers"])[b"x-api-key"].decode()  # KeyError without the header


class Echo:
    """A Starlette app with an HTTP route and a websocket echo; counts what reaches it."""

    def __init__(self) -> None:
        self.http_calls = 0
        self.sockets = 0

    async def http(self, request: Request) -> PlainTextResponse:
        self.http_calls += 1
        return PlainTextResponse("ok")

    async def echo(self, websocket: WebSocket) -> None:
        self.sockets += 1
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/", self.http), WebSocketRoute("/ws", self.echo)],
        )


@pytest.fixture
def echo() -> Echo:
    return Echo()


@pytest.fixture
def echo_server(echo: Echo) -> Iterator[str]:
    yield from serve(rk.asgi.RateLimitMiddleware(echo.app(), rate=0.1, capacity=2, key=api_key))


def ws_url(server: str) -> str:
    return server.replace("http://", "ws://") + "/ws"


def test_websocket_connections_are_limited(echo_server: str, echo: Echo) -> None:
    url = ws_url(echo_server)
    for _ in range(2):
        with ws_connect(url, additional_headers={"x-api-key": "alice"}) as socket:
            assert socket.response.headers["x-ratelimit-limit"] == "2"
            socket.send("hi")
            assert socket.recv(timeout=5) == "hi"
    with ws_connect(url, additional_headers={"x-api-key": "alice"}) as socket:
        assert 1 <= int(socket.response.headers["retry-after"]) <= 10
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "Rate limit exceeded"
    assert echo.sockets == 2  # the app never saw the third
    with ws_connect(url, additional_headers={"x-api-key": "bob"}) as socket:
        socket.send("bob here")
        assert socket.recv(timeout=5) == "bob here"
    # HTTP requests and websockets of one client draw on one budget.
    with httpx.Client(base_url=echo_server) as client:
        assert client.get("/", headers={"x-api-key": "alice"}).status_code == 429
        assert client.get("/", headers={"x-api-key": "bob"}).status_code == 200


def test_a_key_function_that_raises_gives_a_400_not_a_500(echo_server: str, echo: Echo) -> None:
    with httpx.Client(base_url=echo_server) as client:
        reply = client.get("/")  # no x-api-key header: the key function raises KeyError
    assert reply.status_code == 400
    assert reply.json() == {"error": {"code": 400, "message": "Could not identify the client"}}
    assert echo.http_calls == 0
    with ws_connect(ws_url(echo_server)) as socket, pytest.raises(ConnectionClosed) as closed:
        socket.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
        1008,
        "Could not identify the client",
    )
    assert echo.sockets == 0


async def test_a_key_of_none_is_refused_and_other_keys_are_spelled_as_text() -> None:
    seen: list[object] = []

    async def app(scope: object, receive: object, send: object) -> None:
        seen.append(scope)

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    limited = rk.asgi.RateLimitMiddleware(app, rate=1, capacity=1, key=lambda scope: None)  # type: ignore[arg-type]
    await limited({"type": "http", "headers": []}, None, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 400 and not seen
    numbered = rk.asgi.RateLimitMiddleware(app, rate=1, capacity=1, key=lambda scope: 7)  # type: ignore[arg-type]
    await numbered({"type": "http", "headers": []}, None, send)  # type: ignore[arg-type]
    assert len(seen) == 1


def test_the_idle_time_per_client_is_configurable(echo: Echo) -> None:
    limited = rk.asgi.RateLimitMiddleware(echo.app(), rate=1, capacity=5, idle_timeout=30.0)
    assert limited.idle_timeout == 30.0
    assert rk.asgi.RateLimitMiddleware(echo.app(), rate=1, capacity=5).idle_timeout == 600.0
    for bad in (0, -1.0, float("nan"), float("inf"), 10**400):
        with pytest.raises(ValueError, match="idle_timeout"):
            rk.asgi.RateLimitMiddleware(echo.app(), rate=1, capacity=5, idle_timeout=bad)


def test_a_key_that_is_not_callable_is_refused_at_once(echo: Echo) -> None:
    with pytest.raises(TypeError, match="key"):
        rk.asgi.RateLimitMiddleware(echo.app(), rate=1, capacity=5, key="x-api-key")  # type: ignore[arg-type]
