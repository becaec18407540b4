"""Read a GGUF file with transformers (dequantised) and rebuild it as a plain model that can be saved.

A GGUF file takes ~20 s to dequantise with transformers and the result refuses `save_pretrained`, so the cache
(`toolformer.models.cache`) rebuilds a plain model from the config once and saves that instead.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from toolformer.errors import ModelNotFoundError
from toolformer.models.resolve import _Source

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


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
