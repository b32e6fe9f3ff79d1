"""The three kinds of batch input line, and the result line written for each.

- ``openai``: OpenAI Batch API requests, ``{"custom_id", "method", "url", "body"}``;
  results ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``.
- ``anthropic``: Message Batches requests, ``{"custom_id", "params"}``; results
  ``{"custom_id", "result": {"type": "succeeded", "message"} | {"type": "errored", ...}}``.
- ``simple``: a chat request body with an optional ``id`` (SPEC 11); results
  ``{"id", "line", "status", "response", "error", "attempts", "elapsed_s", "started_at"}``.

The kind is detected once per file, from its first line that is a JSON object.
Lines that were never sent because they are invalid carry ``"ratekeeper_error"``
(their code), so that a later run knows to look at them again.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

OPENAI_URLS = {
    "/v1/chat/completions": "messages",
    "/v1/responses": "input",
    "/v1/embeddings": "input",
    "/v1/completions": "prompt",
}
MESSAGES_URL = "/v1/messages"
# Statuses that re-sending the same line cannot change: the line is done.
FINAL_STATUSES = frozenset({400, 404, 409, 413, 415, 422})
INVALID = "invalid_input"
DUPLICATE = "duplicate_id"


class BatchInputError(Exception):
    """The batch cannot start: a missing file, no API key, an output that is a directory...

    >>> str(BatchInputError("input file not found: x.jsonl"))
    'input file not found: x.jsonl'
    """


@dataclass
class Outcome:
    """How one request ended: an HTTP answer (``status``/``body``) or an ``error`` without one."""

    status: Optional[int] = None
    body: Any = None
    request_id: Optional[str] = None
    error: Optional[str] = None  # "timeout", "connection_error", "cancelled"
    message: str = ""
    attempts: int = 0
    started_at: float = 0.0
    elapsed: float = 0.0
    headers: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Job:
    """One input line: its id, where and what to send, or why it cannot be sent."""

    id: Any
    line: int
    kind: str
    url: str = ""
    body: Optional[dict[str, Any]] = None
    problem: Optional[str] = None
    code: str = INVALID
    tokens: int = 0

    @property
    def key(self) -> str:
        return id_key(self.id)


def id_key(value: Any) -> str:
    """The identity of an id across runs (``1`` and ``"1"`` are different ids).

    >>> id_key("q1"), id_key(1)
    ('"q1"', '1')
    """
    return json.dumps(value, sort_keys=True)


def detect_kind(obj: Any) -> str:
    """``openai``, ``anthropic`` or ``simple``, from one decoded line.

    >>> detect_kind({"custom_id": "a", "params": {}}), detect_kind({"messages": []})
    ('anthropic', 'simple')
    """
    if isinstance(obj, dict) and "custom_id" in obj:
        if "params" in obj:
            return "anthropic"
        return "openai"
    if isinstance(obj, dict) and ("url" in obj and "body" in obj):
        return "openai"
    return "simple"


def estimate_tokens(body: dict[str, Any]) -> int:
    """Prompt characters / 4 plus the output the request allows (a budget estimate).

    >>> estimate_tokens({"messages": [{"role": "user", "content": "hello world!"}], "max_tokens": 5})
    8
    """
    text = 0
    for key in ("messages", "input", "prompt", "system", "instructions"):
        value = body.get(key)
        if value is not None:
            text += _text_length(value)
    out = 0
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            out = value
            break
    return math.ceil(text / 4) + out


def _text_length(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_length(value.get(k)) for k in ("content", "text", "input"))
    if isinstance(value, list):
        return sum(_text_length(item) for item in value)
    return 0


class LineError(ValueError):
    """Why a line cannot be sent (its message starts with ``line N:``)."""


def _check_body(url: str, body: dict[str, Any], line: int) -> None:
    if url == MESSAGES_URL:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise LineError(f"line {line}: 'messages' must be a non-empty list")
        tokens = body.get("max_tokens")
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
            raise LineError(f"line {line}: 'max_tokens' is required (give it, or --max-tokens)")
    else:
        field = OPENAI_URLS[url]
        value = body.get(field)
        if field == "messages" and (not isinstance(value, list) or not value):
            raise LineError(f"line {line}: 'messages' must be a non-empty list")
        if value is None or value == "" or value == []:
            raise LineError(f"line {line}: '{field}' is required for {url}")
    if body.get("stream"):
        raise LineError(f"line {line}: 'stream' is not supported in a batch")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise LineError(f"line {line}: no model: name one in the line or give --model")


def parse_line(
    obj: Any, line: int, kind: str, provider: str, model: Optional[str], max_tokens: Optional[int]
) -> Job:
    """The job of one decoded line of a file of ``kind``; raises ``LineError`` if invalid.

    >>> parse_line({"id": 1, "messages": [{"role": "user", "content": "x"}]},
    ...            1, "simple", "openai", "m", None).url
    '/v1/chat/completions'
    """
    if not isinstance(obj, dict):
        raise LineError(f"line {line}: expected a JSON object, got {type(obj).__name__}")
    if detect_kind(obj) != kind:
        raise LineError(f"line {line}: not a {kind} line like the first line of this file")
    body: Any
    url: Any
    if kind == "simple":
        body = {k: v for k, v in obj.items() if k != "id"}
        url = MESSAGES_URL if provider == "anthropic" else "/v1/chat/completions"
    elif kind == "anthropic":
        body, url = obj.get("params"), MESSAGES_URL
        if not isinstance(body, dict):
            raise LineError(f"line {line}: 'params' must be a JSON object")
    else:
        body, url = obj.get("body"), obj.get("url")
        if obj.get("method", "POST") != "POST":
            raise LineError(f"line {line}: 'method' must be \"POST\", got {obj.get('method')!r}")
        if isinstance(url, str) and not url.startswith("/v1/"):
            url = "/v1" + (url if url.startswith("/") else "/" + url)
        if url not in OPENAI_URLS:
            urls = ", ".join(OPENAI_URLS)
            raise LineError(f"line {line}: 'url' must be one of {urls}, got {obj.get('url')!r}")
        if not isinstance(body, dict):
            raise LineError(f"line {line}: 'body' must be a JSON object")
    body = dict(body)
    if model is not None:
        body.setdefault("model", model)
    chat_like = url in (MESSAGES_URL, "/v1/chat/completions")
    if max_tokens is not None and chat_like and "max_completion_tokens" not in body:
        body.setdefault("max_tokens", max_tokens)
    _check_body(url, body, line)
    return Job(None, line, kind, url, body, tokens=estimate_tokens(body))


def claimed_id(obj: Any, kind: str) -> Any:
    """The id a line names for itself, or None (then it is named after its line number)."""
    if not isinstance(obj, dict):
        return None
    value = obj.get("id" if kind == "simple" else "custom_id")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    if kind != "simple" and not isinstance(value, str):
        return None
    return value


# -- result lines -------------------------------------------------------------


def _clean_error_body(body: Any) -> Any:
    return body if isinstance(body, dict) else {"error": {"message": str(body)}}


def result_record(job: Job, outcome: Outcome) -> dict[str, Any]:
    """The result line for a request that was sent (or cancelled in flight)."""
    if job.kind == "openai":
        response = None
        error = None
        if outcome.status is not None:
            body = outcome.body if outcome.ok else _clean_error_body(outcome.body)
            response = {
                "status_code": outcome.status,
                "request_id": outcome.request_id,
                "body": body,
            }
        else:
            code = "batch_cancelled" if outcome.error == "cancelled" else outcome.error
            error = {"code": code, "message": outcome.message}
        return {
            "id": f"batch_req_{uuid.uuid4().hex}",
            "custom_id": job.id,
            "response": response,
            "error": error,
        }
    if job.kind == "anthropic":
        result: dict[str, Any]
        if outcome.ok:
            result = {"type": "succeeded", "message": outcome.body}
        elif outcome.error == "cancelled":
            result = {"type": "canceled"}
        else:
            result = {"type": "errored", "error": _anthropic_error(outcome)}
        return {"custom_id": job.id, "result": result}
    record: dict[str, Any] = {"id": job.id, "line": job.line}
    if outcome.ok:
        record.update(status="ok", response=outcome.body)
    elif outcome.error == "cancelled":
        record["status"] = "cancelled"
    else:
        message = _error_message(outcome)
        kind = outcome.error or _status_kind(outcome.status)
        record.update(
            status="error", error={"type": kind, "status": outcome.status, "message": message}
        )
    record.update(
        attempts=outcome.attempts,
        elapsed_s=round(outcome.elapsed, 4),
        started_at=round(outcome.started_at, 3),
    )
    return record


def _status_kind(status: Optional[int]) -> str:
    names = {400: "bad_request", 401: "authentication_error", 403: "permission_denied"}
    names.update({404: "not_found", 422: "unprocessable_entity", 429: "rate_limited"})
    if status is not None and status >= 500:
        return "server_error"
    return names.get(status or 0, f"http_{status}")


def _error_message(outcome: Outcome) -> str:
    body = outcome.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    if outcome.message:
        return outcome.message
    return f"HTTP {outcome.status}"


def _anthropic_error(outcome: Outcome) -> dict[str, Any]:
    body = outcome.body
    if isinstance(body, dict) and body.get("type") == "error":
        return body
    kind = "timeout_error" if outcome.error == "timeout" else "api_error"
    return {"type": "error", "error": {"type": kind, "message": _error_message(outcome)}}


def invalid_record(job: Job) -> dict[str, Any]:
    """The result line for a line that was not sent (invalid, or a duplicate id)."""
    message = job.problem or "invalid line"
    if job.kind == "openai":
        error = {"code": job.code, "message": message, "line": job.line}
        return {
            "id": f"batch_req_{uuid.uuid4().hex}",
            "custom_id": job.id,
            "response": None,
            "error": error,
            "ratekeeper_error": job.code,
        }
    if job.kind == "anthropic":
        inner = {"type": "invalid_request_error", "message": message}
        result = {"type": "errored", "error": {"type": "error", "error": inner}}
        return {"custom_id": job.id, "result": result, "ratekeeper_error": job.code}
    error = {"type": job.code, "status": None, "message": message}
    return {"id": job.id, "line": job.line, "status": "error", "error": error, "attempts": 0}


def record_state(record: Any) -> tuple[Optional[str], str]:
    """(id key, state) of a result line: ``ok``, ``failed`` (final), ``retry`` or ``invalid``.

    >>> record_state({"custom_id": "a", "result": {"type": "succeeded", "message": {}}})
    ('"a"', 'ok')
    """
    if not isinstance(record, dict):
        return None, "retry"
    if "custom_id" in record:
        key = id_key(record["custom_id"])
        if record.get("ratekeeper_error"):
            return key, "invalid"
        if "result" in record:
            return key, _anthropic_state(record.get("result"))
        return key, _openai_state(record.get("response"))
    if "id" not in record:
        return None, "retry"
    key = id_key(record["id"])
    status = record.get("status")
    if status == "ok":
        return key, "ok"
    error = record.get("error")
    if status != "error" or not isinstance(error, dict):
        return key, "retry"
    if error.get("type") in (INVALID, DUPLICATE):
        return key, "invalid"
    return key, "failed" if error.get("status") in FINAL_STATUSES else "retry"


def _openai_state(response: Any) -> str:
    if not isinstance(response, dict):
        return "retry"
    status = response.get("status_code")
    if isinstance(status, int) and 200 <= status < 300:
        return "ok"
    return "failed" if status in FINAL_STATUSES else "retry"


def _anthropic_state(result: Any) -> str:
    if not isinstance(result, dict):
        return "retry"
    if result.get("type") == "succeeded":
        return "ok"
    if result.get("type") != "errored":
        return "retry"
    error = result.get("error")
    inner = error.get("error") if isinstance(error, dict) else None
    kind = inner.get("type") if isinstance(inner, dict) else None
    final = ("invalid_request_error", "not_found_error", "request_too_large")
    return "failed" if kind in final else "retry"


def usage_tokens(body: Any) -> int:
    """Total tokens a response body reports (OpenAI ``total_tokens``, or input + output).

    >>> usage_tokens({"usage": {"input_tokens": 3, "output_tokens": 4}})
    7
    """
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return 0
    total = usage.get("total_tokens")
    if not isinstance(total, int):
        total = 0
        for key in ("input_tokens", "output_tokens", "prompt_tokens", "completion_tokens"):
            value = usage.get(key)
            total += value if isinstance(value, int) else 0
    return int(total)
