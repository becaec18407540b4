"""Published eval results name models portably, never by a path of the machine they ran on (issue 10, item 14)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolformer.evals.config import EvalConfig
from toolformer.evals.evaluate import DatasetInfo, DatasetScore, EvalResults, Run
from toolformer.evals.report import portable_model_name, write_outputs


def test_portable_model_name(tmp_path: Path) -> None:
    inside = tmp_path / "runs" / "out" / "model"
    assert portable_model_name(str(inside), cwd=tmp_path) == "runs/out/model"
    assert portable_model_name("/elsewhere/work/runs/m1", cwd=tmp_path) == "runs/m1"
    assert portable_model_name("smollm2-135m-instruct", cwd=tmp_path) == "smollm2-135m-instruct"
    assert portable_model_name("HuggingFaceTB/SmolLM2-135M", cwd=tmp_path) == "HuggingFaceTB/SmolLM2-135M"
    assert portable_model_name("runs/m1", cwd=tmp_path) == "runs/m1"  # relative: as the user gave it
    assert portable_model_name(None) is None


def test_report_results_and_plot_name_the_model_portably(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.axes

    monkeypatch.chdir(tmp_path)
    model = str(tmp_path / "runs" / "math" / "model")  # an absolute path under the current directory
    baseline = "/somewhere/else/on/this/machine/base-model"
    config = EvalConfig(model=model, suite="math", baseline=baseline, modes="tools,baseline")
    info = DatasetInfo("asdiv", "math", "math", "asdiv.jsonl", 2, 0, {}, ["Calculator"])
    runs = [
        Run("tools", model, 10, False, True, {"asdiv": DatasetScore(n=2, correct=1, with_call=2)}),
        Run("baseline", baseline, 0, True, False, {"asdiv": DatasetScore(n=2, correct=0)}),
    ]
    titles: list[str] = []
    set_title = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "set_title",
        lambda ax, label, *a, **k: titles.append(label) or set_title(ax, label, *a, **k),
    )
    paths = write_outputs(EvalResults(config, [info], runs, []), tmp_path / "out")

    written = paths["report"].read_text() + paths["results"].read_text() + "\n".join(titles)
    assert str(tmp_path) not in written and "/somewhere" not in written
    data = json.loads(paths["results"].read_text())
    assert data["config"]["model"] == "runs/math/model" and data["config"]["baseline"] == "machine/base-model"
    assert [r["model"] for r in data["runs"]] == ["runs/math/model", "machine/base-model"]
    assert "`runs/math/model`" in paths["report"].read_text()
    assert titles and all(t.startswith("runs/math/model") for t in titles if "·" in t)


def test_output_folder_and_shipped_datasets_are_named_portably(tmp_path: Path) -> None:
    from toolformer.evals.suites import SUITES

    asdiv = str(SUITES["math"][0].location())  # an absolute path inside the installed package
    config = EvalConfig(model="smollm2-135m-instruct", suite="math", out="/machine/only/runs/eval")
    info = DatasetInfo("asdiv", "math", "math", asdiv, 2, 0, {}, ["Calculator"])
    runs = [Run("tools", "smollm2-135m-instruct", 10, False, True, {"asdiv": DatasetScore(n=2, correct=1)})]
    paths = write_outputs(EvalResults(config, [info], runs, []), tmp_path / "out")
    data = json.loads(paths["results"].read_text())
    assert data["config"]["out"] == "runs/eval"
    assert data["datasets"][0]["path"] == "toolformer/data/evals/asdiv.jsonl"
    assert "/machine" not in paths["results"].read_text() and asdiv not in paths["results"].read_text()


def test_results_read_back_render_the_same_report(tmp_path: Path) -> None:
    config = EvalConfig(model="m", suite="math", modes="tools,disabled")
    info = DatasetInfo("asdiv", "math", "math", "asdiv.jsonl", 4, 1, {"null": 1}, ["Calculator"])
    runs = [
        Run(
            "tools",
            "m",
            10,
            False,
            True,
            {"asdiv": DatasetScore(n=4, correct=3, with_call=4, per_tool={"Calculator": 4})},
        ),
        Run("disabled", "m", 0, True, False, {"asdiv": DatasetScore(n=4, correct=1)}),
    ]
    first = write_outputs(EvalResults(config, [info], runs, []), tmp_path / "a")
    again = EvalResults.from_dict(json.loads(first["results"].read_text()))
    second = write_outputs(again, tmp_path / "b")
    assert second["report"].read_text() == first["report"].read_text()
    assert json.loads(second["results"].read_text()) == json.loads(first["results"].read_text())
