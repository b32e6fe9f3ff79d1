"""tiktoken encodings for OpenAI's models, loaded once, off the caller's thread.

tiktoken reads an encoding's BPE file from its cache (``TIKTOKEN_CACHE_DIR``,
by default ``<tmp>/data-gym-cache``) and otherwise downloads it, with no
timeout, and loading even a cached file takes a good part of a second. So the
first request that needs an encoding starts a background thread that loads
it; until it is ready, requests are estimated from their characters. A load
that fails (no tiktoken, no network, no cached file) is remembered and never
tried again, so an offline machine pays for one failed attempt per encoding,
on that thread, and no call ever waits for it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

__all__ = ["encoding_for", "encoding_name", "load_encoding", "set_encoding"]

_log = logging.getLogger("ratekeeper")

# Model-name prefixes and their encoding; the first match wins (gpt-4o before gpt-4).
_PREFIXES = (
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("gpt-oss", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("codex", "o200k_base"),
    ("computer-use", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),
    ("text-embedding-", "cl100k_base"),
    ("davinci-002", "cl100k_base"),
    ("babbage-002", "cl100k_base"),
)
NAMES = frozenset(name for _, name in _PREFIXES)

_lock = threading.Lock()
# Encoding name -> the encoding, None (failed or turned off: estimate from
# characters) or a threading.Event while it loads.
_state: dict[str, Any] = {}
_names: dict[str, Optional[str]] = {}  # model -> encoding name, memoised


def encoding_name(model: Any) -> Optional[str]:
    """The tiktoken encoding of an OpenAI model (``openai/`` and ``ft:`` prefixes allowed).

    >>> encoding_name("gpt-4o-mini"), encoding_name("gpt-4-turbo"), encoding_name("claude-x")
    ('o200k_base', 'cl100k_base', None)
    """
    if not isinstance(model, str):
        return None
    try:
        return _names[model]
    except KeyError:
        pass
    bare = model.lower()
    for prefix in ("openai/", "azure/", "ft:"):
        if bare.startswith(prefix):
            bare = bare[len(prefix) :]
    name = next((enc for prefix, enc in _PREFIXES if bare.startswith(prefix)), None)
    if len(_names) < 4096:  # model names come from requests: keep the memo bounded
        _names[model] = name
    return name


def encoding_for(model: Any) -> Optional[Any]:
    """The loaded encoding for ``model``, or None (not OpenAI's, failed, or still loading)."""
    name = encoding_name(model)
    if name is None:
        return None
    found = _state.get(name, _start)
    if found is _start:
        _start(name)
        return None
    return None if isinstance(found, threading.Event) else found


def _start(name: str) -> Optional[threading.Event]:
    with _lock:
        if name in _state:
            found = _state[name]
            return found if isinstance(found, threading.Event) else None
        try:
            import tiktoken  # noqa: F401
        except ImportError:
            _state[name] = None
            return None
        event = threading.Event()
        _state[name] = event
    thread = threading.Thread(
        target=_load, args=(name, event), name=f"ratekeeper-tiktoken-{name}", daemon=True
    )
    thread.start()
    return event


def _load(name: str, event: threading.Event) -> None:
    encoding: Any = None
    try:
        import tiktoken

        encoding = tiktoken.get_encoding(name)
    except Exception as exc:  # no network, no cached file, a corrupt file: estimate instead
        _log.info(
            "tiktoken encoding %s unavailable (%s); estimating tokens from characters",
            name,
            type(exc).__name__,
        )
    with _lock:
        if _state.get(name) is event:  # unless set_encoding() decided meanwhile
            _state[name] = encoding
    event.set()


def set_encoding(name: str, encoding: Optional[Any]) -> None:
    """Counts with ``encoding`` for every model of encoding ``name``; None: estimate instead.

    ``encoding`` is a ``tiktoken.Encoding`` or anything with an
    ``encode_ordinary(text)`` or ``encode(text)`` that returns a list. Passing
    None turns tiktoken off for those models (no load is ever attempted).

    >>> set_encoding("o200k_base", None)
    """
    if name not in NAMES:
        raise ValueError(f"name must be one of {sorted(NAMES)}, got {name!r}")
    if encoding is not None and not callable(
        getattr(encoding, "encode_ordinary", getattr(encoding, "encode", None))
    ):
        raise TypeError(
            f"encoding must have an encode_ordinary() or encode() method, got {encoding!r}"
        )
    with _lock:
        _state[name] = encoding


def load_encoding(model: str, timeout: Optional[float] = 30.0) -> Optional[Any]:
    """Loads the encoding of ``model`` (or an encoding name) now; the encoding, or None.

    Waits at most ``timeout`` seconds (None: as long as it takes); the load
    goes on in the background past a timeout. A failed load is not retried.

    >>> load_encoding("claude-sonnet-4") is None  # not an OpenAI model
    True
    """
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
    name = model if model in NAMES else encoding_name(model)
    if name is None:
        return None
    event = _start(name)
    if event is not None:
        event.wait(timeout)
    found = _state.get(name)
    return None if isinstance(found, threading.Event) else found
