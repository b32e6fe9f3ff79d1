"""Regressions found in the last quality pass over the Python layer."""

from __future__ import annotations

import os
import signal
import threading

import pytest

import ratekeeper as rk


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "²"},
        {"retry-after-ms": "³"},
        {"x-ratelimit-remaining-requests": "²"},
        {"x-ratelimit-limit-tokens": "1²"},
        {"x-ratelimit-reset-tokens": "²s"},
        {"x-ratelimit-reset-requests": "²ms"},
        {b"retry-after": b"\xb2"},  # latin-1 bytes that decode to "²"
    ],
)
def test_header_of_digits_float_refuses_is_ignored_not_raised(headers: dict) -> None:
    # "²" passes str.isdigit() but float() refuses it: such a value is
    # nonsense, to be skipped like any other, never an exception.
    assert rk.read_limits(headers) == rk.ServerLimits()
    assert rk.retry_after(headers) is None


def test_unicode_decimal_digits_still_read_as_numbers() -> None:
    assert rk.retry_after({"retry-after": "٣"}) == 3.0
    assert rk.read_limits({"x-ratelimit-reset-tokens": "٣s"}).tokens_reset == 3.0


class _Interrupted(BaseException):
    """Stands in for KeyboardInterrupt, raised from a signal handler in the main thread."""


def test_interrupted_sync_redis_acquire_counts_cancelled_and_gives_back(
    redis_url: str, unique_key: str
) -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise _Interrupted

    limiter = rk.Limiter(rpm=1, tpm=1000, backend=rk.RedisBackend(redis_url), key=unique_key)
    limiter.acquire(tokens=10).release()  # the one request of this minute
    before = limiter.available("tpm")
    assert before is not None
    previous = signal.signal(signal.SIGUSR1, interrupt)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.start()
    try:
        with pytest.raises(_Interrupted):
            limiter.acquire(tokens=10)  # would wait about a minute
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    stats = limiter.stats()
    assert (stats["granted"], stats["cancelled"], stats["in_flight"]) == (1, 1, 0)
    after = limiter.available("tpm")
    assert after is not None and after >= before - 0.5  # not the 10 it reserved
