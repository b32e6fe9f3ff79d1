"""The ``ratekeeper`` command end to end, in a subprocess, against a MockProvider."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ratekeeper.testing import MockProvider

SECRET = "sk-test-never-print-me"


def _run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "OPENAI_API_KEY": SECRET, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ratekeeper", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def _write_prompts(path: Path, n: int, start: int = 0) -> None:
    with path.open("a") as f:
        for i in range(start, start + n):
            f.write(
                json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": f"hi {i}"}]})
                + "\n"
            )


def _records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _batch(p: MockProvider, src: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _run(
        "batch",
        str(src),
        "-o",
        str(out),
        "--model",
        "gpt-4o-mini",
        "--base-url",
        p.base_url,
        "--rpm",
        "6000",
        *extra,
    )


def test_demo_exits_zero_and_reports_the_limit(tmp_path: Path) -> None:
    result = _run("demo", "--requests", "60", "--rpm", "1200")
    assert result.returncode == 0, result.stderr
    assert "429" in result.stderr and "requests/min" in result.stderr


def test_batch_writes_one_result_per_input_with_the_key_kept_secret(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_prompts(src, 20)
    with MockProvider(rpm=600, api_key=SECRET) as p:
        result = _batch(p, src, out)
        assert p.hits() == 20
    assert result.returncode == 0, result.stderr
    records = _records(out)
    assert sorted(r["id"] for r in records) == sorted(f"q{i}" for i in range(20))
    assert all(r["status"] == "ok" and r["response"]["usage"]["total_tokens"] > 0 for r in records)
    assert all(r["elapsed_s"] >= 0 and r["attempts"] == 1 for r in records)
    assert "20 ok" in result.stderr
    assert SECRET not in result.stderr + result.stdout + out.read_text()


def test_batch_resumes_without_resending_finished_lines(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_prompts(src, 10)
    with MockProvider(rpm=600) as p:
        assert _batch(p, src, out).returncode == 0
        _write_prompts(src, 5, start=10)
        again = _batch(p, src, out)
        assert again.returncode == 0, again.stderr
        assert p.hits() == 15
        assert "10 already done" in again.stderr
    assert sorted(r["id"] for r in _records(out)) == sorted(f"q{i}" for i in range(15))


def test_batch_records_failures_and_runs_the_rest(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_prompts(src, 3)
    with src.open("a") as f:
        f.write("{not json\n")
        f.write(json.dumps({"id": "empty", "messages": []}) + "\n")
        f.write(json.dumps({"id": "bad", "messages": [{"role": "user", "content": "x"}]}) + "\n")
    with MockProvider(rpm=None) as p:
        p.inject(400, path="/v1/chat/completions")
        result = _batch(p, src, out, "--concurrency", "1")
    assert result.returncode == 1
    by_status: dict[str, list[dict[str, Any]]] = {}
    for record in _records(out):
        by_status.setdefault(record["status"], []).append(record)
    assert len(by_status["ok"]) == 3
    errors = {r["id"]: r["error"] for r in by_status["error"]}
    assert errors[4]["type"] == "invalid_input" and "line 4" in errors[4]["message"]
    assert "messages" in errors["empty"]["message"]
    assert errors["q0"]["status"] == 400 and errors["q0"]["type"] == "BadRequestError"
    assert "failures: 3" in result.stderr


def test_batch_survives_sigint_without_a_torn_line_and_resumes(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_prompts(src, 300)
    with MockProvider(rpm=None, latency=0.3) as p:
        args = [
            sys.executable,
            "-m",
            "ratekeeper",
            "batch",
            str(src),
            "-o",
            str(out),
            "--model",
            "m",
            "--base-url",
            p.base_url,
            "--concurrency",
            "10",
        ]
        proc = subprocess.Popen(
            args, stderr=subprocess.PIPE, text=True, env={**os.environ, "OPENAI_API_KEY": SECRET}
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 2000):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130, stderr
        assert "interrupted" in stderr
        first = _records(out)
        assert 0 < len(first) < 300
        hits_before = p.hits()
        # Everything sent was answered and written: nothing in flight was lost.
        assert hits_before == len(first)
        assert _batch(p, src, out).returncode == 0
        assert p.hits() == 300
    ok_ids = [r["id"] for r in _records(out) if r["status"] == "ok"]
    assert sorted(ok_ids) == sorted(f"q{i}" for i in range(300))


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["batch", "missing.jsonl", "-o", "o.jsonl", "--model", "m"], {}, "not found"),
        (
            ["batch", "in.jsonl", "-o", "o.jsonl", "--model", "m", "--provider", "nope"],
            {},
            "invalid choice",
        ),
        (["batch", "in.jsonl", "-o", "o.jsonl", "--model", "m", "--rpm", "-5"], {}, "must be > 0"),
        (
            [
                "batch",
                "in.jsonl",
                "-o",
                "o.jsonl",
                "--model",
                "m",
                "--base-url",
                "https://api.example.com/v1",
            ],
            {"OPENAI_API_KEY": "", "OPENROUTER_API_KEY": ""},
            "no API key",
        ),
        (["batch", "dup.jsonl", "-o", "o.jsonl", "--model", "m"], {}, "duplicate id"),
    ],
)
def test_bad_input_gives_a_clear_error_and_nonzero_exit(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    _write_prompts(tmp_path / "in.jsonl", 2)
    _write_prompts(tmp_path / "dup.jsonl", 1)
    _write_prompts(tmp_path / "dup.jsonl", 1)
    args = [str(tmp_path / a) if a.endswith(".jsonl") else a for a in args]
    result = _run(*args, env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_mock_server_command_serves_until_interrupted() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ratekeeper",
            "mock-server",
            "--port",
            "0",
            "--rpm",
            "60",
            "--tpm",
            "1000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        base_url = line.split(" on ")[1].split(" ")[0]
        import openai

        client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "60"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    assert proc.returncode == 0


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_mock_server_with_an_impossible_port_gives_a_clear_error(port: str) -> None:
    result = _run("mock-server", "--port", port, timeout=30)
    assert result.returncode == 2
    assert "port" in result.stderr
    assert "Traceback" not in result.stderr


def test_mock_provider_refuses_an_impossible_port_at_once() -> None:
    with pytest.raises(ValueError, match="port"):
        MockProvider(port=70000)
