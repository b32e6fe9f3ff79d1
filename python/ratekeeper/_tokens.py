"""Token estimates before an LLM call and token counts from its ``usage`` after.

An estimate is deliberately simple and cheap: prompt characters / 4 (about
right for English with OpenAI's and Anthropic's tokenizers) plus the output
the request allows (``max_tokens`` and its renamings). ``wrap`` reconciles it
with the exact ``usage`` the server reports, so the estimate only has to be
good enough to not overspend while the call is in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["Tokens", "estimate", "from_stream_item", "from_usage"]

# Keys whose string values are text the model reads. Others ("role", "type",
# "model", ids, image URLs and base64 data) are not counted.
_TEXT_KEYS = frozenset(
    {
        "content",
        "text",
        "input",
        "prompt",
        "messages",
        "system",
        "instructions",
        "arguments",
        "output",
        "description",
        "tools",
        "function",
    }
)
_OUTPUT_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


@dataclass(frozen=True)
class Tokens:
    """Input and output tokens of one call (estimated or counted)."""

    input: int = 0
    output: int = 0


def _characters(value: Any, depth: int = 0) -> int:
    if isinstance(value, str):
        return len(value)
    if depth > 12:
        return 0
    if isinstance(value, dict):
        return sum(_characters(item, depth + 1) for key, item in value.items() if key in _TEXT_KEYS)
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, int) and not isinstance(item, bool) for item in value):
            return 4 * len(value)  # already tokens (embeddings/completions accept token ids)
        return sum(_characters(item, depth + 1) for item in value)
    return 0


def estimate(kwargs: dict[str, Any]) -> Tokens:
    """Input from the prompt's characters / 4; output from ``max_tokens`` (times ``n``).

    >>> estimate({"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50})
    Tokens(input=100, output=50)
    """
    characters = sum(_characters(kwargs[key]) for key in _TEXT_KEYS & kwargs.keys())
    output = 0
    for key in _OUTPUT_KEYS:
        value = kwargs.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            output = value
            break
    choices = kwargs.get("n")
    if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1:
        output *= choices
    return Tokens(input=(characters + 3) // 4, output=output)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def from_usage(usage: Any) -> Optional[Tokens]:
    """Counts from a response's ``usage`` (OpenAI chat/completions/embeddings/responses, Anthropic).

    Anthropic's input includes tokens written to its prompt cache (they count
    against the input budget); tokens read from the cache do not.

    >>> from_usage({"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15})
    Tokens(input=12, output=3)
    """
    if usage is None:
        return None

    def get(name: str) -> Any:
        return usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)

    prompt = get("prompt_tokens")
    if prompt is not None:
        total = _int(get("total_tokens"))
        completion = _int(get("completion_tokens"))
        return Tokens(input=_int(prompt), output=max(completion, total - _int(prompt)))
    input_tokens = get("input_tokens")
    output_tokens = get("output_tokens")
    if input_tokens is None and output_tokens is None:
        return None
    cache_writes = _int(get("cache_creation_input_tokens"))
    return Tokens(input=_int(input_tokens) + cache_writes, output=_int(output_tokens))


def from_stream_item(item: Any, seen: Optional[Tokens]) -> Optional[Tokens]:
    """The usage a stream item reports, merged with what earlier items reported.

    OpenAI chat/completions: the last chunk's ``usage`` (with
    ``stream_options={"include_usage": True}``); Responses: the
    ``response.completed`` event; Anthropic: ``message_start`` (input) then
    ``message_delta`` (output so far, cumulative).
    """
    kind = getattr(item, "type", None)
    if kind == "message_start":
        found = from_usage(getattr(getattr(item, "message", None), "usage", None))
    elif kind == "message_delta":
        delta = from_usage(getattr(item, "usage", None))
        if delta is None:
            return seen
        earlier_input = seen.input if seen is not None else 0
        return Tokens(input=max(earlier_input, delta.input), output=delta.output)
    elif kind in ("response.completed", "response.incomplete", "response.failed"):
        found = from_usage(getattr(getattr(item, "response", None), "usage", None))
    else:
        found = from_usage(getattr(item, "usage", None))
    return found if found is not None else seen
