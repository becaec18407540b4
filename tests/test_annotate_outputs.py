"""Reading annotate outputs back: one typed reader for annotate, `annotate inspect` and train (issue 10, items 1-2, 9, 13)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fakes import write_jsonl
from toolformer.cli import app
from toolformer.datagen.annotate import AnnotateConfig, annotate
from toolformer.errors import DataError
from toolformer.train.config import TrainConfig
from toolformer.train.data import ANNOTATED, PLAIN, mix, read_corpus

runner = CliRunner()


# --------------------------------------------------------------------------------------------- helpers


def gsm8k_rows(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        a, b = i + 3, i + 5
        rows.append(
            {
                "id": f"g{i}",
                "question": f"Tom has {a} apples and gets {b} more. How many?",
                "solution": f"He has {a}+{b} = <<{a}+{b}={a + b}>>{a + b} apples.\n#### {a + b}",
                "answer": a + b,
            }
        )
    return rows


def keep_even(model: Any, tokenizer: Any, docs: Any, config: Any) -> Any:
    """A stand-in for the loss filter: the calls of documents with an even number help (gain 2), others do not."""
    for _, cands in docs:
        for c in cands:
            good = int(c.doc_id.lstrip("g")) % 2 == 0 and c.ok is not False
            c.token_index = c.position
            c.loss_empty = c.loss_noresult = c.loss_minus = 3.0
            c.loss_plus = 1.0 if good else 3.5
            c.kept = good
            c.reason = "kept" if good else "below tau_f"
    return [c for _, c in docs]


def annotate_gsm8k(tmp_path: Path, n: int = 10, **overrides: Any) -> tuple[Path, Path]:
    """An annotate run over `n` GSM8K rows with --format gsm8k-answer: the even-numbered ones keep their call."""
    inp = write_jsonl(tmp_path / "gsm.jsonl", gsm8k_rows(n))
    out = tmp_path / "aug"
    config = AnnotateConfig(
        input=str(inp),
        out=str(out),
        format="gsm8k-answer",
        proposer="data",
        tools="Calculator",
        shard_size=4,
        dev_fraction=0.0,
        **overrides,
    )
    annotate(config, model=object(), tokenizer=object(), filter_fn=keep_even)
    return inp, out


# --------------------------------------------------------------------------------------------- item 1


def test_gsm8k_answer_documents_without_a_call_are_plain_training_texts(tmp_path: Path) -> None:
    """Regression (issue 10.1): with --format gsm8k-answer the documents that kept no call were silently lost."""
    _, out = annotate_gsm8k(tmp_path, 10)
    corpus = read_corpus(out)
    assert sorted(t.id for t in corpus.annotated) == ["g0", "g2", "g4", "g6", "g8"]
    assert sorted(t.id for t in corpus.plain) == ["g1", "g3", "g5", "g7", "g9"]
    g1 = next(t for t in corpus.plain if t.id == "g1")
    assert g1.text == "Question: Tom has 4 apples and gets 6 more. How many?\nAnswer: 10"
    counts = corpus.documents
    assert (counts.total, counts.annotated, counts.plain, counts.dropped) == (10, 5, 5, {})

    _, _, stats = mix(corpus, ratio=1.0)
    assert stats.documents == {"total": 10, "annotated": 5, "plain": 5, "dropped": {}}
    assert stats.train.by_origin == {ANNOTATED: 5, PLAIN: 5}


def test_an_older_folder_without_record_texts_reads_them_from_the_input(tmp_path: Path) -> None:
    """Records written before they held the text: the texts come from the input, built as annotate built them."""
    inp, out = annotate_gsm8k(tmp_path, 6)
    for path in out.glob("records-*.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert any("text" in r for r in rows)
        write_jsonl(path, [{k: v for k, v in r.items() if k != "text"} for r in rows])
    corpus = read_corpus(out)
    assert sorted(t.id for t in corpus.plain) == ["g1", "g3", "g5"]
    assert all(t.text.startswith("Question: ") and "\nAnswer: " in t.text for t in corpus.plain)

    inp.unlink()  # the input moved away: every document is still accounted for, with the reason
    moved = read_corpus(out)
    assert moved.plain == [] and len(moved.annotated) == 3
    (reason,) = moved.documents.dropped
    assert moved.documents.dropped[reason] == 3 and "not a local file" in reason
    assert moved.documents.total == 6 and any("not a local file" in n for n in moved.notes)


def test_every_document_is_accounted_for_bad_rows_and_test_splits_included(tmp_path: Path) -> None:
    rows = gsm8k_rows(6)
    rows.insert(2, {"id": "broken", "question": "no solution"})
    inp = write_jsonl(tmp_path / "gsm.jsonl", rows)
    out = tmp_path / "aug"
    config = AnnotateConfig(
        input=str(inp), out=str(out), format="gsm8k-answer", proposer="data", tools="Calculator"
    )
    annotate(config, model=object(), tokenizer=object(), filter_fn=keep_even)
    corpus = read_corpus(out)
    counts = corpus.documents
    assert counts.total == 7 and counts.annotated + counts.plain + sum(counts.dropped.values()) == 7
    (reason,) = counts.dropped
    assert reason.startswith("bad input row") and "solution" in reason


def test_the_reader_gives_typed_records_and_finds_a_document(tmp_path: Path) -> None:
    from toolformer.datagen.outputs import AnnotateFolder

    _, out = annotate_gsm8k(tmp_path, 5)
    folder = AnnotateFolder(out)
    assert folder.status == "done" and folder.unfinished() is None
    docs = list(folder.documents())
    assert [d.id for d in docs] == [f"g{i}" for i in range(5)]
    kept = docs[0]
    assert kept.kind == "annotated" and kept.row is not None
    assert kept.row.calls[0].tool == "Calculator" and kept.row.calls[0].gain == pytest.approx(2.0)
    assert kept.record is not None and kept.record.candidates[0].gain == pytest.approx(2.0)
    plain = folder.find("g1")
    assert plain.kind == "plain" and plain.row is None and plain.text is not None
    assert plain.text.endswith("Answer: 10")
    with pytest.raises(DataError, match="nope"):
        folder.find("nope")


# --------------------------------------------------------------------------------------------- item 2


def kill_mid_run(out: Path) -> None:
    """What a killed annotate leaves: its manifest still says running, and the last chunks are missing."""
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["status"] = "running"
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "records-00002.jsonl").unlink()
    (out / "shard-00002.jsonl").unlink()


def test_train_refuses_an_unfinished_annotate_folder_unless_allow_partial(tmp_path: Path) -> None:
    _, out = annotate_gsm8k(tmp_path, 10)  # chunks of 4: 4 + 4 + 2
    kill_mid_run(out)
    with pytest.raises(DataError, match="8 documents") as err:
        read_corpus(out)
    assert "--allow-partial" in str(err.value) and "\n" not in str(err.value)
    partial = read_corpus(out, allow_partial=True)
    assert partial.documents.total == 8 and any("not finished" in n for n in partial.notes)

    result = runner.invoke(app, ["train", str(out), "--out", str(tmp_path / "model")])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert message.startswith("error:") and "8 documents" in message and "Traceback" not in result.output
    assert not (tmp_path / "model").exists()


def test_allow_partial_is_a_config_field_with_help() -> None:
    assert TrainConfig().allow_partial is False and "partial" in TrainConfig.help("allow_partial")
    result = runner.invoke(app, ["train", "--help"])
    assert "--allow-partial" in result.stdout


# --------------------------------------------------------------------------------------------- item 9


def test_train_without_any_call_says_so_and_points_to_tau_f(tmp_path: Path) -> None:
    inp = write_jsonl(tmp_path / "gsm.jsonl", [r for r in gsm8k_rows(6) if int(r["id"][1:]) % 2])
    out = tmp_path / "aug"
    config = AnnotateConfig(
        input=str(inp), out=str(out), format="gsm8k-answer", proposer="data", tools="Calculator"
    )
    annotate(config, model=object(), tokenizer=object(), filter_fn=keep_even)
    result = runner.invoke(app, ["train", str(out), "--out", str(tmp_path / "model")])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "dev split" not in message
    assert "no text carries a call" in message and "tau" in message.lower()
    assert "Traceback" not in result.output and not (tmp_path / "model").exists()


def test_train_with_every_call_in_dev_says_that(tmp_path: Path) -> None:
    rows = [
        {"id": f"c{i}", "split": "dev", "text": f"So {i}+1 = [Calculator({i} + 1) → {i + 1}] {i + 1}."}
        for i in range(3)
    ]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    result = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "model")])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "3 texts with a call" in message and "dev" in message


# --------------------------------------------------------------------------------------------- item 13


def test_inspect_without_id_lists_documents_by_gain_with_the_text_around_each_call(tmp_path: Path) -> None:
    _, out = annotate_gsm8k(tmp_path, 6)
    result = runner.invoke(app, ["annotate", "inspect", str(out), "--top", "2", "--window", "12"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    ids = [line.split()[0] for line in text.splitlines() if line.startswith("g")]
    assert len(ids) == 2 and set(ids) <= {"g0", "g2", "g4"}  # the kept ones, gain 2.0, first
    assert "[Calculator(" in text and "Answer: " in text
    assert "apples" not in text  # only a window of 12 characters around each call, not the whole text

    as_json = runner.invoke(app, ["annotate", "inspect", str(out), "--top", "10", "--json"])
    listed = json.loads(as_json.stdout)
    gains = [d["gain"] for d in listed]
    assert len(listed) == 6 and gains == sorted(gains, reverse=True)
    assert gains[0] == pytest.approx(2.0) and gains[-1] == pytest.approx(-0.5)
    dropped = next(d for d in listed if d["id"] == "g1")
    (call,) = dropped["calls"]
    assert call["before"].endswith("Answer: ") and call["after"] == "10" and not call["kept"]
