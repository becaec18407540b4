"""What an evaluation produces: per-example predictions, per-dataset scores, runs, and the results' summaries.

`EvalResults` holds them and derives the report's tables (tool ceiling, tool choice, perplexity, notices); it
round-trips through `to_dict` / `from_dict` (results.json). Running an evaluation is `toolformer.evals.evaluate`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from toolformer.calls import find_calls
from toolformer.evals import suites
from toolformer.evals.analysis import ErrorAnalysis
from toolformer.evals.ceiling import Ceiling
from toolformer.evals.config import EvalConfig


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
    errors: dict[str, ErrorAnalysis] = field(default_factory=dict)  # math dataset -> why mode tools was wrong

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
        skip = ("ppl", *suites.NO_TOOL_KINDS, *suites.API_KINDS)  # API kinds: calls are JSON, no --shots hint
        task = [d.name for d in self.datasets if d.kind not in skip]
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
        errors = {n: ErrorAnalysis.from_dict(e) for n, e in data.get("error_analysis", {}).items()}
        infos = [DatasetInfo(**d) for d in data["datasets"]]
        return cls(config, infos, runs, [], data.get("seconds", 0.0), errors=errors)

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
            # Only where mode tools ran on a math dataset, so other suites' results.json keep their shape.
            **({"error_analysis": {n: e.to_dict() for n, e in self.errors.items()}} if self.errors else {}),
        }
