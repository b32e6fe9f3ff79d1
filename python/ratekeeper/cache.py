"""ResponseCache: identical requests answered once (SPEC section 8).

A request's identity is a canonical key: the method name and its arguments as
JSON with sorted keys, hashed. The cache is an LRU of at most ``maxsize``
answers, each kept for ``ttl`` seconds (``None``: until evicted). Identical
requests that arrive while the first is still in flight share that one call
(single flight) instead of each paying for it: async callers on the same loop
await one shared future, threads wait on one event. Errors are shared with
the callers that were waiting, never stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import pickle
import threading
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Optional, TypeVar

__all__ = ["ResponseCache"]

T = TypeVar("T")


class _Flight:
    """One call in flight that threads with the same key wait for."""

    __slots__ = ("done", "error", "result", "settled")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.settled = False
        self.result: Any = None
        self.error: Optional[BaseException] = None


def _to_json(value: Any) -> Any:
    """What ``json.dumps`` cannot encode by itself, in a stable form."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return sorted(repr(item) for item in value)
    if isinstance(value, (bytes, bytearray)):
        return hashlib.blake2b(bytes(value), digest_size=16).hexdigest()
    # Anything else is keyed by its state, never by its repr alone: two
    # objects with the same repr may differ, and a shared key would answer
    # one request with another's response. Unequal pickles only cost a miss.
    name = type(value).__qualname__
    try:
        state = pickle.dumps(value, protocol=4)
    except Exception:  # not picklable: only this very object can match
        return f"<{name}@{id(value):x}:{value!r}>"
    return f"<{name}:{hashlib.blake2b(state, digest_size=16).hexdigest()}>"


def _pairs(value: Any) -> Any:
    """Mappings as ``[key spelling, value]`` pairs in a stable order, for keys that do not sort."""
    if isinstance(value, dict):
        pairs = [[json.dumps(k, default=_to_json), _pairs(v)] for k, v in value.items()]
        return sorted(pairs, key=lambda pair: str(pair[0]))
    if isinstance(value, (list, tuple)):
        return [_pairs(item) for item in value]
    return value


class ResponseCache:
    """An LRU of responses keyed by request; concurrent identical requests share one call.

    >>> cache = ResponseCache(maxsize=256, ttl=600.0); len(cache)
    0
    """

    def __init__(
        self, maxsize: int = 1024, ttl: Optional[float] = None, *, clock: Any = None
    ) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize <= 0:
            raise ValueError(f"maxsize must be an int > 0, got {maxsize!r}")
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
                raise TypeError(f"ttl must be a number of seconds or None, got {ttl!r}")
            if not ttl > 0 or ttl == float("inf"):
                raise ValueError(f"ttl must be a finite number > 0, got {ttl!r}")
        self.maxsize = maxsize
        self.ttl = None if ttl is None else float(ttl)
        self._now: Callable[[], float] = time.monotonic if clock is None else clock.now
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._threads_in_flight: dict[str, _Flight] = {}
        self._tasks_in_flight: dict[tuple[int, str], asyncio.Future[Any]] = {}
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"ResponseCache(maxsize={self.maxsize}, ttl={self.ttl})"

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @staticmethod
    def key(method: str, arguments: dict[str, Any]) -> str:
        """The canonical key of a call: method + arguments as sorted JSON, hashed.

        >>> ResponseCache.key("m", {"a": 1, "b": 2}) == ResponseCache.key("m", {"b": 2, "a": 1})
        True
        """
        try:
            text = json.dumps(
                [method, arguments], sort_keys=True, default=_to_json, separators=(",", ":")
            )
        except TypeError:
            # Keys of mixed types (``{1: 5, "a": 3}``) cannot be sorted: spell
            # every mapping as sorted pairs; the third element keeps these
            # keys apart from those of the usual shape.
            text = json.dumps(
                [method, _pairs(arguments), "pairs"], default=_to_json, separators=(",", ":")
            )
        return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()

    def get(self, key: str) -> tuple[bool, Any]:
        """``(True, answer)`` when ``key`` holds a live answer, else ``(False, None)``.

        >>> ResponseCache().get("nothing")
        (False, None)
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                expires, value = entry
                if self.ttl is None or self._now() < expires:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return True, value
                del self._entries[key]
            self.misses += 1
            return False, None

    def put(self, key: str, value: Any) -> None:
        """Stores ``value`` under ``key``, evicting the least recently used beyond ``maxsize``.

        >>> cache = ResponseCache(maxsize=1); cache.put("a", 1); cache.put("b", 2); len(cache)
        1
        """
        expires = 0.0 if self.ttl is None else self._now() + self.ttl
        with self._lock:
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forgets every stored answer.

        >>> ResponseCache().clear()
        """
        with self._lock:
            self._entries.clear()

    def get_or_call(self, key: str, call: Callable[[], T]) -> T:
        """The stored answer for ``key``, else ``call()``'s, shared with threads asking meanwhile.

        >>> ResponseCache().get_or_call("k", lambda: 42)
        42
        """
        while True:
            found, value = self.get(key)
            if found:
                return value  # type: ignore[no-any-return]
            with self._lock:
                flight = self._threads_in_flight.get(key)
                leader = flight is None
                if flight is None:
                    flight = self._threads_in_flight[key] = _Flight()
            if not leader:
                flight.done.wait()
                if not flight.settled:
                    continue  # the leader was interrupted: try again, maybe as leader
                if flight.error is not None:
                    raise flight.error
                return flight.result  # type: ignore[no-any-return]
            try:
                result = call()
            except Exception as exc:
                flight.error = exc
                flight.settled = True
                raise
            else:
                self.put(key, result)
                flight.result = result
                flight.settled = True
                return result
            finally:
                with self._lock:
                    del self._threads_in_flight[key]
                flight.done.set()

    async def get_or_call_async(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """The stored answer for ``key``, else ``await call()``'s, shared with waiting tasks.

        >>> # await cache.get_or_call_async(key, lambda: client.chat.completions.create(...))
        """
        loop_id = id(asyncio.get_running_loop())
        while True:
            found, value = self.get(key)
            if found:
                return value  # type: ignore[no-any-return]
            slot = (loop_id, key)
            future = self._tasks_in_flight.get(slot)
            if future is not None:
                # Shielded: a cancelled follower must not cancel the shared call.
                settled, value, error = await asyncio.shield(future)
                if not settled:
                    continue  # the leader was cancelled: try again, maybe as leader
                if error is not None:
                    raise error
                return value  # type: ignore[no-any-return]
            future = asyncio.get_running_loop().create_future()
            self._tasks_in_flight[slot] = future
            outcome: tuple[bool, Any, Optional[BaseException]] = (False, None, None)
            try:
                result = await call()
            except Exception as exc:
                outcome = (True, None, exc)
                raise
            else:
                self.put(key, result)
                outcome = (True, result, None)
                return result
            finally:
                del self._tasks_in_flight[slot]
                future.set_result(outcome)
