"""The keyword arguments that ``@rate_limited``, ``wrap`` and the transports share, checked once.

Each builder turns what the user wrote into what the attempt loop needs, or
raises a ``ValueError`` / ``TypeError`` naming the argument at creation,
never at the first call.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from .retrying import Retry, finite

__all__ = ["NO_RETRY", "check_breaker", "check_timeout", "make_limiter", "make_policy"]

# Nothing is retryable: every error passes through unchanged, never as RetryError.
NO_RETRY = Retry(max_retries=0, retry_on=lambda exc: False)


def _check_budget(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number > 0, got {type(value).__name__}")
    if not finite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")


def make_limiter(
    limiter: Any, rpm: Optional[float], tpm: Optional[float], concurrency: Optional[int]
) -> Any:
    """``limiter`` itself, or a new ``rk.Limiter`` from the shorthand budgets (not both).

    >>> make_limiter(None, 60, None, None).stats()["available"]
    {'rpm': 60.0}
    """
    shorthand = {"rpm": rpm, "tpm": tpm, "concurrency": concurrency}
    given: dict[str, Any] = {name: value for name, value in shorthand.items() if value is not None}
    if limiter is not None:
        if given:
            raise ValueError(f"give limiter= or the budgets ({', '.join(given)}), not both")
        if not callable(getattr(limiter, "acquire", None)):
            raise TypeError(f"limiter must be an rk.Limiter, got {type(limiter).__name__}")
        return limiter
    for name, value in given.items():
        _check_budget(name, value)
    from .limiter import Limiter

    return Limiter(rpm=rpm, tpm=tpm, concurrency=concurrency)


def make_policy(retry: Union[bool, Retry, None]) -> Retry:
    """``retry=True`` means ``Retry()``; ``False``/``None`` means no retries.

    >>> make_policy(False).max_retries
    0
    """
    if retry is True:
        return Retry()
    if retry is False or retry is None:
        return NO_RETRY
    if isinstance(retry, Retry):
        return retry
    raise TypeError(f"retry must be True, False or an rk.Retry, got {type(retry).__name__}")


def check_timeout(timeout: Optional[float]) -> Optional[float]:
    """``None`` (wait as long as it takes) or a finite number of seconds > 0.

    >>> check_timeout(2)
    2.0
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"timeout must be a number of seconds or None, got {type(timeout).__name__}"
        )
    if not finite(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be a finite number of seconds > 0 or None, got {timeout}")
    return float(timeout)


def check_breaker(breaker: Any) -> Any:
    """``None`` or an ``rk.CircuitBreaker`` (anything with ``allow``).

    >>> check_breaker(None) is None
    True
    """
    if breaker is not None and not callable(getattr(breaker, "allow", None)):
        raise TypeError(f"breaker must be an rk.CircuitBreaker, got {type(breaker).__name__}")
    return breaker
