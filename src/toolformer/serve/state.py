"""`ServerState`: what one app's routes share (backend, batcher, worker threads, limiter, metrics), as a dependency.

`create_app` builds one and puts it on `app.state.server`; a route takes it with `state: State` (`server_state`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, Request

from toolformer.runlog import RunLog
from toolformer.runtime.results import DecodeConfig
from toolformer.serve.batcher import Batcher
from toolformer.serve.config import ServeConfig
from toolformer.serve.continuous import ContinuousBatcher
from toolformer.serve.errors import ApiError
from toolformer.serve.gate import KeyLimiter
from toolformer.serve.metrics import Metrics
from toolformer.serve.schemas import ModelCard, ToolInfo
from toolformer.serve.session import Reply


@dataclass
class ServerState:
    """One server's shared parts; `build` makes them (the batcher started), `close` stops them."""

    backend: Any
    config: ServeConfig
    batcher: Batcher | ContinuousBatcher
    metrics: Metrics
    pool: ThreadPoolExecutor  # runs each request's chat loop; the model itself runs on the batcher's thread
    limiter: KeyLimiter
    playground: str  # the page at `/`
    created: int = field(default_factory=lambda: int(time.time()))
    runlog: RunLog | None = None  # where each reply is logged (`toolformer logs`); None: not logged

    @classmethod
    def build(cls, backend: Any, config: ServeConfig, runlog: RunLog | None = None) -> ServerState:
        # auto: llama.cpp keeps one prompt at a time until its batched decoder (`runtime.llamaslots`) is measured
        # faster in serving; `--batching continuous` turns it on.
        wanted = config.batching == "continuous" or (config.batching == "auto" and backend.kind != "llamacpp")
        continuous = wanted and hasattr(backend, "decoder")
        decoder = backend.decoder(config.parallel) if continuous else None
        batcher: Batcher | ContinuousBatcher
        if decoder is not None:
            batcher = ContinuousBatcher(backend, decoder, config.parallel, config.max_batch)
        else:  # static batches: engines without a step-wise decoder, or --batching static
            batcher = Batcher(backend, config.max_batch, config.batch_wait_ms / 1000)
        metrics = Metrics()
        metrics.watch(batcher, config.parallel if decoder is not None else batcher.max_batch)
        state = cls(
            backend=backend,
            config=config,
            batcher=batcher,
            metrics=metrics,
            pool=ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="request"),
            limiter=KeyLimiter(config.max_concurrency_per_key),
            playground=resources.files("toolformer.serve")
            .joinpath("static/playground.html")
            .read_text("utf-8"),
            runlog=runlog,
        )
        batcher.start()
        return state

    def close(self) -> None:
        self.batcher.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.runlog is not None:
            self.runlog.close()

    def check_model(self, name: str) -> None:
        if name != self.backend.name:
            raise ApiError(
                404,
                f"model {name!r} is not served here (this server has {self.backend.name!r})",
                param="model",
                code="model_not_found",
            )

    def model_card(self) -> ModelCard:
        tools = [ToolInfo(name=n, description=d) for n, d in self.backend.tools.describe()]
        return ModelCard(id=self.backend.name, created=self.created, backend=self.backend.kind, tools=tools)

    def observe(self, reply: Reply) -> None:
        self.metrics.observe_reply(reply.prompt_tokens, reply.completion_tokens, reply.trace)

    def logged(self, job: Callable[..., Reply], prompt: str, options: DecodeConfig) -> Callable[..., Reply]:
        """`job` that also writes its reply to the run log once it is done, on the job's worker thread (the event
        loop never waits on SQLite); a cancelled or failed job logs nothing, a failed write costs no reply."""
        runlog = self.runlog
        if runlog is None:
            return job

        def run(*args: Any, **kwargs: Any) -> Reply:
            start = time.perf_counter()
            reply = job(*args, **kwargs)
            runlog.record(
                source="serve",
                model=self.backend.name,
                prompt=prompt,
                answer=reply.content,
                calls=reply.trace,
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens,
                duration_ms=(time.perf_counter() - start) * 1000,
                options=options,
                finish_reason=reply.finish_reason,
            )
            return reply

        return run

    def abandon(self, cancel: threading.Event) -> None:
        """Nothing more of this request is decoded: its rows leave their batch and its queued prompts go now."""
        cancel.set()
        self.batcher.prune()

    def timeout_error(self) -> ApiError:
        return ApiError(
            504, f"the request took longer than {self.config.request_timeout:g} s", code="timeout"
        )


async def server_state(request: Request) -> ServerState:
    # async: FastAPI would run a plain function on a worker thread, for every request
    return request.app.state.server


State = Annotated[ServerState, Depends(server_state)]
