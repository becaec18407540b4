"""The all-tools training mixture: the training file assembled from what the loss filter kept, with its yield table.

`assemble` takes every call the filter kept (`toolformer annotate` folders of the texts `datagen.candidates`
wrote), a share of the texts whose call it dropped (written without the call, as the paper's C* keeps them) and
the plain texts, puts a share of them under the tools header, and reports the yield per tool at several τ_f
(the paper's Table 2) and the n-gram overlap of the texts with every evaluation file.
"""

from __future__ import annotations

import functools
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from toolformer.calls import find_calls
from toolformer.datagen.candidates import seeded_rng
from toolformer.datagen.io import read_jsonl
from toolformer.errors import DataError


def with_header(text: str, tools: Sequence[Any], rng: random.Random) -> str:
    """`text` under the tools header (`runtime.prompts.tools_header`) naming a random subset of `tools` that holds
    every tool the text calls, in registry order."""
    from toolformer.runtime.prompts import tools_header

    called = {span.call.name for span in find_calls(text, include_incomplete=False)}
    chosen = [t for t in tools if t.name in called or rng.random() < 0.6]
    return tools_header(chosen) + text


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@functools.lru_cache(maxsize=128)
def record_ngrams(path: Path, n: int) -> frozenset[tuple[str, ...]]:
    """Every n-gram of words of an evaluation file's questions (or texts), read once per process: `mixture
    assemble` decontaminates against the files, then measures the overlap left with the same files."""
    grams: set[tuple[str, ...]] = set()
    for row in read_jsonl(path):
        grams |= ngrams(str(row.get("question") or row.get("text") or ""), n)
    return frozenset(grams)


def overlap(texts: Iterable[str], eval_files: Iterable[Path], n: int = 8) -> dict[str, Any]:
    """How many training texts share an n-gram of words with an evaluation record's question, per eval file."""
    texts = list(texts)
    grams = [ngrams(t, n) for t in texts]
    report: dict[str, Any] = {"n": n, "texts": len(texts), "files": {}}
    for path in eval_files:
        ev = record_ngrams(path, n)
        hits = sum(1 for g in grams if g & ev)
        report["files"][path.name] = hits
    return report


def decontaminate(
    rows: Sequence[dict[str, Any]], eval_files: Iterable[Path], n: int = 8
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """`rows` without those that share an n-gram of words with an evaluation record (`overlap`'s test) or were
    made from the GSM8K dev slice (`toolformer.heldout`); returns (kept rows, dropped per file and "gsm8k_dev")."""
    from toolformer.heldout import is_gsm8k_dev

    evals: dict[str, set[tuple[str, ...]]] = {}
    for path in eval_files:
        evals[path.name] = evals.get(path.name, set()) | record_ngrams(path, n)
    dropped: Counter[str] = Counter()
    kept = []
    for row in rows:
        source = str(row["id"]).split(":", 1)[-1]
        if source.startswith("gsm8k-") and is_gsm8k_dev(source):
            dropped["gsm8k_dev"] += 1
            continue
        grams = ngrams(row["text"], n)
        hit = next((name for name, ev in evals.items() if grams & ev), None)
        if hit is not None:
            dropped[hit] += 1
            continue
        kept.append(row)
    return kept, dict(dropped)


def assemble(
    annotate_dirs: Sequence[str | Path],
    plain_files: Sequence[str | Path],
    tools: Sequence[Any],
    rejected_ratio: float = 0.15,
    header_share: float = 0.25,
    seed: int = 0,
    max_per_tool: int | None = None,
    eval_files: Sequence[Path] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The training rows: every kept text (at most `max_per_tool` per tool), `rejected_ratio` × as many texts whose candidate the filter dropped
    (written without the call, as the paper's C* keeps them), and every plain row; `header_share` of them under
    the tools header, and every conversational no-call text (id "chat:…") under it, since that is where a user's
    chat meets the model. Rows overlapping `eval_files` (default: the shipped dev files) or made from the GSM8K
    dev slice are dropped (`decontaminate`). Returns (rows with id/text/split/kind, counts)."""
    from toolformer.datagen.candidates import operands_before
    from toolformer.datagen.merge import split_of
    from toolformer.datagen.outputs import ANNOTATED, PLAIN, AnnotateFolder

    rng = seeded_rng(seed, "assemble")
    kept, rejected = [], []
    for folder in annotate_dirs:
        if not AnnotateFolder.looks_like(folder):
            raise DataError(f"{folder}: not a `toolformer annotate` output folder")
        run = AnnotateFolder(Path(folder))
        if (why := run.unfinished()) is not None:
            raise DataError(f"{folder}: {why}")
        for doc in run.documents():
            item = {"id": doc.id, "split": doc.split, "kind": doc.id.split(":", 1)[0]}
            if doc.kind == ANNOTATED and doc.row is not None:
                spans = [
                    s for s in find_calls(doc.row.text, include_incomplete=False) if s.call.result is not None
                ]
                kept.append({**item, "text": doc.row.text, "tool": spans[0].call.name if spans else None})
            elif doc.kind == PLAIN and doc.text:
                rejected.append({**item, "text": doc.text, "tool": None})
    rng.shuffle(rejected)
    if max_per_tool is not None:  # one tool's easy texts (MT keeps 3 in 4) must not crowd out the others
        rng.shuffle(kept)
        seen: Counter[str] = Counter()
        kept = [r for r in kept if (seen.update([r["tool"]]) or seen[r["tool"]] <= max_per_tool)]
    rows = kept + rejected[: round(rejected_ratio * len(kept))]
    for path in plain_files:
        for row in read_jsonl(path):
            doc_id = str(row["id"])
            rows.append(
                {
                    "id": doc_id,
                    "split": split_of(doc_id, 0.05),
                    "kind": "plain",
                    "text": row["text"],
                    "tool": None,
                }
            )
    rows, dropped = decontaminate(rows, shipped_eval_files() if eval_files is None else eval_files)
    for row in rows:
        if rng.random() < header_share or str(row["id"]).startswith("chat:"):
            row["text"] = with_header(row["text"], tools, rng)
            row["header"] = True
    rng.shuffle(rows)
    calc = [operands_before(r["text"]) for r in rows if r["tool"] == "Calculator"]
    counts = {
        "kept": dict(Counter(r["tool"] for r in kept)),
        "dropped_overlap": dropped,
        "calculator_operands_before": {"all": sum(c is True for c in calc), "some_later": calc.count(False)},
        "rejected_available": len(rejected),
        "rejected_used": round(rejected_ratio * len(kept)) if rejected else 0,
        "plain": sum(1 for r in rows if r["kind"] == "plain"),
        "with_header": sum(1 for r in rows if r.get("header")),
        "rows": len(rows),
        "dev": sum(1 for r in rows if r["split"] == "dev"),
    }
    return rows, counts


def shipped_eval_files() -> list[Path]:
    """The dev files the evaluation suites read (`toolformer/data/evals/*.jsonl`): what training must not overlap."""
    return sorted(Path(str(resources.files("toolformer").joinpath("data", "evals"))).glob("*.jsonl"))


TAU_F_LEVELS = (0.5, 1.0, 2.0)


def yield_table(
    annotate_dirs: Sequence[str | Path], levels: Sequence[float] = TAU_F_LEVELS
) -> dict[str, Any]:
    """The paper's Table 2 from annotate records: per tool, texts with a candidate, candidates, and calls whose
    gain L⁻ − L⁺ reaches each τ_f (at most one call per text counted: the best)."""
    table: dict[str, dict[str, Any]] = {}
    for folder in annotate_dirs:
        for path in sorted(Path(folder).glob("records-*.jsonl")):
            for rec in read_jsonl(path):
                best: dict[str, float] = {}
                for cand in rec.get("candidates", []):
                    tool, gain = cand.get("tool"), cand.get("gain")
                    row = table.setdefault(
                        tool, {"texts": 0, "candidates": 0, **{f"kept@{t:g}": 0 for t in levels}}
                    )
                    row["candidates"] += 1
                    if isinstance(gain, (int, float)):
                        best[tool] = max(best.get(tool, float("-inf")), float(gain))
                    best.setdefault(tool, float("-inf"))
                for tool, gain in best.items():
                    table[tool]["texts"] += 1
                    for t in levels:
                        table[tool][f"kept@{t:g}"] += gain >= t
    return table
