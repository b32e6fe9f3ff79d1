"""ratekeeper: keep LLM API clients inside their rate limits, at native speed.

>>> import ratekeeper as rk; rk.TokenBucket.per_minute(60).try_acquire()
True
"""

from __future__ import annotations

from . import asgi
from ._core import Backoff, ManualClock, RateTracker
from ._events import Event, subscribe
from .breaker import CircuitBreaker
from .cache import ResponseCache
from .classify import is_rate_limited, is_retryable
from .decorators import rate_limited
from .errors import CircuitOpenError, RateLimitError, RateLimitTimeout, RetryError
from .headers import ServerLimits, read_limits, retry_after
from .keyed import KeyedLimiter
from .limiter import Limiter, Permit
from .limiters import FixedWindow, SlidingWindow, TokenBucket
from .redis import RedisBackend, RedisSlidingWindow, RedisTokenBucket
from .retrying import Retry, RetryDecision, RetryState, retry
from .transports import async_transport, transport
from .wrap import wrap

__all__ = [
    "Backoff",
    "CircuitBreaker",
    "CircuitOpenError",
    "Event",
    "FixedWindow",
    "KeyedLimiter",
    "Limiter",
    "ManualClock",
    "Permit",
    "RateLimitError",
    "RateLimitTimeout",
    "RateTracker",
    "RedisBackend",
    "RedisSlidingWindow",
    "RedisTokenBucket",
    "ResponseCache",
    "Retry",
    "RetryDecision",
    "RetryError",
    "RetryState",
    "ServerLimits",
    "SlidingWindow",
    "TokenBucket",
    "asgi",
    "async_transport",
    "is_rate_limited",
    "is_retryable",
    "rate_limited",
    "read_limits",
    "retry",
    "retry_after",
    "subscribe",
    "transport",
    "wrap",
]
