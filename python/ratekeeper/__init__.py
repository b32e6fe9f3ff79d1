"""ratekeeper: keep LLM API clients inside their rate limits, at native speed.

>>> import ratekeeper as rk; rk.TokenBucket.per_minute(60).try_acquire()
True
"""

from __future__ import annotations

from ._core import Backoff, ManualClock
from .breaker import CircuitBreaker
from .errors import CircuitOpenError, RateLimitError, RateLimitTimeout, RetryError
from .limiters import TokenBucket

__all__ = [
    "Backoff",
    "CircuitBreaker",
    "CircuitOpenError",
    "ManualClock",
    "RateLimitError",
    "RateLimitTimeout",
    "RetryError",
    "TokenBucket",
]
