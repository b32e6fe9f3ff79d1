"""Property tests for rk.Limiter in virtual time: every budget's bound holds for
any sequence of acquires, pauses, reconciles and cancellations; grants are FIFO;
a refused request takes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

import ratekeeper as rk

# Budgets tried together: (name, amount per period, period seconds).
CONFIGS = [
    {"rps": 2, "tpm": 600},
    {"rpm": 30, "tpm": 300, "burst": 3},
    {"rps": 1, "itpm": 120, "otpm": 60},
    {"rph": 100, "tpm": 1000},
    {"rps": 1, "tpm": 120},
]
PERIOD = {"rps": 1.0, "rpm": 60.0, "rph": 3600.0, "rpd": 86400.0, "tpm": 60.0}
PERIOD.update(itpm=60.0, otpm=60.0)


@dataclass
class Granted:
    at: float
    units: dict[str, float]
    permit: rk.Permit
    cancelled: bool = False


operation = st.one_of(
    st.tuples(st.just("acquire"), st.integers(0, 120), st.integers(0, 60)),
    st.tuples(st.just("advance"), st.floats(0, 30), st.just(0)),
    st.tuples(st.just("pause"), st.floats(0, 20), st.just(0)),
    st.tuples(st.just("refund"), st.integers(0, 50), st.floats(0, 1)),
    st.tuples(st.just("cancel"), st.integers(0, 50), st.just(0)),
    st.tuples(st.just("timeout"), st.integers(0, 120), st.floats(0, 5)),
    st.tuples(st.just("adopt"), st.integers(0, 6), st.floats(0, 100)),
)


def units_of(config: dict[str, float], permit: rk.Permit) -> dict[str, float]:
    units = {}
    for name in config:
        if name.startswith("r"):
            units[name] = 1.0
        elif name == "tpm":
            units[name] = permit.tokens
        elif name == "itpm":
            units[name] = permit.input_tokens
        elif name == "otpm":
            units[name] = permit.output_tokens
    return units


@settings(max_examples=300, deadline=None)
@given(config=st.sampled_from(CONFIGS), operations=st.lists(operation, max_size=60))
def test_every_budget_bound_holds_and_grants_are_fifo(
    config: dict[str, float], operations: list[tuple[str, float, float]]
) -> None:
    clock = rk.ManualClock()
    limiter = rk.Limiter(clock=clock, **config)  # type: ignore[arg-type]
    granted: list[Granted] = []
    for kind, a, b in operations:
        if kind == "acquire":
            kwargs = {"tokens": a} if "tpm" in config else {"input_tokens": a, "output_tokens": b}
            permit = limiter._reserve(timeout=None, **kwargs)  # type: ignore[arg-type]
            assert permit is not None
            at = permit._due / 1e9 if permit._due else clock.now()
            granted.append(Granted(at, {}, permit))
        elif kind == "advance":
            clock.advance(a)
        elif kind == "pause":
            limiter.pause(a)
        elif kind == "refund" and granted:
            permit = granted[int(a) % len(granted)].permit
            permit.reconcile(permit.tokens * b, input_tokens=permit.input_tokens * b)
        elif kind == "cancel" and granted:
            chosen = granted[int(a) % len(granted)]
            if not chosen.cancelled:
                chosen.permit._cancel(0, 0)
                chosen.cancelled = True
        elif kind == "adopt":
            names = [name for name in config if name != "burst"]
            limiter._adopt(names[int(a) % len(names)], b, 1.0)
        elif kind == "timeout":
            before = limiter.stats()["available"]
            kwargs = {"tokens": a} if "tpm" in config else {"input_tokens": a}
            try:
                permit = limiter._reserve(timeout=b, **kwargs)  # type: ignore[arg-type]
            except rk.RateLimitTimeout:
                assert limiter.stats()["available"] == before  # all or nothing
            else:
                assert permit is not None
                at = permit._due / 1e9 if permit._due else clock.now()
                granted.append(Granted(at, {}, permit))

    # A cancelled grant was never served: a later request may take its place.
    times = [g.at for g in granted if not g.cancelled]
    assert times == sorted(times), "grants must be served in arrival order"

    live = [g for g in granted if not g.cancelled]
    for g in live:
        g.units = units_of(config, g.permit)
    burst = config.get("burst")
    for name, amount in config.items():
        if name == "burst":
            continue
        rate = amount / PERIOD[name]
        capacity = burst if burst is not None and name.startswith("r") else amount
        for i, first in enumerate(live):
            total = 0.0
            for last in live[i:]:
                total += last.units[name]
                bound = capacity + rate * (last.at - first.at)
                assert total <= bound + 1e-6, (name, first.at, last.at, total, bound)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 100), min_size=2, max_size=30))
def test_a_large_request_is_served_before_later_small_ones(sizes: list[int]) -> None:
    clock = rk.ManualClock()
    limiter = rk.Limiter(tpm=100, clock=clock)
    dues = []
    for size in sizes:
        permit = limiter._reserve(size, None)
        assert permit is not None
        dues.append(permit._due or int(clock.now() * 1e9))
    assert dues == sorted(dues)
