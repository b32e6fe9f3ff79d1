"""ResponseCache: what a key and a hit cost, and what the per-caller copy adds.

A hit hands each caller its own object (the answer is stored pickled and
unpickled per hit); this prints that cost beside ``copy.deepcopy`` of the
same answer and beside handing out the stored object itself (no isolation),
for a chat completion from the openai SDK. The key is timed for a typical
chat request, with and without the client identity.

    python bench/bench_cache.py [--quick]
"""

from __future__ import annotations

import copy
import sys

import openai
from _timing import ns_per_call
from openai.types.chat import ChatCompletion

import ratekeeper as rk

ANSWER = ChatCompletion.model_validate(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "The answer is 4. " * 40},
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 160, "total_tokens": 172},
    }
)
REQUEST = {
    "args": (),
    "kwargs": {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is 2+2? " * 20},
        ],
        "max_tokens": 200,
        "temperature": 0.0,
    },
}


def main() -> None:
    number = 2_000 if "--quick" in sys.argv else 20_000
    cache = rk.ResponseCache()
    cache.put("k", ANSWER)
    identity = rk.ResponseCache.client_identity(openai.OpenAI(api_key="sk-bench"))
    store: dict[str, ChatCompletion] = {"k": ANSWER}
    env = {
        "cache": cache,
        "rk": rk,
        "copy": copy,
        "ANSWER": ANSWER,
        "REQUEST": REQUEST,
        "identity": identity,
        "store": store,
        "openai_client": openai.OpenAI(api_key="sk-bench"),
    }
    rows = [
        ("key (chat request)", "rk.ResponseCache.key('m', REQUEST)"),
        ("key + client identity", "rk.ResponseCache.key('m', REQUEST, client_identity=identity)"),
        ("client_identity(client)", "rk.ResponseCache.client_identity(openai_client)"),
        ("hit: own copy (pickled)", "cache.get('k')"),
        ("copy.deepcopy(answer)", "copy.deepcopy(ANSWER)"),
        ("dict lookup, shared object", "store.get('k')"),
    ]
    print(f"{'operation':30} {'us per call':>12}")
    for name, stmt in rows:
        print(f"{name:30} {ns_per_call(stmt, env, number=number, repeat=3) / 1000:12.1f}")


if __name__ == "__main__":
    main()
