"""The package's type stubs (``_core.pyi``, ``py.typed``) are accepted by ``mypy --strict`` in user code."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

USER_CODE = textwrap.dedent(
    """
    import asyncio

    import ratekeeper as rk


    def sync_side() -> float:
        bucket = rk.TokenBucket.per_minute(60, burst=10)
        granted: bool = bucket.try_acquire() and bucket.acquire(timeout=2.0)
        with bucket:
            pass
        window = rk.SlidingWindow(limit=10, window=1.0, clock=rk.ManualClock())
        keyed = rk.KeyedLimiter(1.0, 5, overrides={"gpt-4o": (10.0, 50)})
        keyed.try_acquire("user-1")
        tracker = rk.RateTracker(window=60.0)
        tracker.record("gpt-4o", tokens=120)
        breaker = rk.CircuitBreaker(failure_threshold=3, reset_timeout=30.0)
        limiter = rk.Limiter(rpm=500, tpm=200_000, concurrency=16)
        with limiter.acquire(tokens=1200) as permit:
            permit.reconcile(900)
        delay: float = rk.Backoff(base=0.5).delay(3)
        wait = window.wait_time() + float(granted) + delay
        return wait + tracker.requests("gpt-4o") + breaker.retry_after


    @rk.rate_limited(rpm=60, tokens=lambda prompt: len(prompt) // 4 + 512)
    async def ask(prompt: str) -> str:
        return prompt.upper()


    async def async_side() -> str:
        bucket = rk.TokenBucket(rate=5.0, capacity=5.0)
        async with bucket:
            pass
        ok: bool = await bucket.acquire_async(2, timeout=1.0)
        return await ask("hello") + str(ok)


    def classify(exc: Exception) -> bool:
        after = rk.retry_after(exc)
        return rk.is_retryable(exc) or rk.is_rate_limited(exc) or after is not None


    print(sync_side(), asyncio.run(async_side()), classify(ValueError("x")))
    """
)


def test_user_code_type_checks_under_mypy_strict(tmp_path: Path) -> None:
    program = tmp_path / "user_program.py"
    program.write_text(USER_CODE)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(program)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_typed_user_program_also_runs(tmp_path: Path) -> None:
    program = tmp_path / "user_program.py"
    program.write_text(USER_CODE)
    result = subprocess.run(
        [sys.executable, str(program)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
