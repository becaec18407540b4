"""Run an evaluation: every dataset of a suite through `generate` in batches, in each mode, scored and counted.

Modes (all greedy, all on the same prompt):
- tools: MODEL with its tools, a call started whenever '[' is in the top `trigger_top_k` tokens (paper: 10), at
  most `max_calls` calls (paper: 1); the suite's blocked tools are removed (WikiSearch on facts, QA on qa).
- disabled: MODEL with p('[') = 0 (`DecodeConfig(disabled=True)`), the paper's "Toolformer (disabled)".
- baseline: the --baseline model without tools (p('[') = 0), like the paper's GPT-J/OPT/GPT-3 rows, which never
  call tools; with `baseline_tools` it runs exactly like mode tools instead.
- k=K (with --sweep-k): mode tools at trigger top-k K (paper Table 9); the run at K = trigger_top_k is reused.
The ppl suite has no answers: disabled and baseline give perplexity (always with p('[') = 0, also for a baseline
run with tools), tools is not computed (intractable); `EvalResults.perplexity()` compares the two (paper Table 8).
No-tool datasets (suite notool) score an answer correct when it has no call: accuracy is the "no call" rate.
Before any model runs, the tool ceiling of each dataset is computed from the tools alone (`evals.ceiling`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from toolformer.calls import find_calls
from toolformer.errors import DataError
from toolformer.evals import suites
from toolformer.evals.ceiling import Ceiling, ceiling_tool, compute_ceiling
from toolformer.evals.config import EvalConfig
from toolformer.evals.metrics import visible_answer
from toolformer.tools import ToolRegistry, load_tools

Progress = Callable[[str, int], None]  # (description, examples just finished)


@dataclass
class Prediction:
    """One example in one mode: everything needed to check the score by hand."""

    dataset: str
    mode: str
    id: str
    prompt: str
    text: str  # generated text, calls included
    answer: str  # what the metric reads: calls removed
    extracted: str | None
    gold: list[Any]
    correct: bool | None  # None for ppl rows, which have no answer
    calls: list[dict[str, Any]]
    finish_reason: str
    new_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DatasetScore:
    """One dataset in one mode: accuracy (or perplexity) and how often each tool was called."""

    n: int = 0
    correct: int = 0
    with_call: int = 0  # examples with at least one call
    per_tool: dict[str, int] = field(default_factory=dict)  # tool -> examples calling it
    call_errors: int = 0  # calls whose tool returned an error
    new_tokens: int = 0
    ppl: float | None = None
    ppl_unmasked: float | None = None
    tokens: int = 0  # ppl: tokens scored

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n and self.ppl is None else None

    @property
    def call_rate(self) -> float | None:
        return self.with_call / self.n if self.n and self.ppl is None else None

    def tool_rate(self, tool: str) -> float | None:
        """Share of examples calling `tool` (None for ppl rows)."""
        return self.per_tool.get(tool, 0) / self.n if self.n and self.ppl is None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "accuracy": self.accuracy,
            "call_rate": self.call_rate,
            "per_tool_rate": {t: self.tool_rate(t) for t in self.per_tool},
        }


@dataclass
class Run:
    """One mode (or sweep point): how it decoded and its score on every dataset."""

    mode: str
    model: str
    trigger_top_k: int
    disabled: bool
    uses_tools: bool
    by_dataset: dict[str, DatasetScore] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "by_dataset"}
        out["by_dataset"] = {name: s.to_dict() for name, s in self.by_dataset.items()}
        return out


@dataclass
class DatasetInfo:
    """A dataset as evaluated: where from, its kind, how many examples, what was skipped and which tools ran."""

    name: str
    suite: str
    kind: str
    path: str
    n: int
    skipped: int
    skip_reasons: dict[str, int]
    tools: list[str]
    description: str = ""
    shots: int = 0  # few-shot examples in its prompts (suite all gives a kind at most its pool)


@dataclass
class EvalResults:
    """Everything an evaluation produced: config, datasets, runs (modes, then sweep points) and predictions."""

    config: EvalConfig
    datasets: list[DatasetInfo]
    runs: list[Run]
    predictions: list[Prediction]
    seconds: float = 0.0
    ceilings: dict[str, Ceiling] = field(default_factory=dict)  # dataset -> tool ceiling (when computed)

    def run(self, mode: str) -> Run:
        return next(r for r in self.runs if r.mode == mode)

    def modes(self) -> list[str]:
        """The main modes, in order (sweep points excluded)."""
        return [r.mode for r in self.runs if not r.mode.startswith("k=")]

    def sweep(self) -> list[Run]:
        """The sweep points, ordered by k (the reused tools run appears as its k)."""
        values = self.config.sweep_values()
        out = []
        for k in values:
            name = f"k={k}"
            found = [r for r in self.runs if r.mode == name]
            if not found and "tools" in self.modes() and self.run("tools").trigger_top_k == k:
                found = [self.run("tools")]
            out.extend(found)
        return out

    def tool_runs(self) -> list[Run]:
        """The main modes that could call tools (tools; baseline with --baseline-tools)."""
        return [self.run(m) for m in self.modes() if self.run(m).uses_tools]

    def ceiling(self) -> dict[str, dict[str, Any]]:
        """Per dataset: the tool ceiling, mode tools' accuracy and the share of the ceiling it realises."""
        out: dict[str, dict[str, Any]] = {}
        tools = self.run("tools") if "tools" in self.modes() else None
        for name, ceiling in self.ceilings.items():
            score = tools.by_dataset.get(name) if tools is not None else None
            accuracy = score.accuracy if score is not None else None
            out[name] = {
                **ceiling.to_dict(),
                "tools_accuracy": accuracy,
                "realised": ceiling.realised(accuracy),
            }
        return out

    def tool_choice(self) -> dict[str, dict[str, dict[str, float | None]]]:
        """Per dataset and tool-using mode: share of examples with any call and calling each tool (Table 10)."""
        out: dict[str, dict[str, dict[str, float | None]]] = {}
        for info in self.datasets:
            for run in self.tool_runs():
                score = run.by_dataset.get(info.name)
                if score is None or score.ppl is not None:
                    continue
                names = [*info.tools, *(t for t in score.per_tool if t not in info.tools)]
                rates = {"any": score.call_rate, **{t: score.tool_rate(t) for t in names}}
                out.setdefault(info.name, {})[run.mode] = rates
        return out

    def perplexity(self) -> dict[str, dict[str, Any]]:
        """Per ppl dataset: MODEL's perplexity with tools disabled, the baseline's, and the relative difference
        (model / baseline - 1; the paper's Table 8 asks that tools cost no language modelling)."""
        out: dict[str, dict[str, Any]] = {}
        modes = self.modes()
        for info in self.datasets:
            if info.kind != "ppl":
                continue
            model = self.run("disabled").by_dataset.get(info.name) if "disabled" in modes else None
            base = self.run("baseline").by_dataset.get(info.name) if "baseline" in modes else None
            ppl_model = model.ppl if model is not None else None
            ppl_base = base.ppl if base is not None else None
            out[info.name] = {
                "model": self.config.model,
                "model_ppl": ppl_model,
                "model_ppl_unmasked": model.ppl_unmasked if model is not None else None,
                "baseline": self.config.baseline,
                "baseline_ppl": ppl_base,
                "baseline_ppl_unmasked": base.ppl_unmasked if base is not None else None,
                "relative_difference": (ppl_model / ppl_base - 1) if ppl_model and ppl_base else None,
            }
        return out

    def notices(self) -> list[str]:
        """Warnings a reader needs: a tool-using mode that made no call (so it equals the no-tool columns)."""
        out: list[str] = []
        task = [d.name for d in self.datasets if d.kind not in ("ppl", *suites.NO_TOOL_KINDS)]
        for run in self.tool_runs():
            scored = [n for n in task if n in run.by_dataset]
            silent = [n for n in scored if not self._any_call(run.mode, n)]
            if not silent:
                continue
            if len(silent) == len(scored):
                where = "on any example"
                same = (
                    "its column and disabled's are identical because no call was made"
                    if run.mode == "tools" and "disabled" in self.modes()
                    else "its answers are the model's own, as without tools"
                )
            else:
                where = f"on {', '.join(silent)}"
                same = "there its answers are the model's own, as without tools"
            out.append(f"Mode {run.mode} made no tool call {where}: {same}. {self._shots_hint()}")
        return out

    def _any_call(self, mode: str, dataset: str) -> bool:
        score = self.run(mode).by_dataset[dataset]
        if score.with_call:
            return True
        return any(p.mode == mode and p.dataset == dataset and find_calls(p.text) for p in self.predictions)

    def _shots_hint(self) -> str:
        if self.config.shots == 0:
            return (
                "An untrained model writes calls only after examples: rerun with --shots (e.g. --shots 3); "
                "zero-shot calls need a model trained to call tools."
            )
        kinds = dict.fromkeys(d.kind for d in self.datasets if suites.max_shots(d.kind))
        pools = ", ".join(f"{k} {suites.max_shots(k)}" for k in kinds)
        return (
            f"Even with --shots {self.config.shots}: try more --shots (pools hold {pools}), a larger "
            "--trigger-top-k, or a trained model."
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResults:
        """Results read back from `to_dict` (results.json), without predictions or ceiling examples: enough to
        render report.md and plot.png again."""
        names = {f.name for f in fields(EvalConfig)}
        config = EvalConfig(**{k: v for k, v in data["config"].items() if k in names})
        score_names = {f.name for f in fields(DatasetScore)}
        runs = [
            Run(
                **{k: v for k, v in r.items() if k != "by_dataset"},
                by_dataset={
                    n: DatasetScore(**{k: v for k, v in s.items() if k in score_names})
                    for n, s in r["by_dataset"].items()
                },
            )
            for r in data["runs"]
        ]
        return cls(config, [DatasetInfo(**d) for d in data["datasets"]], runs, [], data.get("seconds", 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "datasets": [asdict(d) for d in self.datasets],
            "runs": [r.to_dict() for r in self.runs],
            "sweep": [
                {"k": r.trigger_top_k, "mode": r.mode, "by_dataset": r.to_dict()["by_dataset"]}
                for r in self.sweep()
            ],
            "seconds": self.seconds,
            "ceiling": self.ceiling(),
            "tool_choice": self.tool_choice(),
            "perplexity": self.perplexity(),
            "notices": self.notices(),
        }


@dataclass(frozen=True)
class _Plan:
    mode: str
    role: str  # "model" or "baseline"
    trigger_top_k: int
    disabled: bool


def plan_runs(config: EvalConfig) -> list[_Plan]:
    """The runs `config` asks for, in report order."""
    plans: list[_Plan] = []
    for mode in config.mode_list():
        if mode == "tools":
            plans.append(_Plan("tools", "model", config.trigger_top_k, False))
        elif mode == "disabled":
            plans.append(_Plan("disabled", "model", 0, True))
        elif mode == "baseline":
            k = config.trigger_top_k if config.baseline_tools else 0
            plans.append(_Plan("baseline", "baseline", k, not config.baseline_tools))
    for k in config.sweep_values():
        if "tools" in config.mode_list() and k == config.trigger_top_k:
            continue  # the tools run is this sweep point
        plans.append(_Plan(f"k={k}", "model", k, False))
    return plans


def load_datasets(config: EvalConfig) -> list[suites.LoadedDataset]:
    """The datasets `config` names, read and checked (before any model is loaded, so bad data fails fast)."""
    if config.data:
        specs = [suites.data_spec(config.suite, config.data)]
    else:
        specs = suites.suite_specs(config.suite, config.datasets)
    loaded = [suites.load_dataset(spec, config.limit) for spec in specs]
    for ds in loaded:
        if ds.spec.kind != "ppl":  # checks shots against the pool
            suites.build_prompt(ds.examples[0], ds.spec.kind, _shots(config, ds.spec))
    if config.corpus and not Path(config.corpus).expanduser().exists():
        raise DataError(f"corpus={config.corpus!r}: no such file or folder")
    return loaded


def _shots(config: EvalConfig, spec: suites.DatasetSpec) -> int:
    return suites.shots_for(spec.kind, config.shots, config.suite)


def load_registry(config: EvalConfig) -> ToolRegistry:
    """The tools of mode tools: `config.tools` (default the built-ins), WikiSearch and QA over `config.corpus`."""
    if config.corpus:
        return load_tools(config.tools, corpus=Path(config.corpus).expanduser())
    return load_tools(config.tools)


def evaluate(
    config: EvalConfig,
    models: dict[str, tuple[Any, Any]] | None = None,
    tools: ToolRegistry | None = None,
    progress: Progress | None = None,
    datasets: Sequence[suites.LoadedDataset] | None = None,
) -> EvalResults:
    """Evaluate `config.model` (and `config.baseline`) on `config.suite` in every mode.

    `models` maps "model" / "baseline" to preloaded `(model, tokenizer)` pairs (loaded with `load_model`
    otherwise; a baseline naming the same model reuses it). `tools` replaces `load_tools(config.tools)`.
    `progress(description, n)` is called as examples finish.
    """
    started = time.perf_counter()
    loaded = list(datasets) if datasets is not None else load_datasets(config)
    plans = plan_runs(config)
    registry = tools if tools is not None else load_registry(config)
    ceilings: dict[str, Ceiling] = {}
    if config.ceiling_on():  # tools only: before any model is loaded
        for ds in loaded:
            ceilings[ds.spec.name] = compute_ceiling(
                ds, _dataset_tools(registry, ds.spec), _reporter(progress, f"ceiling · {ds.spec.name}")
            )
    models = dict(models or {})
    if "model" not in models:
        models["model"] = _load(config.model, config.device)
    if any(p.role == "baseline" for p in plans) and "baseline" not in models:
        assert config.baseline is not None
        models["baseline"] = (
            models["model"] if config.baseline == config.model else _load(config.baseline, config.device)
        )
    infos = [
        DatasetInfo(
            ds.spec.name,
            ds.spec.suite,
            ds.spec.kind,
            str(ds.spec.location()),
            len(ds.examples),
            ds.skipped,
            dict(ds.skip_reasons),
            _dataset_tools(registry, ds.spec).names(),
            ds.spec.description,
            _shots(config, ds.spec),
        )
        for ds in loaded
    ]
    runs: list[Run] = []
    predictions: list[Prediction] = []
    for plan in plans:
        lm, tok = models[plan.role]
        name = config.model if plan.role == "model" else str(config.baseline)
        uses_tools = not plan.disabled
        run = Run(plan.mode, name, plan.trigger_top_k, plan.disabled, uses_tools)
        run_started = time.perf_counter()
        for ds in loaded:
            if ds.spec.kind == "ppl":
                # Tools-on perplexity is not computed (see the module docstring); a baseline is always scored.
                if plan.disabled or plan.role == "baseline":
                    run.by_dataset[ds.spec.name] = _run_ppl(lm, tok, ds, config, plan, progress, predictions)
                continue
            reg = _dataset_tools(registry, ds.spec) if uses_tools else ToolRegistry()
            score, preds = _run_generation(lm, tok, ds, config, plan, reg, progress)
            run.by_dataset[ds.spec.name] = score
            predictions.extend(preds)
        run.seconds = time.perf_counter() - run_started
        runs.append(run)
    return EvalResults(config, infos, runs, predictions, time.perf_counter() - started, ceilings)


def total_steps(config: EvalConfig, loaded: Sequence[suites.LoadedDataset]) -> int:
    """How many examples `evaluate` will report through `progress` (for a progress bar's total)."""
    total = 0
    if config.ceiling_on():
        total += sum(len(ds.examples) for ds in loaded if ceiling_tool(ds.spec) is not None)
    for plan in plan_runs(config):
        for ds in loaded:
            if ds.spec.kind != "ppl" or plan.disabled or plan.role == "baseline":
                total += len(ds.examples)
    return total


def _reporter(progress: Progress | None, description: str) -> Callable[[int], None] | None:
    if progress is None:
        return None
    return lambda n: progress(description, n)


def _load(name: str, device: str) -> tuple[Any, Any]:
    from toolformer.models import load_model

    return load_model(name, device=device)


def _dataset_tools(registry: ToolRegistry, spec: suites.DatasetSpec) -> ToolRegistry:
    return registry.subset([n for n in registry.names() if n not in spec.blocked])


def _run_generation(
    model: Any,
    tokenizer: Any,
    ds: suites.LoadedDataset,
    config: EvalConfig,
    plan: _Plan,
    registry: ToolRegistry,
    progress: Progress | None,
) -> tuple[DatasetScore, list[Prediction]]:
    from toolformer.runtime.decode import DecodeConfig, generate

    kind = ds.spec.kind
    decode = DecodeConfig(
        max_new_tokens=config.max_new_tokens or suites.MAX_NEW_TOKENS[kind],
        max_calls=config.max_calls,
        trigger_top_k=plan.trigger_top_k,
        disabled=plan.disabled,
        stop=list(suites.STOP[kind]),
    )
    shots = _shots(config, ds.spec)
    prompts = [suites.build_prompt(ex, kind, shots) for ex in ds.examples]
    # Similar lengths share a batch (less padding in the prompt pass); results go back in dataset order.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: dict[int, Any] = {}
    for start in range(0, len(order), config.batch_size):
        idx = order[start : start + config.batch_size]
        for i, gen in zip(idx, generate(model, tokenizer, [prompts[i] for i in idx], registry, decode)):
            outputs[i] = gen
        if progress is not None:
            progress(f"{plan.mode} · {ds.spec.name}", len(idx))
    score = DatasetScore()
    preds: list[Prediction] = []
    for i, ex in enumerate(ds.examples):
        gen = outputs[i]
        result = suites.score(ex, kind, gen.text)
        correct = result.correct and not (kind in suites.NO_TOOL_KINDS and gen.calls)
        tools_called = {c.tool for c in gen.calls}
        score.n += 1
        score.correct += int(correct)
        score.with_call += int(bool(gen.calls))
        for name in tools_called:
            score.per_tool[name] = score.per_tool.get(name, 0) + 1
        score.call_errors += sum(not c.ok for c in gen.calls)
        score.new_tokens += gen.new_tokens
        preds.append(
            Prediction(
                dataset=ds.spec.name,
                mode=plan.mode,
                id=ex.id,
                prompt=prompts[i],
                text=gen.text,
                answer=visible_answer(gen.text),
                extracted=result.extracted,
                gold=list(ex.golds),
                correct=correct,
                calls=[c.to_dict() for c in gen.calls],
                finish_reason=gen.finish_reason,
                new_tokens=gen.new_tokens,
            )
        )
    score.per_tool = dict(Counter(score.per_tool).most_common())
    return score, preds


def _run_ppl(
    model: Any,
    tokenizer: Any,
    ds: suites.LoadedDataset,
    config: EvalConfig,
    plan: _Plan,
    progress: Progress | None,
    predictions: list[Prediction],
) -> DatasetScore:
    from toolformer.evals.perplexity import perplexity

    def on_batch(n: int) -> None:
        if progress is not None:
            progress(f"{plan.mode} · {ds.spec.name}", n)

    texts = [ex.question for ex in ds.examples]
    result = perplexity(model, tokenizer, texts, config.batch_size, config.ppl_max_tokens, on_batch)
    for ex, text_score in zip(ds.examples, result.texts):
        predictions.append(
            Prediction(
                dataset=ds.spec.name,
                mode=plan.mode,
                id=ex.id,
                prompt=ex.question,
                text="",
                answer="",
                extracted=f"ppl={text_score.ppl:.3f} tokens={text_score.tokens}",
                gold=[],
                correct=None,
                calls=[],
                finish_reason="scored",
                new_tokens=0,
            )
        )
    return DatasetScore(n=len(texts), ppl=result.ppl, ppl_unmasked=result.ppl_unmasked, tokens=result.tokens)
