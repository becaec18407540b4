"""`toolformer adapt`'s report: metric rows in the task's order, the Markdown a person reads, the JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

from toolformer.adapt.config import REPORT_JSON, REPORT_MD
from toolformer.adapt.report import AdaptReport, to_markdown, write_report


def report(**overrides: object) -> AdaptReport:
    base = dict(
        out="out",
        task="classification",
        base_model="tiny",
        mode="lora-merged",
        metric="macro_f1",
        data={
            "train": {"examples": 40, "dropped": {"empty text": 2}},
            "dev": {"examples": 10, "from": "split"},
        },
        labels=["neg", "pos"],
        steps=30,
        max_steps=50,
        stopped_early=True,
        best_step=20,
        baseline={"accuracy": 50.0, "macro_f1": 33.333, "loss": 0.69},
        dev={"loss": 0.2, "accuracy": 90.0, "macro_f1": 88.888, "not_a_metric": 1.0},
        curve=[{"step": 10, "accuracy": 70.0, "macro_f1": 65.0, "loss": 0.5}],
        examples=[{"id": "r1", "text": "a | b\nc", "gold": "pos", "prediction": "pos"}],
        hyperparameters={"lr": 0.001},
        versions={"torch": "2.13"},
    )
    return AdaptReport(**(base | overrides))


def test_metric_rows_follow_the_task_and_say_what_was_not_measured() -> None:
    rows = report().metric_rows()
    assert rows == [
        ("accuracy", "50.00", "90.00", "-"),
        ("macro_f1", "33.33", "88.89", "-"),
        ("loss", "0.69", "0.20", "-"),
    ]  # task order, not the dict's; unknown keys left out; no test set: "-"
    assert report(baseline=None, test={"loss": 0.3}).metric_rows()[2] == ("loss", "-", "0.20", "0.30")


def test_the_markdown_names_the_setup_the_selection_metric_and_the_predictions() -> None:
    md = to_markdown(report())
    assert md.startswith("# toolformer adapt: classification\n")
    assert "- data: 40 train, 10 dev (split)" in md and "- train rows dropped: empty text (2)" in md
    assert "- labels (2): neg, pos" in md and "- steps: 30 of 50 (stopped early)" in md
    assert "| macro_f1 (selection) | 33.33 | 88.89 | - |" in md and "| accuracy | 50.00 | 90.00 | - |" in md
    assert "| 10 | 70.00 | 65.00 | 0.50 |" in md  # the dev curve
    assert "| r1 | a \\| b c | pos | pos |" in md  # one line per prediction, pipes escaped
    assert "- hyperparameters: lr=0.001" in md and "- versions: torch 2.13" in md


def test_long_label_lists_and_cells_are_cut() -> None:
    labels = [f"L{i}" for i in range(25)]
    md = to_markdown(report(labels=labels, examples=[{"id": "x" * 30, "text": "w " * 100, "gold": 1}]))
    assert f"- labels (25): {', '.join(labels[:20])} …" in md
    row = next(line for line in md.splitlines() if line.startswith("| xxx"))
    first, text = row.split(" | ")[:2]
    assert first == "| " + "x" * 23 + "…" and len(text) == 80 and text.endswith("…")


def test_both_reports_are_written_and_the_json_reads_back(tmp_path: Path) -> None:
    original = report()
    md, js = write_report(original, tmp_path)
    assert (md, js) == (tmp_path / REPORT_MD, tmp_path / REPORT_JSON)
    assert md.read_text(encoding="utf-8") == to_markdown(original)
    assert AdaptReport.from_dict(json.loads(js.read_text(encoding="utf-8")) | {"newer_field": 1}) == original
