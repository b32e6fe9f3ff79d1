"""What the mock provider answers: OpenAI and Anthropic response bodies and SSE streams.

Token counts are estimated the way a client can predict them: one token per
four characters of prompt text (rounded up), and as many completion tokens
as ``max_tokens`` asks for (or ``default_completion`` when it is absent). The
reply text has exactly that many words, so ``usage`` always agrees with it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any, Optional

WORDS = ("this", "is", "a", "mock", "reply", "from", "ratekeeper", "testing")
MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "claude-3-5-haiku-latest")


def estimate_tokens(text: str) -> int:
    """Prompt tokens for ``text``: one per four characters, rounded up.

    >>> estimate_tokens("hello world!")
    3
    """
    return math.ceil(len(text) / 4)


def text_of(value: Any) -> str:
    """All the text in a prompt: strings, content parts, messages, lists of them."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        parts = [text_of(value.get(key)) for key in ("content", "text", "input")]
        return "".join(parts)
    if isinstance(value, list):
        return "".join(text_of(item) for item in value)
    return ""


def prompt_text(route: str, body: dict[str, Any]) -> str:
    """The text of a request's prompt, by route."""
    if route == "gemini":
        contents = body.get("contents")
        items = contents if isinstance(contents, list) else [contents]
        return "".join(
            text_of(i.get("parts")) if isinstance(i, dict) else text_of(i) for i in items
        )
    if route == "chat":
        return text_of(body.get("messages"))
    if route in ("messages", "count_tokens"):
        return text_of(body.get("system")) + text_of(body.get("messages"))
    if route == "completions":
        return text_of(body.get("prompt"))
    return text_of(body.get("input"))


def completion_tokens(route: str, body: dict[str, Any], default: int) -> int:
    """Tokens the reply will have: what the request allows, else ``default``."""
    if route in ("embeddings", "count_tokens"):
        return 0
    config = body.get("generationConfig")
    if route == "gemini" and isinstance(config, dict):
        body = {"max_tokens": config.get("maxOutputTokens")}
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def reply_text(n_words: int) -> str:
    """A reply of ``n_words`` words."""
    return " ".join(WORDS[i % len(WORDS)] for i in range(n_words))


def _text(text: Optional[str], n_words: int) -> str:
    return reply_text(n_words) if text is None else text


def _id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def openai_usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def chat_completion(
    model: str, prompt: int, completion: int, text: Optional[str] = None
) -> dict[str, Any]:
    return {
        "id": _id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": _text(text, completion)},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": openai_usage(prompt, completion),
    }


def text_completion(
    model: str, prompt: int, completion: int, text: Optional[str] = None
) -> dict[str, Any]:
    return {
        "id": _id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "text": _text(text, completion), "finish_reason": "stop", "logprobs": None}
        ],
        "usage": openai_usage(prompt, completion),
    }


def _vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [(digest[i % len(digest)] - 128) / 128.0 for i in range(dimensions)]


def embeddings(model: str, body: dict[str, Any], prompt: int) -> dict[str, Any]:
    raw = body.get("input")
    inputs: list[Any] = raw if isinstance(raw, list) else [raw]
    dims = body.get("dimensions")
    size = dims if isinstance(dims, int) and 0 < dims <= 4096 else 8
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(json.dumps(item), size)}
        for i, item in enumerate(inputs)
    ]
    usage = {"prompt_tokens": prompt, "total_tokens": prompt}
    return {"object": "list", "data": data, "model": model, "usage": usage}


def models() -> dict[str, Any]:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "ratekeeper"} for m in MODELS]
    return {"object": "list", "data": data}


def response_object(
    model: str, prompt: int, completion: int, text: Optional[str] = None
) -> dict[str, Any]:
    """A Responses API (``/v1/responses``) result."""
    part = {"type": "output_text", "text": _text(text, completion), "annotations": []}
    message = {
        "type": "message",
        "id": _id("msg_"),
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    return {
        "id": _id("resp_"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": [message],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        },
    }


def anthropic_message(
    model: str, prompt: int, completion: int, text: Optional[str] = None
) -> dict[str, Any]:
    return {
        "id": _id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": _text(text, completion)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


def _chunks(n_words: int, per_chunk: int = 8) -> Iterable[str]:
    words = reply_text(n_words).split(" ") if n_words else []
    for start in range(0, len(words), per_chunk):
        piece = " ".join(words[start : start + per_chunk])
        yield piece if start == 0 else " " + piece


def _sse(data: Any, event: str = "") -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


async def openai_chat_stream(
    model: str, prompt: int, completion: int, include_usage: bool
) -> AsyncIterator[bytes]:
    """``chat.completion.chunk`` events, a usage chunk if asked for, then ``[DONE]``."""
    base = {"id": _id("chatcmpl-"), "object": "chat.completion.chunk", "created": int(time.time())}
    base["model"] = model
    first = {"role": "assistant", "content": ""}
    yield _sse({**base, "choices": [{"index": 0, "delta": first, "finish_reason": None}]})
    for piece in _chunks(completion):
        delta = {"content": piece}
        yield _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if include_usage:
        yield _sse({**base, "choices": [], "usage": openai_usage(prompt, completion)})
    yield b"data: [DONE]\n\n"


async def anthropic_stream(model: str, prompt: int, completion: int) -> AsyncIterator[bytes]:
    """The Messages API event sequence, usage in ``message_start`` and ``message_delta``."""
    start = anthropic_message(model, prompt, 0)
    start.update(content=[], stop_reason=None)
    start["usage"] = {"input_tokens": prompt, "output_tokens": 0}
    yield _sse({"type": "message_start", "message": start}, "message_start")
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    yield _sse(block, "content_block_start")
    for piece in _chunks(completion):
        delta = {"type": "content_block_delta", "index": 0}
        delta["delta"] = {"type": "text_delta", "text": piece}
        yield _sse(delta, "content_block_delta")
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    end = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}
    end["usage"] = {"output_tokens": completion}
    yield _sse(end, "message_delta")
    yield _sse({"type": "message_stop"}, "message_stop")


async def responses_stream(
    model: str, prompt: int, completion: int, text: Optional[str] = None
) -> AsyncIterator[bytes]:
    """The Responses API's streamed events, from ``response.created`` to ``response.completed``."""
    final = response_object(model, prompt, completion, text)
    item = final["output"][0]
    full = item["content"][0]["text"]
    pending = {**final, "status": "in_progress", "output": [], "usage": None}
    where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    empty_part = {"type": "output_text", "text": "", "annotations": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **where, "part": empty_part},
    ]
    pieces = list(_chunks(completion)) if text is None else [full]
    events += [
        {"type": "response.output_text.delta", **where, "delta": p, "logprobs": []} for p in pieces
    ]
    events += [
        {"type": "response.output_text.done", **where, "text": full, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": item["content"][0]},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": final},
    ]
    for number, event in enumerate(events):
        yield _sse({**event, "sequence_number": number}, event["type"])


def gemini_response(
    model: str, prompt: int, completion: int, text: Optional[str] = None
) -> dict[str, Any]:
    """A Gemini ``generateContent`` answer with its ``usageMetadata``."""
    return {
        "candidates": [
            {
                "content": {"parts": [{"text": _text(text, completion)}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": prompt,
            "candidatesTokenCount": completion,
            "totalTokenCount": prompt + completion,
        },
        "modelVersion": model,
    }


def gemini_error(status: int, message: str, retry_delay: Optional[float]) -> dict[str, Any]:
    """Google's error body; a 429 is ``RESOURCE_EXHAUSTED`` with ``RetryInfo.retryDelay``."""
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 429: "RESOURCE_EXHAUSTED"}
    names.update({500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"})
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": names.get(status, "UNKNOWN"),
    }
    if retry_delay is not None:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{max(1, math.ceil(retry_delay))}s",
            }
        ]
    return {"error": error}
