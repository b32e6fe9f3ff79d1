"""The one place ``ratekeeper batch`` talks to a provider: a wrapped SDK client and one call.

The client is the provider's async SDK client on an httpx client whose event
hooks see every HTTP attempt (that is how the batch counts retries and 429s
without reaching into the wrapper), wrapped by ``rk.wrap`` with a
``rk.Limiter`` built from the options.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .batch import BatchOptions

Hook = Callable[[Any], Awaitable[None]]

_OPENROUTER_URL = "https://openrouter.ai/api/v1"


def make_client(
    options: BatchOptions, api_key: str, on_request: Hook, on_response: Hook
) -> tuple[Any, Callable[[], Awaitable[None]]]:
    """The rate-limited async client for ``options.provider``, and how to close it."""
    import httpx

    from . import Limiter, wrap

    hooks = {"request": [on_request], "response": [on_response]}
    # As many connections as requests in flight: no request queues in httpx's pool.
    limits: Any = httpx.Limits(
        max_connections=options.concurrency + 8, max_keepalive_connections=options.concurrency + 8
    )
    base_url = options.base_url
    raw: Any
    if options.provider == "anthropic":
        import anthropic

        if base_url and base_url.rstrip("/").endswith("/v1"):
            # The Anthropic SDK appends /v1/messages itself.
            base_url = base_url.rstrip("/")[: -len("/v1")]
        http = anthropic.DefaultAsyncHttpxClient(event_hooks=hooks, limits=limits)
        raw = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, http_client=http, max_retries=0
        )
    else:
        import openai

        if options.provider == "openrouter" and base_url is None:
            base_url = _OPENROUTER_URL
        http = openai.DefaultAsyncHttpxClient(event_hooks=hooks, limits=limits)
        raw = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, http_client=http, max_retries=0
        )
    limiter = Limiter(
        rpm=options.rpm, tpm=options.tpm, burst=options.burst, concurrency=options.concurrency
    )
    client = wrap(raw, limiter)

    async def close() -> None:
        await raw.close()

    return client, close


async def send_request(client: Any, provider: str, body: dict[str, Any]) -> dict[str, Any]:
    """Sends one request body; returns the response as JSON-ready data."""
    if provider == "anthropic":
        response = await client.messages.create(**body)
    else:
        response = await client.chat.completions.create(**body)
    data: dict[str, Any] = response.to_dict()
    return data
