"""Which exceptions mean "rate limited" and which are worth another attempt.

Nothing here imports ``openai``, ``anthropic``, ``httpx`` or ``httpx2``: they are
optional, and the current SDKs raise their own classes over ``httpx2`` anyway.
An error is read by what it carries:

1. anything that is not an ``Exception`` (``asyncio.CancelledError``,
   ``KeyboardInterrupt``, ``SystemExit``) is never retryable;
2. an ``x-should-retry: true|false`` response header decides when present
   (the OpenAI and Anthropic servers send it);
3. an HTTP status (``status_code``, ``status`` or ``response.status_code``):
   408, 409, 429 and 5xx (Anthropic's 529 ``overloaded`` included) are
   retryable, every other status is not;
4. no status: connection errors and timeouts are retryable, recognised by
   class (``TimeoutError``, ``ConnectionError``) or, for the HTTP libraries,
   by the class names in the exception's MRO (``APIConnectionError``,
   ``APITimeoutError``, httpx's ``TransportError`` family, aiohttp's
   ``ClientConnectionError``, ...). The verdict per class is cached, so a
   check costs a dict lookup after the first time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Optional

__all__ = ["is_rate_limited", "is_retryable", "status_of"]

_RETRYABLE_STATUS = frozenset({408, 409, 429})

# Class name -> verdict, read along the MRO, most specific class first, so
# that httpx's UnsupportedProtocol (a TransportError) is refused before its
# base class is accepted. Only trusted in the modules of _NETWORK_PACKAGES:
# a "ReadError" elsewhere (tarfile has one) means something else entirely.
_NAMED_VERDICTS: dict[str, bool] = {
    # httpx / httpx2 / httpcore
    "UnsupportedProtocol": False,
    "LocalProtocolError": False,
    "InvalidURL": False,
    "TransportError": True,
    "TimeoutException": True,
    "NetworkError": True,
    "ConnectError": True,
    "ReadError": True,
    "WriteError": True,
    "CloseError": True,
    "RemoteProtocolError": True,
    "ProxyError": True,
    "ConnectTimeout": True,
    "ReadTimeout": True,
    "WriteTimeout": True,
    "PoolTimeout": True,
    # openai / anthropic
    "APIConnectionError": True,
    "APITimeoutError": True,
    "RetryableError": True,
    # aiohttp
    "ClientConnectionError": True,
    "ServerDisconnectedError": True,
    "ServerTimeoutError": True,
    "ClientPayloadError": True,
    # requests / urllib3
    "ConnectionError": True,
    "Timeout": True,
    "ChunkedEncodingError": True,
    "ProtocolError": True,
    "NewConnectionError": True,
}
_NETWORK_PACKAGES = frozenset(
    {"httpx", "httpx2", "httpcore", "openai", "anthropic", "aiohttp", "requests", "urllib3"}
)
# Names that mean a network failure in any library: matched as suffixes.
_NETWORK_SUFFIXES = (
    "ConnectError",
    "ConnectionError",
    "TimeoutError",
    "TimeoutException",
    "RemoteProtocolError",
    "ConnectTimeout",
    "ReadTimeout",
)
_BUILTIN_NETWORK = (
    TimeoutError,
    ConnectionError,
    asyncio.TimeoutError,
    concurrent.futures.TimeoutError,
)
_verdict_by_type: dict[type, bool] = {}
_VERDICT_CACHE_SIZE = 512


def status_of(exc: BaseException) -> Optional[int]:
    """The HTTP status an exception carries, or None.

    >>> class Failed(Exception): status_code = 503
    >>> status_of(Failed())
    503
    """
    for attr in ("status_code", "status"):
        status = getattr(exc, attr, None)
        if isinstance(status, int) and not isinstance(status, bool):
            return int(status)
    response = getattr(exc, "response", None)
    if response is not None:
        for attr in ("status_code", "status"):
            status = getattr(response, attr, None)
            if isinstance(status, int) and not isinstance(status, bool):
                return int(status)
    return None


def is_rate_limited(exc: BaseException) -> bool:
    """True for an HTTP 429 (``openai.RateLimitError``, ``anthropic.RateLimitError``, ...).

    >>> class TooMany(Exception): status_code = 429
    >>> is_rate_limited(TooMany())
    True
    """
    return status_of(exc) == 429


def _should_retry_header(exc: BaseException) -> Optional[bool]:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) if response is not None else None
    get = getattr(headers, "get", None)
    if get is None:
        return None
    try:
        value = get("x-should-retry")
        if value is None and not hasattr(headers, "multi_items"):
            # A plain dict is case-sensitive; httpx-style headers are not.
            value = get("X-Should-Retry")
    except Exception:  # a strange headers object must not turn a check into a crash
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        value = value.strip().lower()
        if value == "true":
            return True
        if value == "false":
            return False
    return None


def _type_verdict(cls: type) -> bool:
    for klass in cls.__mro__:
        verdict = _NAMED_VERDICTS.get(klass.__name__)
        if verdict is not None and klass.__module__.split(".", 1)[0] in _NETWORK_PACKAGES:
            return verdict
        if klass.__name__.endswith(_NETWORK_SUFFIXES):
            return True
    return False


def is_retryable(exc: BaseException) -> bool:
    """True when another attempt may succeed: 429, 408, 409, 5xx, connection errors, timeouts.

    Never for 400/401/403/404/422, nor for anything that is not an
    ``Exception`` (cancellation, Ctrl-C, exit). An ``x-should-retry`` response
    header overrides the status.

    >>> is_retryable(ConnectionResetError()), is_retryable(ValueError())
    (True, False)
    """
    if not isinstance(exc, Exception):
        return False
    if getattr(exc, "response", None) is not None:
        header = _should_retry_header(exc)
        if header is not None:
            return header
    status = status_of(exc)
    if status is not None:
        return status in _RETRYABLE_STATUS or 500 <= status <= 599
    if isinstance(exc, _BUILTIN_NETWORK):
        return True
    cls = type(exc)
    verdict = _verdict_by_type.get(cls)
    if verdict is None:
        if len(_verdict_by_type) >= _VERDICT_CACHE_SIZE:
            _verdict_by_type.clear()  # classes made at run time must not grow it for ever
        verdict = _verdict_by_type[cls] = _type_verdict(cls)
    return verdict
