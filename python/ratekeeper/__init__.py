"""ratekeeper: keep LLM API clients inside their rate limits, at native speed.

>>> import ratekeeper as rk; rk.TokenBucket.per_minute(60).try_acquire()
True
"""

from __future__ import annotations

from ._core import ManualClock
from .errors import CircuitOpenError, RateLimitError, RateLimitTimeout, RetryError
<<<<<<< HEAD
from .headers import ServerLimits, read_limits, retry_after
from .limiter import Limiter, Permit
from .limiters import TokenBucket

__all__ = [
    "CircuitOpenError",
    "Limiter",
=======
from .limiters import FixedWindow, SlidingWindow, TokenBucket

__all__ = [
    "CircuitOpenError",
    "FixedWindow",
>>>>>>> main
    "ManualClock",
    "Permit",
    "RateLimitError",
    "RateLimitTimeout",
    "RetryError",
<<<<<<< HEAD
    "ServerLimits",
=======
    "SlidingWindow",
>>>>>>> main
    "TokenBucket",
    "read_limits",
    "retry_after",
]
