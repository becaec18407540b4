"""`load_model` and `load_tokenizer` for any model spec, and `resolve_model`, the one-line answer to "from where?"."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from toolformer.errors import ModelNotFoundError

# Module attributes, not names: tests replace the GGUF tokenizer reader and the folder loader there.
from toolformer.models import gguf as _gguf
from toolformer.models import hf as _hf
from toolformer.models.aliases import DEFAULT_MODEL
from toolformer.models.cache import _cache_problem, _fingerprint, _load_cached
from toolformer.models.gguf import _obtain_gguf
from toolformer.models.hf import _check_device, _prepare_tokenizer, _quiet_torchao, _torch_dtype
from toolformer.models.hub import _from_hub
from toolformer.models.resolve import _resolve

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


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
            model, tokenizer = _hf._load_dir(str(source.path), torch_dtype, local_only=True)
        except (OSError, ValueError) as exc:  # transformers raises ValueError for e.g. a missing tokenizer
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelNotFoundError(
                f"model={source.name!r}: cannot load {source.path}: {first_line}"
            ) from exc
    else:
        model, tokenizer = _from_hub(
            source.name, lambda local_only: _hf._load_dir(source.name, torch_dtype, local_only=local_only)
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
            return _prepare_tokenizer(_gguf._read_gguf_tokenizer(_obtain_gguf(source, Path(work))))
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
