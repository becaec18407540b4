"""Training texts (`toolformer.train.data`): what counts as annotated, what is dropped and why, dev cut, tokens.

tests/test_train.py covers the mix ratio, splits, annotate folders and the after-call mask with a fast tokenizer;
this file covers the rest of the module's rules on small hand-made rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fakes import CharTokenizer, write_jsonl
from toolformer.errors import DataError
from toolformer.train.data import (
    ANNOTATED,
    PLAIN,
    SOURCE,
    Text,
    data_files,
    encode,
    encode_many,
    mix,
    read_corpus,
    why_no_training_texts,
)

CALL = "Tom had 3+4 = [Calculator(3 + 4) → 7] 7 apples."


def test_only_a_call_with_its_result_makes_a_text_annotated(tmp_path: Path) -> None:
    rows = [
        {"id": "done", "text": CALL},
        {"id": "asked", "text": 'Tools: [QA("Who?")] asks a question.'},  # a call without a result: plain
        {"id": "open", "text": "Then [Calculator(1 + 1) → and it stops"},
    ]
    corpus = read_corpus(write_jsonl(tmp_path / "d.jsonl", rows), dev_fraction=0.0)
    assert [t.id for t in corpus.annotated] == ["done"]
    assert sorted(t.id for t in corpus.plain) == ["asked", "open"]
    assert corpus.documents.to_dict() == {"total": 3, "annotated": 1, "plain": 2, "dropped": {}}
    (text,) = corpus.annotated
    assert (text.origin, text.loss_start, text.has_call) == (ANNOTATED, CALL.index("["), True)


def test_a_source_text_is_the_given_one_else_the_text_without_its_calls(tmp_path: Path) -> None:
    rows = [
        {"id": "given", "text": CALL, "source_text": "Tom had 3+4 = 7 apples, as written."},
        {"id": "blank", "text": CALL, "source_text": "  "},
        {"id": "none", "text": CALL},
    ]
    corpus = read_corpus(write_jsonl(tmp_path / "d.jsonl", rows), dev_fraction=0.0)
    source = {t.id: t for t in corpus.source}
    assert source["given"].text == "Tom had 3+4 = 7 apples, as written."
    assert source["blank"].text == source["none"].text
    assert "[" not in source["none"].text and source["none"].text.startswith("Tom had 3+4 = ")
    assert {t.origin for t in corpus.source} == {SOURCE}
    assert source["none"].loss_start == CALL.index("[")  # the same place as in its annotated twin


def test_rows_are_dropped_with_a_reason_and_ids_fall_back_to_file_and_line(tmp_path: Path) -> None:
    rows = [
        {"text": CALL},
        {"id": 12, "text": CALL},
        {"id": "   ", "text": CALL},
        {"id": "empty", "text": "  \n"},
        {"id": "held-out", "text": CALL, "split": "test"},
        "",
        {"id": "dev", "text": CALL, "split": "dev"},
    ]
    corpus = read_corpus(write_jsonl(tmp_path / "rows.jsonl", rows), dev_fraction=0.0)
    assert [t.id for t in corpus.annotated] == ["rows.jsonl:1", "12", "rows.jsonl:3", "dev"]
    assert [t.split for t in corpus.annotated] == ["train", "train", "train", "dev"]
    assert corpus.skipped == {"empty text": 1, "split=test": 1}
    assert corpus.documents.total == 6  # the blank line is not a document


def test_nothing_to_train_on_says_what_was_dropped(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": " "}, {"text": CALL, "split": "test"}])
    with pytest.raises(DataError) as info:
        read_corpus(path)
    message = str(info.value)
    assert "no training texts among 2 documents in 1 file(s)" in message
    assert "empty text: 1" in message and "split=test: 1" in message and "\n" not in message


def test_a_line_that_is_not_an_object_names_its_file_and_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": CALL}, "[1, 2]"])
    with pytest.raises(DataError, match=r"d\.jsonl:2 is a JSON list, not an object"):
        read_corpus(path)


def test_a_folder_reads_every_jsonl_file_below_it(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    write_jsonl(folder / "a.jsonl", [{"id": "a", "text": CALL}])
    write_jsonl(folder / "deeper" / "b.jsonl.gz", [{"id": "b", "text": CALL}], gz=True)
    (folder / "notes.txt").write_text("not data", encoding="utf-8")
    kind, files = data_files(folder)
    assert kind == "jsonl" and [f.name for f in files] == ["a.jsonl", "b.jsonl.gz"]
    assert sorted(t.id for t in read_corpus(folder, dev_fraction=0.0).annotated) == ["a", "b"]

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="a folder without shard-"):
        data_files(empty)


def test_why_no_training_texts_points_at_the_cause(tmp_path: Path) -> None:
    plain_only = read_corpus(
        write_jsonl(tmp_path / "p.jsonl", [{"id": f"p{i}", "text": "No call here."} for i in range(3)]),
        dev_fraction=0.0,
    )
    train, _, stats = mix(plain_only, ratio=0.5)
    assert train == []
    why = why_no_training_texts(plain_only, stats)
    assert why.startswith("no text carries a call (3 rows, 3 plain)") and "mix_ratio=0.5" in why
    assert "annotate the data first" in why

    all_dev = read_corpus(write_jsonl(tmp_path / "d.jsonl", [{"text": CALL, "split": "dev"}] * 2))
    stats = mix(all_dev, ratio=0.5)[2]
    assert why_no_training_texts(all_dev, stats).startswith("all 2 texts with a call are in the dev split")


def test_the_dev_cut_keeps_the_same_texts_whatever_the_seed(tmp_path: Path) -> None:
    rows = [{"id": f"c{i}", "text": CALL, "split": "dev"} for i in range(30)]
    rows += [{"id": f"p{i}", "text": "Plain text.", "split": "dev"} for i in range(30)]
    corpus = read_corpus(write_jsonl(tmp_path / "d.jsonl", rows))
    cuts = [{(t.origin, t.id) for t in mix(corpus, 0.5, seed=seed, max_dev=10)[1]} for seed in (0, 1, 7)]
    assert len(cuts[0]) == 10 and cuts[0] == cuts[1] == cuts[2]
    assert len(mix(corpus, 0.5, max_dev=None)[1]) == 45  # 30 annotated + round(0.5 × 30) plain


def test_after_call_loss_with_a_slow_tokenizer_starts_at_the_call() -> None:
    tok = CharTokenizer(is_fast=False)  # no offsets: the mask comes from tokenizing the text before the call
    start = CALL.index("[")
    row = encode(tok, Text("a", CALL, "train", ANNOTATED, start), loss="after-call")
    assert row is not None and row["input_ids"] == tok.ids(CALL) + [tok.eos_token_id]
    assert row["labels"][:start] == [-100] * start
    assert row["labels"][start:] == row["input_ids"][start:]  # the call, the rest and EOS

    plain = encode(tok, Text("p", "abc", "train", PLAIN), loss="after-call")
    ids = tok.ids("abc") + [tok.eos_token_id]
    assert plain == {"input_ids": ids, "labels": ids}


class AddsEos(CharTokenizer):
    """Ends every text of a batch with EOS itself, as some tokenizers do."""

    def __call__(self, text: Any, **kwargs: Any) -> dict[str, Any]:
        out = super().__call__(text, **kwargs)
        return {**out, "input_ids": [ids + [self.eos_token_id] for ids in out["input_ids"]]}


def test_eos_is_added_once_and_the_cut_can_drop_a_text() -> None:
    tok = CharTokenizer()
    plain = Text("e", "ab", "train", PLAIN)
    assert encode(tok, plain)["input_ids"] == encode(AddsEos(), plain)["input_ids"] == tok.ids("ab") + [1]
    cut = encode_many(tok, [Text("a", CALL, "train", ANNOTATED, CALL.index("["))], "after-call", max_length=8)
    assert cut == [None]  # the call lies beyond the cut: nothing left to learn
    assert encode_many(tok, [], "all") == []
    kept = encode(tok, Text("a", CALL, "train", ANNOTATED, CALL.index("[")), "all", max_length=8)
    assert kept is not None and kept["labels"] == kept["input_ids"] == tok.ids(CALL[:8])


def test_a_prompt_completion_row_labels_its_completion_only(tmp_path: Path) -> None:
    rows = [
        {
            "id": "pc",
            "prompt": "User: weather in Oslo?\nAssistant:",
            "completion": ' <tool_call>{"name": "w"}',
        },
        {"id": "pc-call", "prompt": "Q: 3+4?\nA:", "completion": " [Calculator(3 + 4) → 7] 7"},
        {"id": "t", "text": "Plain text row."},
    ]
    corpus = read_corpus(write_jsonl(tmp_path / "d.jsonl", rows), dev_fraction=0.0)
    by_id = {t.id: t for t in corpus.plain + corpus.annotated}
    assert [t.id for t in corpus.annotated] == ["pc-call"]  # an executed call in the completion: annotated
    tok = CharTokenizer()
    for loss in ("all", "after-call"):
        row = encode(tok, by_id["pc"], loss=loss)
        cut = len(rows[0]["prompt"])
        assert row is not None and row["input_ids"] == tok.ids(rows[0]["prompt"] + rows[0]["completion"]) + [
            1
        ]
        assert row["labels"][:cut] == [-100] * cut and row["labels"][cut:] == row["input_ids"][cut:]
        assert encode(tok, by_id["t"], loss=loss)["labels"] == tok.ids("Plain text row.") + [1]
    # After-call: from the call's "[" on, which lies inside the completion.
    call = encode(tok, by_id["pc-call"], loss="after-call")
    start = "Q: 3+4?\nA: [".index("[")
    assert call["labels"][:start] == [-100] * start and call["labels"][start] != -100
    assert encode(tok, by_id["pc-call"], loss="all")["labels"][: len("Q: 3+4?\nA:")] == [-100] * len(
        "Q: 3+4?\nA:"
    )


def test_half_a_prompt_completion_row_is_a_text_row_and_a_bad_one_names_its_line(tmp_path: Path) -> None:
    corpus = read_corpus(
        write_jsonl(tmp_path / "a.jsonl", [{"prompt": "meta", "text": CALL}]), dev_fraction=0.0
    )
    assert [t.text for t in corpus.annotated] == [CALL]  # "prompt" alone is just another field
    bad = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "Q:", "completion": 3}])
    with pytest.raises(DataError, match=r"b\.jsonl:1: a prompt–completion row needs string fields"):
        read_corpus(bad)
