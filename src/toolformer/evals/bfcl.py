"""Run the `bfcl` suite: each BFCL case asked through a chat endpoint with its functions as `tools`, checked by BFCL's
AST checker under a strict and a tolerant reading of the reply.

A case becomes one OpenAI chat request: its messages, its functions as `tools` (`bfcl_data.openai_tools`),
`tool_choice` "auto", greedy, `max_tokens` (`--max-new-tokens`, default 256) and no server tools
(`toolformer.max_calls` 0). The endpoint is a `Chat`: `chat(request) -> reply` with `content`, `tool_calls`
(`Call`s), `finish_reason` and `completion_tokens`; `toolformer eval --suite bfcl` passes the server's own request
path run in-process (`serve.inprocess.InProcessChat`), so what is scored is what `POST /v1/chat/completions`
answers. Two readings of each reply, side by side in the report:
- strict (mode `tools`, `baseline`): only the reply's `tool_calls`;
- tolerant (mode `tools-tolerant`, `baseline-tolerant`): those, then JSON calls found in the content text
  (`content_calls`: any JSON or Python-literal object naming an offered function, with its arguments under
  "arguments"/"parameters"/"args" or as its other keys).
Accuracy is BFCL's: the share of cases the checker passes (irrelevance: cases answered without a call). The
modes `disabled` (and a baseline without tools) mean nothing here and are not run: MODEL, and `--baseline` when
given, each run once with the functions offered.
"""

from __future__ import annotations

import ast
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolformer.calls import Call, CallSyntaxError
from toolformer.errors import ConfigError, ToolformerError
from toolformer.evals import suites
from toolformer.evals.bfcl_check import Verdict, calls_from, check
from toolformer.evals.bfcl_data import BfclCase, describe, file_name, load_cases, openai_name, openai_tools
from toolformer.evals.config import EvalConfig
from toolformer.evals.results import DatasetInfo, DatasetScore, EvalResults, Prediction, Run
from toolformer.runtime.jsoncalls import format_json_call

SUITE = "bfcl"
Chat = Callable[[dict[str, Any]], Any]
Progress = Callable[[str, int], None]
_NAME_KEYS = ("name", "function", "tool", "function_name", "tool_name")
_ARG_KEYS = ("arguments", "parameters", "args", "params", "input")


@dataclass
class BfclDataset(suites.LoadedDataset):
    """A BFCL dataset as loaded: `examples` for counting and reports, `cases` for asking and checking."""

    cases: list[BfclCase] = field(default_factory=list)
    path: str = ""


def load_datasets(config: EvalConfig) -> list[BfclDataset]:
    """The BFCL datasets `config` names, from the shipped copy or `config.data` (a bfcl-eval wheel or folder)."""
    specs = suites.suite_specs(SUITE, config.datasets)
    out = []
    for spec in specs:
        cases = load_cases(spec.name, config.data, config.limit)
        examples = suites.function_examples(spec.name, cases)
        path = (
            str(spec.location()) if config.data is None else f"{describe(config.data)}:{file_name(spec.name)}"
        )
        out.append(BfclDataset(spec, examples, cases=cases, path=path))
    return out


def roles(config: EvalConfig) -> list[str]:
    """The models asked: "model", then "baseline" when a baseline is given."""
    return ["model", "baseline"] if config.baseline else ["model"]


def total_steps(config: EvalConfig, loaded: Sequence[suites.LoadedDataset]) -> int:
    """How many cases `evaluate_bfcl` reports through `progress`."""
    return len(roles(config)) * sum(len(ds.examples) for ds in loaded)


def request(case: BfclCase, max_tokens: int) -> dict[str, Any]:
    """The chat request of `case`: its messages and functions, tool choice auto, greedy."""
    return {
        "messages": case.messages,
        "tools": openai_tools(case.functions),
        "tool_choice": "auto",
        "max_tokens": max_tokens,
        "toolformer": {"max_calls": 0},  # no server tools: a call to one of `tools` ends the reply
    }


def content_calls(content: str, functions: Sequence[dict[str, Any]]) -> list[Call]:
    """JSON calls in free text: every JSON (or Python-literal) object naming one of `functions` (BFCL or OpenAI
    name), in order; objects that are not calls are skipped."""
    names = {openai_name(f["name"]): openai_name(f["name"]) for f in functions}
    names.update({f["name"]: openai_name(f["name"]) for f in functions})
    decoder = json.JSONDecoder()
    calls: list[Call] = []
    i = content.find("{")
    while i != -1:
        value, end = _object_at(content, i, decoder)
        call = _loose_call(value, names) if value is not None else None
        if call is not None:
            calls.append(call)
            i = content.find("{", end)
        else:
            i = content.find("{", i + 1)
    return calls


def _object_at(text: str, i: int, decoder: json.JSONDecoder) -> tuple[Any, int]:
    """The JSON value at text[i] and where it ends, else the shortest Python literal from there to a "}" (single
    quotes), else (None, i)."""
    try:
        return decoder.raw_decode(text, i)
    except ValueError:
        pass
    close = text.find("}", i)
    while close != -1:
        try:  # literal_eval reads literals only, never runs code
            return ast.literal_eval(text[i : close + 1]), close + 1
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            close = text.find("}", close + 1)
    return None, i


def _loose_call(value: Any, names: dict[str, str]) -> Call | None:
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):  # OpenAI's {"type": "function", "function": {...}}
        return _loose_call(value["function"], names)
    key = next((k for k in _NAME_KEYS if isinstance(value.get(k), str) and value[k] in names), None)
    if key is None:
        return None
    arg_key = next((k for k in _ARG_KEYS if k in value), None)
    rest = {k: v for k, v in value.items() if k not in (key, "type", "id")}
    arguments: Any = value[arg_key] if arg_key else rest
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    try:
        return Call.from_openai({"name": names[value[key]], "arguments": arguments})
    except (CallSyntaxError, ValueError, TypeError, RecursionError):
        return None


def verdict(case: BfclCase, calls: Sequence[Call]) -> Verdict:
    """BFCL's verdict on `calls` as the answer to `case`."""
    return check(case.category, case.functions, calls_from(list(calls)), case.ground_truth)


def evaluate_bfcl(
    config: EvalConfig,
    chats: dict[str, Chat],
    progress: Progress | None = None,
    datasets: Sequence[suites.LoadedDataset] | None = None,
) -> EvalResults:
    """Ask every case of the `bfcl` datasets through `chats["model"]` (and `chats["baseline"]` with a baseline)."""
    started = time.perf_counter()
    loaded = list(datasets) if datasets is not None else load_datasets(config)
    for role in roles(config):
        if role not in chats:
            raise ConfigError(f"suite {SUITE!r} needs a chat endpoint for the {role}: pass chats[{role!r}]")
    max_tokens = config.max_new_tokens or suites.MAX_NEW_TOKENS["function"]
    infos = [
        DatasetInfo(
            ds.spec.name, SUITE, "function", _path(ds), len(ds.examples), 0, {}, [], ds.spec.description
        )
        for ds in loaded
    ]
    runs: list[Run] = []
    predictions: list[Prediction] = []
    for role in roles(config):
        name = config.model if role == "model" else str(config.baseline)
        strict_mode, tolerant_mode = (
            ("tools", "tools-tolerant") if role == "model" else ("baseline", "baseline-tolerant")
        )
        strict, tolerant = Run(strict_mode, name, 0, False, True), Run(tolerant_mode, name, 0, False, True)
        run_started = time.perf_counter()
        for ds in loaded:
            scores = (DatasetScore(), DatasetScore())
            for case in _cases(ds):
                for run, score, pred in zip((strict, tolerant), scores, _ask(chats[role], case, max_tokens)):
                    pred.mode = run.mode
                    _count(score, pred)
                    predictions.append(pred)
                if progress is not None:
                    progress(f"{strict_mode} · {ds.spec.name}", 1)
            strict.by_dataset[ds.spec.name], tolerant.by_dataset[ds.spec.name] = scores
        strict.seconds = tolerant.seconds = time.perf_counter() - run_started
        runs += [strict, tolerant]
    return EvalResults(config, infos, runs, predictions, time.perf_counter() - started)


def _path(ds: suites.LoadedDataset) -> str:
    return ds.path if isinstance(ds, BfclDataset) and ds.path else str(ds.spec.location())


def _cases(ds: suites.LoadedDataset) -> list[BfclCase]:
    if not isinstance(ds, BfclDataset):
        raise ConfigError(
            f"dataset {ds.spec.name!r} was not loaded as a BFCL dataset (use evals.bfcl.load_datasets)"
        )
    return ds.cases


def _ask(chat: Chat, case: BfclCase, max_tokens: int) -> tuple[Prediction, Prediction]:
    """The strict and the tolerant prediction of one case."""
    gold = list(case.ground_truth)
    try:
        reply = chat(request(case, max_tokens))
    except ToolformerError as exc:  # the server would refuse it (a 400): no answer, wrong in both readings
        failed = Verdict(False, [str(exc)], "request_error")
        return (
            _prediction(case, "", [], failed, gold, "error", 0),
            _prediction(case, "", [], failed, gold, "error", 0),
        )
    content = str(reply.content or "")
    strict = list(reply.tool_calls)
    tolerant = strict + content_calls(content, case.functions)
    tokens = int(getattr(reply, "completion_tokens", 0))
    text = "\n".join([content, *(format_json_call(c) for c in strict)]).strip()
    return (
        _prediction(case, text, strict, verdict(case, strict), gold, reply.finish_reason, tokens, content),
        _prediction(
            case, text, tolerant, verdict(case, tolerant), gold, reply.finish_reason, tokens, content
        ),
    )


def _prediction(
    case: BfclCase,
    text: str,
    calls: list[Call],
    result: Verdict,
    gold: list[Any],
    finish: str,
    tokens: int,
    content: str = "",
) -> Prediction:
    why = "valid" if result.valid else f"{result.error_type}: {_first(result.errors)}"
    return Prediction(
        dataset=case.dataset,
        mode="",
        id=case.id,
        prompt=case.question,
        text=text,
        answer=content,
        extracted=why,
        gold=gold,
        correct=result.valid,
        calls=[c.to_openai()["function"] for c in calls],
        finish_reason=finish,
        new_tokens=tokens,
    )


def _first(errors: list[Any]) -> str:
    return str(errors[0]) if errors else ""


def _count(score: DatasetScore, pred: Prediction) -> None:
    score.n += 1
    score.correct += int(bool(pred.correct))
    score.with_call += int(bool(pred.calls))
    score.new_tokens += pred.new_tokens
