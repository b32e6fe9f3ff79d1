"""Per-call cost of ``rk.wrap`` over the bare SDK client, on a fast local server.

The server runs in its own process (no GIL shared with the client), answers
every request with one canned chat completion (usage included) over a
keep-alive connection, and sets ``TCP_NODELAY`` so that no Nagle delay hides
or adds microseconds. The bare ``openai.OpenAI`` client and the wrapped one
(``rpm`` and ``tpm`` budgets far from binding: the granted path) take turns
call by call; the table prints each side's median (CPU time of the calling
thread, and wall time), the difference per call, and the ratio. A last row
times the same call with no network at all (``httpx2.MockTransport``), the
steadiest figure on a busy machine. Run: ``python bench/bench_wrap.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
import statistics
import sys
import time
from typing import Any, Callable

import openai
from _timing import machine, table

import ratekeeper as rk

MESSAGES = [{"role": "user", "content": "Say hello in one word."}]
BODY = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
    }
).encode()
REPLY = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)


def _serve_connection(connection: socket.socket) -> None:
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = connection.recv(65536)
            if not chunk:
                return
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = connection.recv(65536)
            if not chunk:
                return
            rest += chunk
        buffer = rest[length:]
        connection.sendall(REPLY)


def serve(listener: socket.socket) -> None:
    """Answers every request on every connection with ``REPLY`` (one thread per connection)."""
    import threading

    while True:
        connection, _ = listener.accept()
        threading.Thread(target=_serve_connection, args=(connection,), daemon=True).start()


def start_server() -> tuple[multiprocessing.Process, str]:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    process = multiprocessing.get_context("fork").Process(target=serve, args=(listener,))
    process.daemon = True
    process.start()
    listener.close()
    return process, f"http://127.0.0.1:{port}/v1"


def per_call_us(
    samples: int, pairs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]]
) -> dict[str, dict[str, float]]:
    """Median microseconds per call of each (bare, wrapped) pair, timed call by call in turn.

    Alternating single calls puts both sides under the same load from the rest of
    the machine; the median of each side drops the stragglers. Both the wall time
    and the calling thread's CPU time are kept: on a busy machine the CPU time
    (what the client itself spends) is the steadier figure.
    """
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    result = {}
    for name, pair in pairs.items():
        times: dict[str, list[int]] = {key: [] for key in ("wall0", "wall1", "cpu0", "cpu1")}
        for _ in range(samples):
            for side, call in enumerate(pair):
                started, used = wall(), cpu()
                call()
                times[f"cpu{side}"].append(cpu() - used)
                times[f"wall{side}"].append(wall() - started)
        result[name] = {key: statistics.median(values) / 1000 for key, values in times.items()}
    return result


def sync_call(client: Any) -> Callable[[], Any]:
    create = client.chat.completions.create
    return lambda: create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=16)


def async_call(client: Any, loop: asyncio.AbstractEventLoop) -> Callable[[], Any]:
    create = client.chat.completions.create
    return lambda: loop.run_until_complete(
        create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=16)
    )


def in_process_us(rounds: int, calls: int) -> tuple[float, float]:
    """Best-round CPU microseconds per call, bare and wrapped, with no network at all.

    The SDK sends through ``httpx2.MockTransport`` (the canned reply built in
    process): what is left is the SDK's own work, and ratekeeper's on top.
    """
    import httpx2

    def reply(request: Any) -> Any:
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=BODY)

    def client() -> openai.OpenAI:
        http = httpx2.Client(transport=httpx2.MockTransport(reply))
        return openai.OpenAI(
            base_url="http://mock/v1", api_key="k", max_retries=0, http_client=http
        )

    sides = [sync_call(client()), sync_call(wrapped(client()))]
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for side, call in enumerate(sides):
            started = time.thread_time_ns()
            for _ in range(calls):
                call()
            best[side] = min(best[side], (time.thread_time_ns() - started) / calls / 1000)
    return best[0], best[1]


def wrapped(client: Any) -> Any:
    return rk.wrap(client, rpm=10**9, tpm=10**12)


def main() -> None:
    samples = 1000 if "--quick" in sys.argv else 3000
    process, url = start_server()
    loop = asyncio.new_event_loop()
    try:
        bare = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
        abare = openai.AsyncOpenAI(base_url=url, api_key="k", max_retries=0)
        pairs = {
            "openai sync chat.completions.create": (sync_call(bare), sync_call(wrapped(bare))),
            "openai async chat.completions.create": (
                async_call(abare, loop),
                async_call(wrapped(abare), loop),
            ),
        }
        per_call_us(100, pairs)  # warm up connections and caches
        medians = per_call_us(samples, pairs)
    finally:
        loop.close()
        process.kill()
    rows = []
    for name, us in medians.items():
        for kind, label in (("cpu", "CPU"), ("wall", "wall")):
            plain, ours = us[f"{kind}0"], us[f"{kind}1"]
            rows.append(
                (
                    f"{name} ({label})",
                    f"{plain:.1f}",
                    f"{ours:.1f}",
                    f"{ours - plain:+.1f}",
                    f"{ours / plain:.3f}x",
                )
            )
    plain, ours = in_process_us(10 if "--quick" in sys.argv else 40, 100)
    rows.append(
        (
            "openai sync, no network (CPU, best of rounds)",
            f"{plain:.1f}",
            f"{ours:.1f}",
            f"{ours - plain:+.1f}",
            f"{ours / plain:.3f}x",
        )
    )
    print(f"rk.wrap over the bare client ({machine()}; median of {samples} alternating calls)")
    header = ("call", "bare us/call", "wrapped us/call", "cost us/call", "ratio")
    print(table(rows, header))


if __name__ == "__main__":
    main()
