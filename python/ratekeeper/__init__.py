"""ratekeeper: keep LLM API clients inside their rate limits, at native speed.

>>> import ratekeeper as rk; rk.TokenBucket.per_minute(60).try_acquire()
True
"""

from __future__ import annotations

from ._core import Backoff, ManualClock
from .breaker import CircuitBreaker
from .cache import ResponseCache
from .classify import is_rate_limited, is_retryable
from .decorators import rate_limited
from .errors import CircuitOpenError, RateLimitError, RateLimitTimeout, RetryError
from .headers import ServerLimits, read_limits, retry_after
from .limiter import Limiter, Permit
from .limiters import TokenBucket
from .retry import Retry, RetryDecision, retry
from .wrap import wrap

__all__ = [
    "Backoff",
    "CircuitBreaker",
    "CircuitOpenError",
    "Limiter",
    "ManualClock",
    "Permit",
    "RateLimitError",
    "RateLimitTimeout",
    "ResponseCache",
    "Retry",
    "RetryDecision",
    "RetryError",
    "ServerLimits",
    "TokenBucket",
    "is_rate_limited",
    "is_retryable",
    "rate_limited",
    "read_limits",
    "retry",
    "retry_after",
    "wrap",
]
