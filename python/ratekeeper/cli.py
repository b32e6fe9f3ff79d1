"""The ``ratekeeper`` command: ``batch``, ``demo`` and ``mock-server``.

Thin by design: each subcommand parses its arguments and calls the library
(:mod:`ratekeeper.batch`, :mod:`ratekeeper._demo`, :mod:`ratekeeper.testing`).

>>> # main(["demo"]) -> 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ratekeeper")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ratekeeper", description="Keep LLM API clients inside their rate limits."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    batch = sub.add_parser(
        "batch",
        help="send every line of a JSONL file, within the limits",
        description="Send every line of an OpenAI Batch API file, an Anthropic Message "
        "Batches file or a file of chat request bodies, within the limits; results in "
        "the matching provider's batch result format.",
    )
    batch.add_argument("input", type=Path, help="JSONL file, one request per line")
    batch.add_argument("-o", "--output", type=Path, required=True, help="JSONL results")
    batch.add_argument("--model", help="model for lines that name none")
    batch.add_argument(
        "--provider",
        choices=("openai", "anthropic", "openrouter"),
        help="where simple lines go (default openai; provider-format files name their own)",
    )
    batch.add_argument("--base-url", help="API base URL (default: the provider's)")
    batch.add_argument("--rpm", type=_positive(float), help="requests per minute")
    batch.add_argument("--tpm", type=_positive(float), help="tokens per minute")
    batch.add_argument("--burst", type=_positive(float), help="requests at once (default: rpm)")
    batch.add_argument("--concurrency", type=_positive(int), default=64, help="requests in flight")
    batch.add_argument("--max-tokens", type=_positive(int), help="max_tokens for lines without")
    batch.add_argument("--max-retries", type=_count, default=8, help="retries per line (8)")
    batch.add_argument(
        "--timeout", type=_positive(float), default=600.0, help="seconds per attempt (600)"
    )
    batch.add_argument("--retry-failed", action="store_true", help="resend lines that failed")
    batch.add_argument("--dry-run", action="store_true", help="validate and estimate; send nothing")
    batch.add_argument("--summary-json", type=Path, metavar="FILE", help="write the summary here")
    batch.add_argument("--report", type=Path, metavar="FILE.html", help="write an HTML report")
    batch.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    progress = batch.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None)
    progress.add_argument("--no-progress", dest="progress", action="store_false")

    demo = sub.add_parser("demo", help="a short batch against the built-in mock provider")
    demo.add_argument("--requests", type=_positive(int), default=300)
    demo.add_argument("--rpm", type=_positive(float), default=900.0)
    demo.add_argument("--report", type=Path, metavar="FILE.html", help="where to write the report")

    mock = sub.add_parser("mock-server", help="serve a local OpenAI/Anthropic-compatible provider")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    mock.add_argument("--rpm", type=_positive(float), help="requests per minute (default: none)")
    mock.add_argument("--tpm", type=_positive(float), help="tokens per minute (default: none)")
    mock.add_argument("--burst", type=_positive(float), help="request bucket size (default: rpm)")
    mock.add_argument("--tolerance", type=float, default=1.0, help="seconds of jitter forgiven")
    mock.add_argument("--error-rate", type=_fraction, default=0.0, help="share answered 5xx")
    mock.add_argument("--error-status", type=int, default=500)
    mock.add_argument(
        "--drop-rate", type=_fraction, default=0.0, help="share of dropped connections"
    )
    mock.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    mock.add_argument("--api-key", help="require this key (default: accept any)")
    return parser


def _batch(args: argparse.Namespace) -> int:
    from .batch import BatchOptions, main_batch

    options = BatchOptions(
        input_path=args.input,
        output_path=args.output,
        model=args.model,
        provider=args.provider,
        base_url=args.base_url,
        rpm=args.rpm,
        tpm=args.tpm,
        burst=args.burst,
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        retry_failed=args.retry_failed,
        max_retries=args.max_retries,
        timeout=args.timeout,
        dry_run=args.dry_run,
        summary_json=args.summary_json,
        report=args.report,
        show_progress=args.progress,
    )
    return main_batch(options)


def _mock_server(args: argparse.Namespace) -> int:
    from .testing.mock_server import MockProvider

    try:
        provider = MockProvider(
            rpm=args.rpm,
            tpm=args.tpm,
            burst=args.burst,
            tolerance=args.tolerance,
            error_rate=args.error_rate,
            error_status=args.error_status,
            drop_rate=args.drop_rate,
            latency=args.latency,
            api_key=args.api_key,
            host=args.host,
            port=args.port,
        )
        provider.serve()
    except KeyboardInterrupt:
        return 0  # uvicorn shut down cleanly, then re-raised the Ctrl-C
    except (ValueError, OSError) as exc:
        print(f"ratekeeper mock-server: error: {exc}", file=sys.stderr)
        return 2
    return 0


# What the `cli` extra of pyproject.toml installs for this command.
CLI_PACKAGES = frozenset(
    {"openai", "anthropic", "starlette", "uvicorn", "tqdm", "httpx", "httpcore"}
)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the ``ratekeeper`` command; returns its exit status.

    >>> # raise SystemExit(main(["batch", "in.jsonl", "-o", "out.jsonl", "--model", "gpt-4o-mini"]))
    """
    args = _parser().parse_args(argv)
    try:
        if args.command == "batch":
            return _batch(args)
        if args.command == "mock-server":
            return _mock_server(args)
        from ._demo import run_demo

        return run_demo(requests=args.requests, rpm=args.rpm, report=args.report)
    except ModuleNotFoundError as exc:
        # The command's packages are an extra (`ratekeeper[cli]`); say so
        # instead of a traceback. Any other missing module is a real bug.
        missing = (exc.name or "").split(".")[0]
        if missing not in CLI_PACKAGES:
            raise
        print(
            f"ratekeeper {args.command}: needs the {missing!r} package: "
            "pip install 'ratekeeper[cli]'",
            file=sys.stderr,
        )
        return 2
