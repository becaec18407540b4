"""`EvalResults` on hand-built runs: rates, the sweep order, tool choice, perplexity against the baseline, notices,
and the results.json round trip (tests/test_evals.py reaches them through whole evaluations)."""

from __future__ import annotations

import json

import pytest

from toolformer.evals.ceiling import Ceiling
from toolformer.evals.config import EvalConfig
from toolformer.evals.results import DatasetInfo, DatasetScore, EvalResults, Prediction, Run


def info(name: str, kind: str = "math", tools: tuple[str, ...] = ("Calculator",)) -> DatasetInfo:
    return DatasetInfo(name, "math", kind, f"{name}.jsonl", 10, 0, {}, list(tools))


def run(mode: str, k: int = 10, uses_tools: bool = True, **scores: DatasetScore) -> Run:
    return Run(mode, "model", k, disabled=mode == "disabled", uses_tools=uses_tools, by_dataset=dict(scores))


def prediction(mode: str, dataset: str, text: str) -> Prediction:
    return Prediction(dataset, mode, "id", "prompt", text, text, None, [], False, [], "stop", 3)


def results(runs: list[Run], datasets: list[DatasetInfo], **config: object) -> EvalResults:
    return EvalResults(EvalConfig(**({"model": "model"} | config)), datasets, runs, [])


def test_rates_are_shares_of_the_examples_and_none_for_perplexity_rows() -> None:
    score = DatasetScore(n=8, correct=2, with_call=4, per_tool={"Calculator": 3, "QA": 1})
    assert (score.accuracy, score.call_rate, score.tool_rate("QA"), score.tool_rate("MT")) == (
        0.25,
        0.5,
        0.125,
        0.0,
    )
    assert score.to_dict()["per_tool_rate"] == {"Calculator": 0.375, "QA": 0.125}
    ppl = DatasetScore(n=8, ppl=12.5, tokens=400)
    assert (ppl.accuracy, ppl.call_rate, ppl.tool_rate("QA")) == (None, None, None)
    assert DatasetScore().accuracy is None  # no examples, no accuracy


def test_the_sweep_is_in_k_order_and_reuses_the_tools_run_at_its_k() -> None:
    runs = [run("disabled", uses_tools=False), run("tools", k=10), run("k=40", k=40), run("k=1", k=1)]
    res = results(runs, [info("m")], modes="tools,disabled", trigger_top_k=10, sweep_k="40,10,1")
    assert res.modes() == ["disabled", "tools"]
    assert [r.mode for r in res.sweep()] == ["k=40", "tools", "k=1"]
    assert [r.mode for r in res.tool_runs()] == ["tools"]
    assert [p["k"] for p in res.to_dict()["sweep"]] == [40, 10, 1]


def test_tool_choice_lists_the_datasets_tools_first_then_any_other_called() -> None:
    scores = DatasetScore(n=4, with_call=3, per_tool={"WikiSearch": 1, "Calculator": 2})
    res = results(
        [run("tools", m=scores), run("disabled", uses_tools=False, m=DatasetScore(n=4))],
        [info("m", tools=("Calculator", "QA")), info("wiki", kind="ppl")],
        modes="tools,disabled",
    )
    choice = res.tool_choice()
    assert list(choice) == ["m"] and list(choice["m"]) == ["tools"]  # no-tool modes and ppl rows stay out
    assert list(choice["m"]["tools"].items()) == [
        ("any", 0.75),
        ("Calculator", 0.5),
        ("QA", 0.0),
        ("WikiSearch", 0.25),
    ]


def test_perplexity_is_compared_with_the_baseline() -> None:
    datasets = [info("wiki", kind="ppl", tools=()), info("m")]
    res = results(
        [
            run("disabled", uses_tools=False, wiki=DatasetScore(n=5, ppl=11.0, ppl_unmasked=11.5)),
            run("baseline", uses_tools=False, wiki=DatasetScore(n=5, ppl=10.0)),
        ],
        datasets,
        modes="disabled",
        baseline="base",
    )
    (name, row), *_ = res.perplexity().items()
    assert name == "wiki" and list(res.perplexity()) == ["wiki"]
    assert (row["model_ppl"], row["model_ppl_unmasked"], row["baseline"], row["baseline_ppl"]) == (
        11.0,
        11.5,
        "base",
        10.0,
    )
    assert row["relative_difference"] == pytest.approx(0.1)
    alone = results(
        [run("disabled", uses_tools=False, wiki=DatasetScore(n=5, ppl=11.0))], datasets, modes="disabled"
    )
    assert alone.perplexity()["wiki"]["relative_difference"] is None


def test_the_ceiling_says_how_much_of_it_mode_tools_realises() -> None:
    res = results([run("tools", m=DatasetScore(n=10, correct=3))], [info("m")], modes="tools")
    res.ceilings = {"m": Ceiling("m", "Calculator", n=10, checked=10, hits=6)}
    row = res.ceiling()["m"]
    assert (row["ceiling"], row["tools_accuracy"], row["realised"]) == (0.6, 0.3, pytest.approx(0.5))


def test_a_tool_mode_without_any_call_gets_a_notice_naming_where() -> None:
    silent = DatasetScore(n=3)
    res = results(
        [
            run("tools", a=silent, b=DatasetScore(n=3, with_call=1)),
            run("disabled", uses_tools=False, a=silent, b=silent),
        ],
        [info("a"), info("b")],
        modes="tools,disabled",
        shots=0,
    )
    [notice] = res.notices()
    assert notice.startswith("Mode tools made no tool call on a: there its answers are the model's own")
    assert "--shots" in notice
    # A call written in the text counts even when the score did not record it (e.g. a call that never ran).
    res.predictions.append(prediction("tools", "a", "It is [Calculator(1 + 1) → 2] 2."))
    assert res.notices() == []


def test_results_json_reads_back_into_the_same_tables() -> None:
    res = results(
        [
            run("tools", m=DatasetScore(n=4, correct=1, with_call=2, per_tool={"Calculator": 2})),
            run("disabled", uses_tools=False, m=DatasetScore(n=4, correct=1)),
        ],
        [info("m")],
        modes="tools,disabled",
        shots=2,
    )
    data = json.loads(json.dumps(res.to_dict()))
    back = EvalResults.from_dict(data)
    assert back.to_dict() == data
    assert back.run("tools").by_dataset["m"].per_tool == {"Calculator": 2} and back.predictions == []
