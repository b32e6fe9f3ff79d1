"""The ``ratekeeper`` command end to end, in a subprocess, against a MockProvider."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ratekeeper import cli
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


def test_demo_exits_zero_reports_the_limit_and_prints_its_report_path(tmp_path: Path) -> None:
    report = tmp_path / "demo.html"
    result = _run("demo", "--requests", "60", "--rpm", "1200", "--report", str(report))
    assert result.returncode == 0, result.stderr
    assert "429" in result.stderr and "requests/min" in result.stderr
    assert result.stdout.strip() == str(report)
    assert 'id="requests-chart"' in report.read_text()


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
    assert errors["q0"]["status"] == 400 and errors["q0"]["type"] == "bad_request"
    assert "failures: 3" in result.stderr


def test_sigint_then_resume_sends_every_line_exactly_once(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    with src.open("w") as f:
        for i in range(300):
            body = {"model": "m", "messages": [{"role": "user", "content": f"line {i}"}]}
            line = {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions"}
            f.write(json.dumps({**line, "body": body}) + "\n")
    with MockProvider(rpm=None, latency=0.3) as p:
        args = [sys.executable, "-m", "ratekeeper", "batch", str(src), "-o", str(out)]
        args += ["--base-url", p.base_url, "--concurrency", "10"]
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
        # Everything sent was answered and written: nothing in flight was lost.
        assert p.hits() == len(first)
        again = _batch(p, src, out)
        assert again.returncode == 0, again.stderr
        sent = Counter(hit.body["messages"][0]["content"] for hit in p.requests)
    assert sent == Counter({f"line {i}": 1 for i in range(300)})
    final = _records(out)
    assert [r["custom_id"] for r in final] == [f"c{i}" for i in range(300)]
    assert all(r["response"]["status_code"] == 200 for r in final)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_dead_provider_stops_the_batch_within_seconds_and_keeps_progress(
    tmp_path: Path,
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_prompts(src, 200)
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    started = time.monotonic()
    result = _run("batch", str(src), "-o", str(out), "--model", "m", "--base-url", dead)
    took = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert "looks down" in result.stderr and "Traceback" not in result.stderr
    assert took < 20, f"took {took:.1f} s"
    with MockProvider(rpm=None) as p:
        again = _batch(p, src, out)
        assert again.returncode == 0, again.stderr
        assert p.hits() == 200
    assert sorted(r["id"] for r in _records(out)) == sorted(f"q{i}" for i in range(200))


def _single_line(path: Path, kind: str) -> Path:
    if kind == "anthropic":
        params = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        line: dict[str, Any] = {"custom_id": "a", "params": params}
    else:
        line = {"id": "a", "messages": [{"role": "user", "content": "x"}]}
    path.write_text(json.dumps(line) + "\n")
    return path


@pytest.mark.parametrize(
    ("kind", "extra", "env", "header", "expected"),
    [
        (
            "simple",
            [],
            {"OPENROUTER_API_KEY": "or-key"},
            "authorization",
            "Bearer ratekeeper-local",
        ),
        (
            "simple",
            [],
            {"OPENAI_API_KEY": "oa-key", "OPENROUTER_API_KEY": "or-key"},
            "authorization",
            "Bearer oa-key",
        ),
        (
            "simple",
            ["--provider", "openrouter"],
            {"OPENAI_API_KEY": "oa-key", "OPENROUTER_API_KEY": "or-key"},
            "authorization",
            "Bearer or-key",
        ),
        (
            "anthropic",
            [],
            {
                "OPENAI_API_KEY": "oa-key",
                "OPENROUTER_API_KEY": "or-key",
                "ANTHROPIC_API_KEY": "an-key",
            },
            "x-api-key",
            "an-key",
        ),
    ],
)
def test_each_key_goes_only_to_its_own_provider(
    tmp_path: Path, kind: str, extra: list[str], env: dict[str, str], header: str, expected: str
) -> None:
    src, out = _single_line(tmp_path / "in.jsonl", kind), tmp_path / "out.jsonl"
    clean = {"OPENAI_API_KEY": "", "OPENROUTER_API_KEY": "", "ANTHROPIC_API_KEY": "", **env}
    with MockProvider(rpm=None) as p:
        base = p.anthropic_base_url if kind == "anthropic" else p.base_url
        result = _run(
            "batch", str(src), "-o", str(out), "--model", "m", "--base-url", base, *extra, env=clean
        )
        assert result.returncode == 0, result.stderr
        (hit,) = p.requests
    assert hit.headers[header] == expected
    others = [v for k, v in env.items() if v not in expected]
    assert not any(key in value for key in others for value in hit.headers.values())


def test_openrouter_key_is_never_sent_to_openai(tmp_path: Path) -> None:
    src = _single_line(tmp_path / "in.jsonl", "simple")
    env = {"OPENAI_API_KEY": "", "OPENROUTER_API_KEY": "or-key"}
    result = _run("batch", str(src), "-o", str(tmp_path / "o.jsonl"), "--model", "m", env=env)
    assert result.returncode == 2
    assert "no API key: set OPENAI_API_KEY" in result.stderr and "or-key" not in result.stderr


def test_a_write_that_fails_stops_the_batch_with_a_message(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    src = tmp_path / "in.jsonl"
    _write_prompts(src, 20)
    with MockProvider(rpm=None) as p:
        result = _batch(p, src, Path("/dev/full"))
    assert result.returncode == 4, result.stderr
    assert "cannot write to /dev/full" in result.stderr and "Traceback" not in result.stderr


def test_dry_run_sends_nothing_and_report_and_summary_are_written(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_prompts(src, 30)
    report, summary = tmp_path / "report.html", tmp_path / "summary.json"
    with MockProvider(rpm=None) as p:
        dry = _batch(p, src, out, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "to send: 30" in dry.stderr and p.hits() == 0 and not out.exists()
        real = _batch(p, src, out, "--report", str(report), "--summary-json", str(summary))
        assert real.returncode == 0, real.stderr
    assert json.loads(summary.read_text())["ok"] == 30
    assert "<svg" in report.read_text() and str(report) in real.stderr


def test_version_is_printed() -> None:
    for args in (["--version"], ["batch", "--version"]):
        result = _run(*args)
        assert result.returncode == 0
        assert result.stdout.startswith("ratekeeper") and result.stdout.split()[-1][0].isdigit()


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
        (["batch", "in.jsonl", "-o", "outdir", "--model", "m"], {}, "output is a directory"),
        (["batch", "in.jsonl", "-o", "in.jsonl"], {}, "would overwrite the input"),
        (
            ["batch", "anthropic.jsonl", "-o", "o.jsonl", "--provider", "openrouter"],
            {},
            "Anthropic Message Batches lines",
        ),
        (["batch", "in.jsonl", "-o", "o.jsonl", "--max-retries", "-1"], {}, "must be >= 0"),
    ],
)
def test_bad_input_gives_a_clear_error_and_nonzero_exit(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    _write_prompts(tmp_path / "in.jsonl", 2)
    _single_line(tmp_path / "anthropic.jsonl", "anthropic")
    (tmp_path / "outdir").mkdir()
    args = [str(tmp_path / a) if a.endswith(".jsonl") or a == "outdir" else a for a in args]
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


def forget_demo_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ratekeeper._demo", "ratekeeper.testing.mock_server", "ratekeeper.testing._app"):
        monkeypatch.delitem(sys.modules, name, raising=False)


def test_demo_without_uvicorn_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    forget_demo_modules(monkeypatch)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # `import uvicorn` now fails
    assert cli.main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "'uvicorn'" in err
    assert "ratekeeper[cli]" in err


def test_a_missing_module_that_is_not_an_extra_still_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forget_demo_modules(monkeypatch)
    monkeypatch.setitem(sys.modules, "ratekeeper.batch", None)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["demo"])
