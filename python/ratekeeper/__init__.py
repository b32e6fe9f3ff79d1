"""ratekeeper: keep LLM API clients inside their rate limits, at native speed.

>>> import ratekeeper as rk; rk.TokenBucket.per_minute(60).try_acquire()
True
"""

from __future__ import annotations

from . import asgi
from ._core import ManualClock, RateTracker
from .errors import CircuitOpenError, RateLimitError, RateLimitTimeout, RetryError
from .keyed import KeyedLimiter
from .limiters import TokenBucket
from .redis import RedisBackend, RedisTokenBucket

__all__ = [
    "CircuitOpenError",
    "KeyedLimiter",
    "ManualClock",
    "RateLimitError",
    "RateLimitTimeout",
    "RateTracker",
    "RedisBackend",
    "RedisTokenBucket",
    "RetryError",
    "TokenBucket",
    "asgi",
]
