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


def _from_end(body: bytes, key: bytes) -> Optional[Tokens]:
    """The last member ``key`` of ``body`` that reads as usage (providers put it last).

    A member of that name may also sit in a tool schema the body echoes: the
    search goes on towards the start until one reads as usage.
    """
    end = len(body)
    while True:
        at = body.rfind(key, 0, end)
        if at < 0:
            return None
        found = from_usage(_value_after_key(body[at:].decode("utf-8", "replace")))
        if found is not None:
            return found
        end = at


def usage_of(body: bytes) -> Optional[Tokens]:
    """The usage a whole JSON response body reports, or None.

    >>> usage_of(b'{"id": "x", "usage": {"prompt_tokens": 12, "completion_tokens": 3}}')
    Tokens(input=12, output=3)
    """
    if b'"usageMetadata"' in body:
        return _from_end(body, b'"usageMetadata"')
    return _from_end(body, b'"usage"')


class UsageReader:
    """Fed a response body chunk by chunk; ``result()`` is the usage it reported, or None.

    JSON or an event stream is told from the first bytes (``{``/``[`` or not),
    which costs less than reading the ``content-type`` header.

    >>> reader = UsageReader()
    >>> reader.feed(b'{"usage": {"input_tokens": 9, "output_tokens": 4}}')
    >>> reader.result()
    Tokens(input=9, output=4)
    """

    __slots__ = ("_parts", "_size", "_stream")

    def __init__(self) -> None:
        self._stream: Optional[StreamUsage] = None
        self._parts: Optional[list[bytes]] = None  # None until the first byte tells the kind
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        """Takes the next bytes of the body."""
        if self._stream is not None:
            self._stream.feed(chunk)
            return
        if self._parts is None:
            start = chunk.lstrip()[:1]
            if not start:
                return
            if start not in (b"{", b"["):
                self._stream = StreamUsage()
                self._stream.feed(chunk)
                return
            self._parts = []
        self._size += len(chunk)
        if self._size <= _MAX_JSON:
            self._parts.append(chunk)

    def result(self) -> Optional[Tokens]:
        """The usage the whole body reported (call once the body ended)."""
        if self._stream is not None:
            self._stream.close()
            return self._stream.tokens
        parts = self._parts
        if not parts or self._size > _MAX_JSON:
            return None
        return usage_of(parts[0] if len(parts) == 1 else b"".join(parts))
