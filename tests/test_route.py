"""The wrap transport's route: fallback sit-outs (``ratekeeper._route``)."""

from __future__ import annotations

import ratekeeper as rk
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
