"""Helpers shared by the config dataclasses: fields with help text, their help and default, JSON records, device,
bf16, and the Hugging Face trainer arguments that `toolformer train` and `toolformer adapt` set alike."""

from __future__ import annotations

from dataclasses import asdict, field, fields
from typing import Any


def field_help(cls: type, name: str) -> str:
    """The help text of field `name` of dataclass `cls` (the CLI uses it for the option)."""
    return next(f.metadata["help"] for f in fields(cls) if f.name == name)


def field_default(cls: type, name: str) -> Any:
    """The default of field `name` of dataclass `cls` (factories included)."""
    return getattr(cls(), name)


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a default and its help text (read by the CLI and written into run logs)."""
    return field(default=default, metadata={"help": help}, **kwargs)


class JsonRecord:
    """A dataclass saved as JSON: `to_dict()`, and `from_dict(data)` that ignores keys it does not know (a file
    written by a newer version still loads)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})


def resolve_device(device: str) -> str:
    """`auto` → cuda when available, else cpu; an explicit cuda without CUDA is a ConfigError naming `device`."""
    import torch

    from toolformer.errors import ConfigError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available on this machine")
    return device


def use_bf16(bf16: bool | None, device: str) -> bool:
    """Whether to train under bf16 autocast: as asked, else only on a CUDA GPU with bf16.

    On CPU autocast measured no faster than float32 for training, so it is off by default there.
    """
    import torch

    from toolformer.errors import ConfigError

    if bf16 is not None:
        if bf16 and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
            raise ConfigError("bf16=True but this GPU has no bfloat16 support; pass --no-bf16")
        return bf16
    return device.startswith("cuda") and torch.cuda.is_bf16_supported()


def trainer_arguments(config: Any, device: str, bf16: bool) -> dict[str, Any]:
    """The TrainingArguments both trainers set the same way, from a config with batch_size, grad_accum, lr,
    weight_decay, warmup_ratio, epochs, max_steps, eval_steps and seed (a train or adapt config)."""
    return dict(
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        lr_scheduler_type="linear",
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a share of the total steps
        weight_decay=config.weight_decay,
        max_grad_norm=1.0,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        bf16=bf16,
        fp16=False,
        use_cpu=device == "cpu",
        logging_first_step=True,
        eval_steps=config.eval_steps,
        report_to=[],
        disable_tqdm=True,
        seed=config.seed,
        data_seed=config.seed,
        dataloader_pin_memory=device != "cpu",
    )
