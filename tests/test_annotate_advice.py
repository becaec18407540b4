"""When annotate keeps nothing it says why and what to change."""

from __future__ import annotations

from pathlib import Path

from toolformer.datagen.annotate import AnnotateReport, ToolStats, nothing_kept_advice


def _report(**tools: ToolStats) -> AnnotateReport:
    return AnnotateReport(
        out=Path("out"), manifest=Path("out/manifest.json"), documents=20, per_tool=dict(tools)
    )


def test_no_advice_when_a_call_was_kept() -> None:
    report = _report(Calculator=ToolStats(texts=3, proposed=3, executed_ok=3, kept=1, best_gain=0.9))
    report.calls_kept = 1
    assert nothing_kept_advice(report, lambda t: 0.5, ["data"]) is None


def test_no_candidate_names_the_proposer_and_the_alternatives() -> None:
    advice = nothing_kept_advice(_report(WikiSearch=ToolStats(texts=4)), lambda t: 1.0, ["rule"])
    assert advice is not None and "rule proposer found no candidate in 20 documents" in advice
    assert "WikiSearch: 4" in advice and "--proposer data" in advice


def test_all_calls_failing_points_at_the_tools() -> None:
    advice = nothing_kept_advice(
        _report(QA=ToolStats(texts=2, proposed=2, executed_error=2)), lambda t: 1.0, ["rule"]
    )
    assert advice is not None and "every proposed call failed" in advice


def test_gains_below_tau_f_are_reported_per_tool() -> None:
    report = _report(
        WikiSearch=ToolStats(texts=9, proposed=29, executed_ok=29, best_gain=0.83),
        QA=ToolStats(texts=2, proposed=2, executed_ok=2, best_gain=-0.1),
    )
    advice = nothing_kept_advice(report, lambda t: 1.0, ["rule"])
    assert advice is not None and "31 candidates were scored" in advice
    assert "WikiSearch best 0.83 < τ_f 1" in advice and "QA best -0.10 < τ_f 1" in advice
    assert "--tau-f" in advice
