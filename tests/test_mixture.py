"""The all-tools mixture: candidate texts per tool carry one call at the answer, assemble keeps what the filter kept."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from fakes import write_jsonl
from toolformer.calls import find_calls
from toolformer.datagen import candidates, mixture
from toolformer.datagen.records import Document
from toolformer.datagen.sample import DataProposer
from toolformer.tools import load_tools

ARTICLES = [
    {
        "id": "en:Albert Einstein",
        "title": "Albert Einstein",
        "text": "Albert Einstein (14 March 1879 – 18 April 1955) was a German-born theoretical physicist who "
        "developed the theory of relativity. He was born in Ulm, in the Kingdom of Württemberg.",
        "description": "German-born physicist (1879–1955)",
    },
    {
        "id": "en:Canberra",
        "title": "Canberra",
        "text": "Canberra is the capital city of Australia. Founded following the federation of the colonies, "
        "it is the largest inland city.",
    },
    {
        "id": "en:Backgammon",
        "title": "Backgammon",
        "text": "Backgammon is a two-player board game played with dice.",
    },
]


def _one_call(text: str) -> list:
    spans = find_calls(text, include_incomplete=True)
    assert len(spans) == 1, text
    return spans


def test_wikisearch_texts_ask_a_question_whose_answer_follows_one_search_of_the_question() -> None:
    rows = list(candidates.wikisearch_texts(ARTICLES, seed=0))
    assert rows, "every article has a definitional first sentence"
    for row in rows:
        question = row["text"].split("\n")[0].removeprefix("Question: ")
        (span,) = _one_call(row["text"])
        assert span.call.name == "WikiSearch"
        assert json.loads(span.call.args) == question.rstrip("?")  # the query is the question itself
        assert row["text"].index("Answer: [WikiSearch(") > 0
        assert row["meta"]["kind"] == "wikisearch"
    reverse = [r for r in rows if r["text"].endswith("Backgammon.")]
    assert reverse and reverse[0]["text"].startswith("Question: What is a two-player board game")


def test_wikisearch_person_questions_use_who_and_can_ask_the_birth_date() -> None:
    texts = []
    for seed in range(12):
        texts += [r["text"] for r in candidates.wikisearch_texts(ARTICLES[:1], seed=seed)]
    assert any(t.startswith("Question: Who was a German-born theoretical physicist?") for t in texts)
    assert any(
        t.startswith("Question: When was Albert Einstein born?") and t.endswith("14 March 1879.")
        for t in texts
    )
    assert not any(t.startswith("Question: What was") for t in texts)


def test_qa_texts_cut_a_statement_before_its_object_and_ask_qa_the_statement() -> None:
    rows = list(candidates.qa_texts(ARTICLES))
    texts = {r["text"] for r in rows}
    assert (
        'Albert Einstein was born in [QA("Albert Einstein was born in")] Ulm.' in texts
    )  # "He" -> the title
    assert 'Canberra is the capital city of [QA("Canberra is the capital city of")] Australia.' in texts
    assert all(len(find_calls(t, include_incomplete=True)) == 1 for t in texts)


def test_calendar_texts_answer_for_the_given_day() -> None:
    rows = list(candidates.calendar_texts(dt.date(2023, 1, 30)))
    texts = [r["text"] for r in rows]
    assert "Question: What day of the week is it today?\nAnswer: [Calendar()] It is Monday." in texts
    assert (
        "Question: What will the date be tomorrow?\nAnswer: [Calendar()] Tomorrow is January 31, 2023."
        in texts
    )
    assert "Question: How many days are left in this year?\nAnswer: [Calendar()] 335 days." in texts
    assert "Question: What day is it?\nAnswer: [Calendar()] Today is Monday, January 30, 2023." in texts
    assert (
        "Question: What day was it yesterday?\nAnswer: [Calendar()] Yesterday was Sunday, January 29, 2023."
        in texts
    )
    assert len(texts) == len(set(texts)) == len(candidates.CALENDAR_QUESTIONS)
    assert {r["meta"]["today"] for r in rows} == {"2023-01-30"}


def test_mt_texts_take_the_answer_from_the_translator_and_skip_its_errors() -> None:
    pairs = [("mt:a", "El gato negro duerme."), ("mt:b", "Frase imposible aquí.")]

    def translate(text: str) -> str:
        return "The black cat sleeps." if "gato" in text else "error: no pair"

    errors: list[str] = []
    rows = list(candidates.mt_texts(pairs, translate, errors=errors))
    assert len(rows) == 1 and errors == ["error: no pair"]  # skipped, and said why
    (span,) = _one_call(rows[0]["text"])
    assert span.call.name == "MT" and json.loads(span.call.args) == "El gato negro duerme."
    assert "The black cat sleeps" in rows[0]["text"]


def test_mt_sentences_keep_short_sentences_one_per_article() -> None:
    arts = [
        {
            "id": "es:x",
            "text": "Es un gato. El gato negro duerme en la casa grande. Otra frase más larga aquí.",
        }
    ]
    assert list(candidates.mt_sentences(arts)) == [("mt:es:x", "El gato negro duerme en la casa grande.")]


def test_candidate_calls_are_taken_out_and_proposed_back_by_the_data_proposer() -> None:
    (row,) = [r for r in candidates.qa_texts(ARTICLES) if "Ulm" in r["text"]]
    clean, cands = DataProposer().extract(Document(row["id"], row["text"], {}))
    assert clean.text == "Albert Einstein was born in Ulm."
    assert [(c.tool, c.position) for c in cands] == [("QA", len("Albert Einstein was born in "))]


def _annotate_folder(folder: Path, kept: list[dict], dropped: list[dict], status: str = "done") -> None:
    """A minimal `toolformer annotate` output folder: records for every document, shard rows for the kept."""
    records = [{"id": r["id"], "split": "train", "status": "ok", "kept_calls": 1} for r in kept]
    records += [
        {"id": r["id"], "split": "train", "status": "ok", "kept_calls": 0, "text": r["text"]} for r in dropped
    ]
    write_jsonl(folder / "records-00000.jsonl", records)
    write_jsonl(
        folder / "shard-00000.jsonl", [{**r, "split": "train", "source_text": "", "calls": []} for r in kept]
    )
    (folder / "manifest.json").write_text(json.dumps({"status": status}), encoding="utf-8")


def test_assemble_keeps_calls_adds_rejected_without_calls_and_plain_rows(tmp_path: Path) -> None:
    kept = [
        {"id": f"qa:{i}", "text": f'X{i} was born in [QA("X{i} was born in") → Ulm] Ulm.'} for i in range(20)
    ]
    dropped = [{"id": f"ws:{i}", "text": f"Question: Who is Y{i}?\nAnswer: Y{i}."} for i in range(10)]
    _annotate_folder(tmp_path / "ann", kept, dropped)
    write_jsonl(tmp_path / "plain.jsonl", [{"id": "plain:a", "text": "A plain passage."}])
    tools = list(load_tools("Calculator,QA,WikiSearch").values())
    rows, counts = mixture.assemble([tmp_path / "ann"], [tmp_path / "plain.jsonl"], tools, 0.25, 0.5, seed=1)
    assert counts["kept"] == {"QA": 20}
    assert counts["rejected_used"] == 5 and counts["plain"] == 1 and counts["rows"] == 26
    with_call = [
        r for r in rows if any(s.call.result for s in find_calls(r["text"], include_incomplete=False))
    ]
    assert len(with_call) == 20
    headed = [r for r in rows if r.get("header")]
    assert headed and counts["with_header"] == len(headed)
    for r in headed:
        head = r["text"].split("\n")[0]
        assert head == "Tools you can call by writing [Tool(input)]:"
        if r["tool"] == "QA":
            assert "\n- QA: " in r["text"]  # the header always names the tool the text calls


def test_overlap_counts_texts_sharing_an_ngram_with_an_eval_question(tmp_path: Path) -> None:
    ev = tmp_path / "eval.jsonl"
    write_jsonl(ev, [{"question": "how many apples did the farmer sell at the market on monday"}])
    texts = ["The farmer sell at the market on monday morning with apples", "Nothing in common here at all."]
    report = mixture.overlap(texts, [ev], n=6)
    assert report["files"] == {"eval.jsonl": 1} and report["texts"] == 2


def test_build_candidates_writes_each_kind_capped(tmp_path: Path) -> None:
    gsm = tmp_path / "gsm8k.jsonl"
    write_jsonl(
        gsm,
        [
            {
                "id": "g1",
                "question": "Tom has 3 bags of 4 apples. How many apples?",
                "solution": "3*4=<<3*4=12>>12\n#### 12",
                "answer": 12,
            }
        ],
    )
    vital = tmp_path / "vital.jsonl"
    write_jsonl(vital, ARTICLES * 3)
    summary = candidates.build_candidates(
        tmp_path / "out", gsm, None, {"calculator": 5, "wikisearch": 2, "qa": 1, "plain": 1, "calendar": 3},
        [dt.date(2024, 5, 21)], vital_en=vital,
    )  # fmt: skip
    assert summary["main.jsonl"] == {"calculator": 1, "wikisearch": 2, "qa": 1}
    assert summary["calendar-2024-05-21.jsonl"] == {"calendar": 3}
    assert summary["plain.jsonl"] == {"plain": 1}
    main = [json.loads(line) for line in (tmp_path / "out" / "main.jsonl").read_text().splitlines()]
    calc = [r for r in main if r["meta"]["kind"] == "calculator"][0]
    assert (
        calc["text"]
        == "Question: Tom has 3 bags of 4 apples. How many apples?\nAnswer: [Calculator(3 * 4)] 12"
    )
    # the order is seeded: a second build writes the same files
    candidates.build_candidates(
        tmp_path / "out2", gsm, None, {"calculator": 5, "wikisearch": 2, "qa": 1, "plain": 1, "calendar": 3},
        [dt.date(2024, 5, 21)], vital_en=vital,
    )  # fmt: skip
    assert (tmp_path / "out" / "main.jsonl").read_text() == (tmp_path / "out2" / "main.jsonl").read_text()


def test_train_reads_header_examples_as_text_and_starts_the_loss_at_the_executed_call(tmp_path: Path) -> None:
    from toolformer.runtime.prompts import tools_header
    from toolformer.train.data import read_corpus

    header = tools_header(list(load_tools("Calculator,QA").values()))
    assert "[Calculator(400 / 1400)]" in header  # the example is call syntax without a result
    called = header + "Question: What is 2 + 3?\nAnswer: [Calculator(2 + 3) → 5] 5"
    chat = header + "Question: Write a poem.\nAnswer: Roses are red."
    write_jsonl(
        tmp_path / "train.jsonl",
        [{"id": "a", "text": called, "split": "train"}, {"id": "b", "text": chat, "split": "train"}],
    )
    corpus = read_corpus(tmp_path / "train.jsonl")
    assert [t.id for t in corpus.annotated] == ["a"] and [t.id for t in corpus.plain] == ["b"]
    assert corpus.annotated[0].loss_start == called.index("[Calculator(2 + 3)")


def test_training_chat_prompts_are_not_the_evaluation_no_tool_prompts() -> None:
    from importlib import resources

    path = Path(str(resources.files("toolformer").joinpath("data", "evals", "notool_chat.jsonl")))
    held_out = [
        json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line
    ]
    assert held_out
    report = mixture.overlap(candidates.no_call_prompts(), [path], n=6)
    assert not {p.lower() for p in candidates.no_call_prompts()} & {q.lower() for q in held_out}
    assert report["files"]["notool_chat.jsonl"] == 0, (
        report
    )  # no shared run of 6 words ("write a short poem about a" is only a form)


def test_assemble_refuses_an_unfinished_annotate_folder(tmp_path: Path) -> None:
    import pytest

    from toolformer.errors import DataError

    _annotate_folder(
        tmp_path / "ann", [], [{"id": "ws:1", "text": "Question: Who?\nAnswer: Y."}], status="running"
    )
    with pytest.raises(DataError, match="running"):
        mixture.assemble([tmp_path / "ann"], [], [], 0.5, 0.0)


def test_calendar_dates_cover_every_weekday_and_month() -> None:
    days = candidates.calendar_dates(24)
    assert len(set(days)) == 24
    assert {d.weekday() for d in days} == set(range(7)) and len({d.month for d in days}) == 12


def test_build_candidates_puts_the_next_gsm8k_problems_in_calculator_jsonl(tmp_path: Path) -> None:
    gsm = tmp_path / "gsm8k.jsonl"
    rows = [
        {"id": f"g{i}", "question": f"Tom has {i + 2} bags of 4 apples. How many?", "solution": f"{i + 2}*4=<<{i + 2}*4={(i + 2) * 4}>>{(i + 2) * 4}", "answer": (i + 2) * 4}
        for i in range(5)
    ]  # fmt: skip
    write_jsonl(gsm, rows)
    summary = candidates.build_candidates(
        tmp_path / "out", gsm, None, {"calculator": 2, "calculator_more": 2}, []
    )
    assert summary["main.jsonl"] == {"calculator": 2} and summary["calculator.jsonl"] == {"calculator": 2}
    more = [
        json.loads(line)["id"] for line in (tmp_path / "out" / "calculator.jsonl").read_text().splitlines()
    ]
    assert more == ["calc:g2", "calc:g3"]  # after the main file's problems, never the same ones


def _gsm(i: int, steps: int) -> dict:
    sol = "\n".join(
        f"{i + 2}*{k + 1}=<<{i + 2}*{k + 1}={(i + 2) * (k + 1)}>>{(i + 2) * (k + 1)}" for k in range(steps)
    )
    return {"id": f"gsm8k-train-{i:05d}", "question": f"Tom has {i + 2} bags of apples. How many?", "solution": sol,
            "answer": (i + 2) * steps}  # fmt: skip


def test_calculator_short_file_takes_unused_short_problems_and_never_the_dev_slice(tmp_path: Path) -> None:
    from toolformer.heldout import is_gsm8k_dev

    gsm = tmp_path / "gsm8k.jsonl"
    write_jsonl(gsm, [_gsm(i, 1 if i % 3 else 3) for i in range(24)])
    summary = candidates.build_candidates(
        tmp_path / "out", gsm, None, {"calculator": 2, "calculator_short": 50}, []
    )
    main = [json.loads(x)["id"] for x in (tmp_path / "out" / "main.jsonl").read_text().splitlines()]
    short = [
        json.loads(x)["id"] for x in (tmp_path / "out" / "calculator-short.jsonl").read_text().splitlines()
    ]
    ids = [i.split(":", 1)[1] for i in short]
    assert summary["calculator-short.jsonl"] == {"calculator": len(short)} and short
    assert not set(main) & set(short)
    assert (
        not any(is_gsm8k_dev(i) for i in ids)
        and "gsm8k-train-00014" not in ids
        and "gsm8k-train-00020" not in ids
    )
    assert all(int(i[-5:]) % 3 for i in ids)  # the three-step problems are left out


def test_decontaminate_drops_rows_sharing_an_ngram_with_an_eval_file_and_the_gsm8k_dev_slice(
    tmp_path: Path,
) -> None:
    ev = tmp_path / "asdiv.jsonl"
    write_jsonl(ev, [{"question": "how many apples did the farmer sell at the market on monday"}])
    rows = [
        {"id": "calc:gsm8k-train-00014", "text": "Question: a dev-slice problem\nAnswer: 4"},
        {
            "id": "calc:gsm8k-train-00001",
            "text": "Question: The farmer sell at the market on monday. How many?",
        },
        {"id": "calc:gsm8k-train-00002", "text": "Question: Nothing shared here.\nAnswer: 3"},
    ]
    kept, dropped = mixture.decontaminate(rows, [ev], n=6)
    assert [r["id"] for r in kept] == ["calc:gsm8k-train-00002"]
    assert dropped == {"gsm8k_dev": 1, "asdiv.jsonl": 1}


def test_operands_before_tells_whether_the_call_numbers_occur_before_it() -> None:
    assert candidates.operands_before("Question: 3 bags of 4.\nAnswer: [Calculator(3 * 4) → 12] 12") is True
    assert (
        candidates.operands_before("Question: three bags of 4.\nAnswer: [Calculator(3 * 4) → 12] 12") is False
    )
    assert candidates.operands_before("No call here.") is None


def test_assemble_puts_every_chat_text_under_the_header(tmp_path: Path) -> None:
    _annotate_folder(tmp_path / "ann", [], [])
    chat = [{"id": f"chat:{i}", "text": f"Question: Say hi {i}.\nAnswer: Hi {i}!"} for i in range(8)]
    write_jsonl(tmp_path / "chat.jsonl", chat + [{"id": "plain:a", "text": "A plain passage."}])
    tools = list(load_tools("Calculator,QA").values())
    rows, counts = mixture.assemble([tmp_path / "ann"], [tmp_path / "chat.jsonl"], tools, 0.0, 0.0, seed=3)
    assert {r["id"] for r in rows if r.get("header")} == {f"chat:{i}" for i in range(8)}
    assert counts["with_header"] == 8


def test_cli_assemble_drops_rows_overlapping_a_check_file_and_caps_each_tool(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from toolformer.cli import app

    kept = [
        {"id": f"qa:{i}", "text": f'X{i} was born in [QA("X{i} was born in") → Ulm] Ulm.'} for i in range(6)
    ]
    kept.append(
        {
            "id": "qa:9",
            "text": 'how many apples the farmer sold at the market on monday [QA("who") → Tom] Tom.',
        }
    )
    _annotate_folder(tmp_path / "ann", kept, [])
    write_jsonl(
        tmp_path / "ev" / "dev.jsonl",
        [{"question": "how many apples the farmer sold at the market on monday"}],
    )
    out = tmp_path / "train.jsonl"
    args = ["mixture", "assemble", str(tmp_path / "ann"), "--out", str(out), "--tools", "QA"]
    res = CliRunner().invoke(app, [*args, "--check", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["dropped_overlap"] == {"dev.jsonl": 1} and report["rows"] == 6
    assert report["overlap_8gram"]["files"]["dev.jsonl"] == 0
    res = CliRunner().invoke(app, [*args, "--max-per-tool", "2"])
    assert res.exit_code == 0, res.output
    assert json.loads(out.with_suffix(".report.json").read_text())["rows"] == 2


def test_mixture_build_refuses_more_calendar_questions_than_there_are(tmp_path) -> None:
    from typer.testing import CliRunner

    from toolformer.cli import app

    gsm8k = tmp_path / "gsm8k.jsonl"
    gsm8k.write_text('{"question": "q", "answer": "a #### 1"}\n', encoding="utf-8")
    args = ["mixture", "build", "--gsm8k", str(gsm8k), "--out", str(tmp_path / "c"), "--calendar", "99"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "calendar=99" in result.output and not (tmp_path / "c").exists()
