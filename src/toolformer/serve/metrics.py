"""Prometheus metrics of one server (its own registry, so several apps in one process do not collide)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """Requests, latency, tokens, batches, and tool calls and errors per tool."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_depth: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "toolformer_requests", "HTTP requests by route and status code.", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "toolformer_request_seconds",
            "Seconds from request to the end of the response (streams included).",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "toolformer_tokens", "Tokens by kind (prompt, completion).", ["kind"], registry=r
        )
        self.tool_calls = Counter(
            "toolformer_tool_calls", "Tool calls the server ran, per tool.", ["tool"], registry=r
        )
        self.tool_errors = Counter(
            "toolformer_tool_errors",
            "Tool calls that failed (timeout, bad input, crash), per tool.",
            ["tool"],
            registry=r,
        )
        self.batch_size = Histogram(
            "toolformer_batch_size", "Prompts decoded together.", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r
        )
        self.occupancy = Histogram(
            "toolformer_batch_occupancy",
            "Rows decoded in each step (continuous batching; at most --parallel).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.first_token = Histogram(
            "toolformer_time_to_first_token_seconds",
            "Seconds from a prompt's arrival at the batcher to its first streamed text.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.tokens_per_s = Histogram(
            "toolformer_generation_tokens_per_second",
            "Tokens per second of each generation, from its arrival to its end (queueing included).",
            buckets=(0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=r,
        )
        self.decoding = Gauge("toolformer_rows_decoding", "Rows (slots) decoding now.", registry=r)
        self.slots = Gauge(
            "toolformer_slots", "Rows that may decode at once (--parallel; static: --max-batch).", registry=r
        )
        self.in_flight = Gauge("toolformer_requests_in_flight", "Requests being answered now.", registry=r)
        self.queued = Gauge("toolformer_queue_depth", "Prompts waiting for a batch.", registry=r)
        if queue_depth is not None:
            self.queued.set_function(queue_depth)

    def observe_generation(self, tokens: int, seconds: float) -> None:
        if seconds > 0:
            self.tokens_per_s.observe(tokens / seconds)

    def watch(self, batcher: Any, slots: int) -> None:
        """Hook this registry to `batcher` (static or continuous): queue, rows decoding, batches, latency."""
        self.queued.set_function(lambda: batcher.depth)
        self.decoding.set_function(lambda: batcher.running)
        self.slots.set(slots)
        batcher.on_batch = self.batch_size.observe
        batcher.on_first_token = self.first_token.observe
        batcher.on_done = self.observe_generation
        if hasattr(batcher, "on_step"):
            batcher.on_step = self.occupancy.observe

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def observe_reply(self, prompt_tokens: int, completion_tokens: int, trace: Iterable[Any]) -> None:
        self.tokens.labels(kind="prompt").inc(prompt_tokens)
        self.tokens.labels(kind="completion").inc(completion_tokens)
        for call in trace:
            self.tool_calls.labels(tool=call.tool).inc()
            if not call.ok:
                self.tool_errors.labels(tool=call.tool).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
