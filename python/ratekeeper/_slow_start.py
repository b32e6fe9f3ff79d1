"""Before any limit is known: a window of requests in flight that grows (TCP's slow start).

A model's limits are unknown until its first answer (limit headers) or its
first 429 (no headers): a burst sent blind would meet the server's limit all
at once and collect a 429 for every request past it. So the requests go out
through a window: ``INITIAL_WINDOW`` in flight at first, ``GROWTH`` more for
each success (x1.1 a round trip), so that the server's burst is passed by
about a tenth of it before the first 429 ends the slow start. Waiters are let
through in arrival order.

A request still unanswered ``ADMIT_AFTER`` seconds after it was let through
was admitted (a 429 comes back before the model runs; an LLM's answer takes
seconds): it leaves the window and adds ``AGED_GROWTH``. So against slow
answers, or none, the window doubles each ``ADMIT_AFTER``: no call waits for
ever, and a model that takes seconds to answer is not held to one round trip
per step.

The clock is the caller's (``now`` arguments): the rule is pure.
"""

from __future__ import annotations

import collections
import contextlib
import threading

__all__ = ["ADMIT_AFTER", "AGED_GROWTH", "GROWTH", "INITIAL_WINDOW", "SlowStart"]

INITIAL_WINDOW = 1.0  # requests in flight before the first answer
GROWTH = 0.1  # window added per success: x1.1 a round trip
AGED_GROWTH = 1.0  # window added per request unanswered past ADMIT_AFTER: x2
ADMIT_AFTER = 0.5  # seconds: an unanswered request was admitted (429s come at once)


class SlowStart:
    """The window of one model's requests in flight, until its limits are known.

    >>> slow = SlowStart(); first, second = slow.enter(), slow.enter()
    >>> slow.go(first, 0.0), slow.go(second, 0.0)
    (True, False)
    >>> slow.answered(first, ok=True); slow.go(second, 0.01)
    True
    """

    def __init__(self, window: float = INITIAL_WINDOW) -> None:
        self.window = window
        self.over = False  # the limits are known (or a 429 came): everything goes
        self.admitted = 0  # successes, and requests unanswered past ADMIT_AFTER
        self._sent: dict[int, float] = {}  # let through, not answered: ticket -> when
        self._queue: collections.deque[int] = collections.deque()
        self._granted: set[int] = set()  # let through, not yet seen by their waiter
        self._next = 0
        self._lock = threading.Lock()

    def enter(self) -> int:
        """A ticket: this request's place in line."""
        with self._lock:
            ticket = self._next
            self._next += 1
            self._queue.append(ticket)
        return ticket

    def go(self, ticket: int, now: float) -> bool:
        """Whether ``ticket`` may be sent now (its place in the window is taken)."""
        if self.over:
            return True
        with self._lock:
            self._let_through(now)
            if ticket in self._granted:
                self._granted.discard(ticket)
                # Sent now: its age counts from here, and it goes to the end of the
                # order _let_through relies on (reassigning a key keeps its place).
                self._sent.pop(ticket, None)
                self._sent[ticket] = now
                return True
        return False

    def answered(self, ticket: int, ok: bool) -> None:
        """``ticket``'s answer came: it leaves the window, which grows if it was a success."""
        with self._lock:
            if self._sent.pop(ticket, None) is not None and ok:
                self.window += GROWTH
                self.admitted += 1

    def leave(self, ticket: int) -> None:
        """``ticket`` is done without an answer (cancelled, a broken connection): it leaves."""
        with self._lock:
            self._sent.pop(ticket, None)
            self._granted.discard(ticket)
            with contextlib.suppress(ValueError):
                self._queue.remove(ticket)

    def end(self) -> None:
        """The limits are known: every waiter goes, and every later request."""
        self.over = True

    def _let_through(self, now: float) -> None:
        sent = self._sent
        aged: list[int] = []
        for ticket, at in sent.items():  # in the order let through: the oldest first
            if now - at < ADMIT_AFTER:
                break
            aged.append(ticket)
        for ticket in aged:
            del sent[ticket]
            self.window += AGED_GROWTH
            self.admitted += 1
        queue = self._queue
        while queue and len(sent) < self.window:
            ticket = queue.popleft()
            sent[ticket] = now
            self._granted.add(ticket)
