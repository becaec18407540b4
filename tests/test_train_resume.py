"""Where a `toolformer train` run starts: a fresh empty folder, a finished run, or the last complete checkpoint.

Also the loss and dev curves the report keeps (one point per step). The whole kill-and-resume run is in
tests/test_train.py (slow); these check the decisions on hand-made folders, without a model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from toolformer.errors import ConfigError
from toolformer.train.config import CONFIG_FILE, REPORT_FILE, TrainConfig
from toolformer.train.trainer import CHECKPOINTS, TrainReport, _curves, _prepare_out


def cfg(out: Path, **overrides: object) -> TrainConfig:
    return TrainConfig(**({"data": "d.jsonl", "out": str(out)} | overrides))


def checkpoint(out: Path, step: int, complete: bool = True) -> Path:
    folder = out / CHECKPOINTS / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w")
    if complete:
        (folder / "trainer_state.json").write_text("{}", encoding="utf-8")
    return folder


def test_a_new_or_hidden_files_only_folder_starts_from_scratch(tmp_path: Path) -> None:
    assert _prepare_out(cfg(tmp_path / "new"), tmp_path / "new") == (None, None)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".nfs0001").write_text("x")  # dot files are not an earlier run
    assert _prepare_out(cfg(out), out) == (None, None)


def test_a_finished_run_is_returned_on_resume_and_refused_without(tmp_path: Path) -> None:
    report = TrainReport(out=str(tmp_path), base_model="tiny", steps=12, losses=[{"step": 1, "loss": 2.0}])
    (tmp_path / REPORT_FILE).write_text(json.dumps(report.to_dict() | {"from_a_newer_version": 1}))
    assert _prepare_out(cfg(tmp_path, resume=True), tmp_path) == (None, report)
    with pytest.raises(ConfigError, match="already holds a trained model"):
        _prepare_out(cfg(tmp_path), tmp_path)


def test_resume_continues_from_the_last_complete_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg(tmp_path, resume=True).save(tmp_path)
    checkpoint(tmp_path, 4)
    last = checkpoint(tmp_path, 10)
    half = checkpoint(tmp_path, 12, complete=False)  # killed while writing it
    with caplog.at_level(logging.WARNING):
        start, report = _prepare_out(cfg(tmp_path, resume=True, max_steps=50), tmp_path)
    assert (start, report) == (last, None)  # by step number: checkpoint-10 comes after checkpoint-4
    assert not half.exists() and "checkpoint-12" in caplog.text


def test_resume_without_a_complete_checkpoint_starts_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint(tmp_path, 2, complete=False)
    with caplog.at_level(logging.WARNING):
        assert _prepare_out(cfg(tmp_path, resume=True), tmp_path) == (None, None)
    assert "starting from step 0" in caplog.text


def test_resume_refuses_an_unreadable_saved_config(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"{CONFIG_FILE} is not readable"):
        _prepare_out(cfg(tmp_path, resume=True), tmp_path)


def test_curves_keep_one_point_per_step_with_the_dev_perplexity() -> None:
    history = [
        {"step": 1, "loss": 3.0, "learning_rate": 1e-4},
        {"step": 1, "loss": 9.9},  # the same step logged again (e.g. after a resume): the first one counts
        {"step": 2, "eval_loss": 0.0},
        {"step": 2, "loss": 2.0, "learning_rate": 5e-5},
        {"step": 2, "eval_loss": 1.0},
        {"train_runtime": 12.0},  # a summary entry: no loss, no point
    ]
    losses, dev = _curves(history)
    assert losses == [
        {"step": 1, "loss": 3.0, "learning_rate": 1e-4},
        {"step": 2, "loss": 2.0, "learning_rate": 5e-5},
    ]
    assert dev == [{"step": 2, "loss": 0.0, "ppl": 1.0}]
