"""Reading a response's token usage from its bytes as they pass, without changing them.

A JSON body (OpenAI, Anthropic, Gemini) is kept until it ends, then its
``usage`` (or Gemini's ``usageMetadata``) is found from the end, where the
providers put it: no full parse of a body the SDK parses anyway. A
server-sent-events body is read line by line; only ``data:`` lines that
mention usage are parsed (OpenAI's last chat chunk, the Responses API's
``response.completed``, Anthropic's ``message_start`` then cumulative
``message_delta``, Gemini's chunks).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

from ._tokens import Tokens, from_usage

__all__ = ["UsageReader", "usage_of"]

_MAX_JSON = 8 << 20  # a body larger than this is passed on unread (its estimate stands)
_decoder = json.JSONDecoder()


def _gemini(metadata: Any) -> Optional[Tokens]:
    if not isinstance(metadata, dict):
        return None
    prompt = metadata.get("promptTokenCount")
    output = metadata.get("candidatesTokenCount")
    thoughts = metadata.get("thoughtsTokenCount")
    if prompt is None and output is None:
        return None

    def count(value: Any) -> int:
        return value if isinstance(value, int) and value > 0 else 0

    return Tokens(count(prompt), count(output) + count(thoughts))


def _value_after_key(text: str) -> Any:
    """The JSON value of the member whose key starts ``text`` (``"name": value``), or None."""
    colon = text.find(":")
    if colon < 0 or text[text.index('"', 1) + 1 : colon].strip():
        return None  # a string value "usage", not a key
    start = colon + 1
    while start < len(text) and text[start] in " \t\r\n":
        start += 1
    try:
        value, _ = _decoder.raw_decode(text, start)
    except ValueError:
        return None
    return value


def _from_end(body: bytes, key: bytes, read: Callable[[Any], Optional[Tokens]]) -> Optional[Tokens]:
    """The last member ``key`` of ``body`` that ``read`` makes sense of (providers put it last).

    A member of that name may also sit in a tool schema the body echoes: the
    search goes on towards the start until one reads as usage.
    """
    end = len(body)
    while True:
        at = body.rfind(key, 0, end)
        if at < 0:
            return None
        found = read(_value_after_key(body[at:].decode("utf-8", "replace")))
        if found is not None:
            return found
        end = at


def usage_of(body: bytes) -> Optional[Tokens]:
    """The usage a whole JSON response body reports, or None.

    >>> usage_of(b'{"id": "x", "usage": {"prompt_tokens": 12, "completion_tokens": 3}}')
    Tokens(input=12, output=3)
    """
    if b'"usageMetadata"' in body:
        return _from_end(body, b'"usageMetadata"', _gemini)
    return _from_end(body, b'"usage"', from_usage)


def _event_usage(event: Any, seen: Optional[Tokens]) -> Optional[Tokens]:
    if not isinstance(event, dict):
        return seen
    kind = event.get("type")
    if kind == "message_start":
        message = event.get("message")
        found = from_usage(message.get("usage")) if isinstance(message, dict) else None
    elif kind == "message_delta":
        delta = from_usage(event.get("usage"))
        if delta is None:
            return seen
        earlier = seen.input if seen is not None else 0
        return Tokens(max(earlier, delta.input), delta.output)
    elif kind in ("response.completed", "response.incomplete", "response.failed"):
        response = event.get("response")
        found = from_usage(response.get("usage")) if isinstance(response, dict) else None
    elif "usageMetadata" in event:
        found = _gemini(event["usageMetadata"])
    else:
        found = from_usage(event.get("usage"))
    return found if found is not None else seen


class UsageReader:
    """Fed a response body chunk by chunk; ``result()`` is the usage it reported, or None.

    JSON or an event stream is told from the first bytes (``{``/``[`` or not),
    which costs less than reading the ``content-type`` header.
    """

    __slots__ = ("_events", "_parts", "_rest", "_size", "_usage")

    def __init__(self) -> None:
        self._events: Optional[bool] = None
        self._parts: list[bytes] = []
        self._rest = b""
        self._size = 0
        self._usage: Optional[Tokens] = None

    def feed(self, chunk: bytes) -> None:
        events = self._events
        if events is None:
            start = chunk.lstrip()[:1]
            if not start:
                return
            events = self._events = start not in (b"{", b"[")
        if not events:
            self._size += len(chunk)
            if self._size <= _MAX_JSON:
                self._parts.append(chunk)
            return
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        if line.startswith(b"data:") and b"sage" in line:  # "usage", "usageMetadata"
            try:
                event = json.loads(line[5:])
            except ValueError:
                return
            self._usage = _event_usage(event, self._usage)

    def result(self) -> Optional[Tokens]:
        if self._events:
            if self._rest:
                self._line(self._rest)
                self._rest = b""
            return self._usage
        if not self._parts or self._size > _MAX_JSON:
            return None
        parts = self._parts
        return usage_of(parts[0] if len(parts) == 1 else b"".join(parts))
