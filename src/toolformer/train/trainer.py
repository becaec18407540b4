"""Fine-tune a causal LM on the augmented corpus with TRL's SFTTrainer (paper §2: plain LM loss on texts with calls).

`train(config)` reads and mixes the texts (`data.py`), tokenizes them itself (so "after-call" masks come from
character offsets and every text is tokenized exactly as at inference), and hands the `input_ids`/`labels` rows
to `trl.SFTTrainer`, which keeps prepared labels as they are. Full fine-tuning or LoRA (peft), bf16 autocast,
gradient accumulation, 10 % linear warmup then linear decay, dev perplexity every `eval_steps` (and at the start
and the end), checkpoints every `save_steps` in `out/checkpoints`, the best one by dev perplexity kept, TensorBoard
logs in `out/tensorboard`, a rich progress bar (`progress.TrainMeter`).

The output folder `out` is a plain Hugging Face model folder (LoRA merged unless `merge=False`), tokenizer and
chat template included, plus `train_config.json` and `train_report.json` (written last: it marks the run done), so
`load_model(out)` and `toolformer ask --model out` use it directly.

Resume: checkpoints are written in place by the Trainer, so a kill can leave the newest one half written; only a
checkpoint holding `trainer_state.json` (the Trainer writes it last) counts, newer incomplete ones are deleted, and
the run continues from the last complete one at its global step, with its optimizer, scheduler, RNG and data order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from toolformer.configs import resolve_device, trainer_arguments, use_bf16
from toolformer.errors import ConfigError, DataError, MissingExtraError
from toolformer.train.config import CONFIG_FILE, REPORT_FILE, TrainConfig
from toolformer.train.data import MixStats, Text, encode_many, mix, read_corpus, why_no_training_texts
from toolformer.versions import versions

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
# Loss through TRL's fused, chunked LM head (never builds the [tokens, vocab] logits; Triton kernels on GPU) or
# through the model's own forward and cross-entropy. On CPU the fused head runs its tiles as Python-looped torch
# ops: a training step of the test model (vocab 49k, hidden 64) took 3.1 s with it and 1.3 s without.
FUSED_HEAD = {"cuda": True, "cpu": False}
TENSORBOARD = "tensorboard"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class TrainReport:
    """What a run did; saved as `train_report.json` in the output folder."""

    out: str
    base_model: str
    status: str = "done"
    mode: str = "full"  # "full" or "lora" (+ "merged" / "adapter")
    device: str = "cpu"
    bf16: bool = False
    steps: int = 0  # optimizer steps in total (global_step)
    start_step: int = 0  # the step this run started from (> 0 after --resume)
    steps_this_run: int = 0
    resumed_from: str | None = None  # checkpoint folder name
    epochs: float = 0.0
    train_texts: int = 0  # tokenized training texts (after dropping those with no labelled token)
    dev_texts: int = 0
    dropped_texts: int = 0  # texts whose labelled tokens were all cut by max_length
    call_share: float | None = None  # share of training texts with a call
    mix: dict[str, Any] = field(default_factory=dict)
    trainable_params: int = 0
    total_params: int = 0
    losses: list[dict[str, float]] = field(default_factory=list)  # {"step", "loss", "learning_rate"}
    dev_curve: list[dict[str, float]] = field(default_factory=list)  # {"step", "loss", "ppl"}
    best: dict[str, Any] | None = None  # {"step", "ppl", "checkpoint"} of the weights in `out`
    tokens_this_run: int = 0
    tokens_per_second: float | None = None  # training compute only (no eval, no checkpoint writing)
    tokens_per_second_after_first: float | None = None  # the same without the first step (warm-up)
    step_seconds_median: float | None = None
    seconds: float = 0.0  # wall time of this run, loading included
    tensorboard: str | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainReport:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------------------------- checkpoints


def complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint folders holding `trainer_state.json` (written last by the Trainer), oldest step first."""
    if not folder.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if p.is_dir() and (m := _CHECKPOINT.match(p.name)) and (p / "trainer_state.json").is_file()
    ]
    return [p for _, p in sorted(found)]


def _remove_incomplete(folder: Path) -> list[str]:
    """Delete checkpoint folders a kill left half written; returns their names."""
    removed = []
    if folder.is_dir():
        for p in folder.iterdir():
            if p.is_dir() and _CHECKPOINT.match(p.name) and not (p / "trainer_state.json").is_file():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
    return removed


def _prepare_out(config: TrainConfig, out: Path) -> tuple[Path | None, TrainReport | None]:
    """Check `out` against `config.resume`: (checkpoint to resume from, finished report to return instead)."""
    report_path = out / REPORT_FILE
    ckpt_dir = out / CHECKPOINTS
    if report_path.is_file():
        if config.resume:
            return None, TrainReport.from_dict(json.loads(report_path.read_text(encoding="utf-8")))
        raise ConfigError(
            f"out={str(out)!r} already holds a trained model ({REPORT_FILE}); use another --out"
        )
    if not config.resume:
        if out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
            raise ConfigError(
                f"out={str(out)!r} is not empty (an earlier run?): pass --resume to continue it, or use another --out"
            )
        return None, None
    saved = out / CONFIG_FILE
    if saved.is_file():
        try:
            previous = TrainConfig.load(saved)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{saved} is not readable ({exc}); delete it or use another --out") from None
        changed = config.differences(previous)
        if changed:
            raise ConfigError(
                f"--resume with other options than the run in {str(out)!r} ({changed[0]}): rerun with the same "
                "options or use another --out"
            )
    return resume_checkpoint(ckpt_dir), None


def resume_checkpoint(ckpt_dir: Path) -> Path | None:
    """The last complete checkpoint in `ckpt_dir` to resume from (None: start at step 0), after deleting the
    incomplete ones a kill left."""
    removed = _remove_incomplete(ckpt_dir)
    if removed:
        logger.warning("deleted incomplete checkpoints left by a kill: %s", ", ".join(sorted(removed)))
    done = complete_checkpoints(ckpt_dir)
    if not done:
        logger.warning("--resume: no complete checkpoint in %s, starting from step 0", ckpt_dir)
        return None
    return done[-1]


# --------------------------------------------------------------------------------------------- pieces


def collator(tokenizer: Any) -> Any:
    """The batch collator training uses: right-pads `input_ids`, pads `labels` with -100, adds the attention mask."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return DataCollatorForLanguageModeling(pad_token_id=pad)


def _rows(tokenizer: Any, texts: list[Text], config: TrainConfig) -> tuple[list[dict[str, list[int]]], int]:
    encoded = encode_many(tokenizer, texts, config.loss, config.max_length)
    rows = [r for r in encoded if r is not None]
    return rows, len(encoded) - len(rows)


def _sft_config(
    config: TrainConfig, ckpt_dir: Path, device: str, bf16: bool, has_dev: bool, resuming: bool
) -> Any:
    from trl import SFTConfig

    names = {f.name for f in fields(SFTConfig)}
    kwargs: dict[str, Any] = dict(
        output_dir=str(ckpt_dir),
        **trainer_arguments(config, device, bf16),
        logging_steps=config.logging_steps,
        eval_strategy="steps" if has_dev else "no",
        eval_on_start=has_dev and not resuming,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=has_dev,
        metric_for_best_model="eval_loss" if has_dev else None,
        greater_is_better=False,
        max_length=config.max_length,
        packing=False,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=True,
    )
    # Checkpointing was renamed in transformers 5.x; TRL defaults it to on, which costs ~30 % on a small model.
    if "activation_checkpointing" in names:
        kwargs["activation_checkpointing"] = config.gradient_checkpointing
    else:
        kwargs["gradient_checkpointing"] = config.gradient_checkpointing
    # Batches of similar lengths waste less compute on padding (transformers renamed the switch in 5.x).
    if "train_sampling_strategy" in names:
        kwargs["train_sampling_strategy"] = "group_by_length"
    elif "group_by_length" in names:
        kwargs["group_by_length"] = True
    return SFTConfig(**kwargs)


def _peft_config(config: TrainConfig) -> Any:
    try:
        from peft import LoraConfig
    except ImportError as exc:
        raise MissingExtraError("peft is not installed: pip install 'toolformer-kit[train]'") from exc
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules(),
        bias="none",
        task_type="CAUSAL_LM",
    )


def _with_adapter(model: Any, config: TrainConfig) -> Any:
    """`model` wrapped in the adapter `config.init_adapter` names, its weights trainable (float32 on a float32
    base: peft casts a float16 shipped adapter up)."""
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise MissingExtraError("peft is not installed: pip install 'toolformer-kit[train]'") from exc
    from toolformer.models.adapters import adapter_folder

    folder = adapter_folder(config.init_adapter, base=config.model)
    return PeftModel.from_pretrained(model, str(folder), is_trainable=True)


def _tensorboard(config: TrainConfig, out: Path) -> tuple[Any, str | None]:
    if not config.tensorboard:
        return None, None
    try:
        import tensorboard  # noqa: F401 - torch's SummaryWriter needs it
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback
    except ImportError:
        logger.warning("tensorboard is not installed (pip install tensorboard): no TensorBoard logs")
        return None, None
    log_dir = out / TENSORBOARD
    return TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(log_dir))), str(log_dir)


@contextlib.contextmanager
def _quiet_datasets() -> Any:
    """No `datasets` progress bars while the trainer prepares the (already tokenized) data."""
    from datasets.utils import logging as ds_logging

    was = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            ds_logging.enable_progress_bar()


def _curves(log_history: list[dict[str, Any]]) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    from toolformer.train.progress import _ppl

    losses, dev = [], []
    seen_train: set[int] = set()
    seen_dev: set[int] = set()
    for entry in log_history:
        step = int(entry.get("step", 0))
        if "loss" in entry and step not in seen_train:
            seen_train.add(step)
            losses.append(
                {"step": step, "loss": float(entry["loss"]), "learning_rate": entry.get("learning_rate")}
            )
        if "eval_loss" in entry and step not in seen_dev:
            seen_dev.add(step)
            dev.append(
                {"step": step, "loss": float(entry["eval_loss"]), "ppl": _ppl(float(entry["eval_loss"]))}
            )
    return losses, dev


def _trainer_class(fused_head: bool) -> type:
    """SFTTrainer, computing the loss through TRL's fused LM head or, if not `fused_head`, the model's own loss."""
    from transformers import Trainer
    from trl import SFTTrainer

    if fused_head:
        return SFTTrainer

    class PlainLossSFTTrainer(SFTTrainer):
        """SFTTrainer with the loss from the model's forward (full logits, fused cross-entropy kernel in torch)."""

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            inputs["use_cache"] = False
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return PlainLossSFTTrainer


def _mark_trained_toolformer(out: Path) -> None:
    """Mark `out` as a trained Toolformer (`{"prompt": "zero-shot"}` in its toolformer.json, other keys kept):
    `ask` and `chat` then prompt it zero-shot, as its training texts read (see `runtime.engine`)."""
    from toolformer.models.aliases import META_FILE

    path = out / META_FILE
    meta = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    meta["prompt"] = "zero-shot"
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------- train


def train(
    config: TrainConfig, model: Any = None, tokenizer: Any = None, *, progress: bool = False
) -> TrainReport:
    """Fine-tune `config.model` (or the `model`/`tokenizer` given) on `config.data` into `config.out`.

    Returns the report also written to `out/train_report.json`. With `config.resume`, continues the run in `out`
    from its last complete checkpoint (a finished run is not redone: its report comes back).
    """
    config.check()
    started = time.time()
    out = Path(config.out).expanduser()
    resume_from, finished = _prepare_out(config, out)
    if finished is not None:
        logger.info("%s already holds a finished run; nothing to do", out)
        return finished

    corpus = read_corpus(config.data, config.text_field, config.dev_fraction, config.allow_partial)
    train_texts, dev_texts, stats = mix(
        corpus, config.mix_ratio, config.mix_from, config.seed, config.max_dev_texts
    )
    if not train_texts:
        raise DataError(f"data {config.data!r}: {why_no_training_texts(corpus, stats)}")

    device = resolve_device(config.device)
    bf16 = use_bf16(config.bf16, device)
    if model is None or tokenizer is None:
        from toolformer.models.load import load_model

        model, tokenizer = load_model(config.model, device=device, dtype="float32")
    if config.init_adapter:
        model = _with_adapter(model, config)
    train_rows, dropped = _rows(tokenizer, train_texts, config)
    dev_rows, dev_dropped = _rows(tokenizer, dev_texts, config)
    if not train_rows:
        raise DataError(
            f"data {config.data!r}: no training text keeps a labelled token within max_length={config.max_length}"
        )

    out.mkdir(parents=True, exist_ok=True)
    config.save(out)
    ckpt_dir = out / CHECKPOINTS
    return _run(
        config, model, tokenizer, train_rows, dev_rows, stats, dropped + dev_dropped, out, ckpt_dir,
        resume_from, device, bf16, progress, started,
    )  # fmt: skip


def _run(
    config: TrainConfig,
    model: Any,
    tokenizer: Any,
    train_rows: list[dict[str, list[int]]],
    dev_rows: list[dict[str, list[int]]],
    stats: MixStats,
    dropped: int,
    out: Path,
    ckpt_dir: Path,
    resume_from: Path | None,
    device: str,
    bf16: bool,
    progress: bool,
    started: float,
) -> TrainReport:
    from datasets import Dataset
    from transformers import PrinterCallback, ProgressCallback

    from toolformer.train.progress import TrainMeter

    has_dev = bool(dev_rows)
    args = _sft_config(config, ckpt_dir, device, bf16, has_dev, resume_from is not None)
    meter = TrainMeter(progress=progress, evaluate_at_end=has_dev)
    callbacks: list[Any] = [meter]
    tb_callback, tb_dir = _tensorboard(config, out)
    if tb_callback is not None:
        callbacks.append(tb_callback)
    with _quiet_datasets():
        trainer = _trainer_class(FUSED_HEAD.get(device.split(":")[0], True))(
            model=model,
            args=args,
            data_collator=collator(tokenizer),
            train_dataset=Dataset.from_list(train_rows),
            eval_dataset=Dataset.from_list(dev_rows) if has_dev else None,
            processing_class=tokenizer,
            peft_config=_peft_config(config) if config.lora and not config.init_adapter else None,
            callbacks=callbacks,
        )
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    finally:
        meter.close()

    final = trainer.model
    mode = "full"
    if config.lora:
        if config.merge:
            final = final.merge_and_unload()
            mode = "lora-merged"
        else:
            mode = "lora-adapter"
    final.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))  # with the chat template
    _mark_trained_toolformer(out)

    state = trainer.state
    losses, dev_curve = _curves(state.log_history)
    best = None
    if state.best_model_checkpoint:
        best_step = int(Path(state.best_model_checkpoint).name.rsplit("-", 1)[-1])
        ppl = next((d["ppl"] for d in dev_curve if d["step"] == best_step), None)
        best = {"step": best_step, "ppl": ppl, "checkpoint": Path(state.best_model_checkpoint).name}
    elif dev_curve:
        best = {"step": state.global_step, "ppl": dev_curve[-1]["ppl"], "checkpoint": None}
    step_seconds = [t.seconds for t in meter.timings]
    report = TrainReport(
        out=str(out),
        base_model=config.model,
        mode=mode,
        device=device,
        bf16=bf16,
        steps=state.global_step,
        start_step=meter.start_step or 0,
        steps_this_run=len(meter.timings),
        resumed_from=resume_from.name if resume_from is not None else None,
        epochs=float(state.epoch or 0.0),
        train_texts=len(train_rows),
        dev_texts=len(dev_rows),
        dropped_texts=dropped,
        call_share=stats.train.call_share,
        mix=stats.to_dict(),
        trainable_params=trainable,
        total_params=total,
        losses=losses,
        dev_curve=dev_curve,
        best=best,
        tokens_this_run=meter.tokens,
        tokens_per_second=meter.tokens_per_second(),
        tokens_per_second_after_first=meter.tokens_per_second(skip_first=1),
        step_seconds_median=statistics.median(step_seconds) if step_seconds else None,
        seconds=time.time() - started,
        tensorboard=tb_dir,
        versions=versions("torch", "transformers", "trl", "peft"),
    )
    # The report goes in last: it marks the output folder as a finished run.
    (out / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    if not config.keep_checkpoints:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return report
