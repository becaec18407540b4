"""What an annotation run produced: per-tool funnel counts (`ToolStats`), the run's `AnnotateReport`, and the
advice when it kept no call (`nothing_kept_advice`). `collect` fills a report from the folder's records files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from toolformer.datagen.io import BadRow
from toolformer.datagen.layout import OutputNames
from toolformer.datagen.outputs import read_records


@dataclass
class ToolStats:
    """One tool's funnel over the run's documents."""

    texts: int = 0  # documents whose heuristic passed
    positions: int = 0  # distinct (document, position) pairs with a proposed call
    proposed: int = 0
    executed_ok: int = 0
    executed_error: int = 0
    kept: int = 0  # calls in the training texts (L⁻ − L⁺ ≥ τ_f and the best at their position)
    texts_kept: int = 0  # documents with at least one kept call of this tool
    best_gain: float | None = None  # the largest L⁻ − L⁺ among its scored candidates


@dataclass
class AnnotateReport:
    """What a run produced (`annotate` returns it; the CLI prints it)."""

    out: Path
    manifest: Path
    documents: int = 0
    bad: int = 0
    texts_kept: int = 0
    calls_kept: int = 0
    dev_texts: int = 0
    per_tool: dict[str, ToolStats] = field(default_factory=dict)
    bad_rows: list[BadRow] = field(default_factory=list)
    shards: list[Path] = field(default_factory=list)
    records: list[Path] = field(default_factory=list)
    chunks_done_before: int = 0
    chunks_written: int = 0
    documents_this_run: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def texts_per_hour(self) -> float | None:
        """Documents annotated per hour by this run (model loading excluded)."""
        busy = self.seconds - self.load_seconds
        return self.documents_this_run * 3600 / busy if self.documents_this_run and busy > 0 else None


MAX_BAD_IN_MANIFEST = 100


def nothing_kept_advice(
    report: AnnotateReport, tau_for: Callable[[str], float], proposers: Sequence[str]
) -> str | None:
    """When a run kept no call: one paragraph saying why (no candidate, every call failed, gains below τ_f) and
    what to change. None when something was kept."""
    if report.calls_kept or not report.documents:
        return None
    stats = report.per_tool
    proposed = sum(st.proposed for st in stats.values())
    if proposed == 0:
        return (
            f"kept no call: the {', '.join(proposers)} proposer found no candidate in {report.documents} documents "
            "(the heuristics passed "
            + ", ".join(f"{n}: {st.texts}" for n, st in stats.items())
            + "). Small models cannot follow the paper's prompt: try `--proposer rule` on prose, `--proposer data` "
            "on texts that already hold calls, or `toolformer mixture build` for question texts."
        )
    if all(st.executed_ok == 0 for st in stats.values()):
        return "kept no call: every proposed call failed (see `toolformer annotate inspect DIR`): check the tools."
    gains = ", ".join(
        f"{n} best {st.best_gain:.2f} < τ_f {tau_for(n):g}"
        for n, st in stats.items()
        if st.best_gain is not None
    )
    return (
        f"kept no call: {proposed} candidates were scored but none reached τ_f ({gains}). Lower --tau-f / "
        "--tau-f-tool, give texts where a tool's result predicts what follows (short question/answer texts work "
        "best at 135M), and see `toolformer annotate inspect DIR` for the gains."
    )


def collect(report: AnnotateReport, out: Path, names: OutputNames, n_chunks: int, tools: list[str]) -> None:
    """Fill the report's counts from the records files of this worker (also the chunks of earlier runs)."""
    stats = {t: ToolStats() for t in tools}
    for index in range(n_chunks):
        report.records.append(names.records(out, index))
        report.shards.append(names.shard(out, index))
        for rec in read_records(names.records(out, index)):
            report.documents += 1
            if rec.status == "bad":
                report.bad += 1
                if len(report.bad_rows) < MAX_BAD_IN_MANIFEST:
                    report.bad_rows.append(BadRow(rec.id, rec.verdict))
                continue
            if rec.kept_calls > 0:
                report.texts_kept += 1
                report.calls_kept += rec.kept_calls
                report.dev_texts += rec.split == "dev"
            for tool_name in rec.tools_applied:
                stats.setdefault(tool_name, ToolStats()).texts += 1
            positions: dict[str, set[int]] = {}
            kept_tools: set[str] = set()
            for cand in rec.candidates:
                st = stats.setdefault(cand.tool, ToolStats())
                st.proposed += 1
                positions.setdefault(cand.tool, set()).add(cand.position)
                if cand.ok:
                    st.executed_ok += 1
                elif cand.ok is False:
                    st.executed_error += 1
                if cand.kept:
                    st.kept += 1
                    kept_tools.add(cand.tool)
                if cand.gain is not None and (st.best_gain is None or cand.gain > st.best_gain):
                    st.best_gain = cand.gain
            for tool_name, found in positions.items():
                stats[tool_name].positions += len(found)
            for tool_name in kept_tools:
                stats[tool_name].texts_kept += 1
    report.per_tool = stats
