"""Benchmark: N concurrent streaming clients against `toolformer serve` on loopback for a bounded time.

Run by hand: `.venv/bin/python bench/serve.py --clients 200 --duration 120` starts `toolformer serve` on a free
loopback port (the embedded model unless `--model`), or measures a running server with `--url`. Every client
loops: one streaming chat request ("What is 23 times 47?" by default), read to `[DONE]`, again, until the time is
up; requests still in flight then are awaited (up to `--grace` seconds) and counted. Prints requests/s, latency
p50/p99, time to first content, tool calls seen, errors and 5xx, as a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    first_content: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    tool_calls: int = 0
    tokens: int = 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def one_request(client: httpx.AsyncClient, body: dict, stats: Stats) -> None:
    started = time.perf_counter()
    first = None
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            stats.statuses[response.status_code] = stats.statuses.get(response.status_code, 0) + 1
            if response.status_code != 200:
                stats.errors.append(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
                return
            done = False
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    stats.errors.append(f"stream error: {event['error'].get('message')}")
                    return
                if event.get("usage"):
                    stats.tokens += event["usage"]["completion_tokens"]
                for choice in event.get("choices", []):
                    if first is None and choice.get("delta", {}).get("content"):
                        first = time.perf_counter() - started
                    stats.tool_calls += len(choice.get("tool_trace") or [])
            if not done:
                stats.errors.append("stream ended without [DONE]")
                return
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        stats.errors.append(f"{type(exc).__name__}: {exc}")
        return
    stats.latencies.append(time.perf_counter() - started)
    if first is not None:
        stats.first_content.append(first)


async def run(url: str, model: str, args: argparse.Namespace) -> tuple[Stats, float]:
    stats = Stats()
    body = {
        "model": model,
        "messages": [{"role": "user", "content": args.question}],
        "max_tokens": args.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    timeout = httpx.Timeout(args.duration + args.grace, connect=60)
    started = time.perf_counter()
    stop_at = started + args.duration
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout, headers=headers) as client:

        async def worker() -> None:
            sent = 0
            while time.perf_counter() < stop_at and sent < args.max_requests_per_client:
                sent += 1
                await one_request(client, body, stats)

        tasks = [asyncio.create_task(worker()) for _ in range(args.clients)]
        await asyncio.wait(tasks, timeout=args.duration + args.grace)
        for task in tasks:
            if not task.done():
                task.cancel()
                stats.errors.append("cancelled: still running after the grace period")
    return stats, time.perf_counter() - started


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "toolformer.cli", "serve", "--port", str(port), "--log-level", "warning"]
    if args.model:
        cmd += ["--model", args.model]
    cmd += ["--max-concurrency", str(max(256, args.clients)), *args.server_arg]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit("server did not become healthy in 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="A running server (default: start one on a free loopback port).")
    parser.add_argument("--model", help="Model for the started server (default: the embedded one).")
    parser.add_argument("--api-key", default=os.environ.get("TOOLFORMER_API_KEY"))
    parser.add_argument("--clients", type=int, default=16, help="Concurrent streaming clients.")
    parser.add_argument("--duration", type=float, default=60, help="Seconds during which new requests start.")
    parser.add_argument(
        "--grace", type=float, default=600, help="Seconds to wait for requests in flight at the end."
    )
    parser.add_argument("--max-requests-per-client", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--question", default="What is 23 times 47?")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="Extra `toolformer serve` argument."
    )
    args = parser.parse_args()
    if args.url and not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise SystemExit("--url must be a loopback address")

    proc = None
    url = args.url
    if url is None:
        print("starting toolformer serve …", file=sys.stderr)
        proc, url = start_server(args)
    try:
        model = httpx.get(
            f"{url}/v1/models",
            timeout=30,
            headers={"Authorization": f"Bearer {args.api_key}"} if args.api_key else {},
        ).json()["data"][0]["id"]
        stats, elapsed = asyncio.run(run(url, model, args))
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)

    done = len(stats.latencies)
    five_xx = sum(n for code, n in stats.statuses.items() if code >= 500)
    series = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#"))
    batches = float(series.get("toolformer_batch_size_count", "0"))
    mean_batch = float(series.get("toolformer_batch_size_sum", "nan")) / batches if batches else float("nan")
    result = {
        "model": model,
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "completed": done,
        "requests_per_s": round(done / elapsed, 3),
        "p50_s": round(_pct(stats.latencies, 0.5), 2),
        "p99_s": round(_pct(stats.latencies, 0.99), 2),
        "first_content_p50_s": round(_pct(stats.first_content, 0.5), 2),
        "completion_tokens_per_s": round(stats.tokens / elapsed, 1),
        "tool_calls": stats.tool_calls,
        "errors": len(stats.errors),
        "http_5xx": five_xx,
        "statuses": stats.statuses,
        "mean_batch": round(mean_batch, 2),
    }
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if stats.errors:
        print("first errors:", *sorted(set(stats.errors))[:5], sep="\n  ")
    if stats.latencies:
        print(f"latency mean {statistics.mean(stats.latencies):.2f} s, max {max(stats.latencies):.2f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
