"""Read a Hugging Face model folder (or Hub id): dtype and device checks, the tokenizer's padding, int8 folders."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolformer.errors import ConfigError
from toolformer.models.int8 import INT8_WEIGHTS, load_int8

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

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

    if (Path(path) / INT8_WEIGHTS).is_file():
        # A `toolformer compress --method int8` folder: int8 layers that from_pretrained cannot read (CPU only).
        return load_int8(path), AutoTokenizer.from_pretrained(path, local_files_only=True)
    # transformers does not pass local_files_only on to its adapter lookup, which then retries the Hub.
    adapter_kwargs = {"local_files_only": True} if local_only else None
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, local_files_only=local_only, adapter_kwargs=adapter_kwargs
    )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    return model, tokenizer
