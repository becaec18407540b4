"""What an annotation run produced (`datagen/report.py`): the per-tool funnel from the records, the advice."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import write_jsonl
from toolformer.datagen.io import BadRow
from toolformer.datagen.layout import OutputNames
from toolformer.datagen.report import (
    MAX_BAD_IN_MANIFEST,
    AnnotateReport,
    ToolStats,
    collect,
    nothing_kept_advice,
)


def _cand(tool: str, position: int, ok: bool | None, kept: bool = False, gain: float | None = None) -> dict:
    losses = {} if gain is None else {"loss_plus": 1.0, "loss_minus": 1.0 + gain}
    return {
        "tool": tool,
        "args": "1 + 1",
        "position": position,
        "source": "rule",
        "ok": ok,
        "kept": kept,
        **losses,
    }


def _rec(doc_id: str, kept: int = 0, split: str = "train", tools=(), cands=(), status: str = "ok") -> dict:
    return {
        "id": doc_id,
        "split": split,
        "status": status,
        "verdict": "empty text" if status == "bad" else "",
        "kept_calls": kept,
        "tools_applied": list(tools),
        "candidates": list(cands),
    }


def _report(tmp_path: Path) -> AnnotateReport:
    return AnnotateReport(out=tmp_path, manifest=tmp_path / "manifest.json")


def test_collect_counts_each_tools_funnel_over_every_chunk(tmp_path):
    names = OutputNames()
    write_jsonl(
        names.records(tmp_path, 0),
        [
            _rec(
                "a",
                kept=2,
                tools=["Calculator", "QA"],
                cands=[
                    _cand("Calculator", 5, True, kept=True, gain=1.5),
                    _cand("Calculator", 5, False),  # same position: counted once
                    _cand("Calculator", 9, True, kept=True, gain=0.7),
                    _cand("QA", 2, True, gain=-0.4),
                ],
            ),
            _rec("b", status="bad"),
        ],
    )
    write_jsonl(
        names.records(tmp_path, 1),
        [_rec("c", kept=1, split="dev", tools=["QA"], cands=[_cand("QA", 0, True, kept=True, gain=2.0)])],
    )
    report = _report(tmp_path)
    collect(report, tmp_path, names, 2, ["Calculator", "QA", "Calendar"])
    assert (report.documents, report.bad, report.texts_kept, report.calls_kept, report.dev_texts) == (
        3,
        1,
        2,
        3,
        1,
    )
    assert report.bad_rows == [BadRow("b", "empty text")]
    assert report.records == [names.records(tmp_path, 0), names.records(tmp_path, 1)]
    assert report.shards == [names.shard(tmp_path, 0), names.shard(tmp_path, 1)]
    assert report.per_tool["Calculator"] == ToolStats(
        texts=1, positions=2, proposed=3, executed_ok=2, executed_error=1, kept=2, texts_kept=1, best_gain=1.5
    )
    assert report.per_tool["QA"] == ToolStats(
        texts=2, positions=2, proposed=2, executed_ok=2, kept=1, texts_kept=1, best_gain=2.0
    )
    assert report.per_tool["Calendar"] == ToolStats()  # asked for, never applied: still reported


def test_collect_keeps_at_most_a_hundred_bad_rows_for_the_manifest(tmp_path):
    names = OutputNames()
    write_jsonl(
        names.records(tmp_path, 0), [_rec(f"b{k}", status="bad") for k in range(MAX_BAD_IN_MANIFEST + 5)]
    )
    report = _report(tmp_path)
    collect(report, tmp_path, names, 1, [])
    assert report.bad == MAX_BAD_IN_MANIFEST + 5 and len(report.bad_rows) == MAX_BAD_IN_MANIFEST


def test_texts_per_hour_leaves_model_loading_out(tmp_path):
    report = _report(tmp_path)
    report.documents_this_run, report.seconds, report.load_seconds = 10, 40.0, 4.0
    assert report.texts_per_hour == pytest.approx(1000.0)
    report.seconds = 4.0  # nothing but loading
    assert report.texts_per_hour is None
    report.documents_this_run, report.seconds = 0, 40.0
    assert report.texts_per_hour is None


def _advice(tmp_path: Path, per_tool: dict[str, ToolStats], kept: int = 0, documents: int = 4) -> str | None:
    report = _report(tmp_path)
    report.documents, report.calls_kept, report.per_tool = documents, kept, per_tool
    return nothing_kept_advice(report, {"Calculator": 0.5}.get, ["rule"])


def test_the_advice_says_why_nothing_was_kept(tmp_path):
    none_proposed = _advice(tmp_path, {"Calculator": ToolStats(texts=3)})
    assert none_proposed is not None
    assert "the rule proposer found no candidate in 4 documents" in none_proposed
    assert "Calculator: 3" in none_proposed
    all_failed = _advice(tmp_path, {"Calculator": ToolStats(proposed=2, executed_error=2)})
    assert all_failed is not None and "every proposed call failed" in all_failed
    low = _advice(tmp_path, {"Calculator": ToolStats(proposed=2, executed_ok=2, best_gain=0.25)})
    assert low is not None and "2 candidates were scored" in low and "Calculator best 0.25 < τ_f 0.5" in low


def test_there_is_no_advice_when_a_call_was_kept_or_there_was_nothing_to_read(tmp_path):
    assert _advice(tmp_path, {"Calculator": ToolStats()}, kept=1) is None
    assert _advice(tmp_path, {"Calculator": ToolStats()}, documents=0) is None
