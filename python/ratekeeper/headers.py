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

Bounded: a value longer than ``MAX_VALUE_LENGTH`` characters is ignored
unread, and every parse is linear in the value's length (no backtracking
regex), so a hostile header costs microseconds. A number too large to use is
ignored too, never ``inf``: a wait or reset beyond ``MAX_WAIT`` (31 days, a
monthly quota's reset; ``Retry-After: 1e300`` or a year-9999 date are
beyond it) and a count beyond ``MAX_COUNT`` (1e15, past any real budget).
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

from ._gemini import retry_delay

__all__ = [
    "MAX_COUNT",
    "MAX_VALUE_LENGTH",
    "MAX_WAIT",
    "ServerLimits",
    "read_limits",
    "retry_after",
]


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
    # The request counts came from OpenRouter's bare ``X-RateLimit-*``, read as a
    # fixed window (nothing back before the reset); OpenAI's and Anthropic's
    # buckets refill continuously and their reset is the time until full.
    requests_fixed_window: bool = False


_EMPTY = ServerLimits()
_BUDGETS = ("requests", "tokens", "input_tokens", "output_tokens")

# Lower-cased header name -> (ServerLimits field, rank). When two headers feed
# one field, the higher rank wins: the explicit ``retry-after-ms`` beats the
# whole seconds of ``retry-after``, and OpenAI's ``x-ratelimit-*-requests``
# beats OpenRouter's bare ``x-ratelimit-*`` should a proxy send both.
_COUNT, _LIMIT, _RESET, _SECONDS, _MILLIS = range(5)  # how a header's value is read

_FIELDS: dict[str, tuple[str, int, int]] = {
    "retry-after-ms": ("retry_after", 2, _MILLIS),
    "retry-after": ("retry_after", 1, _SECONDS),
    "x-ratelimit-limit": ("requests_limit", 1, _LIMIT),
    "x-ratelimit-remaining": ("requests_remaining", 1, _COUNT),
    "x-ratelimit-reset": ("requests_reset", 1, _RESET),
}
_KINDS = {"limit": _LIMIT, "remaining": _COUNT, "reset": _RESET}
for _budget in ("requests", "tokens"):
    for _kind, _parse in _KINDS.items():
        _FIELDS[f"x-ratelimit-{_kind}-{_budget}"] = (f"{_budget}_{_kind}", 2, _parse)
for _budget in _BUDGETS:
    for _kind, _parse in _KINDS.items():
        _header = f"anthropic-ratelimit-{_budget.replace('_', '-')}-{_kind}"
        _FIELDS[_header] = (f"{_budget}_{_kind}", 2, _parse)

_BYTE_FIELDS = {name.encode(): spec for name, spec in _FIELDS.items()}

# One way only to match each number (``\d+(\.\d*)?``, not ``\d+\.?\d*``):
# the ambiguous spelling backtracks quadratically on a long run of digits.
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ns|us|µs|μs|ms|s|m|h))+")
_DURATION_PART = re.compile(rf"({_NUMBER})(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0
}  # fmt: skip
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?(?:([Zz])|([+-])(\d\d):?(\d\d))?"
)
_EPOCH_SECONDS = 1e9  # a "seconds from now" this large (31 years) is an epoch
_EPOCH_MILLIS = 1e11
MAX_VALUE_LENGTH = 256  # longer values are ignored unread (an HTTP-date is 29)
MAX_WAIT = 31 * 86400.0  # seconds; a reset or wait beyond this is nonsense
MAX_COUNT = 1e15  # a limit or remaining beyond this is nonsense


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
    year, month, day, hour, minute, second, fraction, _zulu, sign, off_h, off_m = match.groups()
    if not ("01" <= month <= "12" and "01" <= day <= "31" and hour < "24" and minute < "60"):
        return None
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
    # No zone at all (``zulu`` and ``sign`` both None): read as UTC, which is
    # what every API here sends.
    return epoch


def _http_date(text: str) -> Optional[float]:
    parts = parsedate_tz(text)
    if parts is None:
        return None
    try:
        epoch = calendar.timegm((*parts[:6], 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    return float(epoch - (parts[9] or 0))


def _duration(text: str) -> Optional[float]:
    """A Go duration (``20ms``, ``1s``, ``6m0s``, ``1h2m3.5s``) in seconds, or None."""
    # The common shapes first: one unit, parsed without a regex.
    if text.endswith("ms"):
        head = text[:-2]
        if head.replace(".", "", 1).isdecimal():
            return float(head) / 1000.0
    elif text.endswith("s"):
        head = text[:-1]
        if head.replace(".", "", 1).isdecimal():
            return float(head)
    if _DURATION.fullmatch(text) is None:
        return None
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def _seconds_until(text: str, now: Optional[float]) -> Optional[float]:
    """A reset or retry value as seconds from ``now`` (epoch seconds); None if nonsense."""
    text = text.strip()
    if not text:
        return None
    # Dispatch on the last character so the usual value parses at the first
    # try: raising and catching a ValueError per header would cost more than
    # the whole parse. ``isdecimal``, not ``isdigit``: "²" is a digit that
    # ``float`` refuses.
    last = text[-1]
    if last.isdecimal() and text.replace(".", "", 1).isdecimal():
        return _seconds_from_number(float(text), now)
    if last in "smh":
        wait = _duration(text)
        if wait is not None:
            return wait
    if last not in "Zz" and "T" not in text[8:12]:
        number = _number(text)  # rarer spellings: "1e3", "+5", "-1" (refused), "nan" (refused)
        if number is not None:
            return _seconds_from_number(number, now) if number >= 0 else None
    at = _rfc3339(text)
    if at is None:
        at = _http_date(text)
    return None if at is None else max(0.0, at - (time.time() if now is None else now))


def _seconds_from_number(value: float, now: Optional[float]) -> float:
    """A plain number: seconds from now, or an epoch (in seconds or milliseconds) when large."""
    if value >= _EPOCH_SECONDS:
        epoch = value / 1000.0 if value >= _EPOCH_MILLIS else value
        return max(0.0, epoch - (time.time() if now is None else now))
    return value


def _count(text: str, *, is_limit: bool) -> Optional[float]:
    text = text.strip()
    value = float(text) if text.isdecimal() else _number(text)
    if value is None or value < 0 or (is_limit and value == 0):
        return None
    return value


def _text(value: Any) -> Optional[str]:
    """A header value as text; None when too long to be sane or of an unusable type."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (bytes, bytearray)):
        if len(value) > MAX_VALUE_LENGTH:
            return None
        text = value.decode("latin-1")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        # A number from a JSON error body. ``str`` of a huge int is quadratic
        # (and refused past 4300 digits): anything that large is nonsense anyway.
        if isinstance(value, int) and not -(10**18) < value < 10**18:
            return None
        text = str(value)
    else:
        return None
    return text if len(text) <= MAX_VALUE_LENGTH else None


def _parse_value(value: Any, kind: int, now: Optional[float]) -> Optional[float]:
    """One header's value as its field's number, or None when nonsense or out of bounds."""
    text = _text(value)
    if text is None:
        return None
    if kind in (_RESET, _SECONDS):
        parsed = _seconds_until(text, now)
        bound = MAX_WAIT
    elif kind == _MILLIS:
        parsed = _count(text, is_limit=False)
        if parsed is not None:
            parsed /= 1000.0
        bound = MAX_WAIT
    else:
        parsed = _count(text, is_limit=kind == _LIMIT)
        bound = MAX_COUNT
    # ``<=`` is False for inf and NaN as well: neither ever leaves this module.
    return parsed if parsed is not None and parsed <= bound else None


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
    raw = getattr(headers, "raw", None)
    if isinstance(raw, list):  # httpx / httpx2: the byte pairs, cheaper than .items()
        return raw
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
    values: dict[str, float] = {}
    ranks: dict[str, int] = {}
    for name, value in _header_items(headers):
        if isinstance(name, str):
            spec = _FIELDS.get(name.lower())
        elif isinstance(name, bytes):
            spec = _BYTE_FIELDS.get(name.lower())
        else:
            continue
        if spec is None:
            continue
        field, rank, kind = spec
        if ranks.get(field, 0) >= rank:
            continue
        parsed = _parse_value(value, kind, now)
        # Nonsense is skipped, so that it never hides a sane header of lower rank.
        if parsed is not None:
            values[field] = parsed
            ranks[field] = rank
    if not values:
        return _EMPTY
    if ranks.get("requests_remaining") == 1:
        values["requests_fixed_window"] = True
    # Fields left out keep their class default (None). Filling __dict__
    # directly skips the frozen dataclass __init__, which costs more than the
    # parsing (every field through object.__setattr__).
    limits = object.__new__(ServerLimits)
    limits.__dict__.update(values)
    return limits


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
    then OpenRouter's headers repeated in the JSON error body; then Gemini's
    ``RetryInfo.retryDelay`` in the JSON error body (``obj`` may be that body).

    >>> retry_after({"Retry-After": "2"})
    2.0
    """
    wait = _wait_from(read_limits(obj, now=now))
    if wait is None and not isinstance(obj, Mapping):
        body_headers = _body_headers(obj)
        if body_headers is not None:
            wait = _wait_from(read_limits(body_headers, now=now))
    if wait is None:  # Gemini: RetryInfo.retryDelay in the JSON error body
        wait = retry_delay(obj)
        if wait is not None and wait > MAX_WAIT:
            wait = None  # as absurd as any other wait past MAX_WAIT
    return wait
