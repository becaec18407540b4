"""The dynamic-int8 model folder format: write and read `model.int8.safetensors` (torch.ao int8 layers).

Quantised torch.ao modules cannot be saved as plain safetensors, and pickling them (`torch.save`) would make
loading run arbitrary code, so an int8 folder (`toolformer compress --method int8`, see
`toolformer.compress.quantize`) holds `model.int8.safetensors`: each quantised layer's int8 weights,
per-channel scales, zero points and bias as plain tensors, plus every other parameter and buffer as is.
`load_int8` rebuilds the model skeleton on the meta device, puts quantised layers built from those exact int8
values in place and fills the rest, so a reload is bit-identical and never materialises the float weights.
`toolformer.models.load_model` recognises the file.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolformer.errors import MissingExtraError, ModelNotFoundError

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


def _dynamic_linear_class() -> Any:
    try:
        with _quiet():
            from torch.ao.nn.quantized.dynamic import Linear
    except ImportError as exc:  # removed in a future torch: the message says what to do
        raise MissingExtraError(
            "method='int8' needs torch.ao.nn.quantized.dynamic, which this torch build lacks; use int8-wo"
        ) from exc
    return Linear


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
