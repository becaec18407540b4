"""Run an evaluation: every dataset of a suite through `generate` in batches, in each mode, scored and counted.

Modes (all greedy, all on the same prompt):
- tools: MODEL with its tools, a call started whenever '[' is in the top `trigger_top_k` tokens (paper: 10), at
  most `max_calls` calls (paper: 1); the suite's blocked tools are removed (WikiSearch on facts, QA on qa), or
  those `blocked` names.
- disabled: MODEL with p('[') = 0 (`DecodeConfig(disabled=True)`), the paper's "Toolformer (disabled)".
- baseline: the --baseline model without tools (p('[') = 0), like the paper's GPT-J/OPT/GPT-3 rows, which never
  call tools; with `baseline_tools` it runs exactly like mode tools instead.
- k=K (with --sweep-k): mode tools at trigger top-k K (paper Table 9); the run at K = trigger_top_k is reused.
The ppl suite has no answers: disabled and baseline give perplexity (always with p('[') = 0, also for a baseline
run with tools), tools is not computed (intractable); `EvalResults.perplexity()` compares the two (paper Table 8).
No-tool datasets (suite notool) score an answer correct when it has no call: accuracy is the "no call" rate.
Suite bfcl asks a chat endpoint instead (`evals.bfcl`): `evaluate` hands it over with the `chats` it is given.
Before any model runs, the tool ceiling of each dataset is computed from the tools alone (`evals.ceiling`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from toolformer.errors import DataError
from toolformer.evals import bfcl, suites
from toolformer.evals.analysis import error_analysis
from toolformer.evals.ceiling import Ceiling, ceiling_tool, compute_ceiling
from toolformer.evals.config import EvalConfig
from toolformer.evals.metrics import visible_answer

# The result types, importable from here as before they moved to `results`.
from toolformer.evals.results import DatasetInfo, DatasetScore, EvalResults, Prediction, Run
from toolformer.tools import ToolRegistry, load_tools

__all__ = [
    "DatasetInfo",
    "DatasetScore",
    "EvalResults",
    "Prediction",
    "Progress",
    "Run",
    "evaluate",
    "load_datasets",
    "load_registry",
    "plan_runs",
    "total_steps",
]

Progress = Callable[[str, int], None]  # (description, examples just finished)


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
    if config.suite == bfcl.SUITE:
        return list(bfcl.load_datasets(config))
    if config.data:
        specs = [suites.data_spec(config.suite, config.data)]
    else:
        specs = suites.suite_specs(config.suite, config.datasets)
    blocked = config.blocked_tools()
    if blocked is not None:
        specs = [replace(s, blocked=blocked) for s in specs]
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
    chats: dict[str, bfcl.Chat] | None = None,
) -> EvalResults:
    """Evaluate `config.model` (and `config.baseline`) on `config.suite` in every mode.

    `models` maps "model" / "baseline" to preloaded `(model, tokenizer)` pairs (loaded with `load_model`
    otherwise; a baseline naming the same model reuses it). `tools` replaces `load_tools(config.tools)`.
    `progress(description, n)` is called as examples finish. Suite bfcl needs `chats` instead: "model" (and
    "baseline") mapped to chat endpoints, e.g. `serve.inprocess.InProcessChat` (`toolformer eval` builds them).
    """
    if config.suite == bfcl.SUITE:
        return bfcl.evaluate_bfcl(config, chats or {}, progress, datasets)
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
    errors = error_analysis(loaded, predictions)  # why mode tools' math answers are wrong
    return EvalResults(config, infos, runs, predictions, time.perf_counter() - started, ceilings, errors)


def total_steps(config: EvalConfig, loaded: Sequence[suites.LoadedDataset]) -> int:
    """How many examples `evaluate` will report through `progress` (for a progress bar's total)."""
    if config.suite == bfcl.SUITE:
        return bfcl.total_steps(config, loaded)
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
    from toolformer.models.load import load_model

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
    from toolformer.runtime.decode import generate
    from toolformer.runtime.results import DecodeConfig

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
