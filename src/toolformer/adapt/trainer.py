"""`adapt(config)`: fine-tune a model on a labelled task with transformers' Trainer, keep the best dev weights, report.

Training is the stock `transformers.Trainer` (AdamW, linear warmup then linear decay, weight decay, gradient
accumulation, bf16 autocast, the model's own cross-entropy loss) with `EarlyStoppingCallback`. Only evaluation is
replaced: `TaskTrainer.evaluate` runs the task's own predictor (`predict.TaskRunner`: span decoding for QA, greedy
generation for seq2seq, entity-level F1 for NER) on the dev rows, so the dev *metric*, not only the dev loss, picks
the best weights and stops training. The best weights are kept in memory (`KeepBest`: a copy of the trainable
tensors, a few MB with LoRA) rather than as checkpoints on disk, and put back at the end. The dev set is scored at
the start (the untrained head: chance level), every `eval_steps` and at the last step.

Output folder: the adapted model (a Hugging Face folder: LoRA merged unless --no-merge; `id2label` in its config),
its tokenizer, `adapt_config.json`, `predictions.jsonl` (dev, and test when given) and `adapt_report.{md,json}`
(written last).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from toolformer.adapt.config import PREDICTIONS_FILE, AdaptConfig
from toolformer.adapt.heads import build_task_model, unwrap_for_saving
from toolformer.adapt.predict import Collator, Evaluation, TaskRunner
from toolformer.adapt.report import AdaptReport, write_report
from toolformer.adapt.tasks import TaskData, load_task_data, write_jsonl
from toolformer.configs import resolve_device, trainer_arguments, use_bf16
from toolformer.errors import ConfigError, DataError
from toolformer.versions import versions

logger = logging.getLogger(__name__)


def _check_out(out: Path) -> None:
    if out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
        raise ConfigError(f"out={str(out)!r} is not empty; use another --out")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={str(out)!r} is a file, not a folder")


# --------------------------------------------------------------------------------------------- callbacks


def _callbacks() -> tuple[type, type]:
    """The TrainerCallback subclasses (transformers is imported only when a run starts)."""
    from transformers import TrainerCallback

    class KeepBest(TrainerCallback):
        """After each dev evaluation, copy the trainable tensors if the dev metric is the best so far."""

        def __init__(self, metric: str, greater_is_better: bool) -> None:
            self.key = f"eval_{metric}"
            self.greater = greater_is_better
            self.best: float | None = None
            self.best_loss = float("inf")
            self.best_step: int | None = None
            self.state: dict[str, Any] | None = None
            self.model: Any = None

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any) -> None:
            value = (metrics or {}).get(self.key)
            if value is None or self.model is None:
                return
            loss = (metrics or {}).get("eval_loss", float("inf"))
            better = self.best is None or (value > self.best if self.greater else value < self.best)
            # A tie on the metric (common early on: 0 F1 twice) goes to the lower dev loss.
            if better or (value == self.best and loss < self.best_loss):
                self.best, self.best_loss, self.best_step = float(value), float(loss), state.global_step
                self.state = {
                    n: p.detach().to("cpu", copy=True)
                    for n, p in self.model.named_parameters()
                    if p.requires_grad
                }

        def restore(self) -> None:
            import torch

            if self.state is None:
                return
            params = dict(self.model.named_parameters())
            with torch.no_grad():
                for name, value in self.state.items():
                    params[name].copy_(value.to(params[name].device))

    class Meter(TrainerCallback):
        """Evaluate at the last step too; a rich progress bar on stderr (loss, dev metric) if `progress`."""

        def __init__(self, metric: str, progress: bool) -> None:
            self.metric = metric
            self.progress = progress
            self.bar: Any = None
            self.task: Any = None
            self.loss = "-"
            self.dev = "-"

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if not self.progress:
                return
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]adapt[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn(f"dev {self.metric} " + "{task.fields[dev]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.bar.start()
            self.task = self.bar.add_task("adapt", total=state.max_steps, loss="-", dev="-")

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if state.global_step >= state.max_steps:
                control.should_evaluate = True  # the final weights must be a candidate too
            self._refresh(state)
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                self.loss = f"{float(logs['loss']):.3f}"
            self._refresh(state)

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any) -> None:
            value = (metrics or {}).get(f"eval_{self.metric}")
            if value is not None:
                self.dev = f"{float(value):.2f}"
            self._refresh(state)

        def close(self) -> None:
            if self.bar is not None:
                self.bar.stop()
                self.bar = None

        def _refresh(self, state: Any) -> None:
            if self.bar is not None:
                self.bar.update(self.task, completed=state.global_step, loss=self.loss, dev=self.dev)

    return KeepBest, Meter


def _trainer_class() -> type:
    from transformers import Trainer

    class TaskTrainer(Trainer):
        """Trainer whose evaluation is the task's predictor on the dev examples (see the module docstring)."""

        def __init__(self, *args: Any, runner: TaskRunner, dev_examples: list[Any], **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.runner = runner
            self.dev_examples = dev_examples
            self.curve: list[dict[str, Any]] = []

        def evaluate(
            self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval"
        ) -> dict[str, float]:
            started = time.perf_counter()
            result = self.runner.evaluate(self.model, self.dev_examples)
            metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in result.metrics.items()}
            metrics[f"{metric_key_prefix}_seconds"] = round(time.perf_counter() - started, 3)
            self.curve.append({"step": self.state.global_step, **result.metrics})
            self.log(dict(metrics))
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return TaskTrainer


def _training_args(config: AdaptConfig, workdir: Path, device: str, bf16: bool) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(workdir),
        **trainer_arguments(config, device, bf16),
        optim="adamw_torch",
        logging_steps=max(1, min(10, config.eval_steps)),
        eval_strategy="steps",
        eval_on_start=True,
        save_strategy="no",  # KeepBest holds the best weights in memory
        metric_for_best_model=f"eval_{config.best_metric}",
        greater_is_better=config.greater_is_better,
        remove_unused_columns=False,
    )


# --------------------------------------------------------------------------------------------- run


def adapt(
    config: AdaptConfig, model: Any = None, tokenizer: Any = None, *, progress: bool = False
) -> AdaptReport:
    """Adapt `config.model` (or the causal LM `model` with `tokenizer`) to `config.task`; returns the report.

    Writes the model and reports into `config.out` (see the module docstring); the out folder must be new or empty.
    """
    config.check()
    started = time.time()
    out = Path(config.out).expanduser()
    _check_out(out)
    data = load_task_data(config)  # bad data fails here, before a model is loaded
    device = resolve_device(config.device)
    bf16 = use_bf16(config.bf16, device)
    if model is None or tokenizer is None:
        from toolformer.models.load import load_model

        model, tokenizer = load_model(config.model, device=device, dtype="float32")
    else:
        model.to(device)
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
        raise ConfigError(f"model={config.model!r}: the tokenizer has neither a pad nor an EOS token")
    built = build_task_model(
        model, tokenizer, config.task, data.labels,
        dropout=config.dropout, lora=config.lora, lora_r=config.lora_r, lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout, target_modules=config.target_modules(), seed=config.seed,
    )  # fmt: skip
    del model
    runner = TaskRunner(
        task=config.task, tokenizer=tokenizer, labels=data.labels, max_length=config.max_length,
        prompt_template=config.prompt_template, max_new_tokens=config.max_new_tokens,
        max_answer_tokens=config.max_answer_tokens, doc_stride=config.doc_stride, batch_size=config.batch_size,
        bf16=bf16,
    )  # fmt: skip
    train_rows, _ = runner.encode(data.train.examples)
    if not train_rows:
        raise DataError(f"file {config.train!r}: no training rows after encoding")
    out.mkdir(parents=True, exist_ok=True)
    config.save(out)
    return _run(config, data, built, runner, tokenizer, train_rows, out, device, bf16, progress, started)


def _run(
    config: AdaptConfig,
    data: TaskData,
    built: Any,
    runner: TaskRunner,
    tokenizer: Any,
    train_rows: list[dict[str, Any]],
    out: Path,
    device: str,
    bf16: bool,
    progress: bool,
    started: float,
) -> AdaptReport:
    from transformers import EarlyStoppingCallback, PrinterCallback, ProgressCallback

    keep_best_cls, meter_cls = _callbacks()
    keep_best = keep_best_cls(config.best_metric, config.greater_is_better)
    meter = meter_cls(config.best_metric, progress)
    callbacks: list[Any] = [keep_best, meter]
    if config.patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.patience))
    workdir = Path(tempfile.mkdtemp(prefix=".trainer-", dir=out))
    try:
        with _quiet_transformers():
            trainer = _trainer_class()(
                model=built.model,
                args=_training_args(config, workdir, device, bf16),
                data_collator=Collator(runner.pad_id),
                train_dataset=train_rows,
                eval_dataset=data.dev.examples,  # only to satisfy the Trainer's checks: evaluate() reads the runner
                processing_class=tokenizer,
                callbacks=callbacks,
                runner=runner,
                dev_examples=data.dev.examples,
            )
        for noisy in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(noisy)
        keep_best.model = trainer.model
        train_started = time.perf_counter()
        try:
            with _quiet_transformers():
                trainer.train()
        finally:
            meter.close()
        train_seconds = time.perf_counter() - train_started
        keep_best.restore()
        model = trainer.model
        dev_eval = runner.evaluate(model, data.dev.examples)
        test_eval: Evaluation | None = None
        if data.test is not None:
            test_eval = runner.evaluate(model, data.test.examples)
        state = trainer.state
        baseline = trainer.curve[0] if trainer.curve and trainer.curve[0]["step"] == 0 else None
        stopped_early = state.global_step < state.max_steps
        losses = [
            {"step": int(e["step"]), "loss": float(e["loss"]), "learning_rate": e.get("learning_rate")}
            for e in state.log_history
            if "loss" in e
        ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    final, mode = unwrap_for_saving(model, config.merge)
    final.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    records = [{"split": "dev", **r} for r in dev_eval.records]
    if test_eval is not None:
        records += [{"split": "test", **r} for r in test_eval.records]
    write_jsonl(out / PREDICTIONS_FILE, records)

    report = AdaptReport(
        out=str(out),
        task=config.task,
        base_model=config.model,
        mode=mode,
        device=device,
        bf16=bf16,
        metric=config.best_metric,
        data=data.summary(),
        labels=list(data.labels),
        trainable_params=built.trainable_params,
        total_params=built.total_params,
        head_modules=list(built.head_modules),
        steps=state.global_step,
        max_steps=state.max_steps,
        epochs=float(state.epoch or 0.0),
        stopped_early=stopped_early,
        best_step=keep_best.best_step,
        baseline=_strip_step(baseline),
        dev=dict(dev_eval.metrics),
        test=dict(test_eval.metrics) if test_eval is not None else None,
        curve=list(trainer.curve),
        losses=losses,
        train_seconds=round(train_seconds, 2),
        seconds=round(time.time() - started, 2),
        hyperparameters=_hyperparameters(config),
        examples=[r for r in dev_eval.records[:5]],
        versions=versions(
            "torch", "transformers", "peft", "scikit-learn", "seqeval", "sacrebleu", "rouge-score"
        ),
    )
    write_report(report, out)
    return report


def _strip_step(entry: dict[str, Any] | None) -> dict[str, float] | None:
    if entry is None:
        return None
    return {k: v for k, v in entry.items() if k != "step"}


def _hyperparameters(config: AdaptConfig) -> dict[str, Any]:
    keys = (
        "lora", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "epochs", "max_steps", "batch_size",
        "grad_accum", "max_length", "warmup_ratio", "weight_decay", "dropout", "eval_steps", "patience", "seed",
    )  # fmt: skip
    return {"learning_rate": config.lr, **{k: getattr(config, k) for k in keys}}


@contextlib.contextmanager
def _quiet_transformers() -> Any:
    """Hide the EarlyStoppingCallback warning about load_best_model_at_end: KeepBest does that job."""
    trainer_logger = logging.getLogger("transformers.trainer_callback")
    level = trainer_logger.level
    trainer_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        trainer_logger.setLevel(level)
