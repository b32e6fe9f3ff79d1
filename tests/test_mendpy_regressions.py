"""Regressions for the final review pass's mends (wrap's sit-out, breaker clones, classify)."""

from __future__ import annotations

import ratekeeper as rk
from ratekeeper import _core, classify
from ratekeeper._guarding import clone_breaker
from ratekeeper._route import Route
from ratekeeper.errors import RetryError


class _TenPerAttempt:
    def delay(self, attempt: int) -> float:
        return 10.0 * attempt


def test_sit_out_without_a_server_wait_uses_the_backoff_of_the_last_decision():
    clock = rk.ManualClock()
    policy = rk.Retry(max_retries=2, backoff=_TenPerAttempt(), clock=clock)
    state = Route(rk.Limiter(rpm=60), policy)
    # After attempt 3, ``decide`` would have waited delay(2): 20 s.
    assert policy.decide(TimeoutError(), 3).retry is False
    assert policy.decide(TimeoutError(), 2).delay == 10.0
    state.sit_out("m", RetryError(TimeoutError(), 3))
    until, _ = state._sitting_out["m"]
    assert until - state.now() == 20.0


def test_clone_of_a_rust_breaker_is_a_fresh_one_with_its_settings():
    template = _core.CircuitBreaker(4, 7.0, half_open_max_calls=2)
    template.record_failure()
    clone = clone_breaker(template)
    assert type(clone) is _core.CircuitBreaker
    assert clone is not template
    assert (clone.failure_threshold, clone.reset_timeout, clone.half_open_max_calls) == (4, 7.0, 2)
    assert rk.CircuitBreaker(3).copy().failure_threshold == 3


def test_verdict_cache_of_exception_classes_stays_bounded():
    for index in range(classify._VERDICT_CACHE_SIZE * 2):
        kind = type(f"Made{index}Error", (Exception,), {})
        assert classify.is_retryable(kind()) is False
    assert len(classify._verdict_by_type) <= classify._VERDICT_CACHE_SIZE
    assert classify.is_retryable(TimeoutError()) is True
