"""The one place every event of ratekeeper passes through (SPEC section 14).

Code that does something worth seeing (a 429, a retry scheduled, a pause, a
breaker state change, a fallback, a learned limit, a Redis outage and its
end) calls ``emit(kind, source, **fields)`` once; logging, the hooks and the
metrics are built on that call, so no feature has to know about them.

``emit`` is never called on a hot path (a grant emits nothing): when nobody
subscribed and the kind's logger is off, it costs one dictionary lookup and
one cached level check.

>>> emit("pause", None, wait=1.0)
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Optional

from . import _core
from ._event_log import LOG_RULES, extra_of, message_of, scrub_fields

__all__ = ["EVENT_KINDS", "Event", "emit", "link", "linked_to", "subscribe"]

# The kinds of event, and the fields each carries besides ``source``:
#   "rate_limited"    model, wait, attempt          an HTTP 429 was received
#   "retry"           model, wait, attempt, reason  a retry is scheduled after ``wait`` s
#   "giving_up"       model, attempt, reason        retries exhausted (RetryError raised)
#   "pause"           wait                          a limiter was paused for everyone
#   "breaker_state"   state, previous               a circuit breaker changed state
#   "fallback"        model, to_model, reason       wrap moved on to the next model
#   "learned_limit"   model, budget, value          a budget learned from the server
#   "redis_outage"    error                         Redis became unreachable
#   "redis_recovered" seconds                       Redis answers again after an outage
EVENT_KINDS = frozenset(LOG_RULES)

_log = logging.getLogger("ratekeeper.events")
_fallback_rule = (logging.getLogger("ratekeeper"), logging.INFO)


@dataclass(frozen=True)
class Event:
    """One event as a value: what happened (``kind``), to what (``source``), and when.

    ``fields`` (read-only) never holds a key, token or password; ``time`` is
    ``time.time()`` when it happened.

    >>> Event("pause", None, {"wait": 1.0}).fields["wait"]
    1.0
    """

    kind: str
    source: object
    fields: Mapping[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


Subscriber = Callable[[Event], object]
Ref = Callable[[], Any]

# Subscribers of every event, and of the events of one source (by id, with
# a weak reference so a subscription never keeps its source alive). Changes
# take the lock; emit reads without it (the tuples are replaced, never
# changed, and one dictionary lookup is atomic).
_everyone: tuple[Subscriber, ...] = ()
_by_source: dict[int, tuple[Ref, tuple[Subscriber, ...]]] = {}
# A source whose events also reach the subscribers of another (a wrapped
# client's breakers -> its limiter), with fields added to its events.
_parents: dict[int, tuple[Ref, Ref, dict[str, Any]]] = {}
_lock = threading.Lock()


def _target(obj: object) -> object:
    """What a subscription on ``obj`` listens to: a wrapped client's limiter, else ``obj``."""
    limiter = getattr(obj, "ratekeeper_limiter", None)
    return obj if limiter is None else limiter


def _weak(obj: object, on_death: Callable[[Any], None]) -> Ref:
    """A weak reference to ``obj``; for the few objects that have none, a strong one."""
    if obj is None or isinstance(obj, (int, float, str, bytes, tuple)):
        raise TypeError(
            f"cannot subscribe to a {type(obj).__name__}: pass a limiter, a breaker, "
            "a wrapped client or None"
        )
    try:
        return weakref.ref(obj, on_death)
    except TypeError:
        # Held until unsubscribed; its id cannot be reused meanwhile.
        return lambda: obj


def subscribe(obj: object, fn: Subscriber) -> Callable[[], None]:
    """Calls ``fn(event)`` for every event of ``obj``; returns a function that stops it.

    ``obj`` is a limiter, a ``CircuitBreaker``, a client from ``rk.wrap``
    (its limiter's events and its breakers') or ``None`` (every event).
    ``fn`` is a plain function (not ``async def``): it runs in the thread
    that emits; an exception it raises is logged on ``"ratekeeper.events"``,
    never raised into the limiter.

    >>> stop = subscribe(None, print); stop()
    """
    global _everyone
    if not callable(fn):
        raise TypeError(f"subscribe needs a callable fn(event), got {type(fn).__name__}")
    if inspect.iscoroutinefunction(fn):
        raise TypeError("subscribe needs a plain function: start async work from it instead")
    if obj is None:
        with _lock:
            _everyone = (*_everyone, fn)
        return lambda: _unsubscribe(None, fn)
    target = _target(obj)
    key = id(target)
    with _lock:
        ref, fns = _by_source.get(key, (None, ()))
        if ref is None or ref() is not target:
            ref = _weak(target, functools.partial(_forget, key))
            fns = ()
        _by_source[key] = (ref, (*fns, fn))
    return lambda: _unsubscribe(ref, fn)


def _unsubscribe(ref: Optional[Ref], fn: Subscriber) -> None:
    global _everyone
    with _lock:
        if ref is None:
            _everyone = _without(_everyone, fn)
            return
        target = ref()
        entry = None if target is None else _by_source.get(id(target))
        if entry is not None and entry[0] is ref:
            remaining = _without(entry[1], fn)
            if remaining:
                _by_source[id(target)] = (ref, remaining)
            else:
                del _by_source[id(target)]


def _without(fns: tuple[Subscriber, ...], fn: Subscriber) -> tuple[Subscriber, ...]:
    for i, each in enumerate(fns):
        if each is fn:
            return fns[:i] + fns[i + 1 :]
    return fns


def _forget(
    key: int,
    _dead: object = None,
    lock: Any = _lock,
    by_source: Any = _by_source,
    parents: Any = _parents,
) -> None:
    """Drops what was kept for a source that died (bound early: it may run at exit)."""
    with lock:
        entry = by_source.get(key)
        if entry is not None and entry[0]() is None:
            del by_source[key]
        link_entry = parents.get(key)
        if link_entry is not None and link_entry[0]() is None:
            del parents[key]


def link(child: object, parent: object, /, **fields: Any) -> None:
    """Events of ``child`` also reach the subscribers of ``parent``, with ``fields`` added.

    ``rk.wrap`` links each model's breaker to its limiter with the model, so
    a subscription on the wrapped client sees the breakers, and their
    events say which model they guard. Neither object is kept alive.

    >>> import ratekeeper as rk
    >>> link(rk.CircuitBreaker(), rk.Limiter(rpm=60), model="gpt-4o")
    """
    key = id(child)
    child_ref = _weak(child, functools.partial(_forget, key))
    parent_ref = _weak(_target(parent), lambda _: None)
    with _lock:
        _parents[key] = (child_ref, parent_ref, dict(fields))


def linked_to(parent: object) -> list[tuple[object, dict[str, Any]]]:
    """``(child, fields)`` for every live object linked to ``parent`` (a wrap's breakers).

    >>> import ratekeeper as rk
    >>> limiter, breaker = rk.Limiter(rpm=60), rk.CircuitBreaker()
    >>> link(breaker, limiter, model="m"); linked_to(limiter) == [(breaker, {"model": "m"})]
    True
    """
    target = _target(parent)
    found = []
    for child_ref, parent_ref, fields in list(_parents.values()):
        child = child_ref()
        if child is not None and parent_ref() is target:
            found.append((child, dict(fields)))
    return found


def _subscribers_of(source: object) -> list[Subscriber]:
    found: list[Subscriber] = list(_everyone)
    seen = 0
    while source is not None and seen < 4:
        seen += 1
        key = id(source)
        entry = _by_source.get(key)
        if entry is not None and entry[0]() is source:
            found.extend(entry[1])
        parent = _parents.get(key)
        source = parent[1]() if parent is not None and parent[0]() is source else None
    return found


def emit(kind: str, source: object, /, **fields: Any) -> None:
    """Report one event of ``source`` (a limiter, a breaker, a wrapped client or None).

    Never raises and never blocks; fields hold no secret (anything that
    looks like a key, token or password is replaced by ``***``).

    >>> emit("retry", None, model="gpt-4o", wait=0.5, attempt=1, reason="429")
    """
    try:
        logger, level = LOG_RULES.get(kind, _fallback_rule)
        if _parents and source is not None:
            fields = _with_link_fields(source, fields)
        if kind == "breaker_state" and fields.get("state") == "open":
            level = logging.WARNING
        logging_on = logger.isEnabledFor(level)
        if not (logging_on or _everyone or _by_source):
            return
        clean = scrub_fields(fields)
        if logging_on:
            logger.log(level, message_of(kind, clean), extra=extra_of(kind, clean))
        subscribers = _subscribers_of(source)
        if subscribers:
            _deliver(Event(kind, source, MappingProxyType(clean)), subscribers)
    except Exception:  # emit must never break the code that reports
        _log.exception("could not report a %s event", kind)


def _with_link_fields(source: object, fields: dict[str, Any]) -> dict[str, Any]:
    entry = _parents.get(id(source))
    if entry is None or not entry[2] or entry[0]() is not source:
        return fields
    return {**entry[2], **fields}


def _deliver(event: Event, subscribers: list[Subscriber]) -> None:
    for fn in subscribers:
        try:
            fn(event)
        except Exception:
            _log.exception("event subscriber %r raised on a %s event", fn, event.kind)


# The compiled Redis layer reports its outages and recoveries through emit
# (it cannot import this package: the package imports it).
_core._set_event_sink(emit)
