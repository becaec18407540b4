"""Quantisation: bf16 casting, dynamic int8 (torch.ao, saved as int8 safetensors) and torchao weight-only int8/int4.

- `int8`: `torch.ao.quantization.quantize_dynamic` on the nn.Linear layers, output head included, with
  per-channel symmetric int8 weights; activations are quantised on the fly per batch (one scale per tensor), and
  the matmuls run in fbgemm's int8 kernels. On this CPU it was the fastest variant (≈2.5× float32 at batch 1
  with every layer int8, ≈2× with the default skip). The MLP down projections stay float32 by default
  (`skip`): their inputs, the gated MLP activations, have outliers that one activation scale per tensor cannot
  hold. On SmolLM2-135M (6 wiki_ppl texts, base perplexity 22.8) every layer int8 gave 79.4, skipping
  down_proj 28.0; skipping only the first/last layers' down_proj did not help (47.6). The quantised modules cannot be
  saved as plain safetensors, and pickling them (`torch.save`) would make loading run arbitrary code, so the
  output folder holds `model.int8.safetensors`: each quantised layer's int8 weights, per-channel scales, zero
  points and bias as plain tensors, plus every other parameter and buffer as is. `load_int8` rebuilds the model
  skeleton on the meta device, puts quantised layers built from those exact int8 values in place and fills the
  rest, so a reload is bit-identical and never materialises the float weights. `toolformer.models.load_model`
  recognises the file. torch.ao's eager quantisation is deprecated in favour of torchao, but torchao 0.18 has no
  CPU int8 kernel for it (its int8 variants run ≈2-3× slower than float32 on CPU), so we keep torch.ao while it
  exists.
- `int8-wo` / `int4-wo`: torchao weight-only quantisation through transformers' `TorchAoConfig`, so the folder
  is an ordinary Hugging Face folder (`quantization_config` in config.json, safetensors with torchao's
  flattened tensors) that `from_pretrained` reloads. torchao 0.18 offers no packed int4 layout on CPU
  (`Int4WeightOnlyConfig` needs CUDA or the mslk package), so `int4-wo` uses `IntxWeightOnlyConfig` with int4
  values stored one per byte: int4 accuracy at int8 size. The output head and embeddings stay in float.
- `bf16`: every floating weight cast to bfloat16.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolformer.errors import ConfigError, MissingExtraError, ModelNotFoundError

INT8_WEIGHTS = "model.int8.safetensors"  # toolformer.models.load_model looks for this name
_INT8_TAG = "toolformer-dynamic-int8"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch.ao's deprecation warnings and torchao's notes about its CUDA-only extensions."""
    logger = logging.getLogger("torchao")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(level)


def to_bf16(model: Any) -> Any:
    """Cast the model's floating weights to bfloat16, in place."""
    import torch

    return model.to(torch.bfloat16)


# --------------------------------------------------------------------------------------------- int8 (torch.ao)


def _dynamic_linear_class() -> Any:
    try:
        with _quiet():
            from torch.ao.nn.quantized.dynamic import Linear
    except ImportError as exc:  # removed in a future torch: the message says what to do
        raise MissingExtraError(
            "method='int8' needs torch.ao.nn.quantized.dynamic, which this torch build lacks; use int8-wo"
        ) from exc
    return Linear


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


def int8_state(model: Any) -> dict[str, Any]:
    """The tensors of an int8-quantised model as plain tensors (see the module docstring for the layout)."""
    import torch

    linear = _dynamic_linear_class()
    state: dict[str, Any] = {}
    with _quiet():
        for name, module in model.named_modules():
            if not isinstance(module, linear):
                continue
            weight, bias = module.weight(), module.bias()
            state[f"{name}.weight.int8"] = weight.int_repr().contiguous()
            if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                state[f"{name}.weight.scale"] = weight.q_per_channel_scales().contiguous()
                state[f"{name}.weight.zero_point"] = weight.q_per_channel_zero_points().contiguous()
                state[f"{name}.weight.axis"] = torch.tensor([weight.q_per_channel_axis()])
            else:
                state[f"{name}.weight.scale"] = torch.tensor([weight.q_scale()], dtype=torch.float64)
                state[f"{name}.weight.zero_point"] = torch.tensor([weight.q_zero_point()])
            if bias is not None:
                state[f"{name}.bias"] = bias.detach().contiguous()
    for name, param in model.named_parameters():
        state[name] = param.detach().contiguous()
    # Non-persistent buffers too (rotary inv_freq): the loader builds the skeleton on the meta device, where
    # they would otherwise be left empty. Cloned because some share storage (safetensors refuses that).
    for name, buf in model.named_buffers():
        state[name] = buf.detach().clone().contiguous()
    return state


def save_int8(model: Any, out: Path) -> Path:
    """Write `model.int8.safetensors` of an int8-quantised model into `out` (config, tokenizer: the caller)."""
    from safetensors.torch import save_file

    path = Path(out) / INT8_WEIGHTS
    save_file(int8_state(model), str(path), metadata={"format": "pt", "toolformer": _INT8_TAG})
    return path


def _fill(model: Any, state: dict[str, Any], folder: Path) -> None:
    """Put the tensors of `state` into the parameters and buffers of `model` (tied parameters stay tied)."""
    import torch

    groups: dict[int, list[tuple[Any, str, bool]]] = {}
    for kind, items in (
        ("p", model.named_parameters(remove_duplicate=False)),
        ("b", model.named_buffers(remove_duplicate=False)),
    ):
        for name, tensor in items:
            module_name, _, leaf = name.rpartition(".")
            module = model.get_submodule(module_name) if module_name else model
            groups.setdefault(id(tensor), []).append((module, leaf, kind == "p", name))
    for members in groups.values():
        source = next((name for *_, name in members if name in state), None)
        if source is None:
            raise ModelNotFoundError(
                f"model={str(folder)!r}: {INT8_WEIGHTS} lacks {members[0][3]}; re-run toolformer compress"
            )
        value = state[source]
        shared = torch.nn.Parameter(value, requires_grad=False) if members[0][2] else value
        for module, leaf, is_param, _ in members:
            (module._parameters if is_param else module._buffers)[leaf] = shared


def load_int8(path: str | Path) -> Any:
    """Rebuild a model saved by `save_int8` (with its config.json) on CPU, in eval mode, bit-identical."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(path)
    file = folder / INT8_WEIGHTS
    with safe_open(str(file), "pt") as fh:
        if (fh.metadata() or {}).get("toolformer") != _INT8_TAG:
            raise ModelNotFoundError(
                f"model={str(folder)!r}: {INT8_WEIGHTS} was not written by toolformer compress"
            )
    linear = _dynamic_linear_class()
    state = load_file(str(file))
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    quantized = sorted(k[: -len(".weight.int8")] for k in state if k.endswith(".weight.int8"))
    with _quiet():
        for name in quantized:
            ints = state.pop(f"{name}.weight.int8")
            scale = state.pop(f"{name}.weight.scale")
            zero = state.pop(f"{name}.weight.zero_point")
            axis = state.pop(f"{name}.weight.axis", None)
            if axis is not None:
                weight = torch._make_per_channel_quantized_tensor(ints, scale, zero, int(axis[0]))
            else:
                weight = torch._make_per_tensor_quantized_tensor(ints, float(scale[0]), int(zero[0]))
            bias = state.pop(f"{name}.bias", None)
            layer = linear(ints.shape[1], ints.shape[0], bias_=bias is not None, dtype=torch.qint8)
            layer.set_weight_bias(weight, bias)
            parent_name, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, leaf, layer)
    # Every parameter and buffer is replaced by its saved tensor: nothing is allocated for the float weights.
    _fill(model, state, folder)
    return model.eval()


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
