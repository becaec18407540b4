"""`export(model, format, out)`: write a model for the runtimes people deploy on (merged HF safetensors, GGUF for
llama.cpp, ONNX for onnxruntime) and check the export against the source model in its own runtime.

The check feeds a fixed text with a tool call to the source model and to the export, position by position, and
reports the largest logit difference and how often both pick the same next token. Each format's module is imported
only when used, so this package costs nothing to import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolformer.errors import ConfigError

FORMATS = ("hf", "gguf", "onnx")
CHECK_TEXT = "Question: What is 23 times 47?\nAnswer: 23 times 47 is [Calculator(23 * 47) → 1081] 1081."


@dataclass
class Parity:
    """How an export's logits compare with the source model's on CHECK_TEXT (teacher-forced, every position)."""

    runtime: str
    positions: int
    max_abs_diff: float
    top1_agreement: float
    tokens_match: bool | None = None  # the export's own tokenizer splits CHECK_TEXT into the same ids (GGUF)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExportResult:
    """What `export` wrote and how it compares with the source."""

    format: str
    path: Path
    bytes: int
    parity: Parity | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        out["parity"] = self.parity.to_dict() if self.parity else None
        return out


def _size(path: Path) -> int:
    return (
        path.stat().st_size
        if path.is_file()
        else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    )


def reference_logits(model: Any, ids: list[int]) -> Any:
    """float32 numpy logits of `model` at every position of `ids` (one forward pass)."""
    import torch

    with torch.inference_mode():
        out = model(input_ids=torch.tensor([ids], device=next(model.parameters()).device), use_cache=False)
    return out.logits[0].float().cpu().numpy()


def compare(reference: Any, other: Any, runtime: str, tokens_match: bool | None = None) -> Parity:
    """Parity of two (positions, vocab) logit arrays."""
    import numpy as np

    if reference.shape != other.shape:
        raise ConfigError(f"{runtime} logits have shape {other.shape}, the source's {reference.shape}")
    diff = float(np.abs(reference - other).max())
    agree = float((reference.argmax(-1) == other.argmax(-1)).mean())
    return Parity(runtime, int(reference.shape[0]), diff, agree, tokens_match)


def check_gguf(model: Any, tokenizer: Any, path: Path, threads: int | None = None) -> Parity:
    """Load GGUF `path` in llama.cpp (float32 KV cache) and compare with `model` on CHECK_TEXT."""
    from toolformer.runtime.llamacpp import LlamaCppModel

    ids = tokenizer.encode(CHECK_TEXT, add_special_tokens=False)
    lm = LlamaCppModel(path, n_ctx=max(256, 2 * len(ids)), n_threads=threads, f32_kv=True)
    try:
        own = lm.tokenizer.encode(CHECK_TEXT)
        logits = lm.all_logits(ids)
    finally:
        lm.close()
    return compare(reference_logits(model, ids), logits, "llama.cpp", own == ids)


def check_onnx(model: Any, tokenizer: Any, path: Path, threads: int | None = None) -> Parity:
    """Run the ONNX export in onnxruntime (prefill, then one token per step on its KV cache) and compare."""
    import numpy as np

    from toolformer.export.onnx import OnnxDecoder

    ids = tokenizer.encode(CHECK_TEXT, add_special_tokens=False)
    decoder = OnnxDecoder(path, threads=threads)
    half = len(ids) // 2
    rows = [decoder.run(ids[:half])] + [decoder.run([t]) for t in ids[half:]]
    return compare(reference_logits(model, ids), np.concatenate(rows), "onnxruntime")


def check_hf(model: Any, tokenizer: Any, path: Path) -> Parity:
    """Reload the HF folder with transformers and compare."""
    from transformers import AutoModelForCausalLM

    ids = tokenizer.encode(CHECK_TEXT, add_special_tokens=False)
    again = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).float().eval()
    return compare(reference_logits(model.float(), ids), reference_logits(again, ids), "transformers")


def gguf_path(out: str | Path, quant: str) -> Path:
    """OUT itself when it names a .gguf file, else OUT/model-QUANT.gguf."""
    out = Path(out)
    return out if out.suffix.lower() == ".gguf" else out / f"model-{quant}.gguf"


def export(
    model: str | tuple[Any, Any],
    format: str,
    out: str | Path,
    quant: str = "f16",
    dtype: str | None = None,
    verify: bool = True,
    threads: int | None = None,
) -> ExportResult:
    """Export `model` (a spec `load_model` accepts, an adapter folder, or a `(model, tokenizer)` pair) to OUT.

    format 'hf': a merged safetensors folder (`dtype` float16/bfloat16 to shrink it). 'gguf': one GGUF file of
    type `quant` (f32, f16, bf16, q8_0, or a llama.cpp type such as q4_k_m); OUT is the file or a folder.
    'onnx': a folder with model.onnx (decoder with KV cache). With `verify`, the export is loaded in its runtime
    and compared with the source (`ExportResult.parity`).
    """
    fmt = str(format).strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"format={format!r} is not one of {', '.join(FORMATS)}")
    name = ""
    if isinstance(model, tuple):
        lm, tok = model
    else:
        from toolformer.export.hf import load_merged

        name = str(model)
        lm, tok = load_merged(model, dtype=dtype if fmt == "hf" else None)
    if hasattr(lm, "merge_and_unload"):
        lm = lm.merge_and_unload()
    lm.eval()
    if fmt == "hf":
        from toolformer.export.hf import export_hf

        path = export_hf(lm, tok, out)
        parity = check_hf(lm, tok, path) if verify else None
        return ExportResult(fmt, path, _size(path), parity, {"dtype": str(lm.dtype).removeprefix("torch.")})
    if fmt == "gguf":
        from toolformer.export.gguf import export_gguf, normalize_quant

        quant = normalize_quant(quant)
        info = export_gguf(
            lm, tok, gguf_path(out, quant), quant=quant, name=Path(name).name, threads=threads or 0
        )
        parity = check_gguf(lm, tok, info.path, threads) if verify else None
        return ExportResult(
            fmt, info.path, info.bytes, parity, {"quant": info.quant, "pre_tokenizer": info.pre_tokenizer}
        )
    from toolformer.export.onnx import export_onnx

    path = export_onnx(lm, tok, out)
    parity = check_onnx(lm, tok, path, threads) if verify else None
    return ExportResult(fmt, path.parent, _size(path.parent), parity, {"file": path.name})
