"""`toolformer.configs`: option fields and their help, the device and bf16 choices, the shared trainer arguments."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from toolformer.configs import field_default, field_help, option, resolve_device, trainer_arguments, use_bf16
from toolformer.errors import ConfigError
from toolformer.train.config import TrainConfig


@dataclass
class Example:
    size: int = option(3, "How many.")
    tags: list[str] = field(default_factory=lambda: ["a"], metadata={"help": "Tags."})


def test_an_option_carries_its_default_and_help() -> None:
    assert field_help(Example, "size") == "How many." and field_help(Example, "tags") == "Tags."
    assert field_default(Example, "size") == 3 and field_default(Example, "tags") == ["a"]  # factories run


def test_devices_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="device='cuda:1' but CUDA is not available"):
        resolve_device("cuda:1")


def test_devices_with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"


@pytest.mark.parametrize(
    ("asked", "device", "supported", "used"),
    [
        (None, "cpu", True, False),  # measured no faster on a CPU: off unless asked
        (None, "cuda", True, True),
        (None, "cuda", False, False),
        (True, "cpu", False, True),  # asked for: as asked
        (False, "cuda", True, False),
    ],
)
def test_bf16_is_on_by_default_only_on_a_gpu_that_has_it(
    monkeypatch: pytest.MonkeyPatch, asked: bool | None, device: str, supported: bool, used: bool
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
    assert use_bf16(asked, device) is used


def test_bf16_asked_on_a_gpu_without_it_says_how_to_turn_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    with pytest.raises(ConfigError, match="--no-bf16"):
        use_bf16(True, "cuda")


def test_trainer_arguments_follow_the_config() -> None:
    config = TrainConfig(data="d", out="o", lora=True, max_steps=None, batch_size=2, grad_accum=3, seed=7)
    args = trainer_arguments(config, "cpu", bf16=False)
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (2, 3)
    assert args["learning_rate"] == config.lr and args["max_steps"] == -1 and args["use_cpu"] is True
    assert args["seed"] == args["data_seed"] == 7 and args["dataloader_pin_memory"] is False
    capped = trainer_arguments(TrainConfig(max_steps=5), "cuda", bf16=True)
    assert capped["max_steps"] == 5 and capped["bf16"] is True and capped["use_cpu"] is False

    from transformers import TrainingArguments

    TrainingArguments(output_dir="unused", **args)  # every key is one transformers knows
