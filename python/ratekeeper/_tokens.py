"""Token estimates before an LLM call and token counts from its ``usage`` after.

An estimate counts what the model reads: message and prompt text, system
prompts and instructions, tool and function schemas and structured-output
schemas (as their JSON), tool calls and results, images, documents; plus 4
tokens per message and 3 per reply. Text is counted with tiktoken for OpenAI's
models when it is installed and its encoding is loaded (see ``_encodings``);
otherwise from its characters: 4 ASCII characters per token, 2 per token for
other alphabetic scripts (Cyrillic, Greek, Arabic, Hebrew...), and one token
per CJK, kana, Hangul or other wide character. The output is the budget the
request allows (``max_tokens`` and its renamings, times ``n``). ``wrap``
reconciles the estimate with the exact ``usage`` the server reports, so it
only has to be good enough to not overspend while the call is in flight.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Callable, Optional

from . import _images
from ._encodings import encoding_for
from ._usage import StreamUsage, Tokens, from_body, from_stream_item, from_usage

__all__ = [
    "StreamUsage",
    "Tokens",
    "count_text",
    "estimate",
    "estimate_body",
    "from_body",
    "from_stream_item",
    "from_usage",
]

# Keys whose values are read by the model. Others ("role", "model", ids, URLs,
# base64 data) are not counted.
_TEXT_KEYS = frozenset(
    {
        "content", "text", "input", "prompt", "messages", "system", "instructions",
        "arguments", "output", "description", "tool_calls", "refusal",
        "thinking", "title", "context", "contents", "parts", "systemInstruction",
        "system_instruction",
    }
)  # fmt: skip
# Parts of a message counted as their JSON (schemas, call arguments).
_JSON_PARTS = frozenset(
    {"input_schema", "parameters", "function_call", "functionCall", "functionResponse"}
)
# Request keys counted as their JSON: what the provider turns into prompt text.
_JSON_KEYS = ("tools", "functions", "response_format", "text", "tool_config", "toolConfig")
_OUTPUT_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_PER_MESSAGE = 4
_PER_REPLY = 3
_MAX_DEPTH = 24
_MAX_NODES = 200_000
_WIDE = re.compile("[\u0800-\U0010ffff]+")  # 3- and 4-byte UTF-8: CJK, kana, Hangul, emoji...


class _Tally:
    """What a walk over a request found: text to count, and tokens already known."""

    __slots__ = ("fixed", "nodes", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.fixed = 0
        self.nodes = 0  # values visited: a self-referencing request stops, never hangs


def count_text(text: str, model: Any = None) -> int:
    """Tokens in ``text``: tiktoken's count for an OpenAI model when loaded, else an estimate.

    >>> count_text("hello world, how are you?"), count_text("你好世界")
    (7, 4)
    """
    encoding = encoding_for(model)
    if encoding is not None:
        encode = getattr(encoding, "encode_ordinary", None) or encoding.encode
        return len(encode(text))
    return _from_characters(text)


def _from_characters(text: str) -> int:
    length = len(text)
    if text.isascii():
        return (length + 3) // 4
    wide = sum(map(len, _WIDE.findall(text)))
    # The rest is ASCII (1 UTF-8 byte) or a 2-byte script; 4-byte characters
    # (emoji) leave one extra byte each, counted as half a token more.
    two_byte = max(0, len(text.encode("utf-8", "surrogatepass")) - length - 2 * wide)
    ascii_chars = max(0, length - wide - two_byte)
    return (ascii_chars + 3) // 4 + (two_byte + 1) // 2 + wide


def _json(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):  # circular or too deep: not counted
        return ""


def _image_url(part: Mapping[str, Any], tally: _Tally, depth: int) -> None:
    image = part.get("image_url")
    url, detail = (
        (image.get("url"), image.get("detail"))
        if isinstance(image, Mapping)
        else (image, part.get("detail"))
    )
    tally.fixed += _images.openai_image(url if isinstance(url, str) else None, detail)


def _anthropic_image(part: Mapping[str, Any], tally: _Tally, depth: int) -> None:
    source = part.get("source")
    data = source.get("data") if isinstance(source, Mapping) else None
    tally.fixed += _images.anthropic_image(data if isinstance(data, str) else None)


def _document(part: Mapping[str, Any], tally: _Tally, depth: int) -> None:
    source = part.get("source")
    for key in ("title", "context"):
        _walk(part.get(key), tally, depth + 1)
    if not isinstance(source, Mapping):
        tally.fixed += _images.PDF_PAGE
    elif source.get("type") == "text":
        _walk(source.get("data"), tally, depth + 1)
    elif source.get("type") == "content":
        _walk(source.get("content"), tally, depth + 1)
    else:
        data = source.get("data")
        tally.fixed += _images.pdf_tokens(data if isinstance(data, str) else None)


def _file(part: Mapping[str, Any], tally: _Tally, depth: int) -> None:
    inner = part.get("file")
    holder = inner if isinstance(inner, Mapping) else part
    data = holder.get("file_data")
    tally.fixed += _images.pdf_tokens(data if isinstance(data, str) else None)


def _as_json(part: Mapping[str, Any], tally: _Tally, depth: int) -> None:
    tally.texts.append(_json(part))


_PARTS: dict[str, Callable[[Mapping[str, Any], _Tally, int], None]] = {
    "image_url": _image_url,
    "input_image": _image_url,
    "image": _anthropic_image,
    "document": _document,
    "file": _file,
    "input_file": _file,
    "function": _as_json,
    "function_call": _as_json,
    "tool_use": _as_json,
    "server_tool_use": _as_json,
}


def _walk(value: Any, tally: _Tally, depth: int) -> None:
    tally.nodes += 1
    if isinstance(value, str):
        tally.texts.append(value)
    elif depth > _MAX_DEPTH or tally.nodes > _MAX_NODES:
        return
    elif isinstance(value, Mapping):
        kind = value.get("type")
        handler = _PARTS.get(kind) if isinstance(kind, str) else None
        if handler is not None:
            handler(value, tally, depth)
            return
        if "role" in value:
            tally.fixed += _PER_MESSAGE
        if "inline_data" in value or "inlineData" in value:  # Gemini: 258 per image or page
            tally.fixed += 258
        for key, item in value.items():
            if key in _TEXT_KEYS:
                _walk(item, tally, depth + 1)
            elif key in _JSON_PARTS:
                tally.texts.append(_json(item))
    elif isinstance(value, (list, tuple)):
        if value and isinstance(value[0], int) and not isinstance(value[0], bool):
            tally.fixed += len(value)  # token ids (embeddings and completions accept them)
            return
        for item in value:
            _walk(item, tally, depth + 1)


def _output(body: Mapping[str, Any], path: str) -> int:
    output = 0
    for key in _OUTPUT_KEYS:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            output = value
            break
    choices = body.get("n")
    config = body.get("generationConfig") or body.get("generation_config")
    if isinstance(config, Mapping):  # Gemini
        for key in ("maxOutputTokens", "max_output_tokens"):
            value = config.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                output = value
        choices = config.get("candidateCount", config.get("candidate_count", choices))
    elif not output and path.endswith("/completions") and not path.endswith("chat/completions"):
        output = 16  # the legacy completions endpoint's default max_tokens
    if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1:
        output *= choices
    return output


def estimate_body(body: Mapping[str, Any], path: str = "", model: Any = None) -> Tokens:
    """The estimate for one request: its JSON ``body`` (a dict) sent to ``path``.

    ``path`` is the URL path (``/v1/chat/completions``, ``/v1/responses``,
    ``/v1/embeddings``, ``/v1/completions``, ``/v1/messages``,
    ``/v1/messages/count_tokens``, Gemini's ``...:generateContent``); it
    decides the default output budget. ``model`` (default: the body's) picks
    the tokenizer.

    >>> estimate_body({"model": "m", "input": "x" * 400}, "/v1/embeddings")
    Tokens(input=100, output=0)
    """
    tally = _Tally()
    messages = body.get("messages")
    if messages is not None:
        tally.fixed += _PER_REPLY
    for key, value in body.items():
        if key in _JSON_KEYS and isinstance(value, (Mapping, list, tuple)):
            if value:
                tally.texts.append(_json(value))
        elif key in _TEXT_KEYS:
            _walk(value, tally, 0)
    texts = tally.texts
    text = texts[0] if len(texts) == 1 else "\n".join(texts)
    counted = count_text(text, body.get("model") if model is None else model) if text else 0
    output = (
        0
        if path.endswith(("/embeddings", "/count_tokens", ":countTokens"))
        else _output(body, path)
    )
    return Tokens(input=counted + tally.fixed, output=output)


def estimate(kwargs: Mapping[str, Any], path: str = "") -> Tokens:
    """The estimate for one SDK call's keyword arguments (the request body's fields).

    >>> estimate({"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50})
    Tokens(input=107, output=50)
    """
    return estimate_body(kwargs, path)


def usage(response: Any) -> Optional[Tokens]:
    """Counts from any response: an SDK object, a parsed body, JSON or SSE bytes, a ``usage``.

    >>> usage(b'{"usage": {"input_tokens": 3, "output_tokens": 1}}')
    Tokens(input=3, output=1)
    """
    if isinstance(response, str):
        response = response.encode("utf-8", "surrogatepass")
    if isinstance(response, (bytes, bytearray, memoryview)):
        data = bytes(response)
        if data.lstrip()[:1] in (b"{", b"["):
            try:
                response = json.loads(data)
            except ValueError:
                return None
            if isinstance(response, list):  # Gemini's array of chunks: the last has the total
                response = response[-1] if response else None
        else:
            reader = StreamUsage()
            reader.feed(data)
            reader.close()
            return reader.tokens
    found = from_body(response)
    return found if found is not None else from_usage(response)
