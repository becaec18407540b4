"""The input plan of an annotation run (`datagen/plan.py`): this worker's rows, their documents, the chunks."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import write_jsonl
from toolformer.datagen.config import AnnotateConfig
from toolformer.datagen.io import BadRow, open_source
from toolformer.datagen.merge import shard_of
from toolformer.datagen.plan import chunks, input_documents, make_item, plan_chunks, worker_rows
from toolformer.datagen.records import Document
from toolformer.errors import DataError

GSM8K = {
    "id": "g1",
    "question": "Tom has 3 apples and buys 4. How many?",
    "solution": "He has 3+4=<<3+4=7>>7 apples.\n#### 7",
    "answer": 7,
}


def _docs(n: int) -> list[dict]:
    return [{"id": f"d{k}", "text": f"Document number {k}."} for k in range(n)]


def _setup(tmp_path: Path, rows: list, **options) -> tuple:
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    config = AnnotateConfig(input=str(path), **options)
    return open_source(path, config.format), config


def test_worker_rows_flag_a_repeated_id_with_the_line_it_was_first_seen_at(tmp_path):
    source, config = _setup(
        tmp_path, [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "a", "text": "z"}]
    )
    rows = list(worker_rows(source, config))
    assert [(r.id, r.fallback_id, r.duplicate_of) for r in rows] == [
        ("a", "in.jsonl:1", None),
        ("b", "in.jsonl:2", None),
        ("a", "in.jsonl:3", "in.jsonl:1"),
    ]
    assert make_item(rows[2], config) == BadRow("a", "duplicate id (first seen at in.jsonl:1)")


def test_workers_split_the_input_by_hash_of_id_and_limit_counts_every_workers_rows(tmp_path):
    source, config = _setup(tmp_path, _docs(20), num_shards=3, limit=12)
    seen = []
    for shard in range(3):
        mine = [r.id for r in worker_rows(source, AnnotateConfig(**{**vars(config), "shard_id": shard}))]
        assert all(shard_of(doc_id, 3) == shard for doc_id in mine)
        seen += mine
    assert sorted(seen, key=lambda i: int(i[1:])) == [
        f"d{k}" for k in range(12)
    ]  # the same 12 rows, each once


def test_plan_chunks_cuts_this_workers_ids_into_chunks_of_shard_size(tmp_path):
    source, config = _setup(tmp_path, _docs(7), shard_size=3)
    assert plan_chunks(source, config) == [["d0", "d1", "d2"], ["d3", "d4", "d5"], ["d6"]]
    assert list(chunks(iter(range(4)), 2)) == [[0, 1], [2, 3]]
    assert list(chunks([], 2)) == []


def test_plan_chunks_keeps_merely_unusable_rows_as_ids_to_record_as_bad(tmp_path):
    source, config = _setup(tmp_path, [{"id": "a", "text": "fine"}, {"id": "b", "text": ""}])
    assert plan_chunks(source, config) == [["a", "b"]]


@pytest.mark.parametrize(
    ("rows", "options", "message"),
    [
        ([], {}, "holds no documents: nothing to annotate"),
        (_docs(2), {"limit": 0}, "holds no documents within --limit 0"),
        ([{"id": "a", "text": "x"}, "{not json"], {}, "line 2 is not JSON"),
        (
            [{"id": "a", "body": "x"}, {"id": "b", "body": "y"}],
            {},
            "none of its 2 rows gives a document (missing field 'text' (2)); its fields: id, body: pick the "
            "text with --text-field",
        ),
    ],
)
def test_plan_chunks_refuses_an_input_that_gives_no_documents(tmp_path, rows, options, message):
    source, config = _setup(tmp_path, rows, **options)
    with pytest.raises(DataError, match="input '.*in.jsonl'") as err:
        plan_chunks(source, config)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_worker_without_rows_of_its_own_is_not_an_error_when_the_input_has_rows(tmp_path):
    rows = _docs(1)
    other = (shard_of("d0", 2) + 1) % 2
    source, config = _setup(tmp_path, rows, num_shards=2, shard_id=other)
    assert plan_chunks(source, config) == []


def test_the_data_proposer_takes_inline_calls_out_of_the_text(tmp_path):
    text = "Two and three make 5. [Calculator(2 + 3) → 5]"
    source, config = _setup(tmp_path, [{"id": "a", "text": text}], proposer="data")
    item = make_item(next(worker_rows(source, config)), config)
    assert item.text == "Two and three make 5."
    assert item.meta["data_calls"] == [{"tool": "Calculator", "args": "2 + 3", "position": 21, "result": "5"}]
    rule = AnnotateConfig(input=config.input)  # the rule proposer keeps the text as it is
    assert make_item(next(worker_rows(source, rule)), rule).text == text


@pytest.mark.parametrize(
    ("format", "text"),
    [
        ("gsm8k", "Tom has 3 apples and buys 4. How many?\nHe has 3+4=7 apples."),
        ("gsm8k-answer", "Question: Tom has 3 apples and buys 4. How many?\nAnswer: 7"),
    ],
)
def test_gsm8k_records_become_documents_with_their_calculator_calls(tmp_path, format, text):
    source, config = _setup(tmp_path, [GSM8K, {"id": "g2", "question": "q"}], format=format, proposer="data")
    good, bad = [make_item(row, config) for row in worker_rows(source, config)]
    assert isinstance(good, Document) and (good.id, good.text) == ("g1", text)
    assert [c["args"] for c in good.meta["data_calls"]] == ["3 + 4"]
    assert isinstance(bad, BadRow) and bad.id == "g2" and "'solution'" in bad.reason


def test_a_gsm8k_text_longer_than_max_chars_is_a_bad_row(tmp_path):
    source, config = _setup(tmp_path, [GSM8K], format="gsm8k", proposer="data", max_chars=20)
    item = make_item(next(worker_rows(source, config)), config)
    assert isinstance(item, BadRow) and "more than max_chars=20" in item.reason


def test_input_documents_rebuilds_the_wanted_documents_of_every_worker(tmp_path):
    rows = [*_docs(6), {"id": "d1", "text": "a repeat"}, {"id": "x", "text": ""}]
    source, config = _setup(tmp_path, rows, num_shards=2, shard_id=0)
    found = input_documents(config, ["d1", "d4", "x", "missing"])
    assert {k: v.text for k, v in found.items()} == {"d1": "Document number 1.", "d4": "Document number 4."}
