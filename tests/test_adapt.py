"""`toolformer adapt`: data readers, label alignment, metrics, head building and end-to-end runs on a tiny model.

The end-to-end runs use small inline fixtures (a keyword sentiment set, a two-sentence NER set, a QA set, a
seq2seq set): no NER, sentiment or translation data is on hand in ../shared/data. The run on real data with the
embedded model is in test_adapt_real.py (slow).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fakes import write_jsonl
from toolformer.adapt import AdaptConfig, adapt
from toolformer.adapt import features as F
from toolformer.adapt import metrics as M
from toolformer.adapt.config import PREDICTIONS_FILE, REPORT_JSON, REPORT_MD
from toolformer.adapt.tasks import QaExample, get_field, load_task_data, read_split, read_table, to_example
from toolformer.cli import app
from toolformer.errors import ConfigError, DataError

runner = CliRunner()


def fresh(tiny_lm: tuple[Any, Any]) -> tuple[Any, Any]:
    """A private copy of the tiny LM: adapt takes over (and with LoRA merges into) the weights it is given."""
    model, tokenizer = tiny_lm
    return copy.deepcopy(model), tokenizer


FIELDS = {
    "id": "id", "text": "text", "label": "label", "tokens": "tokens", "tags": "tags", "question": "question",
    "context": "context", "answers": "answers", "source": "source", "target": "target",
}  # fmt: skip


# --------------------------------------------------------------------------------------------- data


def test_reads_jsonl_csv_json_and_conll(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"text": "x", "label": 1}])
    (tmp_path / "b.csv").write_text('text,label\n"hello, world",pos\n', encoding="utf-8")
    (tmp_path / "c.json").write_text('[{"text": "y", "label": "neg"}]', encoding="utf-8")
    (tmp_path / "d.conll").write_text("-DOCSTART- O\n\nJohn B-PER\nruns O\n\nParis B-LOC\n", encoding="utf-8")
    assert read_table(tmp_path / "a.jsonl") == [{"text": "x", "label": 1}]
    assert read_table(tmp_path / "b.csv") == [{"text": "hello, world", "label": "pos"}]
    assert read_table(tmp_path / "c.json")[0]["label"] == "neg"
    assert read_table(tmp_path / "d.conll") == [
        {"tokens": ["John", "runs"], "tags": ["B-PER", "O"]},
        {"tokens": ["Paris"], "tags": ["B-LOC"]},
    ]
    with pytest.raises(DataError, match="format"):
        read_table(write_jsonl(tmp_path / "e.data", [{"a": 1}]))


def test_dotted_fields_reach_into_lists_and_objects() -> None:
    row = {"answers": {"text": ["Paris", "paris"]}, "masked_sentences": ["first", "second"]}
    assert get_field(row, "answers.text.0") == "Paris"
    assert get_field(row, "masked_sentences.1") == "second"
    assert get_field(row, "masked_sentences.5", None) is None


def test_qa_answers_in_every_shape_and_unfound_answers_are_dropped() -> None:
    ctx = "John lives in Paris with his dog."
    squad = to_example(
        "qa",
        {"question": "q?", "context": ctx, "answers": {"text": ["Paris"], "answer_start": [14]}},
        0,
        FIELDS,
    )
    strings = to_example("qa", {"question": "q?", "context": ctx, "answers": ["his dog", "dog"]}, 1, FIELDS)
    wrong_offset = to_example(
        "qa", {"question": "q?", "context": ctx, "answers": [{"text": "Paris", "answer_start": 3}]}, 2, FIELDS
    )
    missing = to_example("qa", {"question": "q?", "context": ctx, "answers": "London"}, 3, FIELDS)
    assert isinstance(squad, QaExample) and squad.starts == [14]
    assert strings.answers == ["his dog", "dog"] and ctx[strings.starts[1] :].startswith("dog")
    assert wrong_offset.starts == [14]  # a stale offset is corrected by finding the text
    assert missing == "answer not in context"


def test_bad_rows_are_counted_not_fixed(tmp_path: Path) -> None:
    rows = [
        {"tokens": ["a", "b"], "tags": ["O", "O"]},
        {"tokens": ["a", "b"], "tags": ["O"]},
        {"tokens": "c d", "tags": "B-X O"},
        {"words": ["a"]},
    ]
    split = read_split(write_jsonl(tmp_path / "ner.jsonl", rows), "ner", FIELDS)
    assert [e.tokens for e in split.examples] == [["a", "b"], ["c", "d"]]
    assert split.dropped == {"tokens and tags differ in length": 1, "missing field 'tokens'": 1}


def test_dev_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "text": f"text {i}", "label": "ab"[i % 2]} for i in range(40)]
    data = write_jsonl(tmp_path / "t.jsonl", rows)
    cfg = AdaptConfig(train=str(data), out=str(tmp_path / "o"), dev_fraction=0.25, seed=3).check()
    a, b = load_task_data(cfg), load_task_data(cfg)
    dev_ids = [e.id for e in a.dev.examples]
    assert dev_ids == [e.id for e in b.dev.examples] and len(dev_ids) == 10
    assert not set(dev_ids) & {e.id for e in a.train.examples}
    assert a.labels == ["a", "b"]
    other = load_task_data(AdaptConfig(train=str(data), out="o", dev_fraction=0.25, seed=4).check())
    assert [e.id for e in other.dev.examples] != dev_ids


def test_config_rejects_bad_options() -> None:
    with pytest.raises(ConfigError, match="task='parse'"):
        AdaptConfig(train="x", out="y", task="parse").check()
    with pytest.raises(ConfigError, match="metric='bleu'"):
        AdaptConfig(train="x", out="y", task="classification", metric="bleu").check()
    with pytest.raises(ConfigError, match="prompt_template"):
        AdaptConfig(train="x", out="y", task="seq2seq", prompt_template="no slot").check()
    assert AdaptConfig(train="x", out="y", task="token-classification").check().task == "ner"


# --------------------------------------------------------------------------------------------- features


def test_ner_tags_sit_on_each_words_last_subtoken(smol_tokenizer: Any) -> None:
    from toolformer.adapt.tasks import NerExample

    ex = NerExample("0", ["Schwarzenegger", "visited", "Ouagadougou", "."], ["B-PER", "O", "B-LOC", "O"])
    tag2id = {"B-LOC": 0, "B-PER": 1, "O": 2}
    rows, feats = F.encode_ner(smol_tokenizer, [ex], tag2id, max_length=64)
    enc = smol_tokenizer(" ".join(ex.tokens), add_special_tokens=False, return_offsets_mapping=True)
    ends = [end for _, end in enc["offset_mapping"]]
    word_ends = [14, 22, 34, 36]  # character end of each word in "Schwarzenegger visited Ouagadougou ."
    assert [ends[t] for t in feats[0].word_token] == word_ends
    labelled = [(t, lab) for t, lab in enumerate(rows[0]["labels"]) if lab != F.IGNORE]
    assert [lab for _, lab in labelled] == [1, 2, 0, 2]
    assert len(rows[0]["input_ids"]) > len(
        ex.tokens
    )  # the long names are several tokens: the others are -100


def test_qa_windows_point_at_the_answer(smol_tokenizer: Any) -> None:
    filler = " ".join(f"word{i}" for i in range(60))
    ctx = f"{filler} The treaty was signed in Lisbon in 2007. {filler}"
    ex = QaExample("0", "Where was the treaty signed?", ctx, ["Lisbon"], [ctx.index("Lisbon")])
    rows, feats = F.encode_qa(smol_tokenizer, [ex], max_length=64, doc_stride=16)
    assert len(rows) > 2  # a long context is cut into windows
    answered = [(r, f) for r, f in zip(rows, feats, strict=True) if r["start_positions"] > 0]
    assert answered
    for row, feat in answered:
        s, e = feat.offsets[row["start_positions"]], feat.offsets[row["end_positions"]]
        assert ctx[s[0] : e[1]].strip() == "Lisbon"
    assert all(len(r["input_ids"]) <= 64 for r in rows)


def test_seq2seq_loss_only_on_the_target(smol_tokenizer: Any) -> None:
    from toolformer.adapt.tasks import Seq2SeqExample

    ex = Seq2SeqExample("0", "a very long source " * 40, ["short target"])
    (row,) = F.encode_seq2seq(smol_tokenizer, [ex], "Summarise: {source}\nSummary:", max_length=48)
    labelled = [t for t in row["labels"] if t != F.IGNORE]
    assert labelled[-1] == smol_tokenizer.eos_token_id
    assert smol_tokenizer.decode(labelled[:-1]).strip() == "short target"
    assert len(row["input_ids"]) <= 48
    prompt = smol_tokenizer.decode(row["input_ids"][: len(row["input_ids"]) - len(labelled)])
    assert prompt.endswith("\nSummary:")  # the cue survives cutting the source


# --------------------------------------------------------------------------------------------- metrics


def test_metrics_from_the_standard_libraries() -> None:
    cls = M.classification_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert cls["accuracy"] == pytest.approx(75.0)
    assert cls["macro_f1"] == pytest.approx(100 * (2 / 3 + 0.8) / 2)
    ner = M.ner_metrics([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "O", "O", "B-LOC"]])
    assert ner["f1"] == pytest.approx(50.0)  # the person's boundary is wrong: entity-level, not token-level
    assert ner["accuracy"] == pytest.approx(75.0)
    qa = M.qa_metrics([["the Eiffel Tower", "Eiffel"]], ["Eiffel Tower!"])
    assert qa["exact_match"] == 100.0 and qa["f1"] == 100.0
    assert M.squad_f1("in Paris France", "Paris") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    same = M.seq2seq_metrics([["the cat sat on the mat"]], ["the cat sat on the mat"])
    assert same["bleu"] == pytest.approx(100.0) and same["rougeL"] == pytest.approx(100.0)
    other = M.seq2seq_metrics([["the cat sat on the mat"]], ["a dog ran"])
    assert other["rougeL"] == 0.0 and other["chrf"] < 20


# --------------------------------------------------------------------------------------------- heads


def test_qa_head_keeps_the_pretrained_backbone(tiny_lm: tuple[Any, Any]) -> None:
    import torch

    from toolformer.adapt.heads import build_task_model

    model, tok = fresh(tiny_lm)
    reference = {k: v.clone() for k, v in model.model.state_dict().items()}
    built = build_task_model(model, tok, "qa", [], lora=False)
    backbone = built.model.base_model.state_dict()  # LlamaForQuestionAnswering calls it `transformer`
    assert set(backbone) == set(reference)
    assert all(torch.equal(backbone[k], reference[k]) for k in reference)
    assert built.head_modules == ["qa_outputs"]


def test_lora_trains_adapters_and_the_whole_head(tiny_lm: tuple[Any, Any]) -> None:
    from toolformer.adapt.heads import build_task_model

    model, tok = fresh(tiny_lm)
    built = build_task_model(model, tok, "classification", ["neg", "pos"], lora=True, lora_r=4)
    trainable = [n for n, p in built.model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable)
    assert any("score" in n and "modules_to_save" in n for n in trainable)
    assert not any("embed_tokens" in n for n in trainable)
    assert built.trainable_params < built.total_params / 5
    assert built.model.config.id2label == {0: "neg", 1: "pos"}


# --------------------------------------------------------------------------------------------- end to end


def _sentiment(n: int) -> list[dict[str, Any]]:
    words = {"pos": ["great", "good", "lovely"], "neg": ["awful", "bad", "boring"]}
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        rows.append(
            {"id": f"s{i}", "review": f"the film was {words[label][i % 3]} today", "sentiment": label}
        )
    return rows


def _run(tmp_path: Path, tiny_lm: Any, rows: list[dict[str, Any]], **options: Any) -> Any:
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    settings: dict[str, Any] = dict(
        train=str(data), out=str(tmp_path / "out"), max_steps=8, eval_steps=4, batch_size=4, learning_rate=5e-3,
        max_new_tokens=4, dev_fraction=0.25, device="cpu",
    )  # fmt: skip
    settings.update(options)
    model, tok = fresh(tiny_lm)
    return adapt(AdaptConfig(**settings), model, tok)


def test_classification_learns_and_reloads(tmp_path: Path, tiny_lm: Any) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    report = _run(
        tmp_path, tiny_lm, _sentiment(32), task="classification", text_field="review", label_field="sentiment",
        max_steps=12, learning_rate=1e-2,
    )  # fmt: skip
    out = Path(report.out)
    assert report.baseline is not None and report.dev["macro_f1"] > report.baseline["macro_f1"]
    best = next(c for c in report.curve if c["step"] == report.best_step)
    assert report.dev["macro_f1"] == pytest.approx(best["macro_f1"])  # the best weights were put back
    assert (out / REPORT_MD).is_file() and "| macro_f1 (selection) |" in (out / REPORT_MD).read_text()
    assert json.loads((out / REPORT_JSON).read_text())["task"] == "classification"
    preds = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    assert len(preds) == 8 and {p["split"] for p in preds} == {"dev"}
    # The saved folder is a plain merged model whose head predicts what the report says.
    reloaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = tiny_lm[1]
    correct = 0
    for p in preds:
        ids = tok(p["text"], add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            label = reloaded.config.id2label[int(reloaded(**ids).logits.argmax())]
        correct += label == p["prediction"]
    assert correct == len(preds)


def test_ner_run_scores_entities(tmp_path: Path, tiny_lm: Any) -> None:
    rows = [
        {"tokens": ["Anna", "lives", "in", "Rome"], "tags": ["B-PER", "O", "O", "B-LOC"]},
        {"tokens": ["Mr", "Bo", "Li", "left", "Oslo"], "tags": ["B-PER", "I-PER", "I-PER", "O", "B-LOC"]},
    ] * 8
    report = _run(tmp_path, tiny_lm, rows, task="ner")
    assert report.metric == "f1" and set(report.dev) >= {"f1", "precision", "recall", "accuracy", "loss"}
    assert report.labels == ["B-LOC", "B-PER", "I-PER", "O"]
    assert report.dev["loss"] < report.baseline["loss"]


def test_qa_run_with_a_test_file(tmp_path: Path, tiny_lm: Any) -> None:
    rows = [
        {"question": "Where does Ann live?", "context": "Ann lives in Rome.", "answers": ["Rome"]},
        {"question": "Who left Oslo?", "context": "Yesterday Bo left Oslo.", "answers": ["Bo"]},
    ] * 8
    test = write_jsonl(tmp_path / "test.jsonl", rows[:2])
    report = _run(tmp_path, tiny_lm, rows, task="qa", test=str(test), lora=False, learning_rate=1e-3)
    assert report.mode == "full" and report.test is not None and set(report.test) >= {"exact_match", "f1"}
    assert report.dev["loss"] < report.baseline["loss"]
    preds = [json.loads(line) for line in (Path(report.out) / PREDICTIONS_FILE).read_text().splitlines()]
    assert [p["split"] for p in preds].count("test") == 2
    contexts = {r["question"]: r["context"] for r in rows}
    assert all(p["prediction"] in contexts[p["question"]] for p in preds)  # extractive: a span of its context


def test_seq2seq_run_generates_and_scores(tmp_path: Path, tiny_lm: Any) -> None:
    rows = [{"source": f"{i} plus one", "target": f"{i + 1}"} for i in range(16)]
    report = _run(tmp_path, tiny_lm, rows, task="seq2seq", metric="loss", patience=1)
    assert set(report.dev) >= {"rougeL", "bleu", "chrf", "exact_match", "loss"}
    assert report.dev["loss"] < report.baseline["loss"]
    assert all(isinstance(e["prediction"], str) for e in report.examples)


def test_cli_adapt_with_a_model_folder(tmp_path: Path, tiny_lm: Any) -> None:
    model, tok = tiny_lm
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    data = write_jsonl(tmp_path / "train.jsonl", _sentiment(16))
    out = tmp_path / "out"
    args = [
        "adapt", str(data), "--task", "classification", "--out", str(out), "--model", str(folder),
        "--text-field", "review", "--label-field", "sentiment", "--max-steps", "2", "--eval-steps", "1",
        "--batch-size", "4", "--quiet",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "macro_f1 *" in result.output and (out / REPORT_MD).is_file()
    again = runner.invoke(app, args)  # the folder now holds a run: refused in one line
    assert again.exit_code == 2 and "not empty" in again.stderr and "Traceback" not in again.output


def test_cli_adapt_bad_data_fails_before_loading_a_model(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", [{"text": "only one label", "label": "x"}] * 5)
    result = runner.invoke(
        app,
        ["adapt", str(data), "--task", "classification", "--out", str(tmp_path / "o"), "--model", "/nope"],
    )
    assert result.exit_code == 2 and "at least 2 labels" in result.stderr
