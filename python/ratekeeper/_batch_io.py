"""Files of ``ratekeeper batch``: the input's jobs, the results already written, the writer.

The output is append-only JSONL written by one writer, one ``os.write`` per
whole line, so an interruption never leaves half a line behind; a line torn
by a crash (``kill -9``) is skipped when reading and the next line starts on
a fresh line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional


class BatchInputError(Exception):
    """The batch cannot start: a missing file, duplicate ids, no API key...

    >>> str(BatchInputError("input file not found: x.jsonl"))
    'input file not found: x.jsonl'
    """


@dataclass
class Job:
    """One input line: its id, its request body, or why it cannot be sent."""

    id: Any
    line: int
    body: Optional[dict[str, Any]]
    problem: Optional[str] = None

    @property
    def key(self) -> str:
        return id_key(self.id)


def id_key(value: Any) -> str:
    """The identity of an id across runs (``1`` and ``"1"`` are different ids)."""
    return json.dumps(value, sort_keys=True)


def _parse_line(text: str, line: int, model: str, max_tokens: Optional[int]) -> Job:
    try:
        body = json.loads(text)
    except ValueError as exc:
        return Job(line, line, None, f"line {line}: not valid JSON ({exc})")
    if not isinstance(body, dict):
        return Job(
            line, line, None, f"line {line}: expected a JSON object, got {type(body).__name__}"
        )
    job_id = body.pop("id", line)
    if isinstance(job_id, (dict, list)) or job_id is None:
        return Job(line, line, None, f"line {line}: id must be a string or a number")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return Job(job_id, line, None, f"line {line}: 'messages' must be a non-empty list")
    if body.get("stream"):
        return Job(job_id, line, None, f"line {line}: 'stream' is not supported in a batch")
    body.setdefault("model", model)
    if max_tokens is not None:
        body.setdefault("max_tokens", max_tokens)
    return Job(job_id, line, body)


def read_jobs(path: Path, model: str, max_tokens: Optional[int]) -> list[Job]:
    """Every non-blank line of the input as a job; malformed lines carry their problem."""
    try:
        with path.open(encoding="utf-8") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        raise BatchInputError(f"input file not found: {path}") from None
    except IsADirectoryError:
        raise BatchInputError(f"input is a directory, not a file: {path}") from None
    except UnicodeDecodeError as exc:
        raise BatchInputError(f"input is not UTF-8 text: {path} ({exc})") from None
    jobs = [
        _parse_line(text, number, model, max_tokens)
        for number, text in enumerate(lines, start=1)
        if text.strip()
    ]
    first_line: dict[str, int] = {}
    for job in jobs:
        seen = first_line.setdefault(job.key, job.line)
        if seen != job.line:
            raise BatchInputError(
                f"duplicate id {job.id!r} on lines {seen} and {job.line}: "
                "ids must be unique so that results can be joined and resumed"
            )
    return jobs


def finished_ids(path: Path, retry_failed: bool) -> set[str]:
    """Ids that already have a result in ``path``: ``ok`` ones, and ``error`` ones unless retried.

    Records marked ``cancelled`` (a Ctrl-C) do not count: those lines are sent again.
    """
    done: set[str] = set()
    if not path.exists():
        return done
    wanted = ("ok",) if retry_failed else ("ok", "error")
    with path.open(encoding="utf-8", errors="replace") as file:
        for text in file:
            try:
                record = json.loads(text)
            except ValueError:
                continue  # a line torn by a crash: that id has no result yet
            if isinstance(record, dict) and record.get("status") in wanted and "id" in record:
                done.add(id_key(record["id"]))
    return done


class ResultWriter:
    """Appends whole JSON lines to the output, each with one write, flushed to the OS."""

    def __init__(self, path: Path) -> None:
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise BatchInputError(f"cannot open output {path}: {exc.strerror}") from None
        size = os.fstat(self._fd).st_size
        if size:
            with path.open("rb") as file:
                file.seek(size - 1)
                if file.read(1) != b"\n":
                    self._write(b"\n")  # end a line torn by an earlier crash

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def write(self, record: dict[str, Any]) -> None:
        """Writes ``record`` as one line."""
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        self._write(line.encode("utf-8"))

    def close(self) -> None:
        """Syncs the file to disk and closes it."""
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
