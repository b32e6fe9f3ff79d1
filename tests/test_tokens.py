"""ratekeeper.tokens: estimates (text, CJK, images, tools, documents, output) and usage counts."""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tiktoken

from ratekeeper import _encodings, tokens
from ratekeeper.testing import MockProvider
from ratekeeper.tokens import Tokens


@pytest.fixture(autouse=True)
def fresh_encodings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no encoding loaded or failed (the cache is process-wide)."""
    monkeypatch.setattr(_encodings, "_state", {})


def user(content: Any) -> dict[str, Any]:
    return {"model": "claude-x", "messages": [{"role": "user", "content": content}]}


def png(width: int, height: int) -> str:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk
    data += struct.pack(">I", zlib.crc32(chunk)) + b"\x00" * 64
    return base64.b64encode(data).decode()


def jpeg(width: int, height: int) -> str:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    exif = b"\xff\xe1" + struct.pack(">H", 2 + 3000) + b"\x00" * 3000  # pushes SOF past the head
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x00" * 9
    return base64.b64encode(b"\xff\xd8" + app0 + exif + sof + b"\xff\xd9").decode()


def pdf(pages: int) -> str:
    body = b"%%PDF-1.4\n1 0 obj << /Type /Pages /Count %d >> endobj\n" % pages
    for number in range(pages):
        body += b"%d 0 obj << /Type /Page /Parent 1 0 R >> endobj\n" % (number + 2)
    return base64.b64encode(body).decode()


# -- text ----------------------------------------------------------------------


def test_english_is_about_four_characters_a_token() -> None:
    estimate = tokens.estimate(user("x" * 400))
    assert estimate == Tokens(input=400 // 4 + 4 + 3, output=0)


def test_cjk_counts_one_token_a_character_not_a_quarter() -> None:
    chinese = "我们今天讨论速率限制的实现细节" * 10  # 150 characters
    japanese = "レート制限についての説明です" * 10
    korean = "속도 제한에 대한 설명입니다" * 10
    assert tokens.count_text(chinese) == 150
    assert tokens.count_text(japanese) == len(japanese)
    # Korean: the spaces are ASCII (4 a token), the Hangul one token each.
    hangul = sum(1 for c in korean if c != " ")
    assert tokens.count_text(korean) == hangul + (len(korean) - hangul + 3) // 4
    assert tokens.estimate(user(chinese)).input == 150 + 7


def test_other_alphabets_count_two_characters_a_token() -> None:
    russian = "привет" * 20  # 120 Cyrillic letters
    assert tokens.count_text(russian) == 60
    assert tokens.count_text("naïve café") == 3  # mostly ASCII: 8/4 + 2 accented / 2


# -- images and documents ------------------------------------------------------


def openai_image(url: str, detail: str = "auto") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


@pytest.mark.parametrize(
    ("width", "height", "detail", "expected"),
    [
        (1024, 1024, "high", 765),  # OpenAI's worked examples
        (2048, 4096, "high", 1105),
        (4096, 8192, "low", 85),
        (512, 512, "auto", 255),
    ],
)
def test_openai_images_follow_the_tile_rule(
    width: int, height: int, detail: str, expected: int
) -> None:
    url = "data:image/png;base64," + png(width, height)
    body = user([{"type": "text", "text": "what is it?"}, openai_image(url, detail)])
    assert tokens.estimate(body).input == expected + 3 + 7  # image + "what is it?"
    responses = {"model": "gpt-x", "input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": url, "detail": detail}]}]}  # fmt: skip
    assert tokens.estimate(responses).input == expected + 4


def test_image_sizes_are_read_from_jpeg_headers_too() -> None:
    url = "data:image/jpeg;base64," + jpeg(2048, 4096)
    assert tokens.estimate(user([openai_image(url, "high")])).input == 1105 + 7


def test_an_image_of_unknown_size_costs_a_fixed_default() -> None:
    body = user([openai_image("https://example.com/cat.png")])
    assert tokens.estimate(body).input == 765 + 7
    assert tokens.estimate(user([openai_image("https://x/c.png", "low")])).input == 85 + 7


def test_anthropic_images_cost_width_times_height_over_750() -> None:
    def image(source: dict[str, Any]) -> dict[str, Any]:
        return user([{"type": "image", "source": source}])

    small = {"type": "base64", "media_type": "image/png", "data": png(1000, 1000)}
    assert tokens.estimate(image(small)).input == 1334 + 7
    huge = {"type": "base64", "media_type": "image/png", "data": png(8000, 8000)}
    assert tokens.estimate(image(huge)).input == 1600 + 7
    by_url = {"type": "url", "url": "https://example.com/cat.png"}
    assert tokens.estimate(image(by_url)).input == 1600 + 7


def test_documents_count_their_text_or_pages() -> None:
    text_doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                               "data": "y" * 800}, "title": "t" * 40}  # fmt: skip
    # Pieces of text are counted together, joined by newlines.
    assert tokens.estimate(user([text_doc])).input == (841 + 3) // 4 + 7
    pdf_doc = {"type": "document", "source": {"type": "base64", "media_type":
                                              "application/pdf", "data": pdf(3)}}  # fmt: skip
    assert tokens.estimate(user([pdf_doc])).input == 3 * 3000 + 7
    openai_file = {"type": "file", "file": {"filename": "a.pdf",
                                            "file_data": "data:application/pdf;base64," + pdf(2)}}  # fmt: skip
    assert tokens.estimate(user([openai_file])).input == 2 * 3000 + 7


# -- tools, system, structured output ------------------------------------------

WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city, in degrees Celsius and a one-line summary.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city's English name"}},
        "required": ["city"],
    },
}


def json_tokens(value: Any) -> int:
    return tokens.count_text(json.dumps(value, separators=(",", ":")))


def test_tool_schemas_are_counted_as_their_json() -> None:
    plain = user("hi")
    openai_tools = {**plain, "tools": [{"type": "function", "function": WEATHER}]}
    anthropic_tools = {
        **plain,
        "tools": [{"name": WEATHER["name"], "description": WEATHER["description"],
                   "input_schema": WEATHER["parameters"]}],
    }  # fmt: skip
    base = tokens.estimate(plain).input
    for body in (openai_tools, anthropic_tools):
        added = tokens.estimate(body).input - base
        assert added >= json_tokens(body["tools"]) > 40  # "\n" joins texts: one more at most
        assert added <= json_tokens(body["tools"]) + 1


def test_tool_calls_and_results_are_counted() -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}' * 10}}]}  # fmt: skip
    result = {"role": "tool", "tool_call_id": "c1", "content": "z" * 200}
    body = {"model": "m", "messages": [call, result]}
    assert tokens.estimate(body).input > 50 + 50 + 8
    anthropic = user([{"type": "tool_use", "id": "t", "name": "f", "input": {"q": "w" * 400}}])
    assert tokens.estimate(anthropic).input > 100


def test_anthropic_system_and_openai_instructions_are_counted() -> None:
    assert tokens.estimate({**user("hi"), "system": "s" * 400}).input == 100 + 1 + 7
    blocks = [{"type": "text", "text": "s" * 400, "cache_control": {"type": "ephemeral"}}]
    assert tokens.estimate({**user("hi"), "system": blocks}).input == 100 + 1 + 7
    responses = {"model": "m", "instructions": "i" * 400, "input": "hello"}
    assert tokens.estimate(responses, "/v1/responses").input == 100 + 2


def test_structured_output_schemas_are_counted() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "w", "schema": WEATHER["parameters"]}}
    body = {**user("hi"), "response_format": schema}
    assert tokens.estimate(body).input >= tokens.estimate(user("hi")).input + json_tokens(schema)


# -- output budget ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "path", "output"),
    [
        ({"max_tokens": 300}, "/v1/chat/completions", 300),
        ({"max_completion_tokens": 200, "n": 3}, "/v1/chat/completions", 600),
        ({"max_output_tokens": 90}, "/v1/responses", 90),
        ({}, "/v1/completions", 16),  # the legacy endpoint's default
        ({}, "/v1/chat/completions", 0),
        ({"max_tokens": 300}, "/v1/messages/count_tokens", 0),
        ({"generationConfig": {"maxOutputTokens": 64, "candidateCount": 2}},
         "/v1beta/models/gemini-2.0-flash:generateContent", 128),
    ],
)  # fmt: skip
def test_the_output_budget_comes_from_the_request(
    fields: dict[str, Any], path: str, output: int
) -> None:
    assert tokens.estimate({**user("hi"), **fields}, path).output == output


def test_embeddings_count_text_and_token_ids() -> None:
    assert tokens.estimate({"model": "e", "input": ["abcd" * 10, "efgh" * 10]}) == Tokens(21, 0)
    assert tokens.estimate({"model": "e", "input": [[1, 2, 3], [4, 5]]}, "/v1/embeddings") == (
        Tokens(5, 0)
    )


def test_gemini_contents_are_counted() -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "g" * 400},
                                                {"inline_data": {"mime_type": "image/png",
                                                                 "data": png(10, 10)}}]}],
        "systemInstruction": {"parts": [{"text": "s" * 40}]},
    }  # fmt: skip
    # 441 characters (two texts and a newline), one image, one message.
    assert tokens.estimate(body, "/v1beta/models/g:generateContent").input == 111 + 258 + 4


def test_deep_or_odd_requests_never_raise() -> None:
    deep: Any = "leaf"
    for _ in range(5000):
        deep = {"content": deep}
    cyclic: dict[str, Any] = {"content": []}
    cyclic["content"].append(cyclic)
    forked: list[Any] = []
    forked += [forked, forked]  # 2**depth paths if walked blindly
    odd = {"messages": [None, 3, {"role": "user", "content": b"bytes"}], "tools": {1, 2}}
    bodies = [{"messages": [deep]}, {"messages": [cyclic]}, odd, {"tools": [cyclic]}]
    document: dict[str, Any] = {"type": "document", "source": {"type": "content"}}
    document["source"]["content"] = [document, document]
    bodies += [{"messages": forked}, {"tools": [deep]}, user([document])]
    started = time.perf_counter()
    for body in bodies:
        assert tokens.estimate(body).input >= 0
    assert time.perf_counter() - started < 10.0


# -- tiktoken --------------------------------------------------------------------


def byte_encoding(name: str) -> tiktoken.Encoding:
    """A real tiktoken Encoding over bytes, with one merge ("ab"), built in-process."""
    ranks = {bytes([b]): b for b in range(256)}
    ranks[b"ab"] = 256
    return tiktoken.Encoding(
        name=name, pat_str=r"\S+|\s+", mergeable_ranks=ranks, special_tokens={}
    )


def test_tiktoken_counts_openai_models_when_its_encoding_is_loaded() -> None:
    encoding = byte_encoding("o200k_base")
    tokens.set_encoding("o200k_base", encoding)
    tokens.set_encoding("cl100k_base", None)  # gpt-4's: off, so no download is tried
    text = "abab cd " * 50
    exact = len(encoding.encode_ordinary(text))
    assert exact == 5 * 50 + 50 - 1 + 1  # every "ab" one token, other bytes one each
    for model in ("gpt-4o-mini", "gpt-4.1", "o3-mini", "gpt-5", "openai/gpt-4o"):
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        assert tokens.estimate(body).input == exact + 7
    # gpt-4 uses cl100k_base (turned off here), Claude no tiktoken encoding at all.
    for model in ("gpt-4-turbo", "claude-sonnet-4"):
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        assert tokens.estimate(body).input == tokens.count_text(text) + 7 != exact + 7
    assert tokens.load_encoding("gpt-4o") is encoding


def test_set_encoding_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="name must be one of"):
        tokens.set_encoding("p50k_nonsense", None)
    with pytest.raises(TypeError, match="encode"):
        tokens.set_encoding("cl100k_base", object())
    with pytest.raises(ValueError, match="timeout"):
        tokens.load_encoding("gpt-4o", timeout=-1)


def test_a_hanging_load_never_delays_an_estimate_and_is_tried_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    calls: list[str] = []

    def hanging(name: str) -> tiktoken.Encoding:
        calls.append(name)
        release.wait(30)
        raise ConnectionError("no network")

    monkeypatch.setattr(tiktoken, "get_encoding", hanging)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 400}]}
    started = time.perf_counter()
    estimates = {tokens.estimate(body) for _ in range(200)}
    assert time.perf_counter() - started < 5.0  # not blocked on the 30 s load
    assert estimates == {Tokens(107, 0)}  # characters, while the load hangs
    assert tokens.load_encoding("gpt-4o", timeout=0.05) is None  # still loading
    release.set()
    assert tokens.load_encoding("gpt-4o", timeout=10) is None  # failed, and remembered
    assert tokens.estimate(body) == Tokens(107, 0)
    assert tokens.load_encoding("gpt-4o", timeout=10) is None
    assert calls == ["o200k_base"]


def test_with_no_network_tiktoken_falls_back_to_characters(tmp_path: Path) -> None:
    # A fresh interpreter, an empty tiktoken cache and no DNS (as on an offline
    # machine): tiktoken's real download fails once; estimates go on.
    script = textwrap.dedent(
        """
        import socket, time
        lookups = []
        def offline(*args, **kwargs):
            lookups.append(args[0])
            raise socket.gaierror(socket.EAI_NONAME, "no network")
        socket.getaddrinfo = offline
        from ratekeeper import tokens
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 400}]}
        first = tokens.estimate(body)
        assert tokens.load_encoding("gpt-4o", timeout=60) is None
        assert tokens.load_encoding("gpt-4o-mini", timeout=60) is None
        for _ in range(100):
            assert tokens.estimate(body) == first, first
        print(first.input, len(lookups), sorted(set(lookups)))
        """
    )
    # The interpreter imports ratekeeper as this test run does (installed, or on PYTHONPATH).
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    estimate, lookups, hosts = done.stdout.split(" ", 2)
    assert estimate == "107"
    assert int(lookups) >= 1 and "openaipublic.blob.core.windows.net" in hosts
    assert list(tmp_path.iterdir()) == []


# -- usage -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"object": "chat.completion", "usage": {"prompt_tokens": 12, "completion_tokens": 3,
                                                 "total_tokens": 15}}, Tokens(12, 3)),
        ({"object": "list", "usage": {"prompt_tokens": 8, "total_tokens": 8}}, Tokens(8, 0)),
        ({"object": "response", "usage": {"input_tokens": 20, "output_tokens": 5,
          "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 25}}, Tokens(20, 5)),
        ({"type": "message", "usage": {"input_tokens": 10, "output_tokens": 4,
          "cache_creation_input_tokens": 100, "cache_read_input_tokens": 900}}, Tokens(110, 4)),
        ({"usageMetadata": {"promptTokenCount": 6, "candidatesTokenCount": 2,
                            "thoughtsTokenCount": 3, "totalTokenCount": 11}}, Tokens(6, 5)),
        ({"id": "x", "choices": []}, None),
    ],
)  # fmt: skip
def test_usage_is_read_from_every_response_body(body: dict[str, Any], expected: Any) -> None:
    assert tokens.usage(body) == expected
    assert tokens.usage(json.dumps(body).encode()) == expected


def split_feed(data: bytes, size: int) -> Tokens | None:
    reader = tokens.StreamUsage()
    for start in range(0, len(data), size):
        reader.feed(data[start : start + size])
    reader.close()
    return reader.tokens


@pytest.fixture(scope="module")
def provider() -> Iterator[MockProvider]:
    with MockProvider(rpm=None) as p:
        yield p


def test_usage_is_read_from_real_sse_streams_split_anywhere(provider: MockProvider) -> None:
    hello = [{"role": "user", "content": "hello there"}]
    with httpx.Client(timeout=10) as http:
        chat = http.post(f"{provider.base_url}/chat/completions", json={
            "model": "m", "messages": hello, "max_tokens": 20, "stream": True,
            "stream_options": {"include_usage": True}}).content  # fmt: skip
        claude = http.post(f"{provider.anthropic_base_url}/v1/messages", json={
            "model": "c", "messages": hello, "max_tokens": 9, "stream": True}).content  # fmt: skip
    assert chat.count(b"data:") > 3 and claude.count(b"event:") > 3
    for size in (1, 7, 64, len(chat)):
        assert split_feed(chat, size) == Tokens(3, 20)
    for size in (1, 13, len(claude)):
        assert split_feed(claude, size) == Tokens(3, 9)
    assert tokens.usage(chat) == Tokens(3, 20)


def test_usage_is_read_from_a_responses_stream_and_a_gemini_stream() -> None:
    completed = {"type": "response.completed", "response": {"id": "r", "usage": {
        "input_tokens": 30, "output_tokens": 7, "total_tokens": 37}}}  # fmt: skip
    responses = (
        b'event: response.created\ndata: {"type":"response.created","response":{"usage":null}}\n\n'
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta"}\n\n'
        b"event: response.completed\ndata: " + json.dumps(completed).encode() + b"\n\n"
    )
    assert split_feed(responses, 5) == Tokens(30, 7)
    gemini = b"".join(
        b"data: " + json.dumps({"usageMetadata": {"promptTokenCount": 4,
                                                  "candidatesTokenCount": n}}).encode() + b"\r\n\r\n"
        for n in (1, 5, 9)
    )  # fmt: skip
    assert split_feed(gemini, 11) == Tokens(4, 9)
    assert split_feed(b"data: [DONE]\n\n", 3) is None


def test_an_oversized_event_is_skipped_not_buffered() -> None:
    reader = tokens.StreamUsage()
    reader.feed(b'data: {"usage": "' + b"x" * (9 * 1024 * 1024))
    assert len(reader._pending) == 0
    reader.feed(b'"}\n\ndata: {"usage": {"prompt_tokens": 1, "completion_tokens": 1}}\n\n')
    assert reader.tokens == Tokens(1, 1)
