"""Reading a response's token usage from its bytes as they pass, without changing them.

A JSON body (OpenAI, Anthropic, Gemini) is kept until it ends, then its
``usage`` (or Gemini's ``usageMetadata``) is found from the end, where the
providers put it: no full parse of a body the SDK parses anyway. A
server-sent-events body goes to :class:`StreamUsage`, which parses only the
lines that carry a usage object. What a usage object counts is decided once,
in ``_usage.from_usage``.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from ._usage import StreamUsage, Tokens, from_usage

__all__ = ["UsageReader", "usage_of"]

_MAX_JSON = 8 << 20  # a body larger than this is passed on unread (its estimate stands)
_decoder = json.JSONDecoder()


def _member_from_end(text: str, name: str) -> Any:
    """The value of the last ``"name": value`` member in ``text`` that parses, else None."""
    key = f'"{name}"'
    end = len(text)
    while True:
        at = text.rfind(key, 0, end)
        if at < 0:
            return None
        end = at
        colon = at + len(key)
        while colon < len(text) and text[colon] in " \t\r\n":
            colon += 1
        if colon >= len(text) or text[colon] != ":":
            continue  # a string value "usage", not a key
        start = colon + 1
        while start < len(text) and text[start] in " \t\r\n":
            start += 1
        try:
            value, _ = _decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value


def usage_of(body: bytes) -> Optional[Tokens]:
    """The usage a whole JSON response body reports, or None.

    >>> usage_of(b'{"id": "x", "usage": {"prompt_tokens": 12, "completion_tokens": 3}}')
    Tokens(input=12, output=3)
    """
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return None
    if '"usageMetadata"' in text:
        return from_usage(_member_from_end(text, "usageMetadata"))
    end = len(text)
    while True:
        # A member called "usage" may also sit in a tool schema the body echoes: go on looking.
        at = text.rfind('"usage"', 0, end)
        if at < 0:
            return None
        found = from_usage(_member_from_end(text[: at + 200_000], "usage"))
        if found is not None:
            return found
        end = at


class UsageReader:
    """Fed a response body chunk by chunk; ``result()`` is the usage it reported, or None.

    >>> reader = UsageReader("application/json")
    >>> reader.feed(b'{"usage": {"input_tokens": 9, "output_tokens": 4}}')
    >>> reader.result()
    Tokens(input=9, output=4)
    """

    __slots__ = ("_parts", "_size", "_stream")

    def __init__(self, content_type: str) -> None:
        self._stream = StreamUsage() if "event-stream" in content_type else None
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        """Takes the next bytes of the body."""
        if self._stream is not None:
            self._stream.feed(chunk)
            return
        self._size += len(chunk)
        if self._size <= _MAX_JSON:
            self._parts.append(chunk)

    def result(self) -> Optional[Tokens]:
        """The usage the whole body reported (call once the body ended)."""
        if self._stream is not None:
            self._stream.close()
            return self._stream.tokens
        if not self._parts or self._size > _MAX_JSON:
            return None
        return usage_of(b"".join(self._parts))
