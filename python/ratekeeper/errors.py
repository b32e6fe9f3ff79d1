"""The exceptions ratekeeper raises. One ``except rk.RateLimitError`` catches them all.

Classification of other libraries' exceptions (``is_rate_limited``,
``is_retryable``) lives in :mod:`ratekeeper.classify`.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["CircuitOpenError", "RateLimitError", "RateLimitTimeout", "RetryError"]


class RateLimitError(Exception):
    """Base class of every exception ratekeeper raises.

    >>> issubclass(RetryError, RateLimitError)
    True
    """


class CircuitOpenError(RateLimitError):
    """A circuit breaker refused the call; ``retry_after`` seconds until it may let one through.

    >>> CircuitOpenError(2.5).retry_after
    2.5
    """

    def __init__(self, retry_after: float, message: Optional[str] = None) -> None:
        self.retry_after = float(retry_after)
        super().__init__(message or f"circuit open; retry after {self.retry_after:.3f}s")

    def __reduce__(self) -> tuple[type[CircuitOpenError], tuple[float, str]]:
        return (type(self), (self.retry_after, str(self)))


class RateLimitTimeout(RateLimitError):
    """A wait for a rate limit would have exceeded its timeout; nothing was taken.

    >>> RateLimitTimeout("too long", wait=3.0, timeout=1.0).wait
    3.0
    """

    def __init__(
        self,
        message: str = "rate limit wait would exceed the timeout",
        wait: Optional[float] = None,
        timeout: Optional[float] = None,
    ) -> None:
        self.wait = wait
        self.timeout = timeout
        super().__init__(message)

    def __reduce__(
        self,
    ) -> tuple[type[RateLimitTimeout], tuple[str, Optional[float], Optional[float]]]:
        return (type(self), (str(self), self.wait, self.timeout))


class RetryError(RateLimitError):
    """Retries ran out: ``last_exception`` is the final failure, ``attempts`` the calls made.

    >>> RetryError(ValueError("boom"), attempts=3).attempts
    3
    """

    def __init__(
        self, last_exception: BaseException, attempts: int, message: Optional[str] = None
    ) -> None:
        self.last_exception = last_exception
        self.attempts = attempts
        super().__init__(message or f"gave up after {attempts} attempt(s): {last_exception!r}")
        self.__cause__ = last_exception

    def __reduce__(self) -> tuple[type[RetryError], tuple[BaseException, int, str]]:
        return (type(self), (self.last_exception, self.attempts, str(self)))
