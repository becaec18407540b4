"""`toolformer.compress.measure`: weight bytes, parameter counts (tied weights once), a tiny model measured."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from toolformer.compress.measure import (
    MeasureConfig,
    Measurement,
    count_parameters,
    measure,
    measure_here,
    model_folder,
    weights_bytes,
)
from toolformer.errors import ToolformerError


def test_weights_bytes_counts_weight_files_only(tmp_path: Path) -> None:
    sizes = {"model.safetensors": 300, "extra.bin": 20, "head.pt": 4, "q.gguf": 1}
    for name, size in {**sizes, "config.json": 999, "tokenizer.json": 5000}.items():
        (tmp_path / name).write_bytes(b"x" * size)
    (tmp_path / "sub.safetensors").mkdir()  # a folder, whatever its name, is not a weight file
    assert weights_bytes(tmp_path) == sum(sizes.values())


def test_parameters_count_a_tied_head_once_and_zeros_as_zeros(tiny_lm: tuple[Any, Any]) -> None:
    model = copy.deepcopy(tiny_lm[0])
    unique = {id(p): p for p in model.parameters()}
    total, nonzero = count_parameters(model)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied
    assert total == sum(p.numel() for p in unique.values())
    assert nonzero == sum(int(p.count_nonzero()) for p in unique.values()) < total  # the pad row is zero
    gate = model.model.layers[0].mlp.gate_proj.weight
    with torch.no_grad():
        gate[:3] = 0.0
    assert count_parameters(model) == (total, nonzero - 3 * gate.shape[1])


def test_a_measurement_reads_back_and_derives_the_models_memory() -> None:
    m = Measurement.from_dict({"model": "m", "peak_rss_mb": 900.0, "base_rss_mb": 600.0, "new_field": 1})
    assert m.model == "m" and m.model_rss_mb == pytest.approx(300.0)
    assert m.to_dict()["model_rss_mb"] == pytest.approx(300.0)
    assert Measurement("m", peak_rss_mb=900.0).model_rss_mb is None
    assert Measurement.from_dict(m.to_dict()) == m


def test_model_folder_is_the_folder_itself_or_none(tmp_path: Path) -> None:
    assert model_folder(str(tmp_path)) == tmp_path
    assert model_folder("no-such-model-anywhere") is None


def test_a_tiny_model_measured_in_this_process(tiny_dir: Path, tiny_lm: tuple[Any, Any]) -> None:
    result = measure_here(str(tiny_dir), MeasureConfig(gen_tokens=4, quality=False))
    assert result.folder == str(tiny_dir) and result.weights_bytes == weights_bytes(tiny_dir) > 0
    assert (result.params, result.nonzero_params) == count_parameters(tiny_lm[0])
    assert result.layers == 2 and result.dtype == "float32"
    assert (
        result.tokens_per_second > 0 and result.tokens_per_wall_second > 0 and isinstance(result.sample, str)
    )
    assert result.peak_rss_mb >= result.base_rss_mb > 0
    assert result.ppl is None and result.math_accuracy is None  # quality=False measures no quality


@pytest.mark.slow  # a fresh Python process that imports torch
def test_a_failed_measurement_names_the_model_and_the_childs_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-model"
    with pytest.raises(ToolformerError) as info:
        measure(str(missing), MeasureConfig(quality=False, gen_tokens=2), timeout=300)
    message = str(info.value)
    assert f"measuring model={str(missing)!r} failed (exit 1)" in message
    assert "no such file or directory" in message and "\n" not in message
