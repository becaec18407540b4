"""Pretrain a small Llama from random weights on a text corpus with the Hugging Face Trainer (`toolformer pretrain`).

`pretrain(config)` reads and splits the corpus (`data.py`), packs it into blocks with SmolLM2's tokenizer, builds
`LlamaForCausalLM` of the size named (`config.SIZES`, tied embeddings) and trains it with `transformers.Trainer`:
AdamW, linear warmup then cosine decay to `min_lr_ratio` of the peak, gradient clipping and accumulation, bf16
autocast where it pays, dev perplexity every `eval_steps` (and at the start and the end), checkpoints every
`save_steps` in `out/checkpoints` (each a loadable model folder with its tokenizer), TensorBoard logs in
`out/tensorboard`, the shared rich progress bar (`train.progress.TrainMeter`), and `loss.png` at the end.

The output folder is a plain Hugging Face model folder (weights, config, tokenizer), plus `pretrain_config.json`
and `pretrain_report.json` (written last: it marks the run done), so `toolformer ask --model out` and
`toolformer eval out` load it like any model. A corpus holding texts with calls (`[Calculator(2 + 3) → 5]`) marks
the model zero-shot in its `toolformer.json`, as `toolformer train` does: its training texts read that way.

Resume follows `toolformer train`: only a checkpoint holding `trainer_state.json` counts, newer half-written ones
are deleted, and the run continues from the last complete one with its optimizer, scheduler, RNG and data order.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolformer.configs import JsonRecord, resolve_device, trainer_arguments, use_bf16
from toolformer.errors import ConfigError, DataError
from toolformer.pretrain.config import CONFIG_FILE, PLOT_FILE, REPORT_FILE, PretrainConfig
from toolformer.pretrain.data import Packed, dev_sample, pack, read_documents
from toolformer.train.trainer import (
    CHECKPOINTS,
    _curves,
    _mark_trained_toolformer,
    _quiet_datasets,
    _tensorboard,
    complete_checkpoints,
    resume_checkpoint,
)
from toolformer.versions import versions

logger = logging.getLogger(__name__)


@dataclass
class PretrainReport(JsonRecord):
    """What a pretraining run did; saved as `pretrain_report.json` in the output folder."""

    out: str
    size: str
    status: str = "done"
    stopped_by: str = "steps"  # "steps" (the planned end) or "max_minutes"
    parameters: int = 0  # every weight, the tied embedding counted once
    embedding_parameters: int = 0
    device: str = "cpu"
    bf16: bool = False
    steps: int = 0  # optimizer steps in total (global_step)
    planned_steps: int = 0
    start_step: int = 0  # > 0 after --resume
    resumed_from: str | None = None  # checkpoint folder name
    tokens_per_step: int = 0  # batch_size × grad_accum × seq_len (a step at an epoch's end may hold fewer)
    tokens_seen: int = 0  # every token trained on, repeats included (none is padding)
    epochs: float = 0.0
    documents: dict[str, Any] = field(default_factory=dict)  # train, dev, with_call, skipped
    train: dict[str, int] = field(default_factory=dict)  # Packed.stats(): documents, tokens, dropped, blocks
    dev: dict[str, int] = field(default_factory=dict)  # the same, plus "scored" (blocks in each evaluation)
    losses: list[dict[str, Any]] = field(default_factory=list)  # {"step", "tokens", "loss", "learning_rate"}
    dev_curve: list[dict[str, Any]] = field(default_factory=list)  # {"step", "tokens", "loss", "ppl"}
    tokens_per_second: float | None = None  # training compute only (no eval, no checkpoint writing)
    seconds: float = 0.0  # wall time of this run, loading included
    plot: str | None = None
    tensorboard: str | None = None
    checkpoints: list[str] = field(default_factory=list)  # kept: keep_checkpoints, or stopped by max_minutes
    versions: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- where to start


def starting_point(config: PretrainConfig, out: Path) -> tuple[Path | None, PretrainReport | None]:
    """Check `out` against `config.resume`: (checkpoint to resume from, finished report to return instead).

    A run that `max_minutes` stopped before its planned steps is not finished: `--resume` continues it.
    """
    if (out / REPORT_FILE).is_file():
        if not config.resume:
            raise ConfigError(
                f"out={str(out)!r} already holds a pretrained model ({REPORT_FILE}); use another --out"
            )
        report = PretrainReport.from_dict(json.loads((out / REPORT_FILE).read_text(encoding="utf-8")))
        if report.stopped_by != "max_minutes":
            return None, report
    if not config.resume:
        if out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
            raise ConfigError(
                f"out={str(out)!r} is not empty: pass --resume to continue its run, or use another --out"
            )
        return None, None
    if (out / CONFIG_FILE).is_file():
        try:
            changed = config.differences(PretrainConfig.load(out / CONFIG_FILE))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{out / CONFIG_FILE} is not readable ({exc}); use another --out") from None
        if changed:
            raise ConfigError(f"--resume with other options than the run in {str(out)!r} ({changed[0]})")
    return resume_checkpoint(out / CHECKPOINTS), None


# --------------------------------------------------------------------------------------------- pieces


def collate(rows: list[dict[str, list[int]]]) -> dict[str, Any]:
    """A batch of full blocks: the labels are the input ids (the model shifts them); no padding, no mask."""
    import torch

    ids = torch.tensor([r["input_ids"] for r in rows], dtype=torch.long)
    return {"input_ids": ids, "labels": ids.clone()}


def build_model(config: PretrainConfig, tokenizer: Any) -> Any:
    """A LlamaForCausalLM of `config.size` with fresh random weights (seeded by `config.seed`)."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(config.model_size.llama_config(tokenizer, config.seq_len))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def training_arguments(
    config: PretrainConfig, ckpt_dir: Path, device: str, bf16: bool, steps: int, has_dev: bool, resuming: bool
) -> Any:
    """The Trainer's arguments: the shared ones (`configs.trainer_arguments`), with the pretraining schedule."""
    from transformers import TrainingArguments

    shared = trainer_arguments(config, device, bf16)
    shared.update(
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": config.min_lr_ratio},
        max_grad_norm=config.max_grad_norm,
        max_steps=steps,
    )
    return TrainingArguments(
        output_dir=str(ckpt_dir),
        **shared,
        adam_beta2=config.adam_beta2,
        logging_steps=config.logging_steps,
        eval_strategy="steps" if has_dev else "no",
        eval_on_start=has_dev and not resuming,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        include_num_input_tokens_seen="all",  # every token of a block is real
        remove_unused_columns=False,
    )


def time_budget(minutes: float | None, evaluate: bool) -> Any:
    """A callback that stops training after `minutes` of it, saving (and evaluating) the last step; None if None."""
    if minutes is None:
        return None
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        hit = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if time.perf_counter() - self.t0 >= minutes * 60 and state.global_step < state.max_steps:
                self.hit = True
                control.should_training_stop = True
                control.should_save = True
                control.should_evaluate = evaluate
            return control

    return TimeBudget()


# --------------------------------------------------------------------------------------------- pretrain


def pretrain(
    config: PretrainConfig,
    tokenizer: Any = None,
    *,
    progress: bool = False,
    callbacks: list[Any] | None = None,
) -> PretrainReport:
    """Pretrain a `config.size` Llama from random weights on `config.corpus` into `config.out`.

    Returns the report also written to `out/pretrain_report.json`. With `config.resume`, continues the run in
    `out` from its last complete checkpoint (a finished run is not redone: its report comes back). `tokenizer`
    replaces the one `config.tokenizer` names; `callbacks` are extra TrainerCallbacks.
    """
    config.check()
    started = time.time()
    out = Path(config.out).expanduser()
    resume_from, finished = starting_point(config, out)
    if finished is not None:
        logger.info("%s already holds a finished run; nothing to do", out)
        return finished

    docs = read_documents(config.corpus, config.text_field, config.dev_fraction)
    device = resolve_device(config.device)
    bf16 = use_bf16(config.bf16, device)
    if tokenizer is None:
        from toolformer.models.load import load_tokenizer

        tokenizer = load_tokenizer(config.tokenizer)
    train_set = pack(tokenizer, docs.train, config.seq_len)
    if not train_set.blocks:
        raise DataError(
            f"corpus {config.corpus!r}: {train_set.tokens} training tokens, fewer than one block "
            f"(seq_len={config.seq_len}); give more text or a smaller --seq-len"
        )
    dev_set = pack(tokenizer, docs.dev, config.seq_len)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out)
    return _run(
        config,
        tokenizer,
        docs,
        train_set,
        dev_set,
        out,
        resume_from,
        device,
        bf16,
        progress,
        callbacks,
        started,
    )


def _run(
    config: PretrainConfig,
    tokenizer: Any,
    docs: Any,
    train_set: Packed,
    dev_set: Packed,
    out: Path,
    resume_from: Path | None,
    device: str,
    bf16: bool,
    progress: bool,
    callbacks: list[Any] | None,
    started: float,
) -> PretrainReport:
    from datasets import Dataset
    from transformers import PrinterCallback, ProgressCallback, Trainer

    from toolformer.train.progress import TrainMeter

    dev_blocks = dev_sample(dev_set.blocks, config.max_dev_blocks, config.seed)
    has_dev = bool(dev_blocks)
    steps = config.planned_steps(len(train_set.blocks))
    ckpt_dir = out / CHECKPOINTS
    model = build_model(config, tokenizer)
    meter = TrainMeter(progress=progress, evaluate_at_end=has_dev)
    budget = time_budget(config.max_minutes, has_dev)
    tb_callback, tb_dir = _tensorboard(config, out)
    extra = [c for c in (budget, tb_callback) if c is not None]
    with _quiet_datasets():
        trainer = Trainer(
            model=model,
            args=training_arguments(config, ckpt_dir, device, bf16, steps, has_dev, resume_from is not None),
            data_collator=collate,
            train_dataset=Dataset.from_dict({"input_ids": train_set.blocks}),
            eval_dataset=Dataset.from_dict({"input_ids": dev_blocks}) if has_dev else None,
            processing_class=tokenizer,  # each checkpoint gets the tokenizer: it loads as a model folder
            callbacks=[meter, *extra, *(callbacks or [])],
        )
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    finally:
        meter.close()

    trainer.model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    if docs.with_call:
        _mark_trained_toolformer(out)
    state = trainer.state
    per_step = config.tokens_per_step
    losses, dev_curve = _curves(state.log_history)
    # Tokens fed so far, as the Trainer logged them: a step at an epoch's end may hold fewer blocks than the others.
    seen = {
        int(e.get("step", 0)): int(e["num_input_tokens_seen"])
        for e in state.log_history
        if "num_input_tokens_seen" in e
    }
    for point in [*losses, *dev_curve]:
        point["tokens"] = seen.get(point["step"], point["step"] * per_step)
    size = config.model_size
    report = PretrainReport(
        out=str(out),
        size=config.size,
        stopped_by="max_minutes" if budget is not None and budget.hit else "steps",
        parameters=sum(p.numel() for p in trainer.model.parameters()),
        embedding_parameters=len(tokenizer) * size.hidden,
        device=device,
        bf16=bf16,
        steps=state.global_step,
        planned_steps=steps,
        start_step=meter.start_step or 0,
        resumed_from=resume_from.name if resume_from is not None else None,
        tokens_per_step=per_step,
        tokens_seen=int(state.num_input_tokens_seen),
        epochs=float(state.epoch or 0.0),
        documents={
            "train": len(docs.train),
            "dev": len(docs.dev),
            "with_call": docs.with_call,
            "skipped": docs.skipped,
        },  # fmt: skip
        train=train_set.stats(),
        dev={**dev_set.stats(), "scored": len(dev_blocks)},
        losses=losses,
        dev_curve=dev_curve,
        tokens_per_second=meter.tokens_per_second(skip_first=1),
        seconds=time.time() - started,
        tensorboard=tb_dir,
        versions=versions("torch", "transformers", "datasets"),
    )
    from toolformer.pretrain.plot import loss_plot

    title = f"{config.size} Llama ({report.parameters / 1e6:.1f}M parameters), {report.tokens_seen / 1e6:.2f}M tokens"
    if loss_plot(losses, dev_curve, out / PLOT_FILE, title):
        report.plot = str(out / PLOT_FILE)
    if config.keep_checkpoints or report.stopped_by == "max_minutes":  # a time-boxed run may be resumed
        report.checkpoints = [p.name for p in complete_checkpoints(ckpt_dir)]
    else:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    # The report goes in last: it marks the output folder as a finished run.
    (out / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report
