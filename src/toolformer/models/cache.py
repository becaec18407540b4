"""The model cache: GGUF conversions and adapter merges saved once as safetensors, checked, rebuilt, loaded.

The first load of a GGUF source rebuilds a plain model from the config and saves it once (with the tokenizer and
its chat template) under `$TOOLFORMER_HOME/models/<name>/`; later loads read that cache in seconds. A cache is
written into a temporary directory, gets its completion marker last and is renamed into place, so a killed
conversion never leaves a half cache; a cache that fails its checks or fails to load is rebuilt with a logged
warning. An adapter alias's cache is its base's cached weights with the shipped LoRA adapter merged in (peft),
marked with the adapter's content hash, so a changed adapter is merged again.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolformer.errors import ConfigError, ModelNotFoundError, ToolformerError

# Module attributes, not names: tests replace the GGUF readers and the folder loader there.
from toolformer.models import gguf as _gguf
from toolformer.models import hf as _hf
from toolformer.models.aliases import DEFAULT_MODEL
from toolformer.models.gguf import _obtain_gguf, _plain_copy
from toolformer.models.resolve import _resolve, _Source

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# The logger keeps the name it had when this was the single module `toolformer.models` (users filter on it).
logger = logging.getLogger("toolformer.models")

CACHE_FORMAT = 1  # bump when the cache layout changes: older caches are then rebuilt
MARKER = "toolformer-cache.json"


def _adapter_fingerprint(folder: Path) -> dict[str, Any]:
    """A sha256 over every file of an adapter folder (names and contents): any change rebuilds the merge."""
    digest = hashlib.sha256()
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts)
    )
    for path in files:
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        digest.update(b"\0")
    return {"files": len(files), "sha256": digest.hexdigest()}


def _fingerprint(source: _Source) -> dict[str, Any]:
    """What identifies the source a cache was built from; a cache whose marker differs is rebuilt."""
    if source.kind == "merged":
        assert source.base is not None and source.path is not None
        return {"base": _fingerprint(source.base), "adapter": _adapter_fingerprint(source.path)}
    alias = source.alias
    if alias is not None and alias.assembled:
        # The GGUF does not exist until assembled; the package pins its content by sha256.
        module = importlib.import_module(alias.package)
        return {"file": alias.gguf_file, "sha256": getattr(module, "EXPECTED_SHA256", None)}
    assert source.path is not None
    # Content, not mtime: reinstalling the same wheel (every fresh venv, every CI run) must not force a rebuild.
    # The size plus a hash of the first and last MiB identifies a GGUF in milliseconds.
    size = source.path.stat().st_size
    digest = hashlib.sha256()
    with source.path.open("rb") as fh:
        digest.update(fh.read(1 << 20))
        fh.seek(max(0, size - (1 << 20)))
        digest.update(fh.read(1 << 20))
    return {"file": source.path.name, "size": size, "head_tail_sha256": digest.hexdigest()}


def _cache_problem(cache: Path, fingerprint: dict[str, Any] | None) -> str | None:
    """Why `cache` cannot be used as is, or None if its marker and files check out (fingerprint None: skip)."""
    marker_path = cache / MARKER
    if not cache.is_dir():
        return "missing"
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no completion marker {MARKER}"
    except (OSError, ValueError) as exc:
        return f"unreadable marker {MARKER} ({exc})"
    if not isinstance(marker, dict) or marker.get("format") != CACHE_FORMAT:
        return (
            f"cache format {marker.get('format') if isinstance(marker, dict) else None!r} != {CACHE_FORMAT}"
        )
    if fingerprint is not None and marker.get("source") != fingerprint:
        return f"built from {marker.get('source')}, but the source is now {fingerprint}"
    files = marker.get("files")
    if not isinstance(files, dict) or not files:
        return "marker lists no files"
    for rel, size in files.items():
        file = cache / rel
        if not file.is_file():
            return f"{rel} is missing"
        if file.stat().st_size != size:
            return f"{rel} has {file.stat().st_size} bytes, expected {size}"
    return None


def _relax_permissions(root: Path) -> None:
    """Give the cache ordinary permissions (755/644): mkdtemp and some writers create private 0700/0600 files."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _write_tree(target: Path, write: Callable[[Path], dict[str, Any]]) -> None:
    """Build `target` atomically: `write(tmp)` fills a temp dir, the marker goes in last, then a rename."""
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=parent))
    try:
        info = write(tmp)
        files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        marker = {
            "format": CACHE_FORMAT,
            **info,
            "files": files,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        _relax_permissions(tmp)
        if target.exists():
            # A directory cannot be renamed onto a non-empty one: move the stale cache aside first.
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=parent))
            os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished the same conversion first; its cache is as good as ours.
            if _cache_problem(target, None) is not None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build_merged(source: _Source, fingerprint: dict[str, Any]) -> None:
    """Merge the adapter of a 'merged' source into its base and save the result at `source.cache`.

    The folder gets the merged safetensors, the tokenizer (the adapter's own if it ships one, else the base's)
    and the adapter's other files (`toolformer.json`, the model card): the folder a model loads from is where
    its settings are read (see `model_meta`).
    """
    import torch
    import transformers

    from toolformer.errors import require

    assert source.cache is not None and source.base is not None and source.path is not None
    require("peft", "train")  # only building needs peft: a merged cache loads without it
    import peft
    from peft import PeftModel

    base = source.base
    adapter = source.path

    def write(tmp: Path) -> dict[str, Any]:
        model, tokenizer = _load_cached(base, torch.float32)
        started = time.perf_counter()
        logger.info("merging the adapter %s into %s (once, a few seconds)", adapter, base.name)
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().eval()
        merged.save_pretrained(str(tmp), safe_serialization=True)
        # The tokenizer it was trained with (chat template included) if it ships one, else the base's.
        if (adapter / "tokenizer_config.json").is_file():
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(adapter), local_files_only=True)
        tokenizer.save_pretrained(str(tmp))
        # toolformer.json and the model card travel with the weights (the adapter's own files stay behind).
        for path in sorted(adapter.iterdir()):
            keep = path.is_file() and not path.name.startswith((".", "adapter_"))
            if keep and not (tmp / path.name).exists():
                shutil.copyfile(path, tmp / path.name)
        logger.info("merged %s in %.1f s", source.name, time.perf_counter() - started)
        return {
            "source": fingerprint,
            "name": source.name,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        }

    _write_tree(source.cache, write)


def _build_cache(source: _Source, fingerprint: dict[str, Any]) -> None:
    """Convert the GGUF behind `source` into a safetensors model directory at `source.cache`."""
    import transformers

    assert source.cache is not None
    if source.kind == "merged":
        _build_merged(source, fingerprint)
        return

    def write(tmp: Path) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix=".gguf-", dir=tmp.parent) as work:
            gguf = _obtain_gguf(source, Path(work))
            started = time.perf_counter()
            logger.info(
                "converting %s into %s (once: ~20 s for 135M parameters, ~50 s for 270M)", gguf, source.cache
            )
            quantised, tokenizer = _gguf._read_gguf(gguf)
            model = _plain_copy(quantised)
            del quantised
            model.save_pretrained(str(tmp), safe_serialization=True)
            tokenizer.save_pretrained(str(tmp))  # also writes the chat template
            logger.info("converted %s in %.1f s", gguf.name, time.perf_counter() - started)
        return {"source": fingerprint, "name": source.name, "transformers": transformers.__version__}

    _write_tree(source.cache, write)


def _ensure_cache(source: _Source, rebuild_reason: str | None = None) -> Path:
    """The cache directory for a GGUF source, built (or rebuilt) when it is missing or fails its checks."""
    assert source.cache is not None
    fingerprint = _fingerprint(source)
    problem = rebuild_reason or _cache_problem(source.cache, fingerprint)
    if problem is None:
        return source.cache
    if problem != "missing":
        logger.warning("rebuilding model cache %s: %s", source.cache, problem)
    try:
        _build_cache(source, fingerprint)
    except Exception as exc:
        if source.kind != "gguf" or isinstance(exc, ToolformerError):
            raise
        # A user's GGUF that starts right but is damaged or of an unsupported architecture: one line, no traceback.
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(
            f"model={source.name!r}: cannot convert {source.path}, a damaged or unsupported GGUF file ({first})"
        ) from exc
    return source.cache


def _load_cached(source: _Source, dtype: Any) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a cached source, building its cache first if needed and rebuilding it once if it fails to load."""
    cache = _ensure_cache(source)
    try:
        return _hf._load_dir(str(cache), dtype, local_only=True)
    except Exception as exc:  # any failure to read a cache that passed its checks means corruption
        _ensure_cache(source, f"it failed to load ({type(exc).__name__}: {str(exc)[:200]})")
        return _hf._load_dir(str(cache), dtype, local_only=True)


def _cached_source(name_or_path: str) -> _Source:
    """The source of a model toolformer caches (alias, adapter alias, .gguf file); ConfigError for others."""
    source = _resolve(name_or_path)
    if source.cache is None:
        raise ConfigError(
            f"model={name_or_path!r} is a {source.kind} model, which is not cached by toolformer"
        )
    return source


def cache_model(name_or_path: str = DEFAULT_MODEL, rebuild: bool = False) -> Path:
    """Convert an alias or .gguf file into its cache now (if needed) and return the cache directory."""
    return _ensure_cache(_cached_source(name_or_path), "rebuild requested" if rebuild else None)


def cache_status(name_or_path: str = DEFAULT_MODEL) -> tuple[Path, str | None]:
    """Where `cache_model` keeps a model's cache, and why that cache is not ready ("missing", …; None: ready).

    Builds nothing: it reads the cache's marker and hashes the source's ends (milliseconds).
    """
    source = _cached_source(name_or_path)
    assert source.cache is not None
    return source.cache, _cache_problem(source.cache, _fingerprint(source))
