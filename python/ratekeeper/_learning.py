"""Budgets the server teaches: learned from its limit headers, or adapted from its 429s (SPEC 12).

A budget the user did not give is learned, per model (``"*"`` for a limit
per key, as OpenRouter's bare ``X-RateLimit-*``):

- from the limit headers (``x-ratelimit-limit-requests/-tokens``,
  ``anthropic-ratelimit-*-limit``, ``X-RateLimit-Limit``) of the first
  response that carries them: a limiter of those budgets (an ``rk.Limiter``,
  on the user's Redis when the user's limiter is shared there) is taken in
  addition to the user's, and every later response's ``remaining`` tightens it;
- without any limit header, the request rate adapts (AIMD): from the first
  429 (its wait and the successes before it give the first rate), a
  multiplicative decrease on each 429 of a request sent after the last
  decrease, an additive increase while none come.

Until a model's limits are known (the first answer that states them, or the
first 429), its calls go out through a slow start's window
(:mod:`ratekeeper._slow_start`): a burst sent blind would collect 429s.
``Learning`` is kept per user limiter, so every client sharing that limiter
shares what was learned; ``limiter.stats()["learned"]`` shows it.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Awaitable, Callable, Optional

from ._events import emit
from ._slow_start import SlowStart
from .headers import ServerLimits, read_limits, retry_after
from .limiter import LEARNED, adopt_server_limits

__all__ = ["Learning", "ModelBudgets", "adaptive_pace", "learning_for"]

_REGISTRY_LOCK = threading.Lock()

_REQUEST_BUDGETS = ("rps", "rpm", "rph", "rpd")
_ALL_BUDGETS = (*_REQUEST_BUDGETS, "tpm", "itpm", "otpm")
_POLL = 0.01  # seconds between looks at whether the slow start's window has room
BETA = 0.8  # the multiplicative decrease on a 429
ALPHA = 0.05  # the additive increase per second, as a share of the rate after the last decrease
MIN_RATE = 1.0 / 60.0  # requests per second: never slower than one a minute


def learning_for(limiter: Any, clock: Any = None) -> Optional[Learning]:
    """The ``Learning`` of ``limiter`` (made once), or None when it has nothing to learn.

    >>> learning_for(object()) is None
    True
    """
    available = getattr(limiter, "available", None)
    if not callable(available):
        return None
    with _REGISTRY_LOCK:
        learning = LEARNED.get(limiter)
        if learning is None:
            given = {budget for budget in _ALL_BUDGETS if available(budget) is not None}
            if any(b in given for b in _REQUEST_BUDGETS) and given.issuperset(_ALL_BUDGETS[4:]):
                return None  # every budget there is to learn was given
            learning = LEARNED[limiter] = Learning(limiter, given, clock)
    return learning


def _limits_of(limits: ServerLimits) -> dict[str, float]:
    found = {
        "rpm": limits.requests_limit,
        "tpm": limits.tokens_limit,
        "itpm": limits.input_tokens_limit,
        "otpm": limits.output_tokens_limit,
    }
    return {budget: value for budget, value in found.items() if value is not None}


class Learning:
    """What the clients of one user limiter learned, per model (see the module)."""

    def __init__(self, limiter: Any, given: set[str], clock: Any) -> None:
        self.user = limiter
        self.given = given
        self.learns_requests = not any(budget in given for budget in _REQUEST_BUDGETS)
        self.clock = clock
        self.now: Callable[[], float] = time.monotonic if clock is None else clock.now
        self._models: dict[str, ModelBudgets] = {}
        self.per_key = False
        self._lock = threading.Lock()

    def model(self, name: Optional[str]) -> ModelBudgets:
        # A server that limits per key, not per model (OpenRouter), is one "*".
        key = "*" if name is None or self.per_key else name
        found = self._models.get(key)
        if found is None:
            with self._lock:
                found = self._models.setdefault(key, ModelBudgets(self, key))
        return found

    def snapshot(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for key, budgets in list(self._models.items()):
            values = budgets.values()
            if values:
                out[key] = values
        return out

    def make_limiter(self, key: str, values: dict[str, float]) -> Any:
        """A limiter of the learned budgets: in process, or on the user's Redis."""
        from .limiter import Limiter

        make: Callable[..., Any] = Limiter
        backend = getattr(self.user, "backend", None)
        if backend is not None:
            user_key = getattr(self.user, "key", "ratekeeper")
            return make(**values, backend=backend, key=f"{user_key}:learned:{key}")
        return make(**values, clock=self.clock)


class ModelBudgets:
    """One model's (or ``"*"``'s) learned limiter, adaptive rate and slow start."""

    def __init__(self, learning: Learning, key: str) -> None:
        self.learning = learning
        self.key = key
        self.learned: dict[str, float] = {}
        self.limiter: Any = None
        self.slow = SlowStart()
        self.rate: Optional[float] = None  # the adaptive rate (requests/s); None: unpaced
        self.estimating = False  # a first 429 came: the rate is set at the next request
        self.first_wait: Optional[float] = None  # the first 429's Retry-After
        self.next_at = 0.0
        self.paused_until = 0.0
        self.binding = False  # the last place taken was waited for
        self.generation = 0  # moves on each decrease and pause: places taken before go stale
        self.decreases = 0  # moves on each decrease: a loss event's other 429s are not counted
        self.increased_at = 0.0
        self.step = 0.0
        self.successes: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def values(self) -> dict[str, float]:
        out = dict(self.learned)
        if self.rate is not None and "rpm" not in out:
            out["rpm"] = round(self.rate * 60.0, 3)
        return out

    # -- before a request -----------------------------------------------------
    def enter(self) -> Optional[int]:
        """A place in the slow start's line (see :mod:`ratekeeper._slow_start`), or None: over."""
        return None if self.slow.over else self.slow.enter()

    def through(self, ticket: Optional[int]) -> float:
        """Seconds to wait before looking again (the window is full), or 0: go."""
        if ticket is None or self.slow.go(ticket, self.learning.now()):
            return 0.0
        return _POLL

    def pace(self) -> float:
        """Seconds this request waits for the adaptive rate (0 when unpaced).

        A request whose wait was set before a decrease or a pause takes a new
        place after its wait (``generation`` has moved): it must not go at the
        old rate, nor inside the pause.
        """
        if (self.rate is None and not self.estimating) or "rpm" in self.learned:
            return 0.0
        with self._lock:
            now = self.learning.now()
            if self.estimating:
                self._first_rate(now)
            rate = self.rate
            if rate is None:
                return 0.0
            at = max(now, self.next_at)
            self.next_at = at + 1.0 / rate
            self.binding = at > now
        return at - now

    def wait(self, sleep: Callable[[float], Any]) -> int:
        """Sleeps until this request's place in the adaptive pace; returns ``decreases`` then."""
        taken = -1
        while not self._in_place(taken):
            taken = self.generation
            sleep(self.pace())
        return self.decreases

    async def wait_async(self, sleep: Callable[[float], Awaitable[Any]]) -> int:
        """The async twin of ``wait``."""
        taken = -1
        while not self._in_place(taken):
            taken = self.generation
            await sleep(self.pace())
        return self.decreases

    def _in_place(self, taken: int) -> bool:
        # Unpaced, or the place taken (in generation ``taken``) is still good.
        return (self.rate is None and not self.estimating) or taken == self.generation

    def pause(self, seconds: float) -> None:
        """A 429's pause: the learned limiter and the adaptive pace resume after it, spaced."""
        limiter = self.limiter
        if limiter is not None:
            limiter.pause(seconds)
        with self._lock:
            # Every place taken so far is retaken after the pause (``generation``).
            self.paused_until = max(self.paused_until, self.learning.now() + seconds)
            self.next_at = self.paused_until
            self.generation += 1

    # -- after a response -------------------------------------------------------
    def learn(self, response: Any, *, ticket: Optional[int] = None) -> None:
        """Reads a response: learns its limits, tightens to ``remaining``, adapts the rate.

        ``ticket`` (the request's place in the slow start) leaves the window.
        """
        limits = read_limits(response.headers)
        found = _limits_of(limits)
        target = self
        if found:
            if limits.requests_fixed_window:  # OpenRouter's bare X-RateLimit-*: per key
                self.learning.per_key = True
                target = self.learning.model(None)
            target._learn_limits(found, limits)
        status = response.status_code
        learns_requests = self.learning.learns_requests
        slow = self.slow
        if not slow.over:
            if ticket is not None:
                slow.answered(ticket, ok=status < 400)
            if not learns_requests or "rpm" in target.learned or target is not self:
                slow.end()  # the limits are known: the learned limiter paces
            elif status == 429:
                # Before the slot is given back: no other request goes in its place.
                self.rate_limited(self.decreases, retry_after(response))
        if status < 400 and learns_requests:
            self.succeeded()

    def _learn_limits(self, found: dict[str, float], limits: ServerLimits) -> None:
        learning = self.learning
        wanted = {
            budget: value
            for budget, value in found.items()
            if budget not in learning.given and (budget != "rpm" or learning.learns_requests)
        }
        if not wanted:
            return
        changed = {b: v for b, v in wanted.items() if self.learned.get(b) != v}
        if changed:
            with self._lock:
                values = {**self.learned, **wanted}
                self.limiter = learning.make_limiter(self.key, values)
                self.learned = values
                if "rpm" in values:
                    self.rate = None  # the server said it: no need to guess
                    self.slow.end()
            for budget, value in changed.items():
                emit("learned_limit", learning.user, model=self.key, budget=budget, value=value)
        adopt_server_limits(limits, self.learned.__contains__, self._adopt, lambda _: None)

    def _adopt(self, budget: str, remaining: float, *rest: Any) -> None:
        # "None left" is where a client at the learned rate always is: adopted
        # as of the response's arrival, it would hold every grant back by the
        # round trip. A 429 pauses us instead; ``remaining`` above 0 tells the
        # burst still free (another client of the same key spends it too).
        if remaining >= 1.0:
            self.limiter._adopt(budget, remaining, *rest)

    def succeeded(self) -> None:
        """A request got through: counted for the first estimate; the rate grows.

        Only while the rate is what holds the requests back (the last place
        taken had to be waited for): a light load that never meets the rate
        tells nothing about the server, and a rate grown through an idle
        hour would take many 429s to bring down again.
        """
        now = self.learning.now()
        with self._lock:
            successes = self.successes
            successes.append(now)
            while successes and successes[0] < now - 1.0:
                successes.popleft()
            rate = self.rate
            if rate is not None:
                if self.binding:
                    self.rate = rate + self.step * max(0.0, now - self.increased_at)
                self.increased_at = now

    def rate_limited(self, decreases: int, wait: Optional[float] = None) -> None:
        """A 429 to a request paced after ``decreases`` decreases: the rate decreases.

        Not for a request paced before the last decrease (it was sent at the
        old rate): once per loss event, as TCP reduces its window. ``wait``
        is the server's (``Retry-After``), read on the first 429 only.
        """
        if not self.learning.learns_requests or "rpm" in self.learned:
            return
        with self._lock:
            now = self.learning.now()
            if self.rate is None:
                # The first estimate is made when the next request is paced
                # (after this 429's pause): by then the successes sent with
                # this request are in, and they are what the server allows.
                if not self.estimating:
                    self.slow.end()  # the limit is met: the rate takes over from the window
                    self.estimating = True
                    self.first_wait = wait
                    self.generation += 1
                    self.decreases += 1
                return
            if decreases != self.decreases:
                return
            self._set_rate(self.rate * BETA, now)
            self.next_at = now  # the places taken at the old rate are retaken
            self.generation += 1
            self.decreases += 1

    def _first_rate(self, now: float) -> None:
        self.estimating = False
        delivered: float = sum(1 for t in self.successes if t >= now - 1.0)
        wait = self.first_wait
        if wait is not None and 0.0 < wait < 1.0:
            # The first 429 meets the server's bucket just run dry (the slow
            # start passes the burst by a few requests): a wait under a second
            # is the time it takes to refill one request. A whole second is a
            # rounded bound that tells little.
            delivered = min(delivered, 1.0 / wait)
        if delivered:  # nothing got through: no rate to start from, the pauses pace alone
            self._set_rate(delivered * BETA, now)

    def _set_rate(self, rate: float, now: float) -> None:
        rate = max(rate, MIN_RATE)
        self.rate = rate
        self.step = rate * ALPHA
        self.increased_at = now


def adaptive_pace(clock: Any = None) -> ModelBudgets:
    """A lone adaptive request rate (AIMD on 429s), for a sender outside ``wrap``.

    >>> adaptive_pace().pace()
    0.0
    """
    return Learning(None, set(), clock).model(None)
