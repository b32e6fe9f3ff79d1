"""ratekeeper: keep LLM API clients inside their rate limits, at native speed.

>>> import ratekeeper as rk; rk.TokenBucket.per_minute(60).try_acquire()
True
"""

from __future__ import annotations

from ._core import ManualClock
from .errors import CircuitOpenError, RateLimitError, RateLimitTimeout, RetryError
from .headers import ServerLimits, read_limits, retry_after
from .limiter import Limiter, Permit
from .limiters import FixedWindow, SlidingWindow, TokenBucket

__all__ = [
    "CircuitOpenError",
    "FixedWindow",
    "Limiter",
    "ManualClock",
    "Permit",
    "RateLimitError",
    "RateLimitTimeout",
    "RetryError",
    "ServerLimits",
    "SlidingWindow",
    "TokenBucket",
    "read_limits",
    "retry_after",
]
