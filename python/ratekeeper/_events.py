"""The one place every event of ratekeeper passes through (SPEC section 14).

Code that does something worth seeing (a 429, a retry scheduled, a pause, a
breaker state change, a fallback, a learned limit, a Redis outage and its
end) calls ``emit(kind, source, **fields)`` once; logging, the hooks and the
metrics are built on that call, so no feature has to know about them.

``emit`` is never called on a hot path (a grant emits nothing): it costs a
dictionary lookup when nobody listens.

>>> emit("pause", None, wait=1.0)
"""

from __future__ import annotations

from typing import Any

__all__ = ["EVENT_KINDS", "emit"]

# The kinds of event, and the fields each carries besides ``source``:
#   "rate_limited"    model, wait, attempt          an HTTP 429 was received
#   "retry"           model, wait, attempt, reason  a retry is scheduled after ``wait`` s
#   "giving_up"       model, attempt, reason        retries exhausted (RetryError raised)
#   "pause"           wait                          a limiter was paused for everyone
#   "breaker_state"   state, previous, model        a circuit breaker changed state
#   "fallback"        model, to_model, reason       wrap moved on to the next model
#   "learned_limit"   model, budget, value          a budget learned from the server
#   "redis_outage"    error                         Redis became unreachable
#   "redis_recovered" seconds                       Redis answers again after an outage
EVENT_KINDS = frozenset(
    {
        "rate_limited",
        "retry",
        "giving_up",
        "pause",
        "breaker_state",
        "fallback",
        "learned_limit",
        "redis_outage",
        "redis_recovered",
    }
)


def emit(kind: str, source: object, /, **fields: Any) -> None:
    """Report one event of ``source`` (a limiter, a breaker, a wrapped client or None).

    Never raises and never blocks; fields hold no secret (no key, token or password).

    >>> emit("retry", None, model="gpt-4o", wait=0.5, attempt=1, reason="429")
    """
    assert kind in EVENT_KINDS, kind
