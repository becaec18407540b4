"""A model's own settings (`toolformer.json`), and shipping a trained LoRA adapter into the package."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from toolformer.errors import ModelNotFoundError

# Module attribute, not name: ADAPTERS_ROOT is read at call time (tests repoint it).
from toolformer.models import aliases as _aliases
from toolformer.models.aliases import BASE_MODEL, META_FILE
from toolformer.models.resolve import _read_meta, _resolve


def model_meta(model: Any) -> dict[str, Any]:
    """The model's own settings (`toolformer.json`, e.g. {"prompt": "zero-shot", ...}), or {} if it has none.

    `model` is a model spec (alias, path, hub id) or a loaded model. A spec's settings are read from where its
    weights come from (an adapter alias: its adapter folder, copied into its merged cache); a loaded model's
    from the folder it was loaded from (`config._name_or_path`: the merged cache for an adapter alias, the
    folder for a local model). Nothing is loaded or converted.
    """
    if isinstance(model, (str, os.PathLike)):
        source = _resolve(str(model))
        folder = source.path if source.kind in ("merged", "dir") else None
    else:
        name = getattr(getattr(model, "config", None), "_name_or_path", None)
        folder = Path(name) if isinstance(name, str) and name else None
    if folder is None or not (folder / META_FILE).is_file():
        return {}
    return _read_meta(folder / META_FILE)


def adapter_folder(spec: str, base: str | None = None) -> Path:
    """The folder of a LoRA adapter named by `spec`: an adapter alias (`toolformer-135m`) or a folder holding
    `adapter_config.json`. With `base` (an alias), an adapter that names a different base alias is refused."""
    from toolformer.models.aliases import ALIASES, adapter_dir

    alias = ALIASES.get(spec)
    if alias is not None and alias.adapter is not None:
        folder = adapter_dir(alias)
    else:
        folder = Path(spec).expanduser()
        if not (folder / "adapter_config.json").is_file():
            raise ModelNotFoundError(
                f"init_adapter={spec!r}: neither an adapter alias nor a folder with adapter_config.json "
                "(a `toolformer train --lora --no-merge` output)"
            )
    named = _read_meta(folder / META_FILE).get("base") if (folder / META_FILE).is_file() else None
    if base is not None and base in ALIASES and isinstance(named, str) and named in ALIASES and named != base:
        raise ModelNotFoundError(f"init_adapter={spec!r} was trained on {named!r}, not on model={base!r}")
    return folder


def ship_adapter(trained: str | Path, alias: str = "toolformer-135m", base: str = BASE_MODEL) -> Path:
    """Copy a `toolformer train --lora --no-merge` output into the package as the adapter of `alias`.

    Weights are stored in float16 (half the size; the merge casts them back to float32), the config names the base
    by its alias instead of a path of this machine, and `toolformer.json` marks the zero-shot prompt. The model
    card (`README.md`) is left as it is.
    """
    import torch
    from safetensors.torch import load_file, save_file

    src = Path(trained)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        if not (src / name).is_file():
            raise ModelNotFoundError(f"{str(src)!r} has no {name}: train with --lora --no-merge")
    dest = _aliases.ADAPTERS_ROOT / alias
    dest.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base
    (dest / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    weights = {
        k: v.to(torch.float16).contiguous() for k, v in load_file(src / "adapter_model.safetensors").items()
    }
    save_file(weights, dest / "adapter_model.safetensors", metadata={"format": "pt"})
    (dest / META_FILE).write_text(json.dumps({"prompt": "zero-shot", "base": base}) + "\n", encoding="utf-8")
    return dest
