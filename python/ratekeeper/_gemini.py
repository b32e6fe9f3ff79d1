"""Gemini's wait after a 429: ``RetryInfo.retryDelay`` in the JSON error body.

Google's APIs answer ``RESOURCE_EXHAUSTED`` with no ``Retry-After`` header;
the wait is a ``google.rpc.RetryInfo`` among the error's ``details``::

    {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}]}}

The delay is a ``google.protobuf.Duration``: in JSON a string of seconds with
an ``s`` (``"30s"``, ``"1.5s"``, ``"0.000001s"``), or in a dict form
``{"seconds": 30, "nanos": 500000000}``. Reading is bounded (a few details
looked at, short strings only, a body of at most 64 KiB parsed) and never
raises: anything else is no wait (None).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Optional

__all__ = ["retry_delay"]

_DURATION = re.compile(r"(\d{1,12})(?:\.(\d{1,9}))?s")
_MAX_BODY = 64 * 1024
_MAX_DETAILS = 16


def _duration(value: Any) -> Optional[float]:
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip()) if len(value) <= 32 else None
        if match is None:
            return None
        whole, fraction = match.groups()
        return int(whole) + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)
    if isinstance(value, Mapping):
        seconds, nanos = value.get("seconds", 0), value.get("nanos", 0)
        try:
            wait = float(seconds) + float(nanos) / 1e9
        except (TypeError, ValueError, OverflowError):
            return None
        return wait if math.isfinite(wait) and wait >= 0 else None
    return None


def _from_json(body: Any) -> Optional[float]:
    if isinstance(body, list) and body:  # Gemini's OpenAI-compatible endpoint: [{"error": ...}]
        body = body[0]
    if not isinstance(body, Mapping):
        return None
    error = body.get("error", body)  # the whole body, or its "error" member (some SDKs)
    details = error.get("details") if isinstance(error, Mapping) else None
    if not isinstance(details, list):
        return None
    for detail in details[:_MAX_DETAILS]:
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith(
            "google.rpc.RetryInfo"
        ):
            return _duration(detail.get("retryDelay", detail.get("retry_delay")))
    return None


def _response_json(response: Any) -> Any:
    try:
        content = response.content  # httpx / requests; raises if not read yet
    except Exception:
        return None
    if not isinstance(content, (bytes, bytearray)) or len(content) > _MAX_BODY:
        return None
    if b"RetryInfo" not in content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


def retry_delay(obj: Any) -> Optional[float]:
    """Seconds from a Google ``RetryInfo`` in an error body, or None.

    ``obj`` is the parsed body (a dict), an exception (the google-genai SDK's
    ``APIError.details``, the openai SDK's ``.body``, or its ``.response``),
    or a response whose body was read.

    >>> retry_delay({"error": {"code": 429, "details": [
    ...     {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]}})
    1.5
    """
    try:
        if isinstance(obj, (dict, list)):
            return _from_json(obj)
        if isinstance(obj, Mapping):
            return None  # a headers mapping: there is no body in it
        if isinstance(obj, BaseException):  # its parsed body, then its response
            for name in ("details", "body"):
                wait = _from_json(getattr(obj, name, None))
                if wait is not None:
                    return wait
            obj = getattr(obj, "response", None)
        status = getattr(obj, "status_code", None)
        if not isinstance(status, int) or status < 400:
            return None  # no response, or a success: no wait to read
        return _from_json(_response_json(obj))
    except Exception:  # a body shaped like nothing above: no wait, never an error
        return None
