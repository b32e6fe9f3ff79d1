"""A Starlette app behind RateLimitMiddleware, for uvicorn workers in the ASGI tests.

Every request that reaches the handler is counted in Redis (``hits``), so the
tests can count what got through across processes.
"""

from __future__ import annotations

import os

import redis as redis_py
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import ratekeeper as rk

URL = os.environ["RK_TEST_REDIS_URL"]
PREFIX = os.environ["RK_TEST_PREFIX"]
counter = redis_py.Redis.from_url(URL)


async def hello(request: Request) -> JSONResponse:
    counter.incr(f"{PREFIX}:hits")
    return JSONResponse({"pid": os.getpid()})


app = rk.asgi.RateLimitMiddleware(
    Starlette(routes=[Route("/", hello)]),
    rate=5,
    capacity=10,
    key=lambda scope: "everyone",
    backend=rk.RedisBackend(URL, prefix=PREFIX),
)
