"""How each event kind is logged, and the scrubbing that keeps secrets out of records.

Each kind goes to a child of the ``"ratekeeper"`` logger named after its
area, at the level a user expects (a 429, a breaker opening, a fallback and
giving up warn; a retry scheduled, a pause, a learned limit inform).
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Mapping
from typing import Any

__all__ = ["LOG_RULES", "message_of", "scrub_fields"]

# kind -> (logger, level); "breaker_state" warns only when the breaker opens.
LOG_RULES: dict[str, tuple[logging.Logger, int]] = {
    "rate_limited": (logging.getLogger("ratekeeper.retry"), logging.WARNING),
    "retry": (logging.getLogger("ratekeeper.retry"), logging.INFO),
    "giving_up": (logging.getLogger("ratekeeper.retry"), logging.WARNING),
    "pause": (logging.getLogger("ratekeeper.limiter"), logging.INFO),
    "learned_limit": (logging.getLogger("ratekeeper.limiter"), logging.INFO),
    "breaker_state": (logging.getLogger("ratekeeper.breaker"), logging.INFO),
    "fallback": (logging.getLogger("ratekeeper.wrap"), logging.WARNING),
    "redis_outage": (logging.getLogger("ratekeeper.redis"), logging.WARNING),
    "redis_recovered": (logging.getLogger("ratekeeper.redis"), logging.INFO),
}

_TEMPLATES = {
    "rate_limited": "429 from {model}: waiting {wait}s (attempt {attempt})",
    "retry": "retrying {model} in {wait}s (attempt {attempt}, {reason})",
    "giving_up": "giving up on {model} after {attempt} attempts ({reason})",
    "pause": "limiter paused for {wait}s: no permit until then",
    "learned_limit": "learned {budget}={value} for {model} from the server",
    "breaker_state": "circuit breaker {previous} -> {state}",
    "fallback": "falling back from {model} to {to_model} ({reason})",
    "redis_outage": "Redis is unreachable: {error}",
    "redis_recovered": "Redis is reachable again; limits are shared again",
}

# Field names whose values are secrets, whatever they hold.
_SECRET_NAME = re.compile(
    r"(api[_-]?key|secret|passw|authori[sz]ation|credential|cookie|(^|_)token$|bearer)",
    re.IGNORECASE,
)
# Secrets inside text: provider keys, bearer tokens, key=value pairs, URL user info.
_SECRET_TEXT = re.compile(
    r"(?P<key>\b(?:sk|pk|rk|gsk|xai|AIza)[-_][A-Za-z0-9_\-]{6,})"
    r"|(?P<bearer>\bBearer\s+)\S+"
    r"|(?P<pair>\b(?:api[_-]?key|token|password|passwd|secret|x-api-key)\b\s*[=:]\s*)[^\s,;&'\"]+"
    r"|(?P<userinfo>://)[^/@\s]+@",
    re.IGNORECASE,
)
REDACTED = "***"
# Attributes of a LogRecord that ``extra`` must not overwrite.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


def scrub_text(text: str) -> str:
    """``text`` with anything that looks like a key, token or password replaced.

    >>> scrub_text("401 for key sk-abcdefgh12345678")
    '401 for key ***'
    """

    def replace(match: re.Match[str]) -> str:
        for prefix in ("bearer", "pair", "userinfo"):
            if match.group(prefix):
                return match.group(prefix) + REDACTED + ("@" if prefix == "userinfo" else "")
        return REDACTED

    return _SECRET_TEXT.sub(replace, text)


def _scrub_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, BaseException):
        return scrub_text(f"{type(value).__name__}: {value}")
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if _SECRET_NAME.search(str(k)) else _scrub_value(v)
            for k, v in value.items()
        }
    return scrub_text(str(value))


def scrub_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields with secret-named entries redacted and secrets in text replaced.

    >>> scrub_fields({"model": "gpt-4o", "api_key": "sk-abc"})
    {'model': 'gpt-4o', 'api_key': '***'}
    """
    return {
        name: REDACTED if _SECRET_NAME.search(name) else _scrub_value(value)
        for name, value in fields.items()
    }


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def message_of(kind: str, fields: Mapping[str, Any]) -> str:
    """The log message of one event: its template, then the fields it does not name.

    Fields the template names but the event lacks read ``?``.

    >>> message_of("pause", {"wait": 1.5})
    'limiter paused for 1.5s: no permit until then'
    >>> message_of("redis_outage", {"error": "refused", "on_error": "local"})
    'Redis is unreachable: refused (on_error=local)'
    """
    template = _TEMPLATES.get(kind, kind)
    shown = {name: _shown(value) for name, value in fields.items()}
    named = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    rest = ", ".join(f"{name}={value}" for name, value in shown.items() if name not in named)
    message = template.format_map(_Missing(shown))
    return f"{message} ({rest})" if rest else message


class _Missing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "?"


def extra_of(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The ``extra`` of a record: ``event`` plus each field (renamed ``rk_*`` if it clashes).

    >>> extra_of("pause", {"wait": 1.0, "name": "x"})
    {'event': 'pause', 'wait': 1.0, 'rk_name': 'x'}
    """
    extra: dict[str, Any] = {"event": kind}
    for name, value in fields.items():
        extra[f"rk_{name}" if name in _RESERVED else name] = value
    return extra
