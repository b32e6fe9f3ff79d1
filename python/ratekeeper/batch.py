"""``ratekeeper batch``: send every line of a JSONL file within the limits, in the provider's format.

The engine is :func:`run_batch`. The input's kind (OpenAI Batch API lines,
Anthropic Message Batches lines, or the simple lines of SPEC 11) is detected
from the file; ``concurrency`` workers take the jobs in order, each request is
sent by :class:`~ratekeeper._batch_send.Sender` (limiter, retries, safety
stop) and each result is one line of the output, written by this loop alone.

Ctrl-C: the first stops new requests and lets the ones already sent finish;
the second cancels those too, recording them as cancelled (sent again on the
next run). Requests still waiting for the limiter are simply not sent.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ._batch_formats import BatchInputError, Job, Outcome, invalid_record, result_record
from ._batch_html import render_report
from ._batch_io import BatchWriteError, Previous, ResultWriter, compact, read_jobs, read_previous
from ._batch_report import BatchSummary, Progress
from ._batch_send import ProviderDown, Sender, provider_of, resolve_key

__all__ = ["BatchInputError", "BatchOptions", "BatchSummary", "run_batch"]

PROVIDERS = ("openai", "anthropic", "openrouter")
EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_WRITE, EXIT_INTERRUPTED = 1, 2, 3, 4, 130


@dataclass
class BatchOptions:
    """What ``ratekeeper batch`` was asked to do.

    >>> BatchOptions(Path("in.jsonl"), Path("out.jsonl"), model="gpt-4o-mini", rpm=500).rpm
    500
    """

    input_path: Path
    output_path: Path
    model: Optional[str] = None
    provider: Optional[str] = None
    base_url: Optional[str] = None
    rpm: Optional[float] = None
    tpm: Optional[float] = None
    burst: Optional[float] = None
    concurrency: int = 64
    max_tokens: Optional[int] = None
    retry_failed: bool = False
    max_retries: int = 8
    timeout: float = 600.0
    stop_after: int = 10
    dry_run: bool = False
    summary_json: Optional[Path] = None
    report: Optional[Path] = None
    api_key: Optional[str] = field(default=None, repr=False)
    show_progress: Optional[bool] = None

    def check(self) -> None:
        """Raises ``BatchInputError`` (or ``ValueError``) naming what is wrong.

        >>> BatchOptions(Path("i"), Path("o"), concurrency=0).check()
        Traceback (most recent call last):
        ValueError: concurrency must be >= 1, got 0
        """
        if self.provider is not None and self.provider not in PROVIDERS:
            raise BatchInputError(
                f"unknown provider {self.provider!r}; choose one of {', '.join(PROVIDERS)}"
            )
        for name in ("rpm", "tpm", "burst", "timeout"):
            value = getattr(self, name)
            if value is not None and not (0 < value < float("inf")):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name, least in (("concurrency", 1), ("max_retries", 0), ("stop_after", 1)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be >= {least}, got {getattr(self, name)!r}")
        if Path(self.output_path).resolve() == Path(self.input_path).resolve():
            raise BatchInputError(f"the output would overwrite the input: {self.output_path}")
        for name in ("summary_json", "report"):
            path = getattr(self, name)
            if path is not None and Path(path).is_dir():
                raise BatchInputError(f"--{name.replace('_', '-')} is a directory: {path}")

    def provider_for(self, kind: str) -> str:
        """The provider the lines of ``kind`` go to; a clear error when ``--provider`` disagrees.

        >>> BatchOptions(Path("i"), Path("o")).provider_for("anthropic")
        'anthropic'
        """
        chosen = self.provider
        if kind == "anthropic" and chosen not in (None, "anthropic"):
            raise BatchInputError(
                f"the input holds Anthropic Message Batches lines; --provider {chosen} cannot take them"
            )
        if kind == "openai" and chosen == "anthropic":
            raise BatchInputError(
                "the input holds OpenAI Batch API lines; --provider anthropic cannot take them"
            )
        return provider_of(kind, chosen or "openai", self.base_url)


class _Run:
    """One run's state: the queue, the writer, the counters, the stop and Ctrl-C policy."""

    def __init__(self, options: BatchOptions, summary: BatchSummary, todo: list[Job]) -> None:
        self.options = options
        self.summary = summary
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        for job in todo:
            self.queue.put_nowait(job)
        self.progress = Progress(len(todo), summary, options.show_progress)
        self.started = time.monotonic()
        self.stopping = False
        self.exit_status = 0
        self.workers: list[asyncio.Task[None]] = []
        self.in_flight: dict[asyncio.Task[None], list[bool]] = {}
        self.secret = ""
        self.writer: Optional[ResultWriter] = None
        self.sender: Optional[Sender] = None

    def on_attempt(
        self,
        began: float,
        ended: float,
        status: Optional[int],
        error: str,
        tokens: int,
        again: bool,
    ) -> None:
        s = self.summary
        s.http_requests += 1
        s.rate_limited += status == 429
        s.retries += again
        s.tokens += tokens
        s.attempts.append(
            (began - self.started, ended - self.started, status, error, tokens, again)
        )
        self.progress.refresh()

    # -- stopping -----------------------------------------------------------

    def interrupt(self) -> None:
        if self.stopping:
            self.progress.note("cancelling the requests in flight")
            for task in self.workers:
                task.cancel()
            return
        self.stopping = True
        self.summary.interrupted = True
        self.exit_status = EXIT_INTERRUPTED
        sent = 0
        for task in self.workers:
            if self.in_flight.get(task, [False])[0]:
                sent += 1
            else:
                task.cancel()  # waiting for the limiter or a backoff: nothing in flight
        self.progress.note(
            f"interrupted: finishing {sent} request(s) in flight; Ctrl-C again to cancel them"
        )

    def stop(self, reason: str, status: int) -> None:
        """Stops every worker at once (provider down, output not writable)."""
        if not self.summary.stopped:
            self.summary.stopped = reason
            self.exit_status = status
            self.progress.note(f"ratekeeper batch: stopping: {reason}")
        self.stopping = True
        current = asyncio.current_task()
        for task in self.workers:
            if task is not current:
                task.cancel()

    # -- the work -------------------------------------------------------------

    def record(
        self, job: Job, record: dict[str, Any], status: str, attempts: int, took: float
    ) -> None:
        assert self.writer is not None
        self.writer.write(job, record)  # BatchWriteError: the caller stops the batch
        self.summary.count(status, attempts)
        if status != "invalid":  # the bar counts the lines to send
            self.summary.lines.append((job.id, took, attempts, status))
            self.progress.advance()

    def finish(self, job: Job, outcome: Outcome) -> None:
        if self.secret and not outcome.ok:  # an error may echo the key: never write it
            outcome.message = outcome.message.replace(self.secret, "***")
            text = json.dumps(outcome.body)
            if self.secret in text:
                outcome.body = json.loads(text.replace(self.secret, "***"))
        status = "ok" if outcome.ok else ("cancelled" if outcome.error == "cancelled" else "error")
        self.record(job, result_record(job, outcome), status, outcome.attempts, outcome.elapsed)

    def write_failed(self, exc: BatchWriteError) -> None:
        self.stop(f"{exc}; the lines not written are sent again on the next run", EXIT_WRITE)

    async def run_job(self, job: Job, worker: int) -> None:
        try:
            await self._run_job(job, worker)
        except BatchWriteError as exc:
            self.write_failed(exc)

    async def _run_job(self, job: Job, worker: int) -> None:
        assert self.sender is not None
        task = asyncio.current_task()
        assert task is not None
        flag = self.in_flight[task] = [False]
        started, wall = time.monotonic(), time.time()
        try:
            outcome = await self.sender.send(job, flag, worker)
        except asyncio.CancelledError:
            if flag[0]:
                took = time.monotonic() - started
                cancelled = Outcome(error="cancelled", message="cancelled", attempts=1)
                cancelled.started_at, cancelled.elapsed = wall, took
                self.finish(job, cancelled)
            raise
        except ProviderDown as exc:
            self.stop(str(exc), EXIT_STOPPED)
            self.finish(job, exc.outcome)
            return
        finally:
            self.in_flight.pop(task, None)
        self.finish(job, outcome)

    async def worker(self, index: int) -> None:
        while not self.stopping:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await self.run_job(job, index)


def _install_sigint(run: _Run) -> bool:
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, run.interrupt)
    except (NotImplementedError, RuntimeError, ValueError):
        return False  # not the main thread, or a platform without loop signal handlers
    return True


def _plan(options: BatchOptions) -> tuple[BatchSummary, list[Job], Previous, list[Job]]:
    """Reads both files: the summary to fill, every job, the earlier results, what to send."""
    options.check()
    kind, jobs = read_jobs(
        options.input_path, options.provider or "openai", options.model, options.max_tokens
    )
    provider = options.provider_for(kind)
    previous = read_previous(options.output_path)
    todo = [j for j in jobs if j.problem is None and not previous.done(j.key, options.retry_failed)]
    summary = BatchSummary(options.rpm, options.tpm, options.burst, kind=kind, provider=provider)
    summary.total = len(jobs)
    summary.skipped = sum(1 for j in jobs if j.problem is None) - len(todo)
    return summary, jobs, previous, todo


async def run_batch(options: BatchOptions) -> BatchSummary:
    """Runs the batch; returns what happened. Raises ``BatchInputError`` before sending anything.

    >>> # summary = await run_batch(BatchOptions(Path("in.jsonl"), Path("out.jsonl"), "m"))
    """
    summary, jobs, previous, todo = _plan(options)
    if options.dry_run:
        summary.invalid = sum(1 for j in jobs if j.problem is not None)
        summary.dry_run = _dry_run_text(options, summary, jobs, todo)
        summary.exit_status = EXIT_FAILED if summary.invalid else 0
        _write_extras(options, summary)
        return summary
    api_key = options.api_key or (resolve_key(summary.provider, options.base_url) if todo else "")
    run = _Run(options, summary, todo)
    run.secret = api_key
    run.writer = writer = ResultWriter(options.output_path)
    handled = _install_sigint(run)
    try:
        await _send_all(run, jobs, todo, api_key)
    finally:
        if handled:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
        summary.wall = time.monotonic() - run.started
        run.progress.close()
        try:
            writer.close()
            if run.exit_status != EXIT_WRITE:
                compact(options.output_path, jobs, previous, writer)
        except BatchWriteError as exc:
            summary.stopped, run.exit_status = str(exc), EXIT_WRITE
        summary.exit_status = run.exit_status
        _write_extras(options, summary)
    return summary


async def _send_all(run: _Run, jobs: list[Job], todo: list[Job], api_key: str) -> None:
    try:
        for job in jobs:
            if job.problem is not None:
                run.record(job, invalid_record(job), "invalid", 0, 0.0)
    except BatchWriteError as exc:
        run.write_failed(exc)
        return
    if not todo:
        return
    o = run.options
    run.sender = sender = Sender(
        provider=run.summary.provider,
        base_url=o.base_url,
        api_key=api_key,
        rpm=o.rpm,
        tpm=o.tpm,
        burst=o.burst,
        concurrency=min(o.concurrency, len(todo)),
        max_retries=o.max_retries,
        timeout=o.timeout,
        stop_after=o.stop_after,
        on_attempt=run.on_attempt,
    )
    sender.stopping = lambda: run.stopping
    try:
        count = min(o.concurrency, len(todo))
        run.workers = [asyncio.create_task(run.worker(i)) for i in range(count)]
        results = await asyncio.gather(*run.workers, return_exceptions=True)
        for result in results:  # a bug in a worker is raised, never swallowed
            if isinstance(result, Exception):
                raise result
    finally:
        run.summary.learned = sender.learned
        await sender.close()


def _dry_run_text(
    options: BatchOptions, summary: BatchSummary, jobs: list[Job], todo: list[Job]
) -> str:
    """What ``--dry-run`` prints: counts, the first problems, tokens and the time the limits allow."""
    by_url: dict[str, int] = {}
    for job in todo:
        by_url[job.url] = by_url.get(job.url, 0) + 1
    tokens = sum(job.tokens for job in todo)
    routes = ", ".join(f"{url}: {n}" for url, n in sorted(by_url.items())) or "none"
    lines = [
        f"ratekeeper batch --dry-run: {options.input_path}: {summary.total} line(s) of "
        f"{summary.kind} format, for {summary.provider}",
        f"  to send: {len(todo)} ({routes}); already done: {summary.skipped}; "
        f"invalid: {summary.invalid}",
    ]
    problems = [job.problem for job in jobs if job.problem]
    lines.extend(f"    {problem}" for problem in problems[:10])
    if len(problems) > 10:
        lines.append(f"    ... and {len(problems) - 10} more")
    lines.append(f"  token estimate: {tokens:,} (prompt characters / 4 + the output each allows)")
    if options.rpm or options.tpm:
        seconds = summary.ideal_seconds(len(todo), tokens)
        lines.append(f"  the limits allow this in {seconds:,.1f} s at best")
    else:
        lines.append("  no --rpm or --tpm given: the pace is learned from the provider's headers")
    return "\n".join(lines)


def _write_extras(options: BatchOptions, summary: BatchSummary) -> None:
    """``--summary-json`` and ``--report``; a failure here is reported, never a traceback."""
    outputs = []
    if options.summary_json is not None:
        data = json.dumps(summary.to_dict(), indent=2, default=str) + "\n"
        outputs.append((Path(options.summary_json), data))
    if options.report is not None and not options.dry_run:
        outputs.append((Path(options.report), render_report(summary, str(options.input_path))))
    for path, text in outputs:
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"ratekeeper batch: error: cannot write {path}: {exc.strerror}", file=sys.stderr)
            summary.exit_status = summary.exit_status or EXIT_WRITE


def main_batch(options: BatchOptions) -> int:
    """Runs the batch from the command line: prints the summary; returns the exit status.

    Exit status: 0 all done, 1 some lines failed, 2 bad input or options,
    3 stopped because the provider looks down or refuses the key, 4 the output could not be
    written, 130 interrupted.
    """
    try:
        summary = asyncio.run(run_batch(options))
    except (BatchInputError, ValueError) as exc:
        print(f"ratekeeper batch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if options.dry_run:
        print(summary.dry_run, file=sys.stderr)
    else:
        print(summary.render(options.output_path), file=sys.stderr)
    if options.report is not None and not options.dry_run:
        print(f"  report: {options.report}", file=sys.stderr)
    if summary.exit_status:
        return summary.exit_status
    return EXIT_FAILED if summary.failed or summary.invalid else 0
