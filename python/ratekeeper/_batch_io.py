"""Files of ``ratekeeper batch``: the input's jobs, the results already written, the writer.

Every input line becomes exactly one job, whatever its bytes: a line that is
not UTF-8, not JSON, or names an id another line already has becomes a job
that is not sent and is written as an error. The output is append-only JSONL
during a run (one ``os.write`` per whole line, so an interruption never tears
a line) and is rewritten at the end of the run with one line per input line,
in input order (the latest result of each), so that retries never leave two
results for one line.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ._batch_formats import (
    DUPLICATE,
    BatchInputError,
    Job,
    LineError,
    claimed_id,
    detect_kind,
    id_key,
    parse_line,
    record_state,
)

__all__ = ["BatchInputError", "Job", "Previous", "ResultWriter", "read_jobs", "read_previous"]


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BatchInputError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise BatchInputError(f"{what} is a directory, not a file: {path}") from None
    except OSError as exc:
        raise BatchInputError(f"cannot read {what} {path}: {exc.strerror}") from None


def _decode(raw: bytes, line: int) -> tuple[Any, Optional[str]]:
    """(decoded JSON or None, problem): a bad byte still lets the id be read for the error."""
    problem = None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", errors="replace")
        problem = f"line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
    try:
        return json.loads(text), problem
    except ValueError as exc:
        return None, problem or f"line {line}: not valid JSON ({exc})"


def read_jobs(
    path: Path, provider: str, model: Optional[str], max_tokens: Optional[int]
) -> tuple[str, list[Job]]:
    """The kind of the file and one job per non-blank line (invalid ones carry their problem)."""
    data = _read_bytes(path, "input")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte order mark
    lines = [
        (number, raw.rstrip(b"\r"))
        for number, raw in enumerate(data.split(b"\n"), start=1)
        if raw.strip()
    ]
    decoded = [(number, *_decode(raw, number)) for number, raw in lines]
    kind = next((detect_kind(obj) for _, obj, _ in decoded if isinstance(obj, dict)), "simple")
    jobs = []
    for number, obj, problem in decoded:
        if problem is None:
            try:
                job = parse_line(obj, number, kind, provider, model, max_tokens)
            except LineError as exc:
                job = Job(None, number, kind, problem=str(exc))
        else:
            job = Job(None, number, kind, problem=problem)
        job.id = claimed_id(obj, kind)
        if job.id is None and kind != "simple" and job.problem is None:
            job.problem = f"line {number}: 'custom_id' must be a string"
        jobs.append(job)
    _name_jobs(jobs)
    return kind, jobs


def _name_jobs(jobs: list[Job]) -> None:
    """Gives every job a distinct id: its own (first line wins), else its line number."""
    owner: dict[str, int] = {}
    for job in jobs:
        if job.id is None:
            continue
        first = owner.setdefault(job.key, job.line)
        if first != job.line:
            job.problem = (
                f"line {job.line}: duplicate id {job.id!r} (line {first} has it too): "
                "ids must be unique so that results can be joined and resumed"
            )
            job.code, job.body = DUPLICATE, None
    for job in jobs:
        if job.id is not None:
            continue
        candidates: list[Any] = [job.line] if job.kind == "simple" else []
        candidates.append(f"line-{job.line}")
        suffix = 2
        while id_key(candidates[-1]) in owner:
            candidates.append(f"line-{job.line}-{suffix}")
            suffix += 1
        job.id = next(c for c in candidates if id_key(c) not in owner)
        owner[job.key] = job.line


@dataclass
class Previous:
    """What an earlier run wrote: the latest result line of each id, and its state."""

    lines: dict[str, bytes] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)

    def done(self, key: str, retry_failed: bool) -> bool:
        """Whether the line with this id needs no sending: it succeeded, or failed for good."""
        state = self.states.get(key)
        return state == "ok" or (state == "failed" and not retry_failed)


def read_previous(path: Path) -> Previous:
    """The results already in ``path``; a torn line (a crash mid-write) is skipped."""
    previous = Previous()
    if path.is_dir():
        raise BatchInputError(f"output is a directory, not a file: {path}")
    if not path.is_file():
        return previous  # none yet, or a device such as /dev/null: nothing to resume
    for raw in _read_bytes(path, "output").split(b"\n"):
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        key, state = record_state(record)
        if key is not None:
            if state == "invalid" and previous.states.get(key, "invalid") != "invalid":
                # A line refused before sending (a duplicate of this id, say)
                # says nothing of the line that was sent under it.
                continue
            previous.lines.pop(key, None)  # keep the latest last, in order
            previous.lines[key] = raw + b"\n"
            previous.states[key] = state
    return previous


class BatchWriteError(Exception):
    """Writing the output failed (disk full, file removed...): the batch stops."""


def encode_record(record: dict[str, Any]) -> bytes:
    """One JSON line; a string holding half a UTF-16 pair is written escaped, never dropped.

    >>> encode_record({"text": "cut \\ud83d"})
    b'{"text": "cut \\\\ud83d"}\\n'
    """
    text = json.dumps(record, ensure_ascii=False, default=str)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record, ensure_ascii=True, default=str) + "\n").encode("ascii")


class ResultWriter:
    """Appends whole JSON lines to the output, each with one write; remembers what it wrote."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written: dict[str, bytes] = {}
        self.invalid: dict[int, bytes] = {}
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except IsADirectoryError:
            raise BatchInputError(f"output is a directory, not a file: {path}") from None
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
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            raise BatchWriteError(f"cannot write to {self.path}: {exc.strerror or exc}") from None

    def write(self, job: Job, record: dict[str, Any]) -> None:
        """Writes ``record`` (the result of ``job``) as one line."""
        data = encode_record(record)
        self._write(data)
        if job.problem is not None:
            self.invalid[job.line] = data
        else:
            self.written[job.key] = data

    def close(self) -> None:
        """Syncs the file to disk and closes it."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.fsync(fd)
            except OSError as exc:
                # Pipes and devices cannot be synced; a file that cannot be is a failed write.
                if exc.errno not in (errno.EINVAL, errno.EROFS, errno.ENOTSUP):
                    raise BatchWriteError(f"cannot write to {self.path}: {exc.strerror}") from None
            finally:
                os.close(fd)


def compact(path: Path, jobs: list[Job], previous: Previous, writer: ResultWriter) -> None:
    """Rewrites the output: one line per input line, in input order, then lines of other ids.

    Written to a temporary file beside it and renamed over it, so that a
    crash leaves either the old file or the new one. An output that is not a
    regular file (a pipe, ``/dev/null``) is left as it is.
    """
    if not path.is_file():
        return
    latest = {**previous.lines, **writer.written}
    parts: list[bytes] = []
    for job in jobs:
        if job.problem is not None:
            data = writer.invalid.get(job.line)
            if data is not None:
                parts.append(data)
        elif job.key in latest:
            parts.append(latest.pop(job.key))
    invalid_keys = {job.key for job in jobs if job.problem is not None}
    parts.extend(
        data
        for key, data in latest.items()
        if key not in invalid_keys and previous.states.get(key) != "invalid"
    )
    tmp = path.with_name(f".{path.name}.ratekeeper-tmp")
    try:
        with tmp.open("wb") as file:
            file.write(b"".join(parts))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BatchWriteError(f"cannot rewrite {path}: {exc.strerror or exc}") from None
