"""``ratekeeper batch``: send every line of a JSONL file through a rate-limited client.

The engine is :func:`run_batch`. ``concurrency`` workers take the jobs in
order; each request is one call of :func:`send_request` on a client made by
``rk.wrap`` (limits, retries honouring ``Retry-After``, headers adopted), and
each result is one line of the output, written by this loop alone.

Ctrl-C: the first stops new requests and lets the ones already sent finish;
the second cancels those too, recording them as ``cancelled`` (sent again on
the next run). Requests still waiting for the limiter are simply not sent.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

from ._batch_io import BatchInputError, Job, ResultWriter, finished_ids, read_jobs
from ._batch_report import BatchSummary, Progress
from ._batch_send import make_client, send_request

__all__ = ["BatchInputError", "BatchOptions", "BatchSummary", "run_batch"]

PROVIDERS = ("openai", "anthropic", "openrouter")
_KEY_VARIABLES = {
    "openai": ("OPENAI_API_KEY", "OPENROUTER_API_KEY"),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
}
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class BatchOptions:
    """What ``ratekeeper batch`` was asked to do.

    >>> BatchOptions(Path("in.jsonl"), Path("out.jsonl"), model="gpt-4o-mini", rpm=500).rpm
    500
    """

    input_path: Path
    output_path: Path
    model: str
    provider: str = "openai"
    base_url: Optional[str] = None
    rpm: Optional[float] = None
    tpm: Optional[float] = None
    burst: Optional[float] = None
    concurrency: int = 64
    max_tokens: Optional[int] = None
    retry_failed: bool = False
    api_key: Optional[str] = field(default=None, repr=False)
    show_progress: Optional[bool] = None

    def check(self) -> None:
        """Raises ``BatchInputError`` (or ``ValueError``) naming what is wrong.

        >>> options.check()  # doctest: +SKIP
        """
        if self.provider not in PROVIDERS:
            raise BatchInputError(
                f"unknown provider {self.provider!r}; choose one of {', '.join(PROVIDERS)}"
            )
        for name in ("rpm", "tpm", "burst"):
            value = getattr(self, name)
            if value is not None and not (0 < value < float("inf")):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency!r}")

    def resolve_key(self) -> str:
        """The API key from the environment (never printed); a placeholder for local servers.

        >>> options.resolve_key()  # doctest: +SKIP
        """
        if self.api_key:
            return self.api_key
        variables = _KEY_VARIABLES[self.provider]
        if self.base_url and "openrouter.ai" in self.base_url:
            variables = ("OPENROUTER_API_KEY", *variables)
        for name in variables:
            if os.environ.get(name):
                return os.environ[name]
        if self.base_url and urlparse(self.base_url).hostname in _LOCAL_HOSTS:
            return "ratekeeper-local"
        raise BatchInputError(f"no API key: set {' or '.join(variables)}")


# The request (if any) of the job a worker is running: set by the HTTP hooks,
# read when the job is cancelled, to tell "in flight" from "still waiting".
_ATTEMPTS: contextvars.ContextVar[list[int]] = contextvars.ContextVar("ratekeeper_batch_attempts")


class _Run:
    """One run's state: the queue, the writer, the counters, the Ctrl-C policy."""

    def __init__(self, options: BatchOptions, jobs: list[Job], writer: ResultWriter) -> None:
        self.options = options
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        for job in jobs:
            self.queue.put_nowait(job)
        self.writer = writer
        self.summary = BatchSummary(options.rpm, options.tpm, options.burst)
        self.progress = Progress(len(jobs), self.summary, options.show_progress)
        self.stopping = False
        self.workers: list[asyncio.Task[None]] = []
        self.in_flight: dict[asyncio.Task[None], list[int]] = {}
        self.secret = ""

    # -- HTTP hooks: every attempt (first tries and retries) passes here ------

    async def on_request(self, request: Any) -> None:
        self.summary.http_requests += 1
        attempts = _ATTEMPTS.get(None)
        if attempts is not None:
            attempts[0] += 1

    async def on_response(self, response: Any) -> None:
        if response.status_code == 429:
            self.summary.rate_limited += 1
        self.progress.refresh()

    # -- Ctrl-C -------------------------------------------------------------

    def interrupt(self) -> None:
        if not self.stopping:
            self.stopping = True
            sent = 0
            for task in self.workers:
                attempts = self.in_flight.get(task)
                if attempts is not None and attempts[0] > 0:
                    sent += 1
                else:
                    task.cancel()  # waiting for the limiter: nothing was sent
            self.progress.note(
                f"interrupted: finishing {sent} request(s) in flight; Ctrl-C again to cancel them"
            )
        else:
            self.progress.note("cancelling the requests in flight")
            for task in self.workers:
                task.cancel()

    # -- the work -------------------------------------------------------------

    def record(self, job: Job, started: float, **fields: Any) -> None:
        record: dict[str, Any] = {"id": job.id, "line": job.line, **fields}
        record["started_at"] = round(time.time() - (time.monotonic() - started), 3)
        record["elapsed_s"] = round(time.monotonic() - started, 4)
        self.writer.write(record)
        self.summary.count(fields["status"], fields.get("attempts", 0))
        self.progress.advance()

    def fail(self, job: Job, started: float, error: dict[str, Any], attempts: int) -> None:
        if self.secret:
            error["message"] = error["message"].replace(self.secret, "***")
        self.record(job, started, status="error", error=error, attempts=attempts)

    async def run_job(self, client: Any, job: Job) -> None:
        started = time.monotonic()
        if job.body is None:
            error = {"type": "invalid_input", "status": None, "message": job.problem or "invalid"}
            self.fail(job, started, error, 0)
            return
        attempts = [0]
        _ATTEMPTS.set(attempts)
        task = asyncio.current_task()
        assert task is not None
        self.in_flight[task] = attempts
        try:
            response = await send_request(client, self.options.provider, dict(job.body))
        except asyncio.CancelledError:
            if attempts[0] > 0:
                self.record(job, started, status="cancelled", attempts=attempts[0])
            raise
        except Exception as exc:
            self.fail(job, started, _describe(exc), attempts[0])
        else:
            self.summary.add_usage(response)
            self.record(job, started, status="ok", response=response, attempts=attempts[0])
        finally:
            self.in_flight.pop(task, None)

    async def worker(self, client: Any) -> None:
        while not self.stopping:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await self.run_job(client, job)


def _describe(exc: BaseException) -> dict[str, Any]:
    """An error as written to the output: type, HTTP status (if any), message."""
    cause = getattr(exc, "last_exception", None) or exc
    status = getattr(cause, "status_code", None)
    if status is None:
        status = getattr(getattr(cause, "response", None), "status_code", None)
    message = str(exc) or type(exc).__name__
    return {"type": type(cause).__name__, "status": status, "message": message}


def _install_sigint(run: _Run) -> bool:
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, run.interrupt)
    except (NotImplementedError, RuntimeError, ValueError):
        return False  # not the main thread, or a platform without loop signal handlers
    return True


async def run_batch(options: BatchOptions) -> BatchSummary:
    """Runs the batch; returns what happened. Raises ``BatchInputError`` before sending anything.

    >>> # summary = await run_batch(BatchOptions(Path("in.jsonl"), Path("out.jsonl"), "m"))
    """
    options.check()
    jobs = read_jobs(options.input_path, options.model, options.max_tokens)
    done = finished_ids(options.output_path, options.retry_failed)
    todo = [job for job in jobs if job.key not in done]
    api_key = options.resolve_key()
    writer = ResultWriter(options.output_path)
    run = _Run(options, todo, writer)
    run.summary.total = len(jobs)
    run.summary.skipped = len(jobs) - len(todo)
    run.secret = api_key
    client, close = make_client(options, api_key, run.on_request, run.on_response)
    handled = _install_sigint(run)
    started = time.monotonic()
    try:
        workers = min(options.concurrency, max(1, len(todo)))
        run.workers = [asyncio.create_task(run.worker(client)) for _ in range(workers)]
        await asyncio.gather(*run.workers, return_exceptions=True)
    finally:
        if handled:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
        run.summary.wall = time.monotonic() - started
        run.summary.interrupted = run.stopping
        run.progress.close()
        writer.close()
        await close()
    return run.summary


def main_batch(options: BatchOptions) -> int:
    """Runs the batch from the command line: prints the summary; returns the exit status."""
    try:
        summary = asyncio.run(run_batch(options))
    except (BatchInputError, ValueError) as exc:
        print(f"ratekeeper batch: error: {exc}", file=sys.stderr)
        return 2
    print(summary.render(options.output_path), file=sys.stderr)
    if summary.interrupted:
        return 130
    return 1 if summary.failed else 0
