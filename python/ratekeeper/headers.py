"""Reading what a server says about its rate limits: ``Retry-After`` and the reset headers.

Formats understood (header names case-insensitive):

===============================================  ====================================
``retry-after-ms``                               milliseconds (OpenAI, Anthropic)
``retry-after``                                  seconds, or an HTTP-date
``x-ratelimit-{limit,remaining}-{requests,tokens}``  counts (OpenAI)
``x-ratelimit-reset-{requests,tokens}``          Go durations: ``1s``, ``6m0s``, ``20ms``
``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``
                                                 counts; resets are RFC 3339 times
``x-ratelimit-{limit,remaining,reset}``          requests (OpenRouter); reset in epoch ms
===============================================  ====================================

Reset values are read leniently, whatever header they come in, so any
OpenAI-compatible server is understood: a Go duration, a plain number (seconds
from now; above 1e9 it is an epoch in seconds, above 1e11 in milliseconds), an
RFC 3339 time or an HTTP-date. Every reset becomes seconds from now, never
negative (a reset in the past is ``0.0``). Nonsense (``-1``, a limit of ``0``,
NaN, unparsable text) is ignored, never raised: the field stays ``None``.
"""

from __future__ import annotations

import calendar
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_tz
from typing import Any, Optional

__all__ = ["ServerLimits", "read_limits", "retry_after"]


@dataclass(frozen=True)
class ServerLimits:
    """What one response's headers say about the server's budgets; resets in seconds from now.

    >>> read_limits({"x-ratelimit-remaining-requests": "3"}).requests_remaining
    3.0
    """

    requests_limit: Optional[float] = None
    requests_remaining: Optional[float] = None
    requests_reset: Optional[float] = None
    tokens_limit: Optional[float] = None
    tokens_remaining: Optional[float] = None
    tokens_reset: Optional[float] = None
    input_tokens_limit: Optional[float] = None
    input_tokens_remaining: Optional[float] = None
    input_tokens_reset: Optional[float] = None
    output_tokens_limit: Optional[float] = None
    output_tokens_remaining: Optional[float] = None
    output_tokens_reset: Optional[float] = None
    retry_after: Optional[float] = None


_EMPTY = ServerLimits()
_BUDGETS = ("requests", "tokens", "input_tokens", "output_tokens")

# Lower-cased header name -> (ServerLimits field, rank). When two headers feed
# one field, the higher rank wins: the explicit ``retry-after-ms`` beats the
# whole seconds of ``retry-after``, and OpenAI's ``x-ratelimit-*-requests``
# beats OpenRouter's bare ``x-ratelimit-*`` should a proxy send both.
_FIELDS: dict[str, tuple[str, int]] = {
    "retry-after-ms": ("retry_after", 2),
    "retry-after": ("retry_after", 1),
    "x-ratelimit-limit": ("requests_limit", 1),
    "x-ratelimit-remaining": ("requests_remaining", 1),
    "x-ratelimit-reset": ("requests_reset", 1),
}
for _budget in ("requests", "tokens"):
    for _kind in ("limit", "remaining", "reset"):
        _FIELDS[f"x-ratelimit-{_kind}-{_budget}"] = (f"{_budget}_{_kind}", 2)
for _budget in _BUDGETS:
    for _kind in ("limit", "remaining", "reset"):
        _header = f"anthropic-ratelimit-{_budget.replace('_', '-')}-{_kind}"
        _FIELDS[_header] = (f"{_budget}_{_kind}", 2)

_DURATION = re.compile(r"(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0
}  # fmt: skip
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?(?:([Zz])|([+-])(\d\d):?(\d\d))?"
)
_EPOCH_SECONDS = 1e9  # a "seconds from now" this large (31 years) is an epoch
_EPOCH_MILLIS = 1e11


def _number(text: str) -> Optional[float]:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _rfc3339(text: str) -> Optional[float]:
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        epoch = float(
            calendar.timegm(
                (int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0)
            )
        )
    except (ValueError, OverflowError):
        return None
    if fraction:
        epoch += float(fraction)
    if sign is not None:
        offset = int(off_h) * 3600 + int(off_m) * 60
        epoch -= offset if sign == "+" else -offset
    # No zone at all: read as UTC, which is what every API here sends.
    del zulu
    return float(epoch)


def _http_date(text: str) -> Optional[float]:
    parts = parsedate_tz(text)
    if parts is None:
        return None
    try:
        epoch = calendar.timegm((*parts[:6], 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    return float(epoch - (parts[9] or 0))


def _seconds_until(text: str, now: float) -> Optional[float]:
    """A reset or retry value as seconds from ``now`` (epoch seconds); None if nonsense."""
    text = text.strip()
    if not text:
        return None
    value = _number(text)
    if value is not None:
        if value < 0:
            return None
        if value >= _EPOCH_MILLIS:
            return max(0.0, value / 1000.0 - now)
        if value >= _EPOCH_SECONDS:
            return max(0.0, value - now)
        return value
    if _DURATION.fullmatch(text):
        return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    at = _rfc3339(text)
    if at is None:
        at = _http_date(text)
    return None if at is None else max(0.0, at - now)


def _count(text: str, *, is_limit: bool) -> Optional[float]:
    value = _number(text.strip())
    if value is None or value < 0 or (is_limit and value == 0):
        return None
    return value


def _header_items(obj: Any) -> Iterable[tuple[Any, Any]]:
    """(name, value) pairs from a headers mapping, a list of pairs, a response or an exception."""
    if isinstance(obj, Mapping):
        return obj.items()
    headers = getattr(obj, "headers", None)
    if headers is None:
        response = getattr(obj, "response", None)
        headers = getattr(response, "headers", None) if response is not None else None
        if headers is None:
            if isinstance(obj, (list, tuple)):
                return obj
            return ()
    if isinstance(headers, Mapping):
        return headers.items()
    if isinstance(headers, (list, tuple)):
        return headers
    items = getattr(headers, "items", None)  # e.g. email.message.Message, aiohttp CIMultiDict
    return items() if callable(items) else ()


def read_limits(headers: Any, *, now: Optional[float] = None) -> ServerLimits:
    """Reads every rate-limit header (OpenAI, Anthropic, OpenRouter, Retry-After) in one pass.

    ``headers`` is a mapping, a list of (name, value) pairs, a response or an
    exception carrying ``.response``. ``now`` (epoch seconds, default
    ``time.time()``) is only for absolute reset times.

    >>> read_limits({"X-RateLimit-Reset-Tokens": "6m0s"}).tokens_reset
    360.0
    """
    raw: dict[str, tuple[str, int]] = {}
    for name, value in _header_items(headers):
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        spec = _FIELDS.get(name.lower()) if isinstance(name, str) else None
        if spec is None:
            continue
        field, rank = spec
        held = raw.get(field)
        if held is None or rank > held[1]:
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            raw[field] = (str(value), rank)
    if not raw:
        return _EMPTY
    if now is None:
        now = time.time()
    values: dict[str, Optional[float]] = {}
    for field, (text, rank) in raw.items():
        if field == "retry_after":
            if rank == 2:  # retry-after-ms
                ms = _number(text.strip())
                values[field] = ms / 1000.0 if ms is not None and ms >= 0 else None
            else:
                values[field] = _seconds_until(text, now)
        elif field.endswith("_reset"):
            values[field] = _seconds_until(text, now)
        else:
            values[field] = _count(text, is_limit=field.endswith("_limit"))
    return ServerLimits(**values)


def _body_headers(obj: Any) -> Optional[Mapping[str, Any]]:
    """OpenRouter's ``error.metadata.headers``, from an exception's ``.body`` or response JSON."""
    body = getattr(obj, "body", None)
    if body is None:
        response = getattr(obj, "response", None)
        if response is None and hasattr(obj, "json") and hasattr(obj, "status_code"):
            response = obj
        json = getattr(response, "json", None)
        if callable(json):
            try:
                body = json()
            except Exception:  # not JSON, not read yet, closed: there is no body to use
                return None
    for _ in range(2):  # the SDKs hand over either the whole body or its "error" member
        if not isinstance(body, Mapping):
            return None
        metadata = body.get("metadata")
        if isinstance(metadata, Mapping):
            headers = metadata.get("headers")
            if isinstance(headers, Mapping):
                return headers
        body = body.get("error")
    return None


def _wait_from(limits: ServerLimits) -> Optional[float]:
    if limits.retry_after is not None:
        return limits.retry_after
    # A 429 means some budget ran out. Budgets reported exhausted (remaining 0)
    # are the ones to wait for; the call succeeds only once all of them have
    # reset, hence the largest. Without remaining counts we cannot tell which
    # budget it was, so the largest reset is the one wait certain to be enough.
    exhausted: list[float] = []
    every: list[float] = []
    for budget in _BUDGETS:
        reset = getattr(limits, f"{budget}_reset")
        if reset is None:
            continue
        every.append(reset)
        if getattr(limits, f"{budget}_remaining") == 0:
            exhausted.append(reset)
    if exhausted:
        return max(exhausted)
    return max(every) if every else None


def retry_after(obj: Any, *, now: Optional[float] = None) -> Optional[float]:
    """Seconds the server asks us to wait, or None when it does not say.

    ``obj`` is an exception with ``.response`` (and maybe ``.body``), a
    response, or a headers mapping. ``retry-after-ms`` and ``retry-after``
    come first; then the reset headers of the exhausted budgets (the largest);
    then OpenRouter's headers repeated in the JSON error body.

    >>> retry_after({"Retry-After": "2"})
    2.0
    """
    wait = _wait_from(read_limits(obj, now=now))
    if wait is None and not isinstance(obj, Mapping):
        body_headers = _body_headers(obj)
        if body_headers is not None:
            wait = _wait_from(read_limits(body_headers, now=now))
    return wait
