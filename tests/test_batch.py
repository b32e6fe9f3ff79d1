"""``ratekeeper batch`` (ratekeeper.batch): provider formats, every line once, resume, safety stop.

Every test sends over real HTTP to a MockProvider; results are read back the
way a reader of the provider's own batch results reads them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import anthropic.types.messages as anthropic_batches
import openai.types as openai_types
import pytest
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from ratekeeper.batch import BatchOptions, BatchSummary, run_batch
from ratekeeper.testing import MockProvider

HELLO = [{"role": "user", "content": "hello there"}]


def write_lines(path: Path, lines: list[Any]) -> Path:
    with path.open("wb") as file:
        for line in lines:
            file.write(line if isinstance(line, bytes) else json.dumps(line).encode())
            file.write(b"\n")
    return path


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def run(
    tmp_path: Path, server: MockProvider, lines: list[Any] | None = None, **options: Any
) -> tuple[BatchSummary, list[dict[str, Any]]]:
    src = tmp_path / "in.jsonl"
    if lines is not None:
        write_lines(src, lines)
    out = tmp_path / "out.jsonl"
    base = server.anthropic_base_url if options.pop("anthropic", False) else server.base_url
    settings: dict[str, Any] = {"base_url": base, "show_progress": False, **options}
    summary = await run_batch(BatchOptions(src, out, **settings))
    return summary, records(out) if out.exists() else []


def openai_line(custom_id: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


async def test_openai_batch_lines_of_every_endpoint_round_trip(tmp_path: Path) -> None:
    lines = [
        openai_line("chat", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": HELLO}),
        openai_line("resp", "/v1/responses", {"model": "gpt-4o-mini", "input": "hi"}),
        openai_line("emb", "/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"}),
        openai_line("cmpl", "/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x"}),
    ]
    with MockProvider(rpm=None) as p:
        summary, out = await run(tmp_path, p, lines)
        paths = sorted(hit.path for hit in p.requests)
    assert paths == ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]
    assert summary.ok == 4 and summary.kind == "openai"
    by_id = {r["custom_id"]: r for r in out}
    for record in out:  # the keys a reader of OpenAI batch results relies on
        assert record["id"].startswith("batch_req_") and record["error"] is None
        assert record["response"]["status_code"] == 200
        assert record["response"]["request_id"].startswith("req_")
    chat = ChatCompletion.model_validate(by_id["chat"]["response"]["body"])
    assert chat.choices[0].message.content
    assert Response.model_validate(by_id["resp"]["response"]["body"]).output_text
    embedding = openai_types.CreateEmbeddingResponse.model_validate(
        by_id["emb"]["response"]["body"]
    )
    assert embedding.data[0].embedding
    assert openai_types.Completion.model_validate(by_id["cmpl"]["response"]["body"]).choices


async def test_anthropic_batch_lines_round_trip_as_message_batch_results(tmp_path: Path) -> None:
    params = {"model": "claude-3-5-haiku-latest", "max_tokens": 7, "messages": HELLO}
    lines = [{"custom_id": f"a{i}", "params": params} for i in range(3)]
    with MockProvider(rpm=None) as p:
        p.inject(400, path="/v1/messages")
        summary, out = await run(tmp_path, p, lines, anthropic=True, concurrency=1)
        assert all(hit.path == "/v1/messages" for hit in p.requests)
    assert summary.kind == "anthropic" and summary.ok == 2 and summary.failed == 1
    results = [anthropic_batches.MessageBatchIndividualResponse.model_validate(r) for r in out]
    assert sorted(r.custom_id for r in results) == ["a0", "a1", "a2"]
    succeeded = [r.result for r in results if r.result.type == "succeeded"]
    errored = [r.result for r in results if r.result.type == "errored"]
    assert len(succeeded) == 2 and succeeded[0].message.usage.output_tokens == 7
    assert len(errored) == 1 and errored[0].error.error.type == "invalid_request_error"


async def test_model_option_fills_only_lines_that_name_none(tmp_path: Path) -> None:
    lines = [
        openai_line("named", "/v1/chat/completions", {"model": "mine", "messages": HELLO}),
        openai_line("unnamed", "/v1/chat/completions", {"messages": HELLO}),
    ]
    with MockProvider(rpm=None) as p:
        await run(tmp_path, p, lines, model="fallback")
        models = sorted(hit.body["model"] for hit in p.requests)
    assert models == ["fallback", "mine"]


async def test_a_line_without_a_model_and_no_model_option_is_an_error_not_a_send(
    tmp_path: Path,
) -> None:
    lines = [openai_line("unnamed", "/v1/chat/completions", {"messages": HELLO})]
    with MockProvider(rpm=None) as p:
        summary, out = await run(tmp_path, p, lines)
        assert p.hits() == 0
    assert summary.invalid == 1
    assert out[0]["custom_id"] == "unnamed" and "--model" in out[0]["error"]["message"]


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_replies_and_ids_with_half_a_utf16_pair_are_all_written(
    tmp_path: Path, concurrency: int
) -> None:
    cut = "an emoji cut in half: \ud83d"
    src = tmp_path / "in.jsonl"
    with src.open("w", encoding="ascii") as file:  # json.dumps escapes the lone surrogate
        for i in range(5):
            file.write(json.dumps({"id": f"q{i}\ud83d", "messages": HELLO}) + "\n")
    with MockProvider(rpm=None, reply=cut) as p:
        summary, out = await run(tmp_path, p, model="m", concurrency=concurrency)
        assert p.hits() == 5
    assert summary.ok == 5 and len(out) == 5
    assert all(r["response"]["choices"][0]["message"]["content"] == cut for r in out)
    assert sorted(r["id"] for r in out) == [f"q{i}\ud83d" for i in range(5)]


async def test_colliding_ids_and_bad_bytes_still_give_one_result_per_line(tmp_path: Path) -> None:
    lines: list[Any] = [
        {"messages": HELLO},  # line 1: named 1 by its line number...
        {"id": 1, "messages": HELLO},  # ...but line 2 names itself 1 explicitly
        {"id": "twin", "messages": HELLO},
        {"id": "twin", "messages": HELLO},  # a true duplicate
        b'{"id": "latin1", "messages": [{"role": "user", "content": "caf\xe9"}]}',
        b"\xff\xfe not even json",
        {"id": "fine", "messages": HELLO},
    ]
    with MockProvider(rpm=None) as p:
        summary, out = await run(tmp_path, p, lines, model="m")
        assert p.hits() == 4
    assert [r["line"] for r in out] == [1, 2, 3, 4, 5, 6, 7]
    by_line = {r["line"]: r for r in out}
    assert by_line[1]["id"] == "line-1" and by_line[1]["status"] == "ok"
    assert by_line[2]["id"] == 1 and by_line[2]["status"] == "ok"
    assert (
        by_line[4]["error"]["type"] == "duplicate_id" and "line 3" in by_line[4]["error"]["message"]
    )
    assert by_line[5]["id"] == "latin1" and "not UTF-8" in by_line[5]["error"]["message"]
    assert by_line[6]["status"] == "error" and by_line[7]["status"] == "ok"
    assert (summary.ok, summary.invalid) == (4, 3)


async def test_fixed_invalid_lines_are_sent_on_the_next_run(tmp_path: Path) -> None:
    good = {"id": "good", "messages": HELLO}
    with MockProvider(rpm=None) as p:
        first, _ = await run(tmp_path, p, [good, {"id": "broken", "messages": []}], model="m")
        assert first.invalid == 1 and p.hits() == 1
        second, out = await run(tmp_path, p, [good, {"id": "broken", "messages": HELLO}], model="m")
        assert p.hits() == 2
    assert second.skipped == 1 and second.ok == 1
    assert [(r["id"], r["status"]) for r in out] == [("good", "ok"), ("broken", "ok")]


async def test_a_sent_line_whose_id_a_later_line_repeats_is_not_sent_again(
    tmp_path: Path,
) -> None:
    lines = [{"id": "s1", "messages": HELLO}, {"id": "s1", "messages": HELLO}]
    with MockProvider(rpm=None) as p:
        first, _ = await run(tmp_path, p, lines, model="m")
        assert (first.ok, first.invalid, p.hits()) == (1, 1, 1)
        second, out = await run(tmp_path, p, lines, model="m")
        assert p.hits() == 1  # the duplicate's error record does not undo line 1's success
    assert second.skipped == 1
    assert [r["status"] for r in out] == ["ok", "error"]


async def test_final_failures_stay_done_unless_retry_failed(tmp_path: Path) -> None:
    lines = [{"id": f"q{i}", "messages": HELLO} for i in range(3)]
    with MockProvider(rpm=None) as p:
        p.inject(400)
        first, _ = await run(tmp_path, p, lines, model="m", concurrency=1)
        assert first.failed == 1
        again, _ = await run(tmp_path, p, model="m")
        assert p.hits() == 3 and again.skipped == 3
        retried, out = await run(tmp_path, p, model="m", retry_failed=True)
        assert p.hits() == 4 and retried.ok == 1
    assert Counter(r["id"] for r in out) == Counter({"q0": 1, "q1": 1, "q2": 1})
    assert all(r["status"] == "ok" for r in out)


async def test_lines_that_ran_out_of_retries_are_sent_again_without_a_flag(tmp_path: Path) -> None:
    lines = [openai_line(f"c{i}", "/v1/chat/completions", {"messages": HELLO}) for i in range(2)]
    with MockProvider(rpm=None) as p:
        p.inject(503)
        first, _ = await run(tmp_path, p, lines, model="m", concurrency=1, max_retries=0)
        assert first.failed == 1 and p.hits() == 2
        second, out = await run(tmp_path, p, model="m")
        assert p.hits() == 3 and second.ok == 1
    assert sorted(r["custom_id"] for r in out) == ["c0", "c1"]
    assert all(r["response"]["status_code"] == 200 for r in out)


async def test_retries_are_counted_once_each_never_while_in_flight(tmp_path: Path) -> None:
    lines = [{"id": i, "messages": HELLO} for i in range(5)]
    with MockProvider(rpm=None, latency=0.05) as p:
        p.inject(500, times=2)
        summary, _ = await run(tmp_path, p, lines, model="m", concurrency=5)
        assert p.hits() == 7
    assert (summary.retries, summary.http_requests, summary.ok) == (2, 7, 5)


async def test_timeout_bounds_each_attempt(tmp_path: Path) -> None:
    with MockProvider(rpm=None, latency=2.0) as p:
        summary, out = await run(
            tmp_path, p, [{"id": "slow", "messages": HELLO}], model="m", timeout=0.2, max_retries=0
        )
    assert summary.failed == 1 and out[0]["error"]["type"] == "timeout"


async def test_safety_stop_when_every_attempt_finds_the_provider_down(tmp_path: Path) -> None:
    lines = [{"id": i, "messages": HELLO} for i in range(50)]
    with MockProvider(rpm=None, error_rate=1.0, error_status=503) as p:
        summary, out = await run(tmp_path, p, lines, model="m", concurrency=4, stop_after=6)
        hits = p.hits()
    assert summary.exit_status == 3 and "down" in summary.stopped
    assert hits < 20  # not 50 lines x 9 attempts
    assert all(r["status"] != "ok" for r in out)


async def test_dry_run_validates_and_estimates_without_sending(tmp_path: Path) -> None:
    lines = [{"id": i, "messages": HELLO, "max_tokens": 10} for i in range(120)]
    lines.append({"id": "bad", "messages": "not a list"})
    with MockProvider(rpm=None) as p:
        summary, out = await run(tmp_path, p, lines, model="m", rpm=60, dry_run=True)
        assert p.hits() == 0
    assert out == [] and not (tmp_path / "out.jsonl").exists()
    assert summary.invalid == 1 and summary.exit_status == 1
    assert "to send: 120" in summary.dry_run and "line 121" in summary.dry_run
    assert "1,560" in summary.dry_run  # 120 x (3 prompt + 10 output) tokens
    assert "60.0 s" in summary.dry_run  # (120 - 60 at once) / 1 per second


async def test_summary_json_holds_counts_and_latency(tmp_path: Path) -> None:
    lines = [{"id": i, "messages": HELLO} for i in range(10)]
    target = tmp_path / "summary.json"
    with MockProvider(rpm=None) as p:
        await run(tmp_path, p, lines, model="m", summary_json=target)
    data = json.loads(target.read_text())
    assert data["ok"] == 10 and data["http_requests"] == 10 and data["retries"] == 0
    assert set(data["latency_seconds"]) == {"p50", "p90", "p99", "max"}


async def test_a_limit_not_given_is_learned_from_the_first_answer(tmp_path: Path) -> None:
    lines = [{"id": i, "messages": HELLO} for i in range(30)]
    with MockProvider(rpm=600, burst=10, tolerance=0.5) as p:
        summary, _ = await run(tmp_path, p, lines, model="m", concurrency=8)
        rejected = p.rate_limited
    assert summary.learned == {"rpm": 600.0} and summary.ok == 30
    assert rejected == 0  # one request went first; its headers set the pace of the rest


async def test_a_given_limit_above_what_the_server_states_is_lowered_to_it(tmp_path: Path) -> None:
    lines = [{"id": i, "messages": HELLO} for i in range(20)]
    with MockProvider(rpm=600, tpm=100_000) as p:
        summary, _ = await run(tmp_path, p, lines, model="m", rpm=6000, tpm=50_000, concurrency=4)
    assert summary.learned == {"rpm": 600.0} and summary.ok == 20


async def test_a_refused_key_stops_the_batch_instead_of_failing_every_line(tmp_path: Path) -> None:
    lines = [{"id": i, "messages": HELLO} for i in range(100)]
    with MockProvider(rpm=None, api_key="sk-right") as p:
        summary, out = await run(
            tmp_path, p, lines, model="m", api_key="sk-wrong", concurrency=2, stop_after=5
        )
        hits = p.hits()
    assert summary.exit_status == 3 and "refused the key" in summary.stopped
    assert hits <= 6  # not 100: the stop came after 5 refusals (and one more in flight)
    answered = [r for r in out if r["status"] != "cancelled"]
    assert all(r["error"]["status"] == 401 for r in answered) and len(answered) >= 5
    assert "sk-wrong" not in summary.stopped


async def test_simple_lines_go_to_anthropic_with_the_provider_option(tmp_path: Path) -> None:
    lines = [{"id": "a", "messages": HELLO}, {"id": "b", "messages": HELLO, "max_tokens": 3}]
    with MockProvider(rpm=None) as p:
        summary, out = await run(
            tmp_path, p, lines, model="claude-3-5-haiku-latest", provider="anthropic", max_tokens=9
        )
        assert [hit.path for hit in p.requests] == ["/v1/messages"] * 2
    by_id = {r["id"]: r for r in out}
    assert summary.ok == 2 and summary.provider == "anthropic"
    assert by_id["a"]["response"]["usage"]["output_tokens"] == 9
    assert by_id["b"]["response"]["usage"]["output_tokens"] == 3


async def test_an_error_that_echoes_the_key_is_written_without_it(
    tmp_path: Path, scripted_server: Any
) -> None:
    echo = {"error": {"message": "bad key sk-secret-123 for you", "type": "invalid_request_error"}}
    scripted_server.reply(400, body=echo)
    src = write_lines(tmp_path / "in.jsonl", [{"id": "a", "messages": HELLO}])
    out = tmp_path / "out.jsonl"
    options = BatchOptions(
        src, out, model="m", base_url=scripted_server.openai_url, api_key="sk-secret-123"
    )
    summary = await run_batch(options)
    assert summary.failed == 1 and scripted_server.hit_count() == 1
    text = out.read_text()
    assert "sk-secret-123" not in text and "bad key *** for you" in text


async def test_the_progress_bar_shows_retries_decided_not_requests_in_flight(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [{"id": i, "messages": HELLO} for i in range(6)]
    with MockProvider(rpm=None, latency=0.2) as p:
        p.inject(500, times=2)
        await run(tmp_path, p, lines, model="m", concurrency=6, show_progress=True)
    bar = capsys.readouterr().err.replace("\r", "\n").strip()
    shown = [int(n) for n in re.findall(r"retries=(\d+)", bar)]
    assert shown and max(shown) == 2  # six requests in flight never showed as retries
    final = bar.splitlines()[-1]
    assert "6/6" in final and "retries=2" in final and "failed=0" in final
