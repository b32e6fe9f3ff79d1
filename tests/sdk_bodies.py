"""Well-formed OpenAI and Anthropic success bodies (plain and streamed) for scripted_server.py.

success_body(hit, usage=(10, 5))       # chat, completions, embeddings, responses,
"".join(stream_events(hit, (10, 5)))   # messages, count_tokens, models, batches, and
                                       # Gemini's generateContent; streams as SSE text
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scripted_server import Hit


def success_body(hit: Hit, usage: tuple[int, int]) -> Any:
    prompt, completion = usage
    model = hit.model or "model"
    path = hit.path
    if path.endswith("/count_tokens"):
        return {"input_tokens": prompt}
    if path.endswith("/batches"):
        return {"object": "list", "data": [], "has_more": False, "first_id": None, "last_id": None}
    if path.endswith(":generateContent") or path.endswith(":streamGenerateContent"):
        return gemini_body(prompt, completion)
    if path.endswith("/models"):
        if "anthropic-version" in hit.headers:
            return {
                "data": [
                    {
                        "id": "claude-x",
                        "type": "model",
                        "display_name": "Claude",
                        "created_at": "2024-01-01T00:00:00Z",
                    }
                ],
                "has_more": False,
                "first_id": "claude-x",
                "last_id": "claude-x",
            }
        return {
            "object": "list",
            "data": [{"id": "gpt-x", "object": "model", "created": 0, "owned_by": "me"}],
        }
    openai_usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if path.endswith("/chat/completions"):
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ],
            "usage": openai_usage,
        }
    if path.endswith("/completions"):
        return {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 0,
            "model": model,
            "choices": [{"text": "ok", "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": openai_usage,
        }
    if path.endswith("/embeddings"):
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 1.0]}],
            "model": model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }
    if path.endswith("/responses"):
        return _response(model, prompt, completion)
    if path.endswith("/messages"):
        return _anthropic_message(model, prompt, completion)
    return {"ok": True}


def gemini_body(prompt: int, completion: int) -> dict[str, Any]:
    """Gemini's generateContent answer (also one chunk of its stream)."""
    return {
        "candidates": [
            {
                "content": {"parts": [{"text": "ok"}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": prompt,
            "candidatesTokenCount": completion,
            "totalTokenCount": prompt + completion,
        },
        "modelVersion": "gemini-x",
    }


def gemini_rate_limited_body(delay: str) -> dict[str, Any]:
    """Gemini's 429: RESOURCE_EXHAUSTED, the wait in RetryInfo.retryDelay (e.g. "1s")."""
    return {
        "error": {
            "code": 429,
            "message": "Resource has been exhausted (e.g. check quota).",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}],
        }
    }


def _response(model: str, prompt: int, completion: int, status: str = "completed") -> Any:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 0,
        "model": model,
        "status": status,
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "ok", "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": prompt + completion,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def _anthropic_message(model: str, prompt: int, completion: int) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


def stream_events(hit: Hit, usage: tuple[int, int]) -> Iterator[str]:
    prompt, completion = usage
    model = hit.model or "model"
    if hit.path.endswith(":streamGenerateContent"):
        first = gemini_body(prompt, 1)
        first["candidates"][0].pop("finishReason")
        yield f"data: {json.dumps(first)}\r\n\r\n"
        yield f"data: {json.dumps(gemini_body(prompt, completion))}\r\n\r\n"
        return
    if hit.path.endswith("/responses"):
        yield from _response_events(model, prompt, completion)
        return
    if hit.path.endswith("/messages"):
        start = _anthropic_message(model, prompt, 1)
        start["content"] = []
        events: list[tuple[str, Any]] = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "ok"},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": completion},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        for name, data in events:
            yield f"event: {name}\ndata: {json.dumps(data)}\n\n"
        return
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": None}
        ],
    }
    yield f"data: {json.dumps(chunk)}\n\n"
    options = hit.body.get("stream_options") or {}
    if options.get("include_usage"):
        last = dict(
            chunk,
            choices=[],
            usage={
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        )
        yield f"data: {json.dumps(last)}\n\n"
    yield "data: [DONE]\n\n"


def _response_events(model: str, prompt: int, completion: int) -> Iterator[str]:
    done = _response(model, prompt, completion)
    started = dict(done, status="in_progress", output=[], usage=None)
    item = done["output"][0]
    part = item["content"][0]
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}},
        {
            "type": "response.content_part.added",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "part": {**part, "text": ""},
        },
        {
            "type": "response.output_text.delta",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "delta": part["text"],
            "logprobs": [],
        },
        {
            "type": "response.output_text.done",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "text": part["text"],
            "logprobs": [],
        },
        {
            "type": "response.content_part.done",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "part": part,
        },
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": done},
    ]
    for number, event in enumerate(events):
        event["sequence_number"] = number
        yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
