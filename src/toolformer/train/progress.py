"""`TrainMeter`: a TrainerCallback that times every optimizer step, counts its tokens and draws a rich progress bar.

It replaces the Trainer's tqdm bar and its printed log dicts. Tokens are the non-padding input tokens the Trainer
counts in `state.num_input_tokens_seen`; a step's time runs from `on_step_begin` to `on_step_end` (forward,
backward and optimizer step of every micro-batch; evaluation and checkpoint writing are not in it). It also makes
the last step evaluate and save, so the final weights are a candidate for the best checkpoint. When stderr is not a
terminal the bar becomes plain progress lines (`toolformer.progress.Progress`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainerCallback


@dataclass
class StepTiming:
    step: int
    seconds: float
    tokens: int


@dataclass
class TrainMeter(TrainerCallback):
    """Step timings, token counts and the latest loss / dev perplexity; a rich bar on stderr if `progress`."""

    progress: bool = True
    evaluate_at_end: bool = True
    timings: list[StepTiming] = field(default_factory=list)
    start_step: int | None = None
    last_loss: float | None = None
    last_ppl: float | None = None
    _t0: float = 0.0
    _tokens0: int = 0
    _bar: Any = None
    _task: Any = None

    # ----------------------------------------------------------------------------------------- numbers

    @property
    def tokens(self) -> int:
        return sum(t.tokens for t in self.timings)

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.timings)

    def tokens_per_second(self, skip_first: int = 0) -> float | None:
        """Tokens per second of training compute, leaving out the first `skip_first` steps (warm-up effects)."""
        timed = self.timings[skip_first:] if len(self.timings) > skip_first else self.timings
        seconds = sum(t.seconds for t in timed)
        return sum(t.tokens for t in timed) / seconds if seconds > 0 else None

    # ----------------------------------------------------------------------------------------- callbacks

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start_step = state.global_step
        if self.progress and self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

            from toolformer.progress import Progress  # a bar on a terminal, plain lines in a log

            self._bar = Progress(
                TextColumn("[bold]train[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("dev ppl {task.fields[ppl]}"),
                TextColumn("{task.fields[tps]} tok/s"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
                name="train",
            )
            self._bar.start()
            self._task = self._bar.add_task(
                "train", total=state.max_steps, completed=state.global_step, loss="-", ppl="-", tps="-"
            )

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._t0 = time.perf_counter()
        self._tokens0 = state.num_input_tokens_seen

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        seconds = time.perf_counter() - self._t0
        self.timings.append(
            StepTiming(state.global_step, seconds, state.num_input_tokens_seen - self._tokens0)
        )
        if state.global_step >= state.max_steps:
            # The Trainer saves and evaluates on multiples of the steps only; the last weights must be a candidate.
            control.should_save = True
            if self.evaluate_at_end:
                control.should_evaluate = True
        self._refresh(state)
        return control

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])
        self._refresh(state)

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if metrics and "eval_loss" in metrics:
            self.last_ppl = _ppl(metrics["eval_loss"])
        self._refresh(state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _refresh(self, state: Any) -> None:
        if self._bar is None:
            return
        recent = self.timings[-20:]
        seconds = sum(t.seconds for t in recent)
        tps = f"{sum(t.tokens for t in recent) / seconds:,.0f}" if seconds > 0 else "-"
        self._bar.update(
            self._task,
            completed=state.global_step,
            loss="-" if self.last_loss is None else f"{self.last_loss:.3f}",
            ppl="-" if self.last_ppl is None else f"{self.last_ppl:.2f}",
            tps=tps,
        )


def _ppl(loss: float) -> float:
    """Perplexity from a mean token loss (inf when it overflows)."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf
