"""Write a model as a plain Hugging Face safetensors folder, merging a LoRA adapter into its base first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolformer.errors import ConfigError, ModelNotFoundError


def is_adapter_dir(path: str | Path) -> bool:
    """A PEFT adapter folder (adapter_config.json, no config.json): `toolformer train --no-merge` writes these."""
    p = Path(path)
    return p.is_dir() and (p / "adapter_config.json").is_file() and not (p / "config.json").is_file()


def load_merged(spec: str, dtype: str | None = None) -> tuple[Any, Any]:
    """`(model, tokenizer)` for `spec`; an adapter folder is loaded onto its base model and merged into it."""
    from toolformer.models.hf import _prepare_tokenizer
    from toolformer.models.load import load_model

    if not is_adapter_dir(spec):
        return load_model(spec, dtype=dtype)
    from toolformer.errors import require

    require("peft", "train")
    from peft import PeftModel

    adapter = Path(spec)
    base = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get(
        "base_model_name_or_path"
    )
    if not base:
        raise ConfigError(f"{adapter}/adapter_config.json names no base_model_name_or_path")
    try:
        model, tokenizer = load_model(base, dtype=dtype)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(
            f"adapter {adapter}: its base model {base!r} cannot be loaded ({exc})"
        ) from exc
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    if (
        adapter / "tokenizer_config.json"
    ).is_file():  # the tokenizer it was trained with (chat template included)
        from transformers import AutoTokenizer

        tokenizer = _prepare_tokenizer(AutoTokenizer.from_pretrained(str(adapter), local_files_only=True))
    return merged.eval(), tokenizer


def export_hf(model: Any, tokenizer: Any, out: str | Path) -> Path:
    """Save `model` (a PeftModel is merged first) and `tokenizer` to OUT as safetensors; returns OUT."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={str(out)!r} is a file; HF export writes a folder")
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    config = model.config
    if hasattr(config, "quantization_config"):
        raise ConfigError(
            "model holds quantized weights; load it dequantised (toolformer's loader does) to export"
        )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out
