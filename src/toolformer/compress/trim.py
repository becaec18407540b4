"""Layer trimming: keep N of a decoder's layers (renumbered for the KV cache), optionally healed by a fine-tune.

Which layers (`choice`):
- `importance` (default): drop the layers that change their input the least, by ShortGPT's Block Influence
  (Men et al. 2024): 1 - mean cosine(layer input, layer output) over the tokens of a few calibration texts.
- `spread`: evenly spaced layers, first and last included.
- `first`: the first N (an early exit).
On the embedded SmolLM2-135M (30 layers; wiki_ppl, 10 texts × 256 tokens, base perplexity 25.9) keeping 24
layers gave perplexity 52 by importance, 208 spread, 2.7e7 first, and 8.6e9 keeping the first 23 and the last
(the "drop the deep block before the last layer" rule of Gromov et al. 2024); keeping 20: 122 by importance,
5.0e4 spread. Single-layer ablations showed why fixed rules fail on this model: layers 0, 1, 11, 28 and 29 are
each indispensable, layers 12-18 nearly free.

Calibration texts are the shipped Wikipedia lead sections (`toolformer/data/vital_en.jsonl.gz`), skipping the
articles of the ppl suite so that the perplexity measured afterwards is not the selection's own data.
Healing is a short plain-LM fine-tune through `toolformer.train` on a text file the caller gives.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from toolformer.errors import ConfigError, DataError
from toolformer.inputs import read_text


def decoder_layers(model: Any) -> Any:
    """The decoder's nn.ModuleList of layers (`model.model.layers` for Llama, Gemma, Qwen, …)."""
    import torch

    expected = getattr(model.config, "num_hidden_layers", None)
    candidates = []
    base = getattr(model, "model", None)
    if base is not None and isinstance(getattr(base, "layers", None), torch.nn.ModuleList):
        candidates.append(base.layers)
    for _, module in model.named_modules():
        layers = getattr(module, "layers", None)
        if isinstance(layers, torch.nn.ModuleList) and layers not in candidates:
            candidates.append(layers)
    for layers in candidates:
        if expected is None or len(layers) == expected:
            return layers
    raise ConfigError(
        f"model type {getattr(model.config, 'model_type', '?')!r}: no decoder layer list with "
        f"num_hidden_layers={expected} found"
    )


def calibration_texts(n: int = 16, min_chars: int = 400) -> list[str]:
    """`n` Wikipedia lead sections from the shipped corpus, spread over it, none from the ppl suite's articles."""
    import gzip
    from importlib import resources

    data = resources.files("toolformer").joinpath("data")
    with data.joinpath("evals", "wiki_ppl.jsonl").open(encoding="utf-8") as fh:
        held_out = {json.loads(line).get("title") for line in fh if line.strip()}
    pool: list[str] = []
    with data.joinpath("vital_en.jsonl.gz").open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row.get("title") not in held_out and len(row.get("text", "")) >= min_chars:
                pool.append(row["text"])
    step = max(1, len(pool) // n)
    return pool[::step][:n]


def block_influence(model: Any, tokenizer: Any, texts: list[str], max_tokens: int = 256) -> list[float]:
    """Per layer, 1 - mean cosine similarity of its input and output hidden states over the tokens of `texts`."""
    import torch

    layers = decoder_layers(model)
    sums = [0.0] * len(layers)
    count = 0

    def hook(index: int) -> Any:
        def record(_module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            h_in = args[0] if args else kwargs["hidden_states"]
            h_out = output[0] if isinstance(output, tuple) else output
            cos = torch.nn.functional.cosine_similarity(h_in.float(), h_out.float(), dim=-1)
            sums[index] += float(cos.sum())

        return record

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    device = next(model.parameters()).device
    try:
        with torch.inference_mode():
            for text in texts:  # one at a time: no padding tokens in the average
                ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids[:, :max_tokens]
                if ids.shape[1] == 0:
                    continue
                model(input_ids=ids.to(device), use_cache=False)
                count += ids.shape[1]
    finally:
        for handle in handles:
            handle.remove()
    if not count:
        raise DataError("block influence: the calibration texts hold no tokens")
    return [1.0 - s / count for s in sums]


def select_layers(
    total: int, keep: int, choice: str = "importance", scores: list[float] | None = None
) -> list[int]:
    """The indices of the `keep` layers to keep out of `total`, by rule `choice` (see the module docstring).

    `importance` needs `scores` (one per layer, higher = more important, e.g. `block_influence`).
    """
    if not 1 <= keep <= total:
        raise ConfigError(f"keep_layers={keep} must be between 1 and {total} (the model has {total} layers)")
    if choice == "first" or keep == total:
        return list(range(keep))
    if choice == "spread":
        if keep == 1:
            return [total - 1]
        # Evenly spaced, rounded; the rounding cannot collide because the step (total-1)/(keep-1) is >= 1.
        return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})
    if choice == "importance":
        if scores is None or len(scores) != total:
            raise ConfigError(
                f"layer_choice='importance' needs one score per layer ({total}), got {scores!r}"
            )
        ranked = sorted(range(total), key=lambda i: (-scores[i], i))
        return sorted(ranked[:keep])
    raise ConfigError(f"layer_choice={choice!r} is not one of importance, spread, first")


def trim_layers(model: Any, keep: list[int]) -> Any:
    """Keep only the layers `keep` (0-based, in order), in place; the config and KV-cache indices follow."""
    import torch

    layers = decoder_layers(model)
    total = len(layers)
    bad = [i for i in keep if not 0 <= i < total]
    if bad or not keep:
        raise ConfigError(f"layers={keep} must name layers between 0 and {total - 1} (the model has {total})")
    kept = torch.nn.ModuleList([layers[i] for i in keep])
    for new_index, layer in enumerate(kept):
        # Attention modules look up their KV-cache slot by layer_idx: it must follow the new numbering.
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    parent = next(m for m in model.modules() if getattr(m, "layers", None) is layers)
    parent.layers = kept
    config = model.config
    config.num_hidden_layers = len(keep)
    # Models with per-layer attention kinds (Gemma 3's sliding/full) keep each kept layer's kind.
    if isinstance(getattr(config, "layer_types", None), list) and len(config.layer_types) == total:
        config.layer_types = [config.layer_types[i] for i in keep]
    return model


def _paragraphs(path: Path) -> list[str]:
    paragraphs = [p.strip() for p in read_text(path).split("\n\n") if p.strip()]
    if not paragraphs:
        raise DataError(f"heal_data {str(path)!r} holds no text")
    return paragraphs


def check_heal_data(data: str | Path) -> None:
    """Read `data` as `heal` will (DataError naming the file, line and field), so bad data fails before a model loads."""
    path = Path(data).expanduser()
    if not path.exists():
        raise DataError(f"heal_data {str(data)!r}: no such file or directory")
    if path.is_file() and path.suffix.lower() == ".txt":
        _paragraphs(path)
        return
    from toolformer.train.data import read_corpus

    read_corpus(path)


def _jsonl_for(path: Path, work: Path) -> Path:
    """A .txt file becomes a JSONL of its blank-line-separated paragraphs; other data is used as given."""
    if path.is_file() and path.suffix.lower() == ".txt":
        paragraphs = _paragraphs(path)
        target = work / "heal.jsonl"
        with target.open("w", encoding="utf-8") as fh:
            for i, text in enumerate(paragraphs):
                fh.write(json.dumps({"id": f"p{i}", "text": text}, ensure_ascii=False) + "\n")
        return target
    return path


def heal(
    model: Any,
    tokenizer: Any,
    data: str | Path,
    steps: int = 50,
    lr: float = 5e-5,
    batch_size: int = 4,
    max_length: int = 256,
    seed: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """Fine-tune `model` for `steps` steps on `data` with the plain LM loss; returns (healed model, train report).

    The train run goes to a temporary folder; the best checkpoint by dev perplexity (when the data has a dev
    split) is what comes back, read from that folder.
    """
    from toolformer.models.load import load_model
    from toolformer.train import TrainConfig, train

    path = Path(data).expanduser()
    if not path.exists():
        raise DataError(f"heal_data {str(data)!r}: no such file or directory")
    with tempfile.TemporaryDirectory(prefix="toolformer-heal-") as work:
        config = TrainConfig(
            data=str(_jsonl_for(path, Path(work))),
            out=str(Path(work) / "model"),
            model="(trimmed model)",
            max_steps=steps,
            learning_rate=lr,
            batch_size=batch_size,
            grad_accum=1,
            max_length=max_length,
            mix_ratio=None,  # every text as given: heal data has no calls to balance
            eval_steps=steps,
            save_steps=steps,
            max_dev_texts=16,
            tensorboard=False,
            seed=seed,
            device="cpu" if next(model.parameters()).device.type == "cpu" else "auto",
        )
        report = train(config, model, tokenizer)
        healed, _ = load_model(config.out, device=str(next(model.parameters()).device), dtype="float32")
    summary = {
        "data": str(data),
        "steps": report.steps,
        "learning_rate": lr,
        "train_texts": report.train_texts,
        "dev_texts": report.dev_texts,
        "loss_first": report.losses[0]["loss"] if report.losses else None,
        "loss_last": report.losses[-1]["loss"] if report.losses else None,
        "dev_ppl": [d["ppl"] for d in report.dev_curve],
        "seconds": report.seconds,
    }
    return healed, summary
