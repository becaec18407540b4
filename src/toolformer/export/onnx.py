"""Export a causal LM to ONNX as a decoder with a KV cache (`torch.onnx`, dynamo exporter) and check it in onnxruntime.

optimum's exporter (optimum-onnx) pins transformers < 4.58, so the graph is traced here: a wrapper takes
`input_ids`, `attention_mask`, `position_ids` and `past.{i}.key/value` for every layer, and returns `logits` and
`present.{i}.key/value`. The batch, the new tokens and the past length are dynamic; a past of length 0 is the
prefill. The folder also gets the tokenizer, the model config and `toolformer-onnx.json` naming the inputs and
outputs, so a runtime needs nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolformer.errors import ConfigError, require

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
SPEC_FILE = "toolformer-onnx.json"
_EXTERNAL_DATA_BYTES = 1_500_000_000  # protobuf's 2 GiB limit: larger weights go to a side file


@dataclass
class OnnxSpec:
    """The names and cache shape of an exported decoder."""

    layers: int
    kv_heads: int
    head_dim: int
    inputs: list[str]
    outputs: list[str]

    def past_names(self) -> list[str]:
        return [f"past.{i}.{kv}" for i in range(self.layers) for kv in ("key", "value")]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _spec(config: Any) -> OnnxSpec:
    layers = config.num_hidden_layers
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    past = [f"past.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    return OnnxSpec(
        layers,
        kv_heads,
        head_dim,
        ["input_ids", "attention_mask", "position_ids", *past],
        ["logits", *present],
    )


def _wrapper(model: Any, layers: int) -> Any:
    import torch
    from transformers import DynamicCache

    class DecoderWithPast(torch.nn.Module):
        """The model with its cache as flat tensors, which is what an ONNX graph can take and return."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any, past: list[Any]) -> tuple:
            cache = DynamicCache(config=self.model.config)
            for i in range(layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
            )
            present = []
            for layer in out.past_key_values.layers:
                present += [layer.keys, layer.values]
            return (out.logits, *present)

    return DecoderWithPast().eval()


def export_onnx(model: Any, tokenizer: Any, out: str | Path, opset: int | None = None) -> Path:
    """Write `model` as OUT/model.onnx (decoder with KV cache) plus tokenizer, config and the IO spec."""
    require("onnxscript", "onnx")
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    spec = _spec(model.config)
    wrapper = _wrapper(model, spec.layers)
    batch, past_len = 2, 3
    vocab = int(model.config.vocab_size)
    ids = torch.randint(0, vocab, (batch, 2))
    mask = torch.ones((batch, past_len + 2), dtype=torch.long)
    pos = torch.arange(past_len, past_len + 2).expand(batch, 2)
    past = [torch.zeros(batch, spec.kv_heads, past_len, spec.head_dim) for _ in range(2 * spec.layers)]
    b, s, p, t = (torch.export.Dim(n) for n in ("batch", "sequence", "past", "total"))
    shapes = {
        "input_ids": {0: b, 1: s},
        "attention_mask": {0: b, 1: t},
        "position_ids": {0: b, 1: s},
        "past": [{0: b, 2: p} for _ in range(2 * spec.layers)],
    }
    big = sum(q.numel() * q.element_size() for q in model.parameters()) > _EXTERNAL_DATA_BYTES
    kwargs: dict[str, Any] = {} if opset is None else {"opset_version": opset}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (ids, mask, pos, past),
            str(out / MODEL_FILE),
            dynamo=True,
            input_names=spec.inputs,
            output_names=spec.outputs,
            dynamic_shapes=shapes,
            external_data=big,
            verbose=False,
            **kwargs,
        )
    tokenizer.save_pretrained(str(out))
    model.config.save_pretrained(str(out))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(str(out))
    (out / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2) + "\n", encoding="utf-8")
    return out / MODEL_FILE


class OnnxDecoder:
    """An exported decoder in onnxruntime: `prefill(ids)` then `step(ids)`, each returning the new logits."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        require("onnxruntime", "onnx")
        import onnxruntime as ort

        path = Path(path)
        folder = path if path.is_dir() else path.parent
        model_file = folder / MODEL_FILE if path.is_dir() else path
        if not (folder / SPEC_FILE).is_file():
            raise ConfigError(f"{folder} has no {SPEC_FILE}: not an ONNX export of toolformer")
        self.spec = OnnxSpec(**json.loads((folder / SPEC_FILE).read_text(encoding="utf-8")))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.past: list[Any] = []
        self.length = 0

    def run(self, ids: list[int]) -> Any:
        """Feed `ids` after what the cache holds; returns logits of shape (len(ids), vocab)."""
        import numpy as np

        if not self.past:
            self.past = [np.zeros((1, self.spec.kv_heads, 0, self.spec.head_dim), np.float32)] * (
                2 * self.spec.layers
            )
        n = len(ids)
        feeds = {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "attention_mask": np.ones((1, self.length + n), dtype=np.int64),
            "position_ids": np.arange(self.length, self.length + n, dtype=np.int64)[None],
            **dict(zip(self.spec.past_names(), self.past)),
        }
        logits, *self.past = self.session.run(None, feeds)
        self.length += n
        return logits[0]

    def reset(self) -> None:
        self.past, self.length = [], 0
