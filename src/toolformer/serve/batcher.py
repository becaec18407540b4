"""`Batcher`: one thread that owns the model and decodes queued prompts together, so requests arriving at once share
a batch and the server's event loop never waits on the model.

Requests submit a prompt with its `DecodeConfig` and get a `concurrent.futures.Future[Generation]`; their streaming
events are delivered from this thread as the batch decodes. A batch holds prompts with equal configs (the decoder
takes one config per batch), oldest first; a seeded request runs alone so that its sample does not depend on which
other requests happened to share its batch. Requests cancelled while queued are dropped before they cost anything
(`prune` drops them at once, so a timed-out request leaves nothing queued). A started batch drops a cancelled
request's rows when the backend can (`drops_rows`: its `generate` takes `cancelled(row)`), and stops as soon as
every request in it is gone, whatever the backend.
This is a queue-fed static batcher: a request arriving mid-batch waits for the next one (`serve.continuous` is the
continuous one, which `toolformer serve` uses for transformers models; `--batching static` picks this one).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from toolformer.errors import ToolformerError
from toolformer.runtime.results import DecodeConfig, Event, Generation

logger = logging.getLogger(__name__)


class Cancelled(ToolformerError):
    """The request went away (client gone or timed out) before its prompt was decoded."""


class _Abandoned(Exception):
    """Raised from the event callback to stop a batch whose requests are all gone."""


@dataclass
class _Job:
    prompt: str
    config: DecodeConfig
    on_event: Callable[[Event], None] | None
    cancelled: Callable[[], bool]
    future: cf.Future[Generation] = field(default_factory=cf.Future)
    key: Any = None
    queued: float = field(default_factory=time.perf_counter)  # time to first token counts from here
    first: bool = True  # no text streamed yet

    def first_text(self, event: Event, observe: Callable[[float], None] | None) -> None:
        """Report the time to the first text once, to `observe` (metrics)."""
        if self.first and event.kind == "text" and event.text:
            self.first = False
            if observe is not None:
                observe(time.perf_counter() - self.queued)


def _batch_key(config: DecodeConfig) -> Any:
    """Jobs with equal keys may share a batch: equal configs, and never a seeded one."""
    return object() if config.seed is not None else repr(config)


class JobQueue:
    """The queue and the one model thread a batcher runs on (`start`, `submit`, `prune`, `stop`); a subclass's
    `_loop` takes jobs off `_queue` under `_cond`. Metrics hooks: `on_batch(size)`, `on_first_token(seconds)` (from
    submit to the first text) and `on_done(tokens, seconds)`."""

    def __init__(self, backend: Any, max_batch: int) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self.on_batch: Callable[[int], None] | None = None
        self.on_first_token: Callable[[float], None] | None = None
        self.on_done: Callable[[int, float], None] | None = None
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.running = 0  # prompts being decoded now

    def _loop(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._loop, name="toolformer-batcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking work; queued jobs fail with `Cancelled` (what the model thread does with its own, the
        subclass says)."""
        with self._cond:
            self._stopping = True
            dropped = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in dropped:
            job.future.set_exception(Cancelled("the server is shutting down"))
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def depth(self) -> int:
        """Prompts waiting for the model."""
        return len(self._queue)

    def submit(
        self,
        prompt: str,
        config: DecodeConfig,
        on_event: Callable[[Event], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> cf.Future[Generation]:
        """Queue one prompt; thread-safe and non-blocking. Events arrive with `row` 0."""
        job = _Job(prompt, config, on_event, cancelled or (lambda: False))
        job.key = _batch_key(config)
        with self._cond:
            if self._stopping:
                job.future.set_exception(Cancelled("the server is shutting down"))
                return job.future
            # Checked under the lock: a request cancelled (and pruned) a moment ago must not queue again.
            if job.cancelled():
                job.future.set_exception(Cancelled("the request was cancelled"))
                return job.future
            self._queue.append(job)
            self._cond.notify()
        return job.future

    def prune(self) -> int:
        """Drop every queued job whose request is cancelled (their futures fail with `Cancelled`); how many."""
        with self._cond:
            gone = [job for job in self._queue if job.cancelled()]
            if gone:
                self._queue = deque(job for job in self._queue if not job.cancelled())
        for job in gone:
            job.future.set_exception(Cancelled("the request was cancelled while queued"))
        return len(gone)


class Batcher(JobQueue):
    """Feeds a `Backend` static batches from the queue on one worker thread (`start`, `submit`, `stop`); `stop`
    lets a batch in progress finish."""

    def __init__(
        self,
        backend: Any,
        max_batch: int | None = None,
        wait_s: float = 0.005,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(backend, max(1, min(max_batch or backend.max_batch, backend.max_batch)))
        self.wait_s = wait_s
        self.on_batch = on_batch  # called with each batch's size (metrics)

    def _take(self) -> list[_Job]:
        """Wait for work, then take the oldest job and the queued jobs that can share its batch."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return []
            # Requests sent together arrive a few ms apart; waiting that long lets them share the batch.
            deadline = time.monotonic() + self.wait_s
            while len(self._queue) < self.max_batch and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if not self._queue or self._stopping:
                return []
            key = self._queue[0].key
            batch: list[_Job] = []
            rest: deque[_Job] = deque()
            while self._queue:
                job = self._queue.popleft()
                if job.cancelled():
                    job.future.set_exception(Cancelled("the request was cancelled while queued"))
                elif job.key == key and len(batch) < self.max_batch:
                    batch.append(job)
                else:
                    rest.append(job)
            self._queue = rest
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                if self._stopping:
                    return
                continue
            self._run(batch)

    def _run(self, batch: list[_Job]) -> None:
        def dispatch(event: Event) -> None:
            job = batch[event.row]
            job.first_text(event, self.on_first_token)
            if job.cancelled():
                # Events come every token: the first one after the last request left ends the batch.
                if all(j.cancelled() for j in batch):
                    raise _Abandoned
                return
            if job.on_event is None:
                return
            try:
                job.on_event(Event(event.kind, 0, event.text, event.trace, event.finish_reason))
            except Exception:  # one request's broken listener must not stop the others' decoding
                logger.exception("stream listener failed")

        self.running = len(batch)
        started = time.perf_counter()
        kwargs: dict[str, Any] = {}
        if getattr(self.backend, "drops_rows", False):
            kwargs["cancelled"] = lambda row: batch[row].cancelled()
        try:
            gens = self.backend.generate([j.prompt for j in batch], batch[0].config, dispatch, **kwargs)
        except _Abandoned:
            logger.debug("batch of %d stopped: every request in it is gone", len(batch))
            for job in batch:
                job.future.set_exception(Cancelled("the request was cancelled"))
            return
        except BaseException as exc:  # every waiting request gets the failure instead of hanging
            logger.exception("batch of %d failed", len(batch))
            for job in batch:
                job.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self.running = 0
        logger.debug("batch of %d in %.2fs", len(batch), time.perf_counter() - started)
        if self.on_batch is not None:
            self.on_batch(len(batch))
        for job, gen in zip(batch, gens):
            if job.cancelled():  # its rows may have been dropped part-way: not a reply anyone should read
                job.future.set_exception(Cancelled("the request was cancelled"))
            else:
                if self.on_done is not None:
                    self.on_done(gen.new_tokens, time.perf_counter() - job.queued)
                job.future.set_result(gen)
