"""Watching an SDK stream for its ``usage`` without changing what the user holds.

The user keeps the SDK's own ``Stream`` / ``AsyncStream`` object (same type,
same methods). Both SDKs pull items from the instance attribute
``_iterator``; it is replaced by an iterator that passes every item through
and notes the usage it reports. When the stream ends (exhausted, failed,
closed, or dropped unread), ``finish`` runs once: it reconciles the charge
with the usage seen and releases the concurrency slot.

A stream type without ``_iterator`` is left alone: it keeps its estimate and
its slot is released at once.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, AsyncIterator, Callable, Iterator, Optional

from ._tokens import Tokens, from_stream_item

__all__ = ["watch_stream"]


class _Watch:
    """The usage seen so far and the one-shot ending."""

    __slots__ = ("_finish", "_lock", "done", "usage")

    def __init__(self, finish: Callable[[Optional[Tokens]], None]) -> None:
        self._finish = finish
        self._lock = threading.Lock()
        self.done = False
        self.usage: Optional[Tokens] = None

    def see(self, item: Any) -> None:
        self.usage = from_stream_item(item, self.usage)

    def end(self) -> None:
        with self._lock:
            if self.done:
                return
            self.done = True
        self._finish(self.usage)


class _SyncWatcher:
    __slots__ = ("_inner", "_watch")

    def __init__(self, inner: Iterator[Any], watch: _Watch) -> None:
        self._inner = inner
        self._watch = watch

    def __iter__(self) -> _SyncWatcher:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self._inner)
        except BaseException:
            self._watch.end()
            raise
        self._watch.see(item)
        return item


class _AsyncWatcher:
    __slots__ = ("_inner", "_watch")

    def __init__(self, inner: AsyncIterator[Any], watch: _Watch) -> None:
        self._inner = inner
        self._watch = watch

    def __aiter__(self) -> _AsyncWatcher:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self._inner.__anext__()
        except BaseException:
            self._watch.end()
            raise
        self._watch.see(item)
        return item


def watch_stream(stream: Any, finish: Callable[[Optional[Tokens]], None]) -> None:
    """Arranges for ``finish(usage or None)`` to run once when ``stream`` ends."""
    watch = _Watch(finish)
    try:
        inner = stream._iterator
    except AttributeError:
        watch.end()
        return
    is_async = hasattr(inner, "__anext__")
    stream._iterator = _AsyncWatcher(inner, watch) if is_async else _SyncWatcher(inner, watch)
    close = getattr(stream, "close", None)
    if callable(close):
        if is_async:

            async def close_async() -> None:
                try:
                    await close()
                finally:
                    watch.end()

            stream.close = close_async
        else:

            def close_sync() -> None:
                try:
                    close()
                finally:
                    watch.end()

            stream.close = close_sync
    # A stream dropped unread still gives its slot back.
    weakref.finalize(stream, watch.end)
