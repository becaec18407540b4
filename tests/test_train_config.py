"""`TrainConfig`: every bad field is refused by name, the saved config round-trips, resume compares what matters."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from toolformer.errors import ConfigError
from toolformer.train.config import (
    CONFIG_FILE,
    DEFAULT_LR_FULL,
    DEFAULT_LR_LORA,
    RESUMABLE_CHANGES,
    TrainConfig,
    parse_mix_ratio,
)


def cfg(**overrides: Any) -> TrainConfig:
    return TrainConfig(**({"data": "d.jsonl", "out": "out"} | overrides))


def test_the_defaults_pass_the_checks() -> None:
    cfg().check()
    cfg(max_steps=3, eval_steps=1, save_steps=3, device="cuda:1", lora=True, mix_ratio=None).check()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"data": "  "}, "data=''"),
        ({"out": ""}, "out=''"),
        ({"mix_from": "docs"}, "mix_from='docs'"),
        ({"device": "tpu"}, "device='tpu'"),
        ({"lora_r": 0}, "lora_r=0"),
        ({"grad_accum": True}, "grad_accum=True"),  # a bool is not a count
        ({"max_length": 2.5}, "max_length=2.5"),
        ({"max_steps": 0}, "max_steps=0"),
        ({"max_dev_texts": -1}, "max_dev_texts=-1"),
        ({"max_length": 4}, "max_length=4 must be at least 8"),
        ({"lora_alpha": 0}, "lora_alpha=0"),
        ({"lora_dropout": 1.0}, "lora_dropout=1.0"),
        ({"learning_rate": 0.0}, "learning_rate=0.0"),
        ({"epochs": 0.0}, "epochs=0.0"),
        ({"warmup_ratio": -0.1}, "warmup_ratio=-0.1"),
        ({"weight_decay": -1.0}, "weight_decay=-1.0"),
        ({"mix_ratio": -0.5}, "mix_ratio=-0.5"),
        ({"dev_fraction": 1.0}, "dev_fraction=1.0"),
        ({"lora_target_modules": " , "}, "lora_target_modules=' , '"),
    ],
)
def test_a_bad_field_is_one_line_naming_it(overrides: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg(**overrides).check()
    assert named in str(info.value) and "\n" not in str(info.value)


def test_epochs_do_not_matter_when_max_steps_is_set() -> None:
    cfg(epochs=0.0, max_steps=5, eval_steps=5, save_steps=5).check()


def test_learning_rate_in_use_and_lora_targets() -> None:
    assert cfg().lr == DEFAULT_LR_FULL and cfg(lora=True).lr == DEFAULT_LR_LORA
    assert cfg(lora=True, learning_rate=3e-4).lr == 3e-4
    assert cfg().target_modules() == "all-linear"
    assert cfg(lora_target_modules=" q_proj, v_proj ,").target_modules() == ["q_proj", "v_proj"]


def test_save_then_load_round_trips_and_records_the_learning_rate_used(tmp_path: Path) -> None:
    config = cfg(lora=True, max_steps=7, eval_steps=7, save_steps=7, mix_ratio=None, bf16=False)
    path = config.save(tmp_path)
    assert path == tmp_path / CONFIG_FILE
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["learning_rate_used"] == DEFAULT_LR_LORA and saved["learning_rate"] is None
    assert TrainConfig.load(path) == config  # the extra key is ignored on the way back


def test_resume_differences_name_only_fields_that_must_not_change() -> None:
    old = cfg(loss="all", seed=1)
    new = cfg(loss="after-call", seed=1, out="elsewhere", max_steps=99, device="cpu", resume=True)
    assert new.differences(old) == ["loss: 'all' -> 'after-call'"]
    assert cfg(seed=2).differences(cfg(seed=1)) == ["seed: 1 -> 2"]
    assert cfg().differences(cfg()) == []
    assert {f.name for f in fields(TrainConfig)} >= RESUMABLE_CHANGES  # no stale names in the exemptions


@pytest.mark.parametrize(
    ("value", "ratio"), [(None, None), ("all", None), (" None ", None), ("0", 0.0), ("0.25", 0.25), (2, 2.0)]
)
def test_mix_ratio_from_the_command_line(value: Any, ratio: float | None) -> None:
    assert parse_mix_ratio(value) == ratio


@pytest.mark.parametrize("value", ["-1", "half", "nan"])
def test_a_bad_mix_ratio_names_the_value(value: str) -> None:
    with pytest.raises(ConfigError, match=f"mix_ratio={value!r}"):
        parse_mix_ratio(value)
