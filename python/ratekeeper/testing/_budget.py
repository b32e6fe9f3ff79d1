"""The mock provider's own limits, and the headers that describe them.

A real provider meters requests and tokens as token buckets that hold a
minute's worth (OpenAI documents limits that "replenish continuously"), so
the mock uses ratekeeper's own :class:`~ratekeeper.TokenBucket`. A client
whose arrivals are delayed unevenly by the network (the first request pays
for the TCP connect, later ones do not) would see its compliant requests
land a few milliseconds early; real providers forgive that, and so does the
mock: ``tolerance`` seconds of refill may be overdrawn before it answers 429.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Optional

from .._core import ManualClock
from ..limiters import TokenBucket


class Budget:
    """One limit (requests or tokens per minute) as a provider enforces it.

    >>> Budget(600).take(1)
    True
    """

    def __init__(
        self,
        per_minute: float,
        burst: Optional[float] = None,
        *,
        tolerance: float = 0.0,
        clock: Optional[ManualClock] = None,
    ) -> None:
        self.per_minute = per_minute
        self.capacity = float(per_minute if burst is None else burst)
        self.rate = per_minute / 60.0
        self.slack = self.rate * tolerance
        self._bucket = TokenBucket(self.rate, self.capacity + self.slack, clock=clock)

    def wait(self, cost: float) -> float:
        """Seconds until ``cost`` would be admitted; ``inf`` if it never fits."""
        if cost <= 0:
            return 0.0
        if cost > self.capacity + self.slack:
            return math.inf
        return self._bucket.wait_time(cost)

    def take(self, cost: float) -> bool:
        """Charges ``cost`` if it is admitted now."""
        if cost <= 0:
            return True
        if cost > self.capacity + self.slack:
            return False
        return self._bucket.try_acquire(cost)

    def remaining(self) -> int:
        """What the headers report as left: never negative, never above the limit."""
        return max(0, min(int(self.capacity), math.floor(self._bucket.available - self.slack)))

    def reset_seconds(self) -> float:
        """Seconds until the budget is full again (what ``x-ratelimit-reset-*`` reports)."""
        missing = self.capacity + self.slack - self._bucket.available
        return max(0.0, missing / self.rate)


def go_duration(seconds: float) -> str:
    """Formats a duration as OpenAI's reset headers do: ``20ms``, ``1s``, ``6m0s``, ``1h2m3.5s``.

    >>> go_duration(0.02), go_duration(360.0)
    ('20ms', '6m0s')
    """
    if seconds < 1.0:
        return f"{max(0, round(seconds * 1000))}ms"
    hours, rest = divmod(seconds, 3600.0)
    minutes, secs = divmod(rest, 60.0)
    text = f"{round(secs, 3):g}s"
    if hours or minutes:
        text = f"{int(minutes)}m" + text
    if hours:
        text = f"{int(hours)}h" + text
    return text


def rfc3339_after(seconds: float) -> str:
    """The UTC instant ``seconds`` from now, as Anthropic's reset headers give it."""
    when = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def openai_headers(requests: Optional[Budget], tokens: Optional[Budget]) -> dict[str, str]:
    """``x-ratelimit-*`` headers for the budgets that are set."""
    headers: dict[str, str] = {}
    for name, budget in (("requests", requests), ("tokens", tokens)):
        if budget is None:
            continue
        headers[f"x-ratelimit-limit-{name}"] = str(int(budget.per_minute))
        headers[f"x-ratelimit-remaining-{name}"] = str(budget.remaining())
        headers[f"x-ratelimit-reset-{name}"] = go_duration(budget.reset_seconds())
    return headers


def anthropic_headers(requests: Optional[Budget], tokens: Optional[Budget]) -> dict[str, str]:
    """``anthropic-ratelimit-*`` headers for the budgets that are set."""
    headers: dict[str, str] = {}
    for name, budget in (("requests", requests), ("tokens", tokens)):
        if budget is None:
            continue
        headers[f"anthropic-ratelimit-{name}-limit"] = str(int(budget.per_minute))
        headers[f"anthropic-ratelimit-{name}-remaining"] = str(budget.remaining())
        headers[f"anthropic-ratelimit-{name}-reset"] = rfc3339_after(budget.reset_seconds())
    return headers


def retry_after_headers(wait: float) -> dict[str, str]:
    """``retry-after`` (whole seconds, rounded up) and ``retry-after-ms`` for a wait."""
    return {
        "retry-after": str(max(1, math.ceil(wait))),
        "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
    }
