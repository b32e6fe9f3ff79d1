"""Token counts a response reports: its ``usage``, whatever the response's shape.

Every kind of response the model endpoints send is understood: OpenAI's chat,
completions, embeddings and Responses bodies, Anthropic's messages (cache
writes included), Gemini's ``usageMetadata``, as SDK objects or as dicts
parsed from JSON, and the events of a stream (parsed, or the raw bytes of a
server-sent-events body, read as they arrive by :class:`StreamUsage`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["StreamUsage", "Tokens", "from_body", "from_stream_item", "from_usage"]


@dataclass(frozen=True)
class Tokens:
    """Input and output tokens of one call (estimated or counted)."""

    input: int = 0
    output: int = 0


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def from_usage(usage: Any) -> Optional[Tokens]:
    """Counts from a response's ``usage`` (OpenAI chat/completions/embeddings/responses, Anthropic).

    Anthropic's input includes tokens written to its prompt cache (they count
    against the input budget); tokens read from the cache do not. Gemini's
    ``usageMetadata`` is read too (thinking tokens count as output).

    >>> from_usage({"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15})
    Tokens(input=12, output=3)
    """
    if usage is None:
        return None
    prompt = _get(usage, "prompt_tokens")
    if prompt is not None:
        total = _int(_get(usage, "total_tokens"))
        completion = _int(_get(usage, "completion_tokens"))
        return Tokens(input=_int(prompt), output=max(completion, total - _int(prompt)))
    input_tokens = _get(usage, "input_tokens")
    output_tokens = _get(usage, "output_tokens")
    if input_tokens is None and output_tokens is None:
        return _from_gemini(usage)
    cache_writes = _int(_get(usage, "cache_creation_input_tokens"))
    return Tokens(input=_int(input_tokens) + cache_writes, output=_int(output_tokens))


def _from_gemini(usage: Any) -> Optional[Tokens]:
    prompt = _get(usage, "promptTokenCount")
    if prompt is None:
        prompt = _get(usage, "prompt_token_count")  # the google-genai SDK's objects
    if prompt is None:
        return None
    output = 0
    for name in ("candidatesTokenCount", "candidates_token_count"):
        output += _int(_get(usage, name))
    for name in ("thoughtsTokenCount", "thoughts_token_count"):
        output += _int(_get(usage, name))
    return Tokens(input=_int(prompt), output=output)


def from_body(body: Any) -> Optional[Tokens]:
    """Counts from a whole response body (a dict parsed from JSON, or an SDK object).

    >>> from_body({"type": "message", "usage": {"input_tokens": 9, "output_tokens": 4}})
    Tokens(input=9, output=4)
    >>> from_body({"usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2}})
    Tokens(input=5, output=2)
    """
    if body is None:
        return None
    usage = _get(body, "usage")
    if usage is None:
        usage = _get(body, "usageMetadata")
        if usage is None:
            usage = _get(body, "usage_metadata")
    return from_usage(usage)


def from_stream_item(item: Any, seen: Optional[Tokens]) -> Optional[Tokens]:
    """The usage a stream item reports, merged with what earlier items reported.

    ``item`` is an SDK event object or a dict parsed from the event's JSON.
    OpenAI chat/completions: the last chunk's ``usage`` (with
    ``stream_options={"include_usage": True}``); Responses: the
    ``response.completed`` event; Anthropic: ``message_start`` (input) then
    ``message_delta`` (output so far, cumulative); Gemini: each chunk's
    ``usageMetadata`` (the last one is the total).

    >>> start = {"type": "message_start", "message": {"usage": {"input_tokens": 7}}}
    >>> from_stream_item({"type": "message_delta", "usage": {"output_tokens": 3}},
    ...                  from_stream_item(start, None))
    Tokens(input=7, output=3)
    """
    kind = _get(item, "type")
    if kind == "message_start":
        found = from_usage(_get(_get(item, "message"), "usage"))
    elif kind == "message_delta":
        delta = from_usage(_get(item, "usage"))
        if delta is None:
            return seen
        earlier_input = seen.input if seen is not None else 0
        return Tokens(input=max(earlier_input, delta.input), output=delta.output)
    elif kind in ("response.completed", "response.incomplete", "response.failed"):
        found = from_usage(_get(_get(item, "response"), "usage"))
    else:
        found = from_body(item)
    return found if found is not None else seen


# A stream's bytes are searched for a usage object before any JSON is parsed:
# content deltas, the bulk of a stream, carry none (or ``"usage": null``).
_USAGE = re.compile(rb'"usage(?:Metadata)?"\s*:\s*\{')
_MAX_EVENT = 8 * 1024 * 1024  # an event line longer than this is skipped, not buffered


class StreamUsage:
    """Reads the usage out of a server-sent-events body, fed as its bytes arrive.

    Only the lines that carry a ``usage`` object are parsed, so feeding a
    long stream costs one search per chunk.

    >>> reader = StreamUsage()
    >>> reader.feed(b'data: {"choices": []}\\n\\ndata: {"usage": {"prompt_tokens": 4, ')
    >>> reader.feed(b'"completion_tokens": 2}}\\n\\ndata: [DONE]\\n\\n')
    >>> reader.tokens
    Tokens(input=4, output=2)
    """

    __slots__ = ("_pending", "_skipping", "tokens")

    def __init__(self) -> None:
        self.tokens: Optional[Tokens] = None
        self._pending = b""
        self._skipping = False  # inside an oversized line: drop up to its end

    def feed(self, chunk: bytes) -> None:
        """Takes the next bytes of the body (any split: lines may span chunks)."""
        data = self._pending + chunk if self._pending else chunk
        last = data.rfind(b"\n")
        start = 0
        if last >= 0 and self._skipping:
            start, self._skipping = data.find(b"\n") + 1, False
        if last >= 0 and start <= last:
            self._scan(data, start, last)
        rest = data[last + 1 :]
        if len(rest) > _MAX_EVENT:
            rest, self._skipping = b"", True
        self._pending = rest

    def close(self) -> None:
        """The body ended: reads a last line that had no newline."""
        if self._pending and not self._skipping:
            self._scan(self._pending, 0, len(self._pending))
        self._pending = b""

    def _scan(self, data: bytes, start: int, end: int) -> None:
        # Each hit's whole line, in order (an Anthropic message_start comes
        # before its message_delta); ``at`` is always at a line's start.
        at = start
        while at < end:
            hit = data.find(b'"usage', at, end)  # a plain search first: most chunks stop here
            found = None if hit < 0 else _USAGE.search(data, hit, end)
            if found is None:
                return
            hit = found.start()
            line_start = data.rfind(b"\n", at, hit) + 1 or at
            line_end = data.find(b"\n", hit, end)
            if line_end < 0:
                line_end = end
            self._line(data[line_start:line_end])
            at = line_end + 1

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        try:
            event = json.loads(line[5:])
        except ValueError:
            return
        if isinstance(event, Mapping):
            self.tokens = from_stream_item(event, self.tokens)
