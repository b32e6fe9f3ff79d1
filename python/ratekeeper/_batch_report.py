"""What ``ratekeeper batch`` shows: a progress bar on a terminal, and the closing summary."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
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
    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    cancelled: int = 0
    sent: int = 0
    tokens: int = 0
    http_requests: int = 0
    rate_limited: int = 0
    wall: float = 0.0
    interrupted: bool = False

    @property
    def retries(self) -> int:
        """HTTP attempts beyond the first of each request."""
        return max(0, self.http_requests - self.sent)

    def count(self, status: str, attempts: int) -> None:
        """Counts one finished line.

        >>> BatchSummary().count("ok", attempts=1)
        """
        if status == "ok":
            self.ok += 1
        elif status == "error":
            self.failed += 1
        else:
            self.cancelled += 1
        if attempts:
            self.sent += 1

    def add_usage(self, response: dict[str, Any]) -> None:
        """Adds a response's tokens (OpenAI ``total_tokens`` or Anthropic input + output).

        >>> BatchSummary().add_usage({"usage": {"total_tokens": 42}})
        """
        usage = response.get("usage") or {}
        total = usage.get("total_tokens")
        if total is None:
            total = (usage.get("input_tokens") or 0) + (usage.get("output_tokens") or 0)
        self.tokens += int(total or 0)

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
            f"{self.wall:.1f} s: {self.ok} ok, {self.failed} failed, {self.cancelled} cancelled"
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
            f"429s seen: {self.rate_limited}; failures: {self.failed}"
        )
        lines.append(f"  results: {output}")
        return "\n".join(lines)


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
