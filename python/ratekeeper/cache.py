"""ResponseCache: identical requests answered once (SPEC sections 8 and 15).

A request's identity is a canonical key: the method, the client it goes
through (``client_identity``: base URL, API key, organization/project,
default headers and query, as a salted hash) and its arguments with their
exact types (``b"a"`` is not ``"a"``, a set is not a list, ``1`` is not
``1.0`` nor ``True``), hashed. Two tenants never share an answer, and the API
key is never stored, only hashed with a salt drawn at process start.

The cache is an LRU of at most ``maxsize`` answers, each kept for ``ttl``
seconds (``None``: until evicted). Every caller gets its own object: an
answer is stored pickled (immutable bytes) and each hit unpickles a fresh
copy, so mutating one answer never changes another caller's (about 16 us for
a chat completion; ``copy.deepcopy`` takes twice that). An answer that cannot
be pickled is deep-copied instead, and one that cannot be copied at all is
not stored. Identical requests that arrive while the first is still in
flight share that one call (single flight) instead of each paying for it:
async callers on the same loop await one shared future, threads wait on one
event. Errors are shared with the callers that were waiting, never stored.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Awaitable, Callable, Optional, TypeVar

__all__ = ["ResponseCache", "client_identity", "request_identity"]

T = TypeVar("T")
# Keyed hashing: an identity or a key reveals nothing about the API key, not
# even to someone who can guess it, and is meaningless outside this process.
_SALT = os.urandom(16)
_IMMUTABLE = (str, bytes, int, float, bool, type(None))
_PLAIN_BASES: tuple[Any, ...] = (int, float, str, dict, list, tuple)
_CREDENTIALS = ("api_key", "admin_api_key", "auth_token", "organization", "project")
_Stored = tuple[Callable[[Any], Any], Any]  # (thaw, payload): thaw(payload) is a fresh copy


class _Flight:
    """One call in flight that threads with the same key wait for."""

    __slots__ = ("done", "error", "stored")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.stored: Optional[_Stored] = None
        self.error: Optional[BaseException] = None


def _hash(text: str, size: int = 20) -> str:
    return hashlib.blake2b(text.encode(), digest_size=size, key=_SALT).hexdigest()


def _spelled(value: Any) -> Optional[str]:
    """A credential or header value as text; an object (a key provider) by its identity."""
    if value is None or type(value).__name__ in ("Omit", "NotGiven"):
        return None
    if isinstance(value, str):
        return value
    return f"<{type(value).__qualname__}@{id(value):x}>"


def _text_items(mapping: Any) -> list[tuple[str, str]]:
    if not isinstance(mapping, Mapping):
        return []
    items = [(str(name).lower(), _spelled(value)) for name, value in mapping.items()]
    # The SDK's platform headers (x-stainless-*) say nothing about who asks.
    return sorted(
        (name, value)
        for name, value in items
        if value is not None and not name.startswith("x-stainless-")
    )


def _attribute(client: Any, name: str) -> Any:
    try:
        return getattr(client, name, None)
    except Exception:  # a property that needs what this client lacks
        return None


def client_identity(client: Any) -> str:
    """Who a client talks to and as whom, as a salted hash: what keeps tenants apart.

    Covers the base URL, the credentials (``api_key``, ``auth_token``, ...),
    organization and project, the default headers (auth headers included) and
    the default query of an openai or anthropic client (or anything shaped
    alike). Two clients that differ in any of these never share an answer.

    >>> import openai; client_identity(openai.OpenAI(api_key="a")) != client_identity(openai.OpenAI(api_key="b"))
    True
    """
    parts: dict[str, Any] = {
        "kind": type(client).__module__.split(".")[0],
        "base_url": _spelled(str(_attribute(client, "base_url") or "")),
    }
    for name in _CREDENTIALS:
        parts[name] = _spelled(_attribute(client, name))
    for name in ("auth_headers", "default_headers", "default_query"):
        parts[name] = _text_items(_attribute(client, name))
    return _hash(json.dumps(parts, sort_keys=True), 16)


# Headers that change from one send of the same request to the next, or
# that the body already decides: left out of a request's identity.
_VOLATILE_HEADERS = frozenset(
    {"content-length", "idempotency-key", "traceparent", "tracestate", "baggage", "sentry-trace"}
)


def request_identity(request: Any) -> str:
    """Who sends an HTTP request, as a salted hash of its headers: for a cache below the SDK.

    ``request`` is an ``httpx`` request or its headers. Every header counts
    (``authorization``, ``x-api-key``, organization, project, extra headers)
    except the SDK's ``x-stainless-*`` and those that differ between two
    sends of one request (``content-length``, ``idempotency-key``, trace
    context); the URL and body are the key's other parts.

    >>> request_identity({"Authorization": "Bearer a"}) != request_identity({"Authorization": "Bearer b"})
    True
    """
    headers = getattr(request, "headers", request)
    items = getattr(headers, "items", None)
    pairs = _text_items(dict(items())) if callable(items) else []
    kept = [(name, value) for name, value in pairs if name not in _VOLATILE_HEADERS]
    return _hash(json.dumps(kept), 16)


def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _canon(value: Any) -> Any:
    """``value`` as JSON with its exact types kept: every container is tagged by its kind.

    Only ``None``, ``bool``, ``int``, ``float`` and ``str`` are left bare: JSON
    tells them apart (``1``, ``1.0``, ``true``, ``"1"``). A list, a tuple, a
    set and a dict each become ``[tag, ...]``, so no two kinds share a spelling.
    """
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list or kind is tuple:
        return ["l" if kind is list else "t", *map(_canon, value)]
    if kind is dict:
        if all(type(k) is str for k in value):  # the usual case, sorted without json
            return ["d", *[[k, _canon(value[k])] for k in sorted(value)]]
        pairs = [[_canon(k), _canon(v)] for k, v in value.items()]
        return ["d", *sorted(pairs, key=lambda pair: json.dumps(pair[0]))]
    if kind is set or kind is frozenset:
        members = sorted(json.dumps(_canon(item)) for item in value)
        return ["s" if kind is set else "fs", *members]
    if kind is bytes or kind is bytearray:
        return ["b" if kind is bytes else "ba", hashlib.blake2b(value, digest_size=16).hexdigest()]
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # a pydantic model (an SDK param type): its fields, and its class
        return ["m", _type_name(value), _canon(dump(mode="python"))]
    for base in _PLAIN_BASES:
        if isinstance(value, base):  # an enum member, an OrderedDict, ...: kept apart by class
            return ["x", _type_name(value), _canon(base(value))]
    # Anything else is keyed by its state, never by its repr alone: two
    # objects with the same repr may differ, and a shared key would answer
    # one request with another's response. Unequal pickles only cost a miss.
    try:
        state = pickle.dumps(value, protocol=4)
    except Exception:  # not picklable: only this very object can match
        return ["o", _type_name(value), f"{id(value):x}"]
    return ["p", _type_name(value), hashlib.blake2b(state, digest_size=16).hexdigest()]


def _same(value: Any) -> Any:
    return value


def _freeze(value: Any) -> Optional[_Stored]:
    """How to hand out fresh copies of ``value``; None when it cannot be copied."""
    if type(value) in _IMMUTABLE:
        return _same, value
    try:
        return pickle.loads, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        pass
    try:
        return copy.deepcopy, copy.deepcopy(value)
    except Exception:
        return None


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
            if isinstance(ttl, int) and ttl > 10**18:
                raise ValueError("ttl must be a finite number > 0, got a number too large to use")
            if not ttl > 0 or ttl == float("inf"):
                raise ValueError(f"ttl must be a finite number > 0, got {ttl!r}")
        self.maxsize = maxsize
        self.ttl = None if ttl is None else float(ttl)
        self._now: Callable[[], float] = time.monotonic if clock is None else clock.now
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, _Stored]] = OrderedDict()
        self._threads_in_flight: dict[str, _Flight] = {}
        self._tasks_in_flight: dict[tuple[int, str], asyncio.Future[Any]] = {}
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"ResponseCache(maxsize={self.maxsize}, ttl={self.ttl})"

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    client_identity = staticmethod(client_identity)
    request_identity = staticmethod(request_identity)

    @staticmethod
    def key(method: str, arguments: dict[str, Any], *, client_identity: str = "") -> str:
        """The canonical key of a call: method, client identity and typed arguments, hashed.

        ``client_identity`` is :func:`client_identity` of the client the call
        goes through (``ResponseCache.client_identity(client)``), or, for a
        cache of HTTP requests, :func:`request_identity` of the request:
        without it, clients with different API keys would share answers.

        >>> ResponseCache.key("m", {"a": 1, "b": 2}) == ResponseCache.key("m", {"b": 2, "a": 1})
        True
        """
        text = json.dumps([method, client_identity, _canon(arguments)], separators=(",", ":"))
        return _hash(text)

    def get(self, key: str) -> tuple[bool, Any]:
        """``(True, answer)`` when ``key`` holds a live answer (a fresh copy), else ``(False, None)``.

        >>> ResponseCache().get("nothing")
        (False, None)
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                expires, stored = entry
                if self.ttl is None or self._now() < expires:
                    self._entries.move_to_end(key)
                    self.hits += 1
                else:
                    del self._entries[key]
                    entry = None
            if entry is None:
                self.misses += 1
                return False, None
        thaw, payload = stored
        return True, thaw(payload)  # outside the lock: unpickling is the slow part

    def put(self, key: str, value: Any) -> None:
        """Stores a copy of ``value`` under ``key``, evicting the least recently used beyond ``maxsize``.

        A value that can be neither pickled nor deep-copied is not stored.

        >>> cache = ResponseCache(maxsize=1); cache.put("a", 1); cache.put("b", 2); len(cache)
        1
        """
        stored = _freeze(value)
        if stored is not None:
            self._store(key, stored)

    def _store(self, key: str, stored: _Stored) -> None:
        expires = 0.0 if self.ttl is None else self._now() + self.ttl
        with self._lock:
            self._entries[key] = (expires, stored)
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

        Each caller gets its own copy; the one that made the call gets its result itself.

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
                if flight.error is not None:
                    raise flight.error
                if flight.stored is None:
                    continue  # interrupted, or an answer that cannot be copied: call again
                thaw, payload = flight.stored
                return thaw(payload)  # type: ignore[no-any-return]
            try:
                result = call()
            except Exception as exc:
                flight.error = exc
                raise
            else:
                flight.stored = _freeze(result)
                if flight.stored is not None:
                    self._store(key, flight.stored)
                return result
            finally:
                with self._lock:
                    del self._threads_in_flight[key]
                flight.done.set()

    async def get_or_call_async(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """The stored answer for ``key``, else ``await call()``'s, shared with waiting tasks.

        Each caller gets its own copy; the one that made the call gets its result itself.

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
                stored, error = await asyncio.shield(future)
                if error is not None:
                    raise error
                if stored is None:
                    continue  # the leader was cancelled, or the answer cannot be copied
                thaw, payload = stored
                return thaw(payload)  # type: ignore[no-any-return]
            future = asyncio.get_running_loop().create_future()
            self._tasks_in_flight[slot] = future
            outcome: tuple[Optional[_Stored], Optional[BaseException]] = (None, None)
            try:
                result = await call()
            except Exception as exc:
                outcome = (None, exc)
                raise
            else:
                stored = _freeze(result)
                if stored is not None:
                    self._store(key, stored)
                outcome = (stored, None)
                return result
            finally:
                del self._tasks_in_flight[slot]
                future.set_result(outcome)
