"""Reading usage from response bytes as they pass (ratekeeper._usage), chunked as the network cuts them."""

from __future__ import annotations

import json

import pytest

from ratekeeper._tokens import Tokens
from ratekeeper._usage_reader import UsageReader, usage_of


def read(body: bytes, size: int) -> Tokens | None:
    reader = UsageReader()
    for start in range(0, len(body), size):
        reader.feed(body[start : start + size])
    return reader.result()


@pytest.mark.parametrize("size", [1, 7, 64, 10_000])
def test_a_json_body_is_read_whatever_the_chunks(size):
    body = json.dumps(
        {"id": "x", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5}}
    ).encode()
    assert read(body, size) == Tokens(12, 5)


@pytest.mark.parametrize("size", [1, 13, 10_000])
def test_anthropic_events_give_input_from_the_start_and_output_from_the_last_delta(size):
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 33, "output_tokens": 1}}},
        {"type": "content_block_delta", "delta": {"text": "usage"}},
        {"type": "message_delta", "usage": {"output_tokens": 9}},
        {"type": "message_delta", "usage": {"output_tokens": 21}},
    ]
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()
    assert read(body, size) == Tokens(33, 21)


def test_a_usage_member_inside_an_echoed_tool_schema_is_not_taken_for_the_usage():
    body = json.dumps(
        {
            "tools": [{"parameters": {"properties": {"usage": {"type": "string"}}}}],
            "usage": {"input_tokens": 4, "output_tokens": 2},
            "metadata": {"note": "usage"},
        }
    ).encode()
    assert usage_of(body) == Tokens(4, 2)
    assert usage_of(b'{"tools": [{"usage": {"type": "string"}}]}') is None


def test_gemini_counts_thoughts_as_output():
    body = b'{"usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 3, "thoughtsTokenCount": 5}}'
    assert usage_of(body) == Tokens(8, 8)


def test_a_body_that_reports_nothing_gives_none():
    assert read(b'{"data": []}', 4) is None
    assert read(b"data: [DONE]\n\n", 4) is None
    assert read(b"", 4) is None
