"""Quantisation: bf16 casting, dynamic int8 (torch.ao, saved as int8 safetensors) and torchao weight-only int8/int4.

- `int8`: `torch.ao.quantization.quantize_dynamic` on the nn.Linear layers, output head included, with
  per-channel symmetric int8 weights; activations are quantised on the fly per batch (one scale per tensor), and
  the matmuls run in fbgemm's int8 kernels. On this CPU it was the fastest variant (≈2.5× float32 at batch 1
  with every layer int8, ≈2× with the default skip). The MLP down projections stay float32 by default
  (`skip`): their inputs, the gated MLP activations, have outliers that one activation scale per tensor cannot
  hold. On SmolLM2-135M (6 wiki_ppl texts, base perplexity 22.8) every layer int8 gave 79.4, skipping
  down_proj 28.0; skipping only the first/last layers' down_proj did not help (47.6). The output folder holds
  `model.int8.safetensors`, written and read by `toolformer.models.int8` (`save_int8`, `load_int8`), so
  `toolformer.models.load_model` loads it. torch.ao's eager quantisation is deprecated in favour of torchao,
  but torchao 0.18 has no CPU int8 kernel for it (its int8 variants run ≈2-3× slower than float32 on CPU), so
  we keep torch.ao while it exists.
- `int8-wo` / `int4-wo`: torchao weight-only quantisation through transformers' `TorchAoConfig`, so the folder
  is an ordinary Hugging Face folder (`quantization_config` in config.json, safetensors with torchao's
  flattened tensors) that `from_pretrained` reloads. torchao 0.18 offers no packed int4 layout on CPU
  (`Int4WeightOnlyConfig` needs CUDA or the mslk package), so `int4-wo` uses `IntxWeightOnlyConfig` with int4
  values stored one per byte: int4 accuracy at int8 size. The output head and embeddings stay in float.
- `bf16`: every floating weight cast to bfloat16.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from toolformer.errors import ConfigError, MissingExtraError
from toolformer.models.int8 import _dynamic_linear_class, _quiet


def to_bf16(model: Any) -> Any:
    """Cast the model's floating weights to bfloat16, in place."""
    import torch

    return model.to(torch.bfloat16)


# --------------------------------------------------------------------------------------------- int8 (torch.ao)


def quantize_int8(model: Any, skip: tuple[str, ...] = ("down_proj",)) -> Any:
    """Dynamic int8 quantisation of the nn.Linear layers (per-channel weights), in place; CPU only.

    Layers whose qualified name contains a part of `skip` stay float32 (see the module docstring).
    """
    import torch

    if next(model.parameters()).device.type != "cpu":
        raise ConfigError("method='int8' runs on CPU only (fbgemm kernels); load the model with device=cpu")
    if next(model.parameters()).dtype != torch.float32:
        model = model.float()
    _dynamic_linear_class()
    with _quiet():
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        spec = {
            name: per_channel_dynamic_qconfig
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and not any(part in name for part in skip)
        }
        if not spec:
            raise ConfigError(f"int8_skip={','.join(skip)!r} leaves no linear layer to quantise")
        return quantize_dynamic(model, spec, inplace=True)


def is_quantized(model: Any) -> bool:
    """True when `model` holds torch.ao dynamic int8 layers or torchao tensors (it cannot be compressed again)."""
    if getattr(model.config, "quantization_config", None) is not None:
        return True
    with contextlib.suppress(MissingExtraError):
        linear = _dynamic_linear_class()
        return any(isinstance(m, linear) for m in model.modules())
    return False


# --------------------------------------------------------------------------------------------- torchao


def torchao_config(method: str, group_size: int = 32) -> Any:
    """The torchao quantisation config of `method` (int8-wo or int4-wo)."""
    import torch

    try:
        with _quiet():
            from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig
            from torchao.quantization.granularity import PerGroup
    except ImportError as exc:
        raise MissingExtraError(
            f"method={method!r} needs torchao: pip install 'toolformer-kit[compress]'"
        ) from exc
    if method == "int8-wo":
        return Int8WeightOnlyConfig()
    if method == "int4-wo":
        return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size))
    raise ConfigError(f"method={method!r} is not a torchao method (int8-wo, int4-wo)")


def save_torchao(model: Any, method: str, out: Path, group_size: int = 32) -> Any:
    """Quantise `model` with torchao through transformers and save it to `out`; returns the quantised model.

    The float model is written to a temporary folder and read back with `quantization_config`, the public way to
    get a model whose `save_pretrained` knows how to serialise torchao tensors.
    """
    import torch
    from transformers import AutoModelForCausalLM, TorchAoConfig

    if group_size and method == "int4-wo":
        widths = {m.in_features for m in model.modules() if isinstance(m, torch.nn.Linear)}
        bad = sorted(w for w in widths if w % group_size)
        if bad:
            raise ConfigError(f"group_size={group_size} does not divide the linear input width {bad[0]}")
    quant = TorchAoConfig(torchao_config(method, group_size))
    with tempfile.TemporaryDirectory(prefix="toolformer-torchao-") as tmp, _quiet():
        model.float().save_pretrained(tmp, safe_serialization=True)
        quantized = AutoModelForCausalLM.from_pretrained(
            tmp, quantization_config=quant, dtype=torch.float32, local_files_only=True
        )
        quantized.save_pretrained(str(out), safe_serialization=True)
    return quantized.eval()
