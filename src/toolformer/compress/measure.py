"""Measure a model variant: weights on disk, parameters, peak memory, tokens/s and quality (ppl + math with tools).

Each model is measured in a fresh Python process (`python -m toolformer.compress.measure`), so its peak resident
memory (VmHWM) is its own and not the high-water mark of whatever ran before in the caller. The process also
reports its memory after importing torch and transformers (`base_rss_mb`); the lazy imports of loading add to
the difference, so it is not the model's memory alone. Peak memory is read after loading and generating, before
the quality evaluation (whose batched full-vocabulary logits would dominate it).

Tokens/s: greedy `generate` at batch 1 on a fixed prompt, exactly `gen_tokens` new tokens, best of two timed runs
after a warm-up, per CPU-second of the process (robust to other jobs on the machine; with one thread it is the
speed on an idle core) and per wall-clock second. Quality reuses `toolformer.evals`: perplexity on the first
`ppl_limit` texts of the ppl suite (tools disabled, as `toolformer eval --suite ppl`) and accuracy on the math
suite in mode tools with the Calculator only, `shots`-shot, the first `math_limit` questions of each dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from toolformer.errors import ToolformerError

PROMPT = "The history of the printing press begins in"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


@dataclass
class MeasureConfig:
    """What to measure and how much of it."""

    gen_tokens: int = 32
    prompt: str = PROMPT
    quality: bool = True
    ppl_limit: int = 20
    ppl_max_tokens: int = 256
    math_limit: int = 20  # per dataset; 0 = no math
    math_datasets: str | None = None
    shots: int = 4
    batch_size: int = 8

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Measurement:
    """One model's numbers; None where not measured."""

    model: str
    folder: str | None = None
    weights_bytes: int | None = None
    params: int | None = None
    nonzero_params: int | None = None
    layers: int | None = None
    dtype: str | None = None
    load_seconds: float | None = None
    base_rss_mb: float | None = None
    peak_rss_mb: float | None = None
    tokens_per_second: float | None = None  # per CPU-second of this process (see tokens_per_second)
    tokens_per_wall_second: float | None = None
    threads: int | None = None
    sample: str | None = None
    ppl: float | None = None
    ppl_unmasked: float | None = None
    ppl_tokens: int | None = None
    math_accuracy: float | None = None
    math_n: int | None = None
    math_call_rate: float | None = None
    eval_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_rss_mb(self) -> float | None:
        """Peak memory above the process's memory after its imports."""
        if self.peak_rss_mb is None or self.base_rss_mb is None:
            return None
        return self.peak_rss_mb - self.base_rss_mb

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "model_rss_mb": self.model_rss_mb}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------------------------- static numbers


def model_folder(spec: str) -> Path | None:
    """The folder whose files are the model `spec` (a GGUF source: its converted cache; hub ids: None)."""
    from toolformer.models.cache import cache_model

    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    try:
        return cache_model(spec)
    except ToolformerError:
        return None


def weights_bytes(folder: Path) -> int:
    """Bytes of the weight files in `folder` (safetensors, bin, pt, gguf), tokenizer and configs excluded."""
    return sum(
        p.stat().st_size for p in Path(folder).iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
    )


def count_parameters(model: Any) -> tuple[int, int]:
    """(parameters, non-zero parameters), counting quantised layers' weights and each tied weight once.

    A quantised output head tied to the embeddings in the float model (the int8 method quantises its own copy)
    counts once, as it did before quantisation.
    """
    total = nonzero = 0
    seen: set[int] = set()
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        data = getattr(param, "qdata", None)  # torchao tensors: count the stored integers
        try:
            nonzero += int((data if data is not None else param.detach()).count_nonzero())
        except (RuntimeError, NotImplementedError, TypeError):
            nonzero += param.numel()
    try:
        from toolformer.models.int8 import _dynamic_linear_class

        linear = _dynamic_linear_class()
    except ToolformerError:
        return total, nonzero
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for module in model.modules():
        if not isinstance(module, linear) or (tied and module is head):
            continue
        weight, bias = module.weight(), module.bias()
        total += weight.numel() + (bias.numel() if bias is not None else 0)
        nonzero += int(weight.int_repr().count_nonzero()) + (
            int(bias.count_nonzero()) if bias is not None else 0
        )
    return total, nonzero


# --------------------------------------------------------------------------------------------- dynamic numbers


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (VmHWM, VmRSS) in MiB; None without /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB.

    VmHWM, not `ru_maxrss`: Linux keeps ru_maxrss across exec, so a child started by a big parent would report
    the parent's memory at fork time (every variant measured from the bench showed the bench's 3.1 GB).
    """
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / (1024 * 1024)


def _current_rss_mb() -> float:
    """Resident memory of this process now, MiB (the peak so far where /proc is missing)."""
    now = _status_mb("VmRSS")
    return now if now is not None else _peak_rss_mb()


def tokens_per_second(model: Any, tokenizer: Any, n: int, prompt: str = PROMPT) -> tuple[float, float, str]:
    """(tokens per CPU-second, tokens per wall-clock second, text) of greedy decoding at batch 1.

    Best of two runs after a warm-up. CPU time is this process's (all its threads): on a machine shared with
    other jobs it stays near what an idle machine gives at one thread, where wall-clock time does not.
    """
    import torch

    batch = tokenizer(prompt, return_tensors="pt").to(next(model.parameters()).device)
    kwargs = dict(do_sample=False, pad_token_id=tokenizer.pad_token_id)
    best_cpu = best_wall = float("inf")
    with torch.inference_mode():
        model.generate(**batch, max_new_tokens=min(4, n), min_new_tokens=min(4, n), **kwargs)
        for _ in range(2):
            wall, cpu = time.perf_counter(), time.process_time()
            out = model.generate(**batch, max_new_tokens=n, min_new_tokens=n, **kwargs)
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
    text = tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return n / max(best_cpu, 1e-9), n / max(best_wall, 1e-9), text


def quality(model: Any, tokenizer: Any, spec: str, config: MeasureConfig) -> dict[str, Any]:
    """Perplexity (ppl suite, tools disabled) and math accuracy with the Calculator, via `toolformer.evals`."""
    from toolformer.evals import EvalConfig, evaluate
    from toolformer.tools import load_tools

    out: dict[str, Any] = {}
    started = time.perf_counter()
    pairs = {"model": (model, tokenizer)}
    ppl_config = EvalConfig(
        model=spec,
        suite="ppl",
        modes="disabled",
        limit=config.ppl_limit,
        ppl_max_tokens=config.ppl_max_tokens,
        batch_size=max(1, config.batch_size // 2),  # full-vocabulary logits: keep the batch small
    )
    ppl_run = evaluate(ppl_config, models=pairs).run("disabled")
    scores = list(ppl_run.by_dataset.values())
    out["ppl"] = scores[0].ppl
    out["ppl_unmasked"] = scores[0].ppl_unmasked
    out["ppl_tokens"] = scores[0].tokens
    if config.math_limit:
        math_config = EvalConfig(
            model=spec,
            suite="math",
            modes="tools",
            datasets=config.math_datasets,
            limit=config.math_limit,
            shots=config.shots,
            tools="Calculator",
            batch_size=config.batch_size,
        )
        run = evaluate(math_config, models=pairs, tools=load_tools("Calculator")).run("tools")
        n = sum(s.n for s in run.by_dataset.values())
        out["math_n"] = n
        out["math_accuracy"] = sum(s.correct for s in run.by_dataset.values()) / n if n else None
        out["math_call_rate"] = sum(s.with_call for s in run.by_dataset.values()) / n if n else None
        out["extra"] = {
            "math_by_dataset": {k: {"n": s.n, "accuracy": s.accuracy} for k, s in run.by_dataset.items()}
        }
    out["eval_seconds"] = time.perf_counter() - started
    return out


def measure_here(spec: str, config: MeasureConfig) -> Measurement:
    """Measure `spec` in this process (the body of the measuring subprocess; peak memory is this process's)."""
    import torch
    import transformers  # noqa: F401 - imported before the baseline so its memory is not the model's

    from toolformer.models.load import load_model

    result = Measurement(model=spec, threads=torch.get_num_threads())
    result.base_rss_mb = _current_rss_mb()
    started = time.perf_counter()
    model, tokenizer = load_model(spec, device="cpu")
    result.load_seconds = time.perf_counter() - started
    folder = model_folder(spec)
    if folder is not None:
        result.folder = str(folder)
        result.weights_bytes = weights_bytes(folder)
    result.params, result.nonzero_params = count_parameters(model)
    result.layers = getattr(model.config, "num_hidden_layers", None)
    result.dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    result.tokens_per_second, result.tokens_per_wall_second, result.sample = tokens_per_second(
        model, tokenizer, config.gen_tokens, config.prompt
    )
    result.peak_rss_mb = _peak_rss_mb()
    if config.quality:
        for key, value in quality(model, tokenizer, spec, config).items():
            setattr(result, key, value)
    return result


def measure(spec: str, config: MeasureConfig, timeout: float = 3600.0) -> Measurement:
    """Measure `spec` in a fresh Python process; ToolformerError with the child's last error line on failure."""
    import tempfile

    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="toolformer-measure-") as tmp:
        out = Path(tmp) / "measurement.json"
        cmd = [sys.executable, "-m", "toolformer.compress.measure", str(spec), "--out", str(out)]
        cmd += ["--config", json.dumps(config.to_dict())]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ToolformerError(f"measuring model={spec!r} took longer than {timeout:.0f} s") from exc
        if proc.returncode != 0 or not out.is_file():
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            raise ToolformerError(
                f"measuring model={spec!r} failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}"
            )
        return Measurement.from_dict(json.loads(out.read_text(encoding="utf-8")))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure one model (used by toolformer compress).")
    parser.add_argument("model")
    parser.add_argument("--out", required=True, help="JSON file for the measurement.")
    parser.add_argument("--config", default="{}", help="MeasureConfig as JSON.")
    args = parser.parse_args(argv)
    config = MeasureConfig(**json.loads(args.config))
    result = measure_here(args.model, config)
    Path(args.out).write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
