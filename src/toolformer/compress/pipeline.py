"""`compress(config)`: load a model, apply one method, save a loadable folder with its recipe, measure, report.

The output folder loads with `toolformer.models.load_model(OUT)` (so `--model OUT` everywhere):
- trim, prune, prune-structured, bf16: an ordinary Hugging Face folder (safetensors);
- int8-wo, int4-wo: a Hugging Face folder with torchao's `quantization_config` (needs torchao to load);
- int8: config, tokenizer and `model.int8.safetensors` (see `toolformer.models.int8`).
Every output also holds `toolformer-compress.json` (the recipe: method, settings, source, what changed) and,
after measuring, report.md / report.json / plot.png comparing the source with the result.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolformer.compress.config import CompressConfig
from toolformer.compress.measure import (
    MeasureConfig,
    Measurement,
    count_parameters,
    model_folder,
    weights_bytes,
)
from toolformer.compress.report import Variant, write_report
from toolformer.errors import ConfigError

RECIPE = "toolformer-compress.json"
Progress = Callable[[str], None]

NOTES = {
    "prune": "unstructured zeros are stored densely: the weights file and the memory do not shrink, and dense "
    "matmuls run no faster; only the quality cost of the sparsity is shown",
    "int8": "linear layers (output head included) int8 with per-channel scales, activations quantised per "
    "batch; the MLP down projections (int8_skip) and the embeddings stay float32; saved as model.int8.safetensors",
    "int8-wo": "decoder linear layers int8 (torchao); embeddings and the tied output head stay float32",
    "int4-wo": "decoder linear layers int4 in groups of 32 (torchao), stored one value per byte: torchao 0.18 "
    "has no packed int4 layout on CPU; embeddings and the tied output head stay float32",
    "bf16": "all weights bfloat16",
}


@dataclass
class CompressResult:
    """What `compress` made: the folder, the recipe, and the measured variants (source first)."""

    out: Path
    method: str
    recipe: dict[str, Any]
    variants: list[Variant] = field(default_factory=list)
    report: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


def variant_name(config: CompressConfig, info: dict[str, Any]) -> str:
    """A short label for the table: `trim 24 (importance) + heal 50`, `prune 30%`, `int8`."""
    method = config.method
    if method == "trim":
        name = f"trim {len(info['layers_kept'])}"
        name += f" ({config.layer_choice})" if config.layers is None else " (listed)"
    elif method.startswith("prune"):
        name = f"{method} {config.sparsity:.0%}"
    elif method == "int4-wo":
        name = f"int4-wo g{config.group_size}"
    elif method == "int8":
        skip = [n.strip() for n in config.int8_skip.split(",") if n.strip()]
        name = f"int8 (float: {', '.join(skip)})" if skip else "int8 (all layers)"
    else:
        name = method
    if info.get("heal"):
        name += f" + heal {info['heal']['steps']}"
    return name


def prepare_out(out: Path, overwrite: bool) -> None:
    """Make sure `out` can take the output: missing, empty, or (with overwrite) an earlier compress output."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"out={str(out)!r} is a file, not a folder")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise ConfigError(
            f"out={str(out)!r} exists and is not empty (--overwrite replaces an earlier output)"
        )
    if not (out / RECIPE).is_file():
        raise ConfigError(f"out={str(out)!r} is not an output of toolformer compress: not deleting it")
    shutil.rmtree(out)


def apply(
    model: Any, tokenizer: Any, config: CompressConfig, progress: Progress | None = None
) -> tuple[Any, dict]:
    """Apply the in-memory part of `config.method` (all but the torchao ones); returns (model, what changed)."""
    from toolformer.compress import prune, quantize, trim

    say = progress or (lambda _msg: None)
    method = config.method
    info: dict[str, Any] = {}
    if method == "trim":
        total = len(trim.decoder_layers(model))
        keep = config.layer_list()
        if keep is None:
            assert config.keep_layers is not None
            scores = None
            if config.layer_choice == "importance" and config.keep_layers < total:
                say("scoring the layers (block influence)")
                scores = trim.block_influence(model, tokenizer, trim.calibration_texts())
                info["block_influence"] = [round(s, 5) for s in scores]
            keep = trim.select_layers(total, config.keep_layers, config.layer_choice, scores)
        say(f"keeping layers {keep} of {total}")
        trim.trim_layers(model, keep)
        info.update(layers_before=total, layers_kept=keep)
    elif method == "prune":
        say(f"pruning {config.sparsity:.0%} of each linear weight")
        info.update(prune.prune_unstructured(model, config.sparsity))
    elif method == "prune-structured":
        say("measuring the MLP activations on the calibration texts")
        norms = prune.mlp_activation_norms(model, tokenizer, trim.calibration_texts())
        say(f"removing {config.sparsity:.0%} of the MLP channels")
        info.update(prune.prune_mlp_channels(model, config.sparsity, norms))
    elif method == "bf16":
        model = quantize.to_bf16(model)
    elif method == "int8":
        skip = tuple(n.strip() for n in config.int8_skip.split(",") if n.strip())
        say("quantising the linear layers to int8" + (f" (float: {', '.join(skip)})" if skip else ""))
        model = quantize.quantize_int8(model, skip)
        info["float_layers"] = list(skip)
    if config.heal_data is not None:
        say(f"healing: {config.heal_steps} steps on {config.heal_data}")
        model, info["heal"] = trim.heal(
            model,
            tokenizer,
            config.heal_data,
            steps=config.heal_steps,
            lr=config.heal_lr,
            batch_size=config.heal_batch_size,
            max_length=config.heal_max_length,
            seed=config.seed,
        )
    return model, info


def save(
    model: Any, tokenizer: Any, config: CompressConfig, out: Path, info: dict[str, Any]
) -> tuple[Any, dict]:
    """Write the model, tokenizer and recipe into `out`; returns (the saved model, the recipe)."""
    import torch
    import transformers

    from toolformer.compress import quantize
    from toolformer.models.int8 import save_int8

    out.mkdir(parents=True, exist_ok=True)
    if config.method == "int8":
        model.config.save_pretrained(str(out))
        if model.generation_config is not None:
            model.generation_config.save_pretrained(str(out))
        save_int8(model, out)
    elif config.method in ("int8-wo", "int4-wo"):
        model = quantize.save_torchao(model, config.method, out, config.group_size)
    else:
        model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    recipe = {
        "format": 1,
        "method": config.method,
        "name": variant_name(config, info),
        "source": config.model,
        "settings": {k: v for k, v in config.to_dict().items() if k not in ("model", "out", "overwrite")},
        "info": info,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    (out / RECIPE).write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
    return model, recipe


def measure_config(config: CompressConfig) -> MeasureConfig:
    return MeasureConfig(
        gen_tokens=config.gen_tokens,
        ppl_limit=config.ppl_limit,
        ppl_max_tokens=config.ppl_max_tokens,
        math_limit=config.math_limit,
        math_datasets=config.math_datasets,
        shots=config.shots,
    )


def compress(config: CompressConfig, progress: Progress | None = None) -> CompressResult:
    """Compress `config.model` with `config.method` into `config.out`, then measure and report (see module doc)."""
    from toolformer.compress.quantize import is_quantized
    from toolformer.models.load import load_model

    say = progress or (lambda _msg: None)
    config.check()
    started = time.perf_counter()
    out = Path(config.out).expanduser()
    prepare_out(out, config.overwrite)
    if config.heal_data is not None:
        from toolformer.compress.trim import check_heal_data

        check_heal_data(config.heal_data)  # bad heal data fails before the model loads, not after the trim
    if config.method in ("int8-wo", "int4-wo"):
        from toolformer.compress.quantize import torchao_config

        torchao_config(config.method, config.group_size)  # a missing torchao fails before the model loads
    say(f"loading {config.model}")
    model, tokenizer = load_model(config.model, device="cpu")
    if is_quantized(model):
        raise ConfigError(f"model={config.model!r} is already quantised: compress its float source instead")
    source_static = Measurement(model=config.model, layers=getattr(model.config, "num_hidden_layers", None))
    source_static.params, source_static.nonzero_params = count_parameters(model)
    folder = model_folder(config.model)
    if folder is not None:
        source_static.folder, source_static.weights_bytes = str(folder), weights_bytes(folder)
    model, info = apply(model, tokenizer, config, say)
    say(f"saving to {out}")
    model, recipe = save(model, tokenizer, config, out, info)
    made = time.perf_counter() - started
    result_static = Measurement(model=str(out), folder=str(out), weights_bytes=weights_bytes(out))
    result_static.params, result_static.nonzero_params = count_parameters(model)
    result_static.layers = getattr(model.config, "num_hidden_layers", None)
    del model
    source, result = source_static, result_static
    if config.measure:
        from toolformer.compress.measure import measure

        mc = measure_config(config)
        say(f"measuring {config.model}")
        source = measure(config.model, mc)
        say(f"measuring {out}")
        result = measure(str(out), mc)
    notes = [NOTES[config.method]] if config.method in NOTES else []
    settings = {"notes": notes} if notes else {}
    variants = [
        Variant("source", "none", source),
        Variant(recipe["name"], config.method, result, settings, made),
    ]
    report = write_report(
        out,
        f"`toolformer compress {config.method}`: {config.model}",
        variants,
        notes=[f"source: {config.model}; output: {out}"]
        + ([] if config.measure else ["not measured (--no-measure)"]),
        extra={"recipe": recipe},
        plot=config.measure,
    )
    return CompressResult(out, config.method, recipe, variants, report, time.perf_counter() - started)
