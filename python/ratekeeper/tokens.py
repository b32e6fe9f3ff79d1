"""Token estimates and counts, as ``wrap`` and the HTTP transport make them.

``estimate(request, path)`` estimates a request before it is sent (what the
model reads, plus the output the request allows); ``usage(response)`` reads
the counts a response reports. tiktoken counts the text of OpenAI's models
when it is installed (``pip install ratekeeper[tiktoken]``) and its encoding
can be loaded; ``set_encoding`` and ``load_encoding`` control that.

>>> from ratekeeper import tokens
>>> tokens.estimate({"model": "claude-x", "max_tokens": 50,
...                  "messages": [{"role": "user", "content": "日本語のテキスト"}]})
Tokens(input=15, output=50)
"""

from __future__ import annotations

from ._encodings import load_encoding, set_encoding
from ._tokens import StreamUsage, Tokens, count_text, usage
from ._tokens import estimate_body as estimate

__all__ = [
    "StreamUsage",
    "Tokens",
    "count_text",
    "estimate",
    "load_encoding",
    "set_encoding",
    "usage",
]
