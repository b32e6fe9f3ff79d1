"""ratekeeper: keep LLM API clients inside their rate limits, at native speed.

>>> import ratekeeper as rk; rk.TokenBucket.per_minute(60).try_acquire()
True
"""

from __future__ import annotations

from ._core import ManualClock
from .errors import CircuitOpenError, RateLimitError, RateLimitTimeout, RetryError
from .limiters import TokenBucket
from .redis import RedisBackend, RedisTokenBucket

__all__ = [
    "CircuitOpenError",
    "ManualClock",
    "RateLimitError",
    "RateLimitTimeout",
    "RedisBackend",
    "RedisTokenBucket",
    "RetryError",
    "TokenBucket",
]
