"""ratekeeper batch vs the openai-cookbook parallel processor, against the mock provider.

Each run gets a fresh `ratekeeper mock-server` (its own process, so that the
server does not share a core with the client) allowing RPM requests/min with a
bucket of one minute. The batch reads an OpenAI Batch API file (custom_id,
method, url, body). Ideal time = (N - burst) / rate: the burst goes at once.
A second run sends a burst that fits in the bucket (no pacing): per-request
overhead of the batch path against the cookbook loop, as wall time and as the
client process's CPU time per request (the server's share excluded: the
figure that stays put on a loaded machine); ``--baseline-ms`` (a client CPU
figure measured earlier, e.g. on another commit) prints the ratio.

    python bench/bench_batch.py [--requests 2000] [--rpm 1200] [--burst-requests 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai

from ratekeeper.batch import BatchOptions, run_batch

MESSAGES = [{"role": "user", "content": "Say hello to the benchmark."}]


def start_mock(rpm: float) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "ratekeeper", "mock-server", "--port", "0", "--rpm", str(rpm)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.split(" on ")[1].split(" ")[0]


async def ratekeeper_run(base_url: str, n: int, rpm: float, tmp: Path) -> tuple[float, int, int]:
    src = tmp / "in.jsonl"
    with src.open("w") as file:
        for i in range(n):
            body = {"model": "gpt-4o-mini", "messages": MESSAGES}
            line = {"custom_id": f"request-{i}", "method": "POST", "url": "/v1/chat/completions"}
            file.write(json.dumps({**line, "body": body}) + "\n")
    options = BatchOptions(
        src,
        tmp / "out.jsonl",
        model="gpt-4o-mini",
        base_url=base_url,
        rpm=rpm,
        concurrency=64,
        show_progress=False,
    )
    summary = await run_batch(options)
    return summary.wall, summary.rate_limited, summary.failed


async def cookbook_run(base_url: str, n: int, rpm: float) -> tuple[float, int, int]:
    """The loop of openai-cookbook's api_request_parallel_processor.py, re-created.

    Request capacity refills continuously up to rpm and is checked every 1 ms;
    any 429 pauses all new requests for 15 s; failed requests are retried (5 attempts).
    """
    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
    pending = [(i, 5) for i in range(n)][::-1]
    retry_queue: list[tuple[int, int]] = []
    capacity, last_update, last_429 = rpm, time.monotonic(), -1e9
    in_flight, done, failed, limited = 0, 0, 0, 0

    async def call(item: tuple[int, int]) -> None:
        nonlocal in_flight, done, failed, limited, last_429
        try:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            done += 1
        except openai.RateLimitError:
            limited += 1
            last_429 = time.monotonic()
            if item[1] > 1:
                retry_queue.append((item[0], item[1] - 1))
            else:
                failed += 1
        finally:
            in_flight -= 1

    started = time.monotonic()
    tasks = []
    while pending or retry_queue or in_flight:
        now = time.monotonic()
        capacity = min(rpm, capacity + rpm * (now - last_update) / 60.0)
        last_update = now
        source = retry_queue or pending
        if source and capacity >= 1:
            capacity -= 1
            in_flight += 1
            tasks.append(asyncio.create_task(call(source.pop())))
        await asyncio.sleep(0.001)
        pause = 15.0 - (time.monotonic() - last_429)
        if pause > 0:
            await asyncio.sleep(pause)
    await client.close()
    return time.monotonic() - started, limited, failed


def run_both(n: int, rpm: float) -> list[tuple[str, float, int, int, float]]:
    """(approach, wall s, 429s, failed, client CPU s) for ratekeeper batch and the cookbook loop.

    The mock runs in its own process, so the CPU time of this one is the client's alone.
    """
    rows = []
    for name, runner in (("ratekeeper batch", "rk"), ("cookbook processor", "cookbook")):
        proc, url = start_mock(rpm)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                cpu = time.process_time()
                if runner == "rk":
                    result = asyncio.run(ratekeeper_run(url, n, rpm, Path(tmp)))
                else:
                    result = asyncio.run(cookbook_run(url, n, rpm))
                cpu = time.process_time() - cpu
        finally:
            proc.terminate()
            proc.wait()
        rows.append((name, *result, cpu))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rpm", type=float, default=1200.0)
    parser.add_argument("--burst-requests", type=int, default=400, help="0 skips the burst run")
    parser.add_argument(
        "--baseline-ms",
        type=float,
        help="client CPU ms per request of an earlier measurement, to compare",
    )
    args = parser.parse_args()
    n, rpm = args.requests, args.rpm
    ideal = max(0.0, n - rpm) / (rpm / 60.0)
    print(
        f"{n} requests against a mock provider at {rpm:.0f} RPM (burst {rpm:.0f}); "
        f"ideal {ideal:.1f} s = (N - burst) / rate, the burst going at once"
    )
    rows = run_both(n, rpm)
    print(f"{'approach':<20} {'wall s':>8} {'vs ideal':>9} {'429s':>6} {'failed':>7}")
    for name, wall, limited, failed, _ in rows:
        ratio = wall / ideal if ideal else float("nan")
        print(f"{name:<20} {wall:8.1f} {ratio:8.3f}x {limited:6d} {failed:7d}")
    print(f"cookbook / ratekeeper wall time: {rows[1][1] / rows[0][1]:.2f}x")
    if ideal:
        wall, failed = rows[0][1], rows[0][3]
        verdict = "yes" if wall <= 1.02 * ideal and failed == 0 else "NO"
        print(f"ratekeeper within 2% of ideal with zero failures: {verdict}")
    burst_n = min(args.burst_requests, int(rpm))
    if burst_n > 0:
        # All within the bucket: no pacing at all, so this is per-request overhead.
        print(f"\n{burst_n} requests, all within the burst (per-request overhead; concurrency 64)")
        burst_rows = run_both(burst_n, rpm)
        print(
            f"{'approach':<20} {'wall s':>8} {'wall ms/req':>12} {'client CPU ms/req':>18} failed"
        )
        for name, wall, _, failed, cpu in burst_rows:
            per, cpu_per = 1000.0 * wall / burst_n, 1000.0 * cpu / burst_n
            print(f"{name:<20} {wall:8.3f} {per:12.3f} {cpu_per:18.3f} {failed:6d}")
        print(f"cookbook / ratekeeper wall time: {burst_rows[1][1] / burst_rows[0][1]:.2f}x")
        if args.baseline_ms:
            per = 1000.0 * burst_rows[0][4] / burst_n
            print(
                f"ratekeeper client CPU per request: {per:.3f} ms now against "
                f"{args.baseline_ms:.3f} ms before: {args.baseline_ms / per:.1f}x less"
            )


if __name__ == "__main__":
    main()
