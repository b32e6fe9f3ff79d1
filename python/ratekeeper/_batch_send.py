"""The one place ``ratekeeper batch`` talks to a provider: one request, its retries, its key.

The batch sends each line's body as it is (no SDK in between, so any field
the provider accepts passes through and the answer is the provider's own
JSON), over kept-alive connections (httpcore, the HTTP layer under httpx and
the SDKs: a third of the client's cost per request without httpx's client
layer, which the batch does not need). Pacing is
an ``rk.Limiter``; a 429 pauses it for every worker (the server's
``Retry-After`` when given, else the backoff); 5xx, timeouts and dropped
connections are retried with ``rk.Backoff``. Each attempt is reported to
``on_attempt`` (for the progress bar, the summary and the report).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
import urllib.request
from collections.abc import Mapping
from typing import Any, Callable, Optional
from urllib.parse import urlparse

import httpcore

from . import Backoff, Limiter, read_limits, retry_after
from ._batch_formats import BatchInputError, Job, Outcome, usage_tokens
from ._learning import adaptive_pace

DEFAULT_URLS = {
    "openai": "https://api.openai.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "anthropic": "https://api.anthropic.com",
}
KEY_VARIABLES = {
    "openai": "OPENAI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
}
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# Answers that mean "the provider is not well": they feed the safety stop.
_DOWN_STATUSES = frozenset({500, 502, 503, 504, 520, 521, 522, 524, 529})
_RETRY_STATUSES = _DOWN_STATUSES | {408, 409, 429}
MAX_SERVER_WAIT = 120.0


def provider_of(kind: str, provider: str, base_url: Optional[str]) -> str:
    """Which provider a file of ``kind`` goes to: Anthropic lines to Anthropic, else ``provider``.

    >>> provider_of("openai", "openai", "https://openrouter.ai/api/v1")
    'openrouter'
    """
    if kind == "anthropic":
        return "anthropic"
    host = (urlparse(base_url).hostname or "") if base_url else ""
    if provider == "openai" and (host == "openrouter.ai" or host.endswith(".openrouter.ai")):
        return "openrouter"
    return provider


def resolve_key(
    provider: str, base_url: Optional[str], environ: Optional[Mapping[str, str]] = None
) -> str:
    """The key for ``provider``, from its own variable only; a placeholder for local servers.

    ``OPENROUTER_API_KEY`` goes only to OpenRouter; ``OPENAI_API_KEY`` to
    OpenAI or to a ``--base-url`` the user gave (OpenRouter included).

    >>> resolve_key("openai", "http://127.0.0.1:8000/v1", {})
    'ratekeeper-local'
    """
    env = os.environ if environ is None else environ
    names = [KEY_VARIABLES[provider]]
    if provider == "openrouter" and base_url:
        names.append("OPENAI_API_KEY")
    for name in names:
        if env.get(name):
            return env[name]
    if base_url and urlparse(base_url).hostname in _LOCAL_HOSTS:
        return "ratekeeper-local"
    raise BatchInputError(f"no API key: set {' or '.join(names)}")


def endpoint(provider: str, base_url: Optional[str], path: str) -> str:
    """The full URL of ``path`` (``/v1/...``) at the provider or the user's base URL.

    >>> endpoint("openai", None, "/v1/embeddings")
    'https://api.openai.com/v1/embeddings'
    """
    base = (base_url or DEFAULT_URLS[provider]).rstrip("/")
    if provider == "anthropic":
        base = base[: -len("/v1")] if base.endswith("/v1") else base
        return base + path
    return base + path[len("/v1") :]


def auth_headers(provider: str, api_key: str) -> list[tuple[bytes, bytes]]:
    """The key in the header that provider reads, and the JSON content type."""
    headers = {"content-type": "application/json", "user-agent": "ratekeeper-batch"}
    if provider == "anthropic":
        headers.update({"x-api-key": api_key, "anthropic-version": "2023-06-01"})
    else:
        headers["authorization"] = f"Bearer {api_key}"
    try:
        return [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
    except UnicodeEncodeError:
        raise BatchInputError("the API key holds characters an HTTP header cannot carry") from None


def _lower(given: Optional[float], stated: Optional[float]) -> Optional[float]:
    if given is None or stated is None:
        return given if stated is None else stated
    return min(given, stated)


def _pool(url: str, tls: ssl.SSLContext) -> httpcore.AsyncConnectionPool:
    """A worker's connection (through the proxy the environment names for ``url``, if any)."""
    parts = urlparse(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return httpcore.AsyncHTTPProxy(proxy_url=proxy, ssl_context=tls, max_connections=2)
    return httpcore.AsyncConnectionPool(ssl_context=tls, max_connections=2)


# (began, ended, HTTP status or None, error kind or "", tokens used, a retry follows)
Attempt = Callable[[float, float, Optional[int], str, int, bool], None]


class ProviderDown(Exception):
    """Too many attempts in a row found the provider down: the batch stops.

    ``outcome`` is the last attempt's, written for its line (sent again next run).
    """

    def __init__(self, message: str, outcome: Outcome) -> None:
        super().__init__(message)
        self.outcome = outcome


class Sender:
    """Sends jobs: limiter, retries, the safety stop's count of failures in a row."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: Optional[str],
        api_key: str,
        rpm: Optional[float],
        tpm: Optional[float],
        burst: Optional[float],
        concurrency: int,
        max_retries: int,
        timeout: float,
        stop_after: int,
        on_attempt: Attempt,
    ) -> None:
        self.provider, self.base_url = provider, base_url
        self.headers = auth_headers(provider, api_key)
        self.rpm, self.tpm, self.burst = rpm, tpm, burst
        self.limiter = Limiter(rpm=rpm, tpm=tpm, burst=burst)
        self.learned: dict[str, float] = {}
        self.learning = True
        # Without a request budget, the requests go through a slow start until
        # the limits are known (the first answer that states them, or the
        # first 429); without limit headers, the rate then adapts (AIMD).
        self.adaptive = adaptive_pace()
        self.max_retries, self.stop_after = max_retries, stop_after
        self.backoff = Backoff(base=0.5, max_delay=20.0)
        self.down_in_a_row = 0
        self.on_attempt = on_attempt
        self.stopping: Callable[[], bool] = lambda: False
        # One small pool per worker, not one pool of `concurrency` connections:
        # httpcore's pool scans every connection for every queued request, which
        # at 64 in flight cost more than the requests. They share one TLS context.
        self.timeouts = {"connect": min(timeout, 30.0), "read": timeout, "write": timeout}
        self.timeouts["pool"] = timeout
        url = endpoint(provider, base_url, "/v1/x")
        tls = ssl.create_default_context()
        self.clients = [_pool(url, tls) for _ in range(concurrency)]

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()

    def _learn(self, headers: Mapping[str, str]) -> None:
        """Adopts the limits the server states, once: for the budgets the user did not give,
        and in place of a given one that is higher than the server allows."""
        limits = read_limits(headers)
        stated_rpm = None if limits.requests_fixed_window else limits.requests_limit
        if stated_rpm is None and limits.tokens_limit is None:
            return  # no limit stated yet: ask the next answer
        self.learning = False
        self.adaptive.slow.end()  # the limits are known: no more slow start
        rpm, tpm = _lower(self.rpm, stated_rpm), _lower(self.tpm, limits.tokens_limit)
        self.learned = {
            k: v for k, v, old in (("rpm", rpm, self.rpm), ("tpm", tpm, self.tpm)) if v != old and v
        }
        if not self.learned:
            return
        burst = (
            self.burst if self.burst is not None and rpm is not None and self.burst <= rpm else None
        )
        self.rpm, self.tpm = rpm, tpm
        self.limiter = Limiter(rpm=rpm, tpm=tpm, burst=burst)

    async def send(self, job: Job, in_flight: list[bool], worker: int = 0) -> Outcome:
        """Sends ``job`` on ``worker``'s connection until it succeeds, fails for good, or runs out.

        Until the limits are known, it first waits for its place in the slow start.
        """
        adaptive = self.adaptive
        ticket = adaptive.enter() if self.rpm is None else None
        try:
            wait = adaptive.through(ticket)
            while wait:
                await asyncio.sleep(wait)
                wait = adaptive.through(ticket)
            outcome = await self._send(job, in_flight, worker)
            if ticket is not None:
                adaptive.slow.answered(ticket, ok=outcome.ok)
        finally:
            if ticket is not None:  # even if it failed or was cancelled: never a hang
                adaptive.slow.leave(ticket)
        return outcome

    async def _send(self, job: Job, in_flight: list[bool], worker: int) -> Outcome:
        assert job.body is not None
        url = endpoint(self.provider, self.base_url, job.url)
        payload = json.dumps(job.body).encode()
        outcome = Outcome(started_at=time.time())
        started = time.monotonic()
        for attempt in range(self.max_retries + 1):
            tokens = min(job.tokens, self.tpm) if self.tpm else 0
            permit = await self.limiter.acquire_async(tokens)
            paced_after = -1
            if self.rpm is None:
                paced_after = await self.adaptive.wait_async(asyncio.sleep)
            begun = time.monotonic()
            in_flight[0] = True  # stays set if cancelled here: the caller records it as sent
            try:
                outcome = await self._attempt(self.clients[worker], url, payload, outcome)
            finally:
                permit.release()
            in_flight[0] = False
            outcome.attempts = attempt + 1
            outcome.elapsed = time.monotonic() - started
            wait = self._settle(outcome, permit, begun, attempt, paced_after)
            if wait is None:
                break
            await asyncio.sleep(wait)
        return outcome

    async def _attempt(
        self, client: httpcore.AsyncConnectionPool, url: str, payload: bytes, outcome: Outcome
    ) -> Outcome:
        try:
            response = await client.request(
                "POST",
                url,
                headers=self.headers,
                content=payload,
                extensions={"timeout": self.timeouts},
            )
        except httpcore.TimeoutException as exc:
            message = f"timed out: {type(exc).__name__}"
            return Outcome(None, None, None, "timeout", message, 0, outcome.started_at)
        except (OSError, httpcore.NetworkError, httpcore.ProtocolError, httpcore.ProxyError) as exc:
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return Outcome(None, None, None, "connection_error", message, 0, outcome.started_at)
        try:
            body: Any = json.loads(response.content)
        except ValueError:
            body = response.content.decode("utf-8", errors="replace")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
        request_id = headers.get("x-request-id") or headers.get("request-id")
        result = Outcome(response.status, body, request_id, started_at=outcome.started_at)
        result.headers = headers
        return result

    def _settle(
        self, outcome: Outcome, permit: Any, begun: float, attempt: int, paced_after: int = -1
    ) -> Optional[float]:
        """Reports the attempt; returns how long to wait before the next one, or None: done."""
        status, headers = outcome.status, outcome.headers
        tokens = usage_tokens(outcome.body) if outcome.ok else 0
        if headers is not None:
            if self.learning:
                self._learn(headers)
            self.limiter.update_from_headers(headers)
        if outcome.ok and self.tpm:
            permit.reconcile(tokens)
        down = status is None or status in _DOWN_STATUSES
        refused = status in (401, 403)  # the key, not the line: every line would fail alike
        self.down_in_a_row = self.down_in_a_row + 1 if down or refused else 0
        wait: Optional[float] = None
        if down or status in _RETRY_STATUSES:
            wait = self.backoff.delay(attempt)
            server = retry_after(headers) if headers is not None else None
            if server is not None:
                wait = min(max(server, 0.0), MAX_SERVER_WAIT)
            if status == 429:
                self.limiter.pause(wait)
                self.adaptive.rate_limited(paced_after, server)
                self.adaptive.pause(wait)
        elif outcome.ok:
            self.adaptive.succeeded()
        again = wait is not None and attempt < self.max_retries and not self.stopping()
        self.on_attempt(begun, time.monotonic(), status, outcome.error or "", tokens, again)
        if self.down_in_a_row >= self.stop_after:
            n = self.down_in_a_row
            if refused:
                message = f"the provider refused the key {n} times in a row (HTTP {status})"
                raise ProviderDown(message, outcome)
            last = outcome.message or f"HTTP {status}"
            message = f"the provider looks down ({n} failures in a row; last: {last})"
            raise ProviderDown(message, outcome)
        return wait if again else None
