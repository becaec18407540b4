"""`ContinuousBatcher`: one thread that owns the model and runs continuous batching, the batcher `toolformer serve`
uses for a transformers model.

The same interface as the static `Batcher` (`submit`, `prune`, `depth`, `running`, `start`, `stop`), but a request
never waits for a batch to finish: the thread takes queued prompts into free slots (at most `parallel` rows decode
at once, at most `max_batch` join in one prefill pass) between two decoding steps of `runtime.continuous`, and a
row leaves, its slot free, the moment it ends. Each row has its own config (tokens, stop strings, sampling, seed,
grammar), so any requests share the running batch; a row waiting on its tool holds its slot but stalls no one.
A request cancelled while queued is dropped before it costs anything; once decoding, its row leaves at the next
step. Metrics hooks: `on_step(rows)` after every step, `on_first_token(seconds)` and `on_done(tokens, seconds)`.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from collections.abc import Callable
from typing import Any

from toolformer.runtime.results import Event, Generation
from toolformer.serve.batcher import Cancelled, JobQueue, _Job

logger = logging.getLogger(__name__)

TOOL_POLL_S = 0.01  # with every row waiting on its tool, how often new requests are let in


class ContinuousBatcher(JobQueue):
    """Feeds a `runtime.continuous.SlotDecoder` from the queue on one worker thread; `stop` fails what is
    decoding too."""

    def __init__(self, backend: Any, decoder: Any, parallel: int = 32, max_batch: int = 16) -> None:
        super().__init__(backend, max(1, max_batch))
        self.decoder = decoder
        self.parallel = max(1, parallel)
        self.on_step: Callable[[int], None] | None = None  # rows decoding in each step

    def _take(self) -> list[_Job] | None:
        """Wait for work; the queued jobs that fit in the free slots ([] for none now, None to stop)."""
        with self._cond:
            while not self._queue and not self.decoder.size_now and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            room = min(self.parallel - self.decoder.size_now, self.max_batch)
            taken: list[_Job] = []
            while self._queue and len(taken) < room:
                job = self._queue.popleft()
                if job.cancelled():
                    job.future.set_exception(Cancelled("the request was cancelled while queued"))
                else:
                    taken.append(job)
            return taken

    def _loop(self) -> None:
        decoder = self.decoder
        while True:
            taken = self._take()
            if taken is None:
                break
            for job in taken:
                self._add(job)
            if taken and self.on_batch is not None:
                self.on_batch(len(taken))
            try:
                self.running = decoder.tick(TOOL_POLL_S)
            except Exception:  # the decoder failed every row it held; the server goes on
                logger.exception("decoding step failed")
                self.running = 0
                continue
            if self.on_step is not None and self.running:
                self.on_step(self.running)
        self.running = 0
        decoder.close(Cancelled("the server is shutting down"))

    def _add(self, job: _Job) -> None:
        def on_event(event: Event) -> None:
            job.first_text(event, self.on_first_token)
            if job.on_event is None or job.cancelled():
                return
            try:
                job.on_event(Event(event.kind, 0, event.text, event.trace, event.finish_reason))
            except Exception:  # one request's broken listener must not stop the others' decoding
                logger.exception("stream listener failed")

        def settle(fut: cf.Future[Generation]) -> None:
            if job.cancelled():
                job.future.set_exception(Cancelled("the request was cancelled"))
            elif fut.exception() is not None:
                job.future.set_exception(fut.exception())  # type: ignore[arg-type]
            else:
                gen = fut.result()
                if self.on_done is not None:
                    self.on_done(gen.new_tokens, time.perf_counter() - job.queued)
                job.future.set_result(gen)

        self.decoder.add(
            job.prompt, job.config, on_event=on_event, cancelled=job.cancelled
        ).add_done_callback(settle)
