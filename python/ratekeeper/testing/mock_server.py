"""``MockProvider``: an OpenAI- and Anthropic-compatible server that enforces its own limits.

It runs the starlette app of :mod:`ratekeeper.testing._app` under uvicorn in
a background thread, on 127.0.0.1 and a free port, for as long as a ``with``
(or ``async with``) block lasts. ``ratekeeper mock-server`` serves the same
app in the foreground.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from types import TracebackType
from typing import Optional

import uvicorn

from .._core import ManualClock
from ._app import Fault, Hit, MockState, create_app
from ._budget import Budget

__all__ = ["Fault", "Hit", "MockProvider"]


def _check_limit(name: str, value: Optional[float]) -> None:
    if value is not None and not (value > 0 and value != float("inf")):
        raise ValueError(f"{name} must be a finite number > 0 or None, got {value!r}")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")


class MockProvider:
    """A local LLM provider with real rate limits, headers, 429s and fault injection.

    ``rpm``/``tpm`` are its limits (``None``: unlimited); each is a bucket
    holding ``burst`` requests (default: a minute's worth) that refills
    continuously; ``limit_headers=False`` leaves out the ``x-ratelimit-*`` and
    ``anthropic-ratelimit-*`` headers (a 429 still says ``retry-after``).
    ``tolerance`` seconds of refill may be overdrawn before a 429, so that
    network jitter does not punish a compliant client. ``reply``
    fixes the text of every answer (default: as many words as ``max_tokens``).

    Routes: OpenAI chat, completions, embeddings, responses (all streamed
    or not, as the real ones), ``/v1/models``; Anthropic messages and
    ``count_tokens``; Gemini ``/v1beta/models/{model}:generateContent``.

    >>> # with MockProvider(rpm=600) as p: openai.OpenAI(base_url=p.base_url, api_key="x")
    """

    def __init__(
        self,
        rpm: Optional[float] = 600,
        tpm: Optional[float] = None,
        *,
        burst: Optional[float] = None,
        tolerance: float = 1.0,
        error_rate: float = 0.0,
        error_status: int = 500,
        drop_rate: float = 0.0,
        latency: float = 0.0,
        completion_tokens: int = 16,
        reply: Optional[str] = None,
        api_key: Optional[str] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: Optional[int] = None,
        clock: Optional[ManualClock] = None,
        limit_headers: bool = True,
    ) -> None:
        _check_limit("rpm", rpm)
        _check_limit("tpm", tpm)
        _check_limit("burst", burst)
        _check_fraction("error_rate", error_rate)
        _check_fraction("drop_rate", drop_rate)
        if not tolerance >= 0.0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
        if not latency >= 0.0:
            raise ValueError(f"latency must be >= 0, got {latency!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(
                f"port must be an int from 0 to 65535 (0 picks a free one), got {port!r}"
            )
        if not 400 <= error_status <= 599:
            raise ValueError(f"error_status must be an HTTP error status, got {error_status!r}")
        self.rpm, self.tpm, self.host, self._port = rpm, tpm, host, port
        requests = None if rpm is None else Budget(rpm, burst, tolerance=tolerance, clock=clock)
        tokens = None if tpm is None else Budget(tpm, tolerance=tolerance, clock=clock)
        self._state = MockState(
            requests,
            tokens,
            api_key=api_key,
            error_rate=error_rate,
            error_status=error_status,
            drop_rate=drop_rate,
            latency=latency,
            completion_tokens=completion_tokens,
            reply=reply,
            seed=seed,
            limit_headers=bool(limit_headers),
        )
        self._server: Optional[uvicorn.Server] = None
        self._thread: Optional[threading.Thread] = None
        self._socket: Optional[socket.socket] = None

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"MockProvider(rpm={self.rpm!r}, tpm={self.tpm!r}, {where})"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> MockProvider:
        """Starts serving in a background thread; returns once it accepts connections.

        >>> provider = MockProvider(rpm=60).start()  # doctest: +SKIP
        """
        if self._server is not None:
            raise RuntimeError("MockProvider is already running")
        sock, server = self._bind()
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="ratekeeper-mock", daemon=True
        )
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        while not server.started:
            if not thread.is_alive():
                self._server = None
                raise RuntimeError("the mock provider failed to start")
            thread.join(0.005)
        return self

    def _bind(self) -> tuple[socket.socket, uvicorn.Server]:
        # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets
        # that say they are TCP, and without it every kept-alive answer waits
        # ~40 ms for the client's delayed ACK (Nagle). Accepted sockets inherit it.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self._port))
        config = uvicorn.Config(
            create_app(self._state),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            backlog=4096,
        )
        return sock, uvicorn.Server(config)

    def serve(self) -> None:
        """Serves in the foreground until Ctrl-C (what ``ratekeeper mock-server`` runs).

        >>> MockProvider(rpm=60, port=8000).serve()  # doctest: +SKIP
        """
        sock, server = self._bind()
        self._socket = sock
        # Listen before announcing the address: a client that reads the line
        # and connects at once then waits in the backlog instead of being refused.
        sock.listen(server.config.backlog)
        limits = f"rpm={self.rpm}, tpm={self.tpm}"
        print(f"ratekeeper mock-server on {self.base_url} ({limits}); Ctrl-C stops", flush=True)
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()
            self._socket = None

    def stop(self) -> None:
        """Stops the server and waits for its thread; safe to call twice.

        >>> provider.stop()  # doctest: +SKIP
        """
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(10.0)
        if sock is not None:
            sock.close()

    def __enter__(self) -> MockProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    async def __aenter__(self) -> MockProvider:
        await asyncio.get_running_loop().run_in_executor(None, self.start)
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.stop)

    # -- where it listens --------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on (chosen by the OS when ``port=0``)."""
        if self._socket is None:
            raise RuntimeError("MockProvider is not running; use it in a with block")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """The server's root, e.g. ``http://127.0.0.1:54321`` (Anthropic SDK's base_url)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``<url>/v1``."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """What ``anthropic.Anthropic(base_url=...)`` wants: the root, without ``/v1``."""
        return self.url

    # -- fault injection ---------------------------------------------------

    @property
    def error_rate(self) -> float:
        """Probability that a request is answered with ``error_status`` (settable)."""
        return self._state.error_rate

    @error_rate.setter
    def error_rate(self, value: float) -> None:
        _check_fraction("error_rate", value)
        self._state.error_rate = value

    @property
    def drop_rate(self) -> float:
        """Probability that a connection is closed before the response is complete."""
        return self._state.drop_rate

    @drop_rate.setter
    def drop_rate(self, value: float) -> None:
        _check_fraction("drop_rate", value)
        self._state.drop_rate = value

    @property
    def latency(self) -> float:
        """Seconds added before every answer (settable)."""
        return self._state.latency

    @latency.setter
    def latency(self, value: float) -> None:
        if not value >= 0.0:
            raise ValueError(f"latency must be >= 0, got {value!r}")
        self._state.latency = value

    def inject(
        self,
        status: Optional[int] = None,
        *,
        drop: bool = False,
        delay: float = 0.0,
        retry_after: Optional[float] = None,
        times: int = 1,
        path: Optional[str] = None,
    ) -> None:
        """Scripts the next ``times`` requests (to ``path``, or any) to fail this way.

        >>> # p.inject(503); p.inject(429, retry_after=0.2); p.inject(drop=True, times=2)
        """
        if status is None and not drop and delay <= 0:
            raise ValueError("inject needs a status, drop=True or a delay")
        if status is not None and not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status, got {status!r}")
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times!r}")
        fault = Fault(status, drop, delay, retry_after, path)
        with self._state.lock:
            self._state.scripted.extend([fault] * times)

    # -- what it saw -------------------------------------------------------

    @property
    def requests(self) -> list[Hit]:
        """Every request received, in order, with what it was answered."""
        return list(self._state.hits)

    def hits(self, path: Optional[str] = None) -> int:
        """How many requests arrived (to ``path``, e.g. ``"/v1/chat/completions"``).

        >>> provider.hits("/v1/chat/completions")  # doctest: +SKIP
        """
        return sum(1 for h in self._state.hits if path is None or h.path == path)

    @property
    def rate_limited(self) -> int:
        """How many 429s it sent for its limits (scripted 429s not included)."""
        return sum(1 for h in self._state.hits if h.outcome == "rate_limited")

    def counts(self) -> dict[str, Counter[str]]:
        """Per path, how many requests ended in each outcome (``ok``, ``rate_limited``, ...).

        >>> provider.counts["/v1/chat/completions"]["rate_limited"]  # doctest: +SKIP
        """
        result: dict[str, Counter[str]] = {}
        for hit in self._state.hits:
            result.setdefault(hit.path, Counter())[hit.outcome] += 1
        return result

    def reset_counters(self) -> None:
        """Forgets the requests seen so far (the limits' state is kept).

        >>> provider.reset_counters()  # doctest: +SKIP
        """
        self._state.hits.clear()
