"""Benchmark: `toolformer serve` under open-loop load, static and continuous batching side by side in one run.

Run by hand (it starts one server per batching mode on a free loopback port, the embedded model unless `--model`):

    OMP_NUM_THREADS=1 .venv/bin/python bench/serve.py --batching continuous,static --out docs/serve-bench.md

Both servers run at once and each phase runs on one, then the other, so the machine's other load changes both
alike. The phases: (1) capacity: `--streams` closed-loop streaming clients (32) for `--capacity-s` seconds;
the completed requests/s is the mode's capacity, and its completion tokens/s the figure at 32 streams. (2) open
loop: Poisson arrivals at each `--loads` fraction (0.5, 0.8) of the mode's own capacity for `--poisson-s` seconds, sent on
schedule whether or not earlier ones have finished (`--rate` fixes the capacity instead of measuring it). (3) the
burst: `--burst` requests (200) sent at once. Every request is one streaming chat ("What is 23 times 47?" with
numbers drawn per request, which the model answers with a server-side Calculator call) read to `[DONE]`. Reported per phase: time to first token
(first content delta) p50/p99, inter-token latency (gaps between content deltas) p50/p99, request latency
p50/p99, aggregate completion tokens/s (all tokens over the phase's wall time), server-side tool calls, errors.
`--url` measures one running server instead. Prints a Markdown table (also written to `--out`) and JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Phase:
    """What one phase's requests saw."""

    name: str
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tokens: int = 0
    tool_calls: int = 0
    sent: int = 0
    seconds: float = 0.0
    rate: float | None = None  # requests/s sent (open loop)

    def row(self, mode: str) -> dict:
        done = len(self.latency)
        return {
            "batching": mode,
            "phase": self.name,
            "rate_rps": None if self.rate is None else round(self.rate, 3),
            "sent": self.sent,
            "completed": done,
            "errors": len(self.errors),
            "ttft_p50_s": _r(_pct(self.ttft, 0.5)),
            "ttft_p99_s": _r(_pct(self.ttft, 0.99)),
            "itl_p50_s": _r(_pct(self.itl, 0.5), 3),
            "itl_p99_s": _r(_pct(self.itl, 0.99), 3),
            "latency_p50_s": _r(_pct(self.latency, 0.5)),
            "latency_p99_s": _r(_pct(self.latency, 0.99)),
            "completion_tok_s": round(self.tokens / self.seconds, 1) if self.seconds else 0.0,
            "requests_s": round(done / self.seconds, 3) if self.seconds else 0.0,
            "tool_calls": self.tool_calls,
            "seconds": round(self.seconds, 1),
        }


def _r(x: float, digits: int = 2) -> float | None:
    return None if x != x else round(x, digits)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_QUESTIONS = random.Random(1)


async def one_request(client: httpx.AsyncClient, body: dict, phase: Phase) -> None:
    """One streaming chat read to [DONE], its timings added to `phase`; `{a}` and `{b}` in the question are
    drawn per request (different prompts, as real traffic has)."""
    phase.sent += 1
    a, b = _QUESTIONS.randint(2, 99), _QUESTIONS.randint(2, 99)
    message = {"role": "user", "content": body["messages"][0]["content"].format(a=a, b=b)}
    body = {**body, "messages": [message]}
    started = time.perf_counter()
    last: float | None = None
    gaps: list[float] = []
    first = None
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                phase.errors.append(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
                return
            done = False
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line[6:] == "[DONE]":
                    done = True
                    break
                event = json.loads(line[6:])
                if "error" in event:
                    phase.errors.append(f"stream error: {event['error'].get('message')}")
                    return
                if event.get("usage"):
                    phase.tokens += event["usage"]["completion_tokens"]
                for choice in event.get("choices", []):
                    if choice.get("delta", {}).get("content"):
                        now = time.perf_counter()
                        if first is None:
                            first = now - started
                        else:
                            gaps.append(now - last)  # type: ignore[operator]
                        last = now
                    phase.tool_calls += len(choice.get("tool_trace") or [])
            if not done:
                phase.errors.append("stream ended without [DONE]")
                return
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        phase.errors.append(f"{type(exc).__name__}: {exc}")
        return
    phase.latency.append(time.perf_counter() - started)
    phase.itl.extend(gaps)
    if first is not None:
        phase.ttft.append(first)


def _client(url: str, args: argparse.Namespace, connections: int) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=url, limits=limits, timeout=httpx.Timeout(args.grace, connect=60), headers=headers
    )


async def closed_loop(url: str, body: dict, args: argparse.Namespace) -> Phase:
    """`--streams` clients, each sending its next request when the last one ends, for `--capacity-s` seconds."""
    phase = Phase(f"{args.streams} streams")
    started = time.perf_counter()
    stop_at = started + args.capacity_s
    async with _client(url, args, args.streams) as client:

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                await one_request(client, body, phase)

        await _finish([asyncio.create_task(worker()) for _ in range(args.streams)], args, phase)
    phase.seconds = time.perf_counter() - started
    return phase


async def open_loop(url: str, body: dict, args: argparse.Namespace, name: str, times: list[float]) -> Phase:
    """One request at each of `times` (seconds from now), sent on schedule whatever is still running."""
    phase = Phase(name)
    started = time.perf_counter()
    async with _client(url, args, max(len(times), 1)) as client:
        tasks = []
        for at in times:
            delay = started + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one_request(client, body, phase)))
        await _finish(tasks, args, phase)
    phase.seconds = time.perf_counter() - started
    return phase


async def _finish(tasks: list[asyncio.Task], args: argparse.Namespace, phase: Phase) -> None:
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=args.grace)
    for task in pending:
        task.cancel()
        phase.errors.append("cancelled: still running after the grace period")


def poisson_times(rate: float, seconds: float, rng: random.Random) -> list[float]:
    """Arrival times (s) of a Poisson process at `rate` per second over `seconds`."""
    times, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            return times
        times.append(t)


def start_server(args: argparse.Namespace, batching: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "toolformer.cli",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-log",
    ]
    if args.model:
        cmd += ["--model", args.model]
    cmd += [
        "--batching",
        batching,
        "--max-concurrency",
        str(max(256, args.burst, args.streams)),
        *args.server_arg,
    ]
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


def _body(url: str, args: argparse.Namespace) -> dict:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    model = httpx.get(f"{url}/v1/models", timeout=30, headers=headers).json()["data"][0]["id"]
    return {
        "model": model,
        "messages": [{"role": "user", "content": args.question}],
        "max_tokens": args.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def measure(servers: dict[str, str], args: argparse.Namespace) -> list[dict]:
    """Each phase on every server in turn (so a change in the machine's other load hits both modes alike):
    capacity, the open-loop loads, the burst. Each row is printed as its phase ends."""
    rows: list[dict] = []
    bodies = {mode: _body(url, args) for mode, url in servers.items()}
    capacity: dict[str, float | None] = {mode: args.rate for mode in servers}

    def done(mode: str, phase: Phase) -> None:
        rows.append(phase.row(mode))
        print(json.dumps(rows[-1]), flush=True)
        if phase.errors:
            print("  first errors:", *sorted(set(phase.errors))[:3], sep="\n    ", file=sys.stderr)

    for mode, url in servers.items():  # per-tokenizer tables, first-call costs
        await open_loop(url, bodies[mode], args, "warm-up", [0.0])
    if args.capacity_s > 0:
        for mode, url in servers.items():
            phase = await closed_loop(url, bodies[mode], args)
            done(mode, phase)
            capacity[mode] = capacity[mode] or len(phase.latency) / phase.seconds
    for load in args.loads:
        for mode, url in servers.items():
            if not capacity[mode]:
                continue
            rng = random.Random(args.seed)  # the same arrival pattern, scaled to each mode's rate
            rate = load * capacity[mode]  # type: ignore[operator]
            times = poisson_times(rate, args.poisson_s, rng)
            phase = await open_loop(url, bodies[mode], args, f"poisson {load:.0%}", times)
            phase.rate = rate
            done(mode, phase)
    if args.burst:
        for mode, url in servers.items():
            done(mode, await open_loop(url, bodies[mode], args, f"burst {args.burst}", [0.0] * args.burst))
    return rows


COLUMNS = [
    ("batching", "batching"),
    ("phase", "phase"),
    ("rate_rps", "req/s sent"),
    ("completed", "done"),
    ("errors", "errors"),
    ("ttft_p50_s", "TTFT p50 s"),
    ("ttft_p99_s", "TTFT p99 s"),
    ("itl_p50_s", "ITL p50 s"),
    ("itl_p99_s", "ITL p99 s"),
    ("latency_p50_s", "latency p50 s"),
    ("completion_tok_s", "completion tok/s"),
    ("tool_calls", "tool calls"),
]


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join("" if row[k] is None else str(row[k]) for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", help="Measure this running server (loopback) instead of starting one per mode."
    )
    parser.add_argument("--model", help="Model for the started servers (default: the embedded one).")
    parser.add_argument("--batching", default="continuous,static", help="Modes to compare, in order.")
    parser.add_argument("--api-key", default=os.environ.get("TOOLFORMER_API_KEY"))
    parser.add_argument(
        "--streams", "--clients", type=int, default=32, help="Closed-loop clients of the capacity phase."
    )
    parser.add_argument(
        "--capacity-s", type=float, default=60, help="Seconds of the capacity phase (0: skip)."
    )
    parser.add_argument("--rate", type=float, help="Capacity in requests/s (default: measured).")
    parser.add_argument("--loads", default="0.5,0.8", help="Open-loop loads, as fractions of the capacity.")
    parser.add_argument(
        "--poisson-s", type=float, default=60, help="Seconds of arrivals per open-loop phase."
    )
    parser.add_argument("--burst", type=int, default=200, help="Requests sent at once (0: skip).")
    parser.add_argument(
        "--grace", type=float, default=900, help="Seconds a phase waits for requests in flight."
    )
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--question", default="What is {a} times {b}?", help="{a} and {b}: numbers drawn per request."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the Poisson arrivals.")
    parser.add_argument("--out", help="Also write the Markdown table to this file.")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="Extra `toolformer serve` argument."
    )
    args = parser.parse_args()
    args.loads = [float(x) for x in args.loads.split(",") if x]
    if args.url and not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise SystemExit("--url must be a loopback address")

    procs: list[subprocess.Popen] = []
    servers: dict[str, str] = {}
    try:
        if args.url:
            servers["(running server)"] = args.url
        for mode in [] if args.url else args.batching.split(","):
            proc, url = start_server(args, mode)  # all up at once: an idle server costs no CPU
            procs.append(proc)
            servers[mode] = url
            print(f"{mode} batching at {url}", file=sys.stderr)
        rows = asyncio.run(measure(servers, args))
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    text = table(rows)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
