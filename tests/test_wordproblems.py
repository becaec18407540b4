"""One-step word problems from schemata: every call computes the written answer, every schema is used, the
numbers are in the question, and the texts overlap no evaluation file."""

from __future__ import annotations

from collections import Counter

from toolformer.calls import find_calls
from toolformer.datagen import candidates, mixture
from toolformer.datagen.wordproblems import SCHEMATA, one_step_texts
from toolformer.tools.registry import load_tools


def test_each_call_computes_the_answer_written_after_it() -> None:
    calculator = load_tools("Calculator").get("Calculator")
    rows = list(one_step_texts(160, seed=3))
    for row in rows:
        (span,) = find_calls(row["text"], include_incomplete=False)
        answer = row["text"].rsplit("] ", 1)[1]
        out = calculator.run(span.call)
        assert out.ok, row["text"]
        assert float(out.text) == float(answer) and float(answer) >= 0 and float(answer).is_integer(), row[
            "text"
        ]


def test_every_schema_in_turn_and_a_share_with_a_distractor() -> None:
    rows = list(one_step_texts(320, seed=0, distractor_share=0.3))
    schemata = Counter(r["meta"]["schema"] for r in rows)
    assert len(schemata) == len(SCHEMATA) and set(schemata.values()) == {320 // len(SCHEMATA)}
    # a distractor adds a sentence: more sentences than the schema's own in about 30 % of the texts
    by_schema: dict[str, list[int]] = {}
    for r in rows:
        question = r["text"].split("\n")[0]
        by_schema.setdefault(r["meta"]["schema"], []).append(question.count(". ") + question.count("? "))
    longer = sum(n > min(ns) for ns in by_schema.values() for n in ns)
    assert 0.15 < longer / len(rows) < 0.45


def test_operands_are_in_the_question_and_ids_are_unique_and_seeded() -> None:
    rows = list(one_step_texts(200, seed=1))
    assert all(candidates.operands_before(r["text"]) is True for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    assert [r["text"] for r in one_step_texts(50, seed=1)] == [r["text"] for r in rows[:50]]
    assert [r["text"] for r in one_step_texts(50, seed=2)] != [r["text"] for r in rows[:50]]


def test_no_text_shares_an_8_gram_with_a_shipped_evaluation_file() -> None:
    rows = [{**r, "kind": "calc", "split": "train"} for r in one_step_texts(400, seed=0)]
    kept, dropped = mixture.decontaminate(rows, mixture.shipped_eval_files())
    assert len(kept) >= 0.99 * len(rows), dropped
