"""What ``ratekeeper batch`` shows: a progress bar on a terminal, and the closing summary."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


@dataclass
class BatchSummary:
    """Counts and timings of one batch run, and the limits it ran under.

    >>> BatchSummary(rpm=600).ideal_seconds(700)
    10.0
    """

    rpm: Optional[float] = None
    tpm: Optional[float] = None
    burst: Optional[float] = None
    kind: str = "simple"
    provider: str = "openai"
    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    invalid: int = 0
    cancelled: int = 0
    sent: int = 0
    tokens: int = 0
    http_requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    wall: float = 0.0
    interrupted: bool = False
    stopped: str = ""
    exit_status: int = 0
    dry_run: str = ""
    learned: dict[str, float] = field(default_factory=dict)
    # One row per HTTP attempt: (began, ended) in seconds from the start, status, error,
    # tokens, and whether a retry followed.
    attempts: list[tuple[float, float, Optional[int], str, int, bool]] = field(default_factory=list)
    # One row per line finished: (id, seconds from first try to result, attempts, outcome).
    lines: list[tuple[Any, float, int, str]] = field(default_factory=list)

    def count(self, status: str, attempts: int) -> None:
        """Counts one finished line: ``ok``, ``error``, ``invalid`` or ``cancelled``.

        >>> BatchSummary().count("ok", attempts=1)
        """
        if status == "ok":
            self.ok += 1
        elif status == "error":
            self.failed += 1
        elif status == "invalid":
            self.invalid += 1
        else:
            self.cancelled += 1
        if attempts:
            self.sent += 1

    def to_dict(self) -> dict[str, Any]:
        """What ``--summary-json`` writes: the counts, limits, rates and latency percentiles.

        >>> BatchSummary(ok=2).to_dict()["ok"]
        2
        """
        minutes = max(self.wall, 1e-9) / 60.0
        keys = [
            "kind",
            "provider",
            "total",
            "skipped",
            "ok",
            "failed",
            "invalid",
            "cancelled",
            "sent",
            "tokens",
            "http_requests",
            "rate_limited",
            "retries",
            "interrupted",
            "stopped",
            "exit_status",
            "learned",
        ]
        data: dict[str, Any] = {key: getattr(self, key) for key in keys}
        data.update(
            wall_seconds=round(self.wall, 3),
            limits={"rpm": self.rpm, "tpm": self.tpm, "burst": self.burst},
            requests_per_minute=round(self.sent / minutes, 1),
            tokens_per_minute=round(self.tokens / minutes, 1),
            ideal_seconds=round(self.ideal_seconds(self.sent, self.tokens), 3),
            latency_seconds=latency_percentiles([row[1] - row[0] for row in self.attempts]),
        )
        return data

    def ideal_seconds(self, requests: int, tokens: int = 0) -> float:
        """The least time the limits allow for these requests and tokens (buckets start full).

        >>> BatchSummary(rpm=60).ideal_seconds(120)
        60.0
        """
        best = 0.0
        if self.rpm:
            burst = self.burst if self.burst is not None else self.rpm
            best = max(best, max(0.0, requests - burst) / (self.rpm / 60.0))
        if self.tpm:
            best = max(best, max(0.0, tokens - self.tpm) / (self.tpm / 60.0))
        return best

    def render(self, output: Path) -> str:
        """The closing summary, a few lines of plain text.

        >>> print(summary.render(Path("out.jsonl")))  # doctest: +SKIP
        """
        minutes = max(self.wall, 1e-9) / 60.0
        lines = [
            f"ratekeeper batch: {self.ok + self.failed + self.cancelled} line(s) in "
            f"{self.wall:.1f} s: {self.ok} ok, {self.failed} failed, {self.invalid} invalid, "
            f"{self.cancelled} cancelled"
            + (f", {self.skipped} already done (skipped)" if self.skipped else "")
            + (" (interrupted)" if self.interrupted else ""),
            f"  tokens: {self.tokens:,}",
            f"  achieved: {self.sent / minutes:,.0f} requests/min against "
            f"{_limit(self.rpm, 'RPM')}; {self.tokens / minutes:,.0f} tokens/min against "
            f"{_limit(self.tpm, 'TPM')}",
        ]
        ideal = self.ideal_seconds(self.sent, self.tokens)
        if ideal >= 1.0 and self.wall > 0:
            lines.append(
                f"  the limits allow this in {ideal:.1f} s at best: ran at "
                f"{100.0 * ideal / self.wall:.0f}% of the allowed throughput"
            )
        lines.append(
            f"  HTTP requests: {self.http_requests}; retries: {self.retries}; "
            f"429s seen: {self.rate_limited}; failures: {self.failed + self.invalid}"
        )
        if self.stopped:
            lines.append(f"  stopped early: {self.stopped}")
        lines.append(f"  results: {output}")
        return "\n".join(lines)


def latency_percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99 and max of ``values`` (nearest rank), in seconds; empty when none.

    >>> latency_percentiles([1.0, 2.0, 3.0, 4.0])["p50"]
    2.0
    """
    if not values:
        return {}
    ordered = sorted(values)
    result = {}
    for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        rank = max(1, math.ceil(q * len(ordered)))
        result[name] = round(ordered[rank - 1], 4)
    result["max"] = round(ordered[-1], 4)
    return result


def _limit(value: Optional[float], unit: str) -> str:
    return f"a limit of {value:,.0f} {unit}" if value else f"no {unit} limit"


class Progress:
    """A tqdm bar on a terminal (done/total, rate, ETA, 429s, retries); silent otherwise."""

    def __init__(self, total: int, summary: BatchSummary, enabled: Optional[bool]) -> None:
        self.summary = summary
        self._last = 0.0
        self._bar: Any = None
        if enabled is None:
            enabled = sys.stderr.isatty()
        if enabled:
            from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

            self._bar = tqdm(total=total, unit="req", file=sys.stderr, dynamic_ncols=True)

    def refresh(self) -> None:
        """Updates the 429s / retries shown, at most four times a second."""
        if self._bar is None:
            return
        now = time.monotonic()
        if now - self._last >= 0.25:
            self._last = now
            s = self.summary
            self._bar.set_postfix(
                {"429s": s.rate_limited, "retries": s.retries, "failed": s.failed}, refresh=False
            )

    def advance(self) -> None:
        """One more line done."""
        if self._bar is not None:
            self.refresh()
            self._bar.update(1)

    def note(self, message: str) -> None:
        """A message that does not break the bar."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self.refresh()
            self._bar.close()
