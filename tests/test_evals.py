"""Evaluation like the paper: lenient metrics, suites and dev files, modes and call rates, reports, the CLI."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fakes import PolicyLM, write_jsonl
from toolformer.cli import app
from toolformer.errors import ConfigError, DataError, ToolError
from toolformer.evals import EvalConfig, evaluate, metrics, suites, write_outputs
from toolformer.evals.ceiling import compute_ceiling
from toolformer.evals.evaluate import load_datasets, plan_runs
from toolformer.evals.perplexity import perplexity
from toolformer.runtime.prompts import EXAMPLES
from toolformer.tools import Tool, ToolRegistry, load_tools

runner = CliRunner()


def shipped(name: str, record_id: str) -> dict:
    """A record of a shipped dev file, by id."""
    spec = next(s for specs in suites.SUITES.values() for s in specs if s.name == name)
    path = spec.location()
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["id"] == record_id:
            return record
    raise AssertionError(f"{record_id} not in {path}")


# --------------------------------------------------------------------------------------------- metrics


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1,081 apples", 1081),
        ("It costs $12.50.", 12.5),
        ("-3 degrees", -3),
        ("the answer is −3", -3),
        ("3/4 of them", 0.75),
        ("on 12/25/1937 it", 12),  # a date is not a fraction
        ("H2O has 3 atoms", 3),  # digits inside a word are not a number
        ("about .5 liters", 0.5),
        ("It is 15.", 15),
        ("50% of 8", 50),
        ("the 3rd day", 3),
        ("1,08 and", 1),  # not a thousands group
        ("12,345,678 people", 12345678),
    ],
)
def test_first_number_formats(text, value):
    assert metrics.first_number(text) == pytest.approx(value)


def test_first_number_none_when_there_is_no_digit():
    assert metrics.first_number("fifteen balls") is None
    assert metrics.first_number("") is None


def test_math_score_reads_the_answer_not_the_call():
    record = shipped("asdiv", "nluds-0002")  # Ellen has six more balls than Marin ... gold 15
    gold = record["answer"]
    assert metrics.score_math(" Ellen has [Calculator(6 + 9) → 15] 15 balls.", gold).correct
    # The first number a reader sees is 6: restating the question is wrong, as in the paper's metric.
    assert not metrics.score_math(" Ellen has 6 more balls, so [Calculator(6 + 9) → 15] 15.", gold).correct
    # An unfinished call is not part of the answer (its "6" must not be read).
    unfinished = metrics.score_math(" [Calculator(6 + 9", gold)
    assert unfinished == metrics.Score(None, False)
    # A call whose result is the only number: after removing the call there is nothing to read.
    assert not metrics.score_math(" [Calculator(6 + 9) → 15]", gold).correct


def test_math_tolerance_accepts_calculator_rounding_but_not_near_misses():
    mawps = next(
        json.loads(line)
        for line in suites.SUITES["math"][2].location().read_text().splitlines()
        if abs(json.loads(line)["answer"] - 0.8333333333333334) < 1e-12
    )
    assert metrics.score_math("[Calculator(5 / 6) → 0.83] 0.83 of the pie", mawps["answer"]).correct
    assert not metrics.score_math("0.8 of the pie", mawps["answer"]).correct
    chairs = shipped("mawps", "mawps-0002")  # 27 rows of 16 chairs: 432
    assert metrics.score_math("432 chairs", chairs["answer"]).correct
    assert not metrics.score_math("430 chairs", chairs["answer"]).correct  # 1% off is wrong
    svamp = shipped("svamp", "chal-1")  # 76 - 25 = 51 dollars
    assert metrics.score_math("$51.00 per pack", svamp["answer"]).correct
    assert metrics.score_math("1,081", 1081).correct and metrics.score_math("-3", -3).correct


def test_squad_normalisation():
    assert metrics.normalize_answer("The  Beatles!") == "beatles"
    assert metrics.normalize_answer("“Padmé” Amidala") == "padmé amidala"
    assert metrics.normalize_answer("a An the") == ""


def test_lama_word_within_the_first_five_words():
    record = shipped("lama_trex", "010f6b6e-15f8-4133-aec2-4e0d7114e709")  # integument ... field of [MASK]
    gold = record["answer"]
    assert gold == "biology"
    assert metrics.score_cloze(" Biology.", gold).correct
    assert metrics.score_cloze(' [QA("What field?") → zoology] biology and zoology', gold).correct
    assert not metrics.score_cloze(" the study of living things, biology", gold).correct  # word 6
    assert not metrics.score_cloze(" biological sciences", gold).correct  # whole words only
    # The call's result is not the answer: only what follows it counts.
    assert not metrics.score_cloze(' [QA("field?") → biology] botany', gold).correct


def test_qa_any_gold_within_twenty_words():
    record = shipped("webquestions", "wqr000000")  # Justin Bieber's brother: Jazmyn / Jaxon Bieber
    golds = record["answers"]
    assert metrics.score_qa(" His brother is Jaxon Bieber.", golds).correct
    filler = " ".join(["word"] * 19)
    assert (
        metrics.score_qa(f" {filler} Jaxon Bieber", golds).correct is False
    )  # starts at word 20, ends at 21
    assert metrics.score_qa(f" {' '.join(['word'] * 18)} Jaxon Bieber", golds).correct
    trivia = shipped("triviaqa", "tqa-sm-sub-0000")  # onion, with aliases
    assert metrics.score_qa(" It is the onion.", trivia["answers"]).correct
    assert not metrics.score_qa(" A potato.", trivia["answers"]).correct


def test_choice_first_named_option_decides():
    record = shipped("date_understanding", "bbh-date-000")  # gold (B) 12/25/1937
    options, gold = record["options"], record["answer"]
    assert metrics.score_choice(" (B) 12/25/1937", options, gold).correct
    assert metrics.score_choice(" 12/25/1937", options, gold).correct
    assert metrics.score_choice(" B", options, gold).correct
    assert metrics.score_choice(" The answer is (B).", options, gold).correct
    assert not metrics.score_choice(" (A) 12/11/1937", options, gold).correct
    listing = " (A) 12/11/1937 (B) 12/25/1937 (C) 01/04/1938"
    assert metrics.score_choice(listing, options, gold) == metrics.Score("(A)", False)
    assert not metrics.score_choice(" A date in December.", options, gold).correct  # the article is not "(A)"
    assert metrics.score_choice(" I do not know.", options, gold) == metrics.Score(None, False)


# --------------------------------------------------------------------------------------------- suites and data


def test_every_shipped_dataset_loads_with_its_metric():
    sizes = {}
    for suite, specs in suites.SUITES.items():
        for spec in specs:
            loaded = suites.load_dataset(spec)
            sizes[spec.name] = len(loaded.examples)
            ids = [e.id for e in loaded.examples]
            assert len(ids) == len(set(ids)), spec.name
            if spec.kind == "cloze":
                assert all(suites.cloze_prefix(e.question) != e.question for e in loaded.examples)
                assert loaded.skipped == 0  # shipped LAMA files hold only [MASK]-at-end clozes
            if spec.kind == "math":
                assert all(isinstance(e.golds[0], float) for e in loaded.examples)
            assert suite == spec.suite
    assert sizes["asdiv"] == sizes["svamp"] == sizes["mawps"] == 300
    assert sizes["lama_squad"] == 115 and sizes["date_understanding"] == 125 and sizes["wiki_ppl"] == 200
    google_re = suites.load_dataset(suites.SUITES["facts"][1]).examples
    assert {shipped("lama_google_re", e.id)["relation"] for e in google_re} == {
        "place_of_birth",
        "place_of_death",
    }


def test_few_shot_examples_are_not_dev_questions():
    questions = set()
    for specs in suites.SUITES.values():
        for spec in specs:
            questions |= {e.question.strip().lower() for e in suites.load_dataset(spec).examples}
    for pool in suites.SHOTS.values():
        for q, a in pool:
            assert q.strip().lower() not in questions
            assert a.strip().lower() not in questions


def test_prompts_zero_shot_and_few_shot():
    ex = suites.Example("x", "asdiv", "Tom has 3 cats. How many cats?", [3.0])
    assert suites.build_prompt(ex, "math") == "Question: Tom has 3 cats. How many cats?\nAnswer:"
    three = suites.build_prompt(ex, "math", 3)
    for q, a in EXAMPLES["Calculator"]:
        assert f"Question: {q}\nAnswer: {a}\n" in three
    four = suites.build_prompt(ex, "math", 4)
    assert four.startswith(three.split("Question: Tom")[0]) and four.count("Question:") == 5
    assert four.endswith("Question: Tom has 3 cats. How many cats?\nAnswer:")
    cloze = suites.Example("y", "lama_trex", "Vitaly Ginzburg works in the field of [MASK] .", ["physics"])
    assert suites.build_prompt(cloze, "cloze") == "Vitaly Ginzburg works in the field of"
    assert suites.build_prompt(cloze, "cloze", 2).endswith(
        "Jimmy Wales.\nVitaly Ginzburg works in the field of"
    )
    with pytest.raises(ConfigError, match="shots=5"):
        suites.build_prompt(ex, "math", 5)


def test_bad_records_name_file_line_and_field(tmp_path):
    good = {"id": "a", "question": "What is 2 plus 3?", "answer": 5}
    cases = [
        ([good, {"id": "b", "question": "Q?", "answer": "five"}], "math", ":2: field 'answer'"),
        ([good, {"id": "b", "answer": 5}], "math", ":2: field 'question' is missing"),
        ([good, "not json"], "math", ":2: not valid JSON"),
        ([good, "[1, 2]"], "math", ":2: expected a JSON object"),
        (
            [{"question": "Paris is the capital of", "answer": "France"}],
            "facts",
            ":1: field 'question' has no [MASK]",
        ),
        ([{"question": "Who?", "answers": []}], "qa", ":1: field 'answers'"),
    ]
    for i, (rows, suite, message) in enumerate(cases):
        path = write_jsonl(tmp_path / f"bad{i}.jsonl", rows)
        with pytest.raises(DataError) as info:
            suites.load_dataset(suites.data_spec(suite, path))
        assert f"bad{i}.jsonl{message}" in str(info.value)
        assert "\n" not in str(info.value)


def test_unscorable_records_are_skipped_and_counted(tmp_path):
    rows = [
        {"question": "Who has more money?", "answer": None},
        {"question": "What is 2 plus 3?", "answer": "5"},
    ]
    loaded = suites.load_dataset(suites.data_spec("math", write_jsonl(tmp_path / "m.jsonl", rows)))
    assert [e.golds for e in loaded.examples] == [[5.0]] and loaded.skipped == 1
    clozes = [
        {"question": "The [MASK] clothing company sponsored it.", "answer": "Gap"},
        {"question": "Ginzburg works in the field of [MASK] .", "answer": "physics"},
    ]
    loaded = suites.load_dataset(suites.data_spec("facts", write_jsonl(tmp_path / "c.jsonl", clozes)))
    assert len(loaded.examples) == 1 and loaded.skip_reasons == {"[MASK] is not at the end": 1}


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="sweep_k"):
        EvalConfig(sweep_k="0,x")
    with pytest.raises(ConfigError, match="modes"):
        EvalConfig(modes="tools,magic")
    with pytest.raises(ConfigError, match="baseline"):
        EvalConfig(modes="baseline")
    with pytest.raises(ConfigError, match="suite='nope'"):
        suites.suite_specs("nope")
    with pytest.raises(ConfigError, match="datasets='aqua'"):
        suites.suite_specs("math", "aqua")


# --------------------------------------------------------------------------------------------- a scripted model


MATH = [
    {"id": "m1", "question": "What is 2 plus 3?", "answer": 5, "a": 2, "b": 3},
    {"id": "m2", "question": "What is 4 plus 4?", "answer": 8, "a": 4, "b": 4},
    {"id": "m3", "question": "What is 10 plus 7?", "answer": 17, "a": 10, "b": 7},
]


def _operands(prompt: str) -> tuple[int, int]:
    question = prompt.rsplit("Question: ", 1)[1]
    row = next(r for r in MATH if r["question"] in question)
    return row["a"], row["b"]


def call_lover(prompt: str, gen: str) -> dict[str, float]:
    """Always wants to write the Calculator call; answers without it only as its second choice."""
    a, b = _operands(prompt)
    return {f" [Calculator({a} + {b}) → {a + b}] {a + b}.": 10.0, f" {a + b}.": 5.0}


def shy_caller(prompt: str, gen: str) -> dict[str, float]:
    """Prefers answering directly (and wrongly, off by one); '[' is only its second choice."""
    a, b = _operands(prompt)
    return {f" {a + b + 1}.": 10.0, f" [Calculator({a} + {b}) → {a + b}] {a + b}.": 5.0}


@pytest.fixture
def math_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "tiny_math.jsonl", MATH)


def _run(tok, policy, math_file, baseline_policy=None, **options):
    config = EvalConfig(model="fake", suite="math", data=str(math_file), batch_size=2, **options)
    models = {"model": (PolicyLM(tok, policy), tok)}
    if baseline_policy is not None:
        models["baseline"] = (PolicyLM(tok, baseline_policy), tok)
    return evaluate(config, models=models, tools=load_tools("Calculator"))


def test_disabled_mode_never_calls_even_a_model_that_always_wants_to(smol_tokenizer, math_file):
    results = _run(smol_tokenizer, call_lover, math_file, modes="tools,disabled")
    tools, disabled = (
        results.run("tools").by_dataset["tiny_math"],
        results.run("disabled").by_dataset["tiny_math"],
    )
    preds = {(p.mode, p.id): p for p in results.predictions}
    for row in MATH:
        with_tool, without = preds[("tools", row["id"])], preds[("disabled", row["id"])]
        assert [(c["tool"], c["output"]) for c in with_tool.calls] == [("Calculator", str(row["answer"]))]
        assert with_tool.answer == f"{row['answer']}." and with_tool.correct
        assert without.calls == [] and "[" not in without.text
        assert without.text == f" {row['answer']}." and without.correct
    assert (tools.n, tools.correct, tools.with_call, tools.per_tool, tools.call_rate) == (
        3,
        3,
        3,
        {"Calculator": 3},
        1.0,
    )
    assert (disabled.with_call, disabled.per_tool, disabled.call_rate, disabled.accuracy) == (0, {}, 0.0, 1.0)


def test_trigger_sweep_counts_calls_per_k(smol_tokenizer, math_file):
    results = _run(smol_tokenizer, shy_caller, math_file, modes="tools", trigger_top_k=3, sweep_k="0,1,3")
    assert [p.mode for p in plan_runs(results.config)] == ["tools", "k=0", "k=1"]  # k=3 is the tools run
    sweep = {r.trigger_top_k: r.by_dataset["tiny_math"] for r in results.sweep()}
    assert list(sweep) == [0, 1, 3]
    # '[' is the model's second choice: k=0 and k=1 never start a call, k=3 always does (and then is right).
    assert [(s.call_rate, s.accuracy) for s in sweep.values()] == [(0.0, 0.0), (0.0, 0.0), (1.0, 1.0)]


def test_baseline_runs_without_tools_unless_asked(smol_tokenizer, math_file):
    plain = _run(smol_tokenizer, call_lover, math_file, baseline_policy=call_lover, baseline="other")
    assert [r.mode for r in plain.runs] == ["tools", "disabled", "baseline"]
    base = plain.run("baseline")
    assert base.disabled and not base.uses_tools and base.by_dataset["tiny_math"].with_call == 0
    # Same policy without tools gives exactly the disabled answers.
    texts = {(p.mode, p.id): p.text for p in plain.predictions}
    assert all(texts[("baseline", r["id"])] == texts[("disabled", r["id"])] for r in MATH)
    with_tools = _run(
        smol_tokenizer,
        shy_caller,
        math_file,
        baseline_policy=call_lover,
        baseline="other",
        baseline_tools=True,
    )
    assert with_tools.run("baseline").by_dataset["tiny_math"].call_rate == 1.0
    assert (
        with_tools.run("tools").by_dataset["tiny_math"].call_rate == 1.0
    )  # k=10 triggers the shy caller too


def test_report_files_are_written_and_parse(smol_tokenizer, math_file, tmp_path):
    results = _run(
        smol_tokenizer, shy_caller, math_file, baseline_policy=call_lover, baseline="base", sweep_k="0,10"
    )
    paths = write_outputs(results, tmp_path / "out")
    data = json.loads(paths["results"].read_text())
    assert data["config"]["sweep_k"] == "0,10" and data["config"]["data"] == str(math_file)
    by_mode = {r["mode"]: r["by_dataset"]["tiny_math"] for r in data["runs"]}
    assert set(by_mode) == {"tools", "disabled", "baseline", "k=0"}
    assert by_mode["tools"]["accuracy"] == 1.0 and by_mode["k=0"]["accuracy"] == 0.0
    assert [s["k"] for s in data["sweep"]] == [0, 10]
    preds = [json.loads(line) for line in paths["predictions"].read_text().splitlines()]
    assert len(preds) == 4 * len(MATH)
    for p in preds:
        assert {"prompt", "text", "answer", "extracted", "gold", "correct", "calls", "mode"} <= set(p)
    assert sum(p["correct"] for p in preds) == sum(r["correct"] for r in by_mode.values())
    report = paths["report"].read_text()
    table = [line for line in report.splitlines() if line.startswith("| tiny_math |")]
    cells = [c.strip() for c in table[0].strip("|").split("|")]
    assert cells[:5] == ["tiny_math", "3", "100.0", "0.0", "100.0"]  # n, tools, disabled, baseline
    assert "## Trigger top-k sweep" in report and "0.0 / 0.0" in report
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------- perplexity


def test_perplexity_matches_the_lm_loss_and_masking_only_helps(tiny_lm):
    model, tok = tiny_lm
    text = "Anarchism is a political philosophy that advocates self-governed societies."
    result = perplexity(model, tok, [text, "Short text here."], batch_size=2)
    ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
    with torch.inference_mode():
        loss = model(input_ids=ids, labels=ids).loss
    assert result.texts[0].ppl > 1
    assert math.exp(result.texts[0].nll_unmasked / result.texts[0].tokens) == pytest.approx(
        math.exp(float(loss)), rel=1e-4
    )
    # Removing the '[' tokens renormalises the rest: no text token gets less likely.
    assert result.ppl <= result.ppl_unmasked and result.bracket_targets == 0


def test_ppl_suite_reports_perplexity_only_with_tools_disabled(tiny_lm, tmp_path):
    config = EvalConfig(model="tiny", suite="ppl", limit=3, baseline="tiny")
    results = evaluate(config, models={"model": tiny_lm}, tools=load_tools("Calculator"))
    assert "wiki_ppl" not in results.run("tools").by_dataset
    disabled, base = (
        results.run("disabled").by_dataset["wiki_ppl"],
        results.run("baseline").by_dataset["wiki_ppl"],
    )
    assert disabled.n == 3 and disabled.ppl == pytest.approx(base.ppl) and disabled.accuracy is None
    paths = write_outputs(results, tmp_path)
    assert "n/a" in paths["report"].read_text()


# --------------------------------------------------------------------------------------------- command line


def test_cli_eval_writes_the_report(tiny_dir, tmp_path):
    out = tmp_path / "out"
    args = ["eval", str(tiny_dir), "--suite", "math", "--datasets", "svamp", "--limit", "2"]
    result = runner.invoke(
        app, [*args, "--max-new-tokens", "3", "--sweep-k", "0,10", "-q", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "svamp" in result.stdout
    data = json.loads((out / "results.json").read_text())
    assert data["datasets"][0]["n"] == 2 and data["config"]["limit"] == 2
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 2 * 3  # tools, disabled, k=0


def test_cli_bad_data_is_one_line_naming_file_line_field(tmp_path):
    bad = write_jsonl(tmp_path / "broken.jsonl", [MATH[0], {"id": "x", "question": "Q?"}])
    # No model is loaded: the data is checked first, so even a missing model cannot hide the data error.
    result = runner.invoke(
        app, ["eval", str(tmp_path / "no-model"), "--data", str(bad), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    # One message (the terminal may wrap it): "error: FILE:2: field 'answer' is missing".
    message = "".join(result.stderr.splitlines())
    assert message.startswith("error: ") and message.count("error:") == 1
    assert f"{bad}:2: field 'answer' is missing" in message
    assert "Traceback" not in result.output


def test_cli_bad_shots_is_one_line(tmp_path):
    result = runner.invoke(app, ["eval", "x", "--suite", "math", "--shots", "9", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "shots=9" in result.stderr


# --------------------------------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_math_suite_on_the_embedded_model_in_three_modes(smol, tmp_path):
    # Kept small (4 per dataset, 32 new tokens) so the default test run stays short.
    config = EvalConfig(
        suite="math", limit=4, shots=3, max_new_tokens=32, baseline="smollm2-135m-instruct", out=str(tmp_path)
    )
    results = evaluate(config, models={"model": smol})
    paths = write_outputs(results, tmp_path)
    assert json.loads(paths["results"].read_text())["config"]["shots"] == 3
    preds = {(p.mode, p.dataset, p.id): p for p in results.predictions}
    assert len(preds) == 3 * 4 * 4  # modes × math datasets (asdiv, svamp, mawps, gsm8k) × limit
    for name in ("asdiv", "svamp", "mawps", "gsm8k"):
        assert results.run("disabled").by_dataset[name].with_call == 0
        assert results.run("baseline").by_dataset[name].with_call == 0
        # With three Calculator examples and the paper's top-10 trigger, the model calls the Calculator.
        tools = results.run("tools").by_dataset[name]
        assert tools.per_tool.get("Calculator", 0) >= 2, tools
    # The baseline is the same model without tools: it must write exactly what the disabled mode writes.
    for (mode, name, rid), pred in preds.items():
        if mode == "baseline":
            assert pred.text == preds[("disabled", name, rid)].text


def test_importing_evals_loads_no_torch():
    code = "import sys, toolformer.evals, toolformer.evals.suites; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------- paper measures
# Tool ceiling, tool choice (Table 10), the no-tool set, ppl against the baseline (Table 8), suite all, notices.


def _fake_tool(name: str, answers: dict[str, str], seen: list[str] | None = None) -> Tool:
    """A one-argument tool answering from `answers` (exact input); any other input is a tool error."""

    def fn(text: str) -> str:
        if seen is not None:
            seen.append(text)
        if text not in answers:
            raise ToolError(f"no result for {text!r}")
        return answers[text]

    return Tool(
        name=name,
        description=f"fake {name}",
        fn=fn,
        parameters={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    )


QA_ROWS = [
    {"id": "q1", "question": "Where is the Louvre?", "answers": ["Paris"]},
    {"id": "q2", "question": "Who painted Guernica?", "answers": ["Pablo Picasso", "Picasso"]},
    {"id": "q3", "question": "What is the largest ocean?", "answers": ["Pacific Ocean", "Pacific"]},
]
SEARCH = {
    "Where is the Louvre?": "Louvre: The Louvre is an art museum in Paris, France. | Paris: capital of France.",
    "Who painted Guernica?": "Guernica (town): a town in the Basque Country. | Bombing: an air raid in 1937.",
}
ANSWERS = {
    "Where is the Louvre?": " Paris.",
    "Who painted Guernica?": " Dali.",
    "What is the largest ocean?": " The Pacific.",
}


def qa_answerer(prompt: str, gen: str) -> dict[str, float]:
    """Answers without calls: right on q1 and q3, wrong on q2."""
    question = prompt.rsplit("Question: ", 1)[1].split("\n")[0]
    return {ANSWERS[question]: 10.0}


def test_ceiling_counts_tool_outputs_holding_the_gold(tmp_path):
    seen: list[str] = []
    registry = ToolRegistry([_fake_tool("WikiSearch", SEARCH, seen)])
    spec = suites.data_spec("qa", write_jsonl(tmp_path / "qa.jsonl", QA_ROWS))
    c = compute_ceiling(suites.load_dataset(spec), registry)
    assert seen == [r["question"] for r in QA_ROWS]  # the question text is the query
    assert [e.hit for e in c.examples] == [True, False, False]  # "Guernica" in the output is not the answer
    assert (c.tool, c.n, c.checked, c.hits, c.errors, c.share) == (
        "WikiSearch",
        3,
        3,
        1,
        1,
        pytest.approx(1 / 3),
    )
    assert c.realised(0.2) == pytest.approx(0.6) and c.realised(None) is None

    # LAMA: the QA tool gets the cloze prefix the model sees; a hit is the gold as whole words.
    clozes = [
        {"id": "c1", "question": "Ginzburg works in the field of [MASK] .", "answer": "physics"},
        {"id": "c2", "question": "The capital of Peru is [MASK] .", "answer": "Lima"},
    ]
    seen.clear()
    qa = _fake_tool(
        "QA",
        {"Ginzburg works in the field of": "theoretical physics", "The capital of Peru is": "Limassol"},
        seen,
    )
    facts = suites.load_dataset(suites.data_spec("facts", write_jsonl(tmp_path / "c.jsonl", clozes)))
    c = compute_ceiling(facts, ToolRegistry([qa]))
    assert seen == [suites.cloze_prefix(r["question"]) for r in clozes]
    assert [e.hit for e in c.examples] == [True, False] and c.share == 0.5
    # No QA tool loaded: no ceiling, and it says why.
    missing = compute_ceiling(facts, ToolRegistry([_fake_tool("WikiSearch", {})]))
    assert missing.share is None and "QA" in missing.reason


def test_math_ceiling_runs_the_calculator_on_the_gold_expression(tmp_path):
    rows = [
        {
            "id": "a",
            "question": "Q1?",
            "answer": 21,
            "formula": "6 (penny)*1 (cent/penny) + 3 (nickel)*5 (cent/nickel) = 21 (cent)",
        },
        {"id": "b", "question": "Q2?", "answer": 432, "equation": "X=(27.0*16.0)"},
        {"id": "c", "question": "Q3?", "answer": 51, "equation": "( 76.0 - 25.0 )"},
        {"id": "d", "question": "Q4?", "answer": -6, "equation": "(7.0*x)+4.0=(3.0*x)-20.0"},  # an unknown
        {"id": "e", "question": "Q5?", "answer": 8, "equation": "X=(442.0/(48-40)*1.5+40)"},  # wrong upstream
        {"id": "f", "question": "Q6?", "answer": 3},  # no expression at all
    ]
    loaded = suites.load_dataset(suites.data_spec("math", write_jsonl(tmp_path / "m.jsonl", rows)))
    assert [e.expression for e in loaded.examples] == [
        "6*1 + 3*5",
        "(27.0*16.0)",
        "( 76.0 - 25.0 )",
        None,
        "(442.0/(48-40)*1.5+40)",
        None,
    ]
    c = compute_ceiling(loaded, load_tools("Calculator"))
    assert [e.hit for e in c.examples] == [True, True, True, False, False, False]
    assert (c.n, c.checked, c.hits, c.share) == (6, 4, 3, 0.5)  # a record without an expression is a miss
    # Temporal has no ceiling tool: n/a with the reason.
    temporal = suites.load_dataset(suites.SUITES["temporal"][0], limit=2)
    assert compute_ceiling(temporal, load_tools("Calculator")).share is None


def test_ceiling_and_realised_share_in_results_and_report(smol_tokenizer, tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
    seen: list[str] = []
    registry = ToolRegistry([_fake_tool("WikiSearch", SEARCH, seen)])
    config = EvalConfig(model="fake", suite="qa", data=str(data), trigger_top_k=1)
    results = evaluate(
        config, models={"model": (PolicyLM(smol_tokenizer, qa_answerer), smol_tokenizer)}, tools=registry
    )
    entry = results.ceiling()["qa"]
    # Ceiling 1/3 (only q1's snippets hold the answer); the model is right on q1 and q3 without a call: 2/3.
    assert entry["ceiling"] == pytest.approx(1 / 3) and entry["tools_accuracy"] == pytest.approx(2 / 3)
    assert entry["realised"] == pytest.approx(2.0) and entry["tool"] == "WikiSearch"
    paths = write_outputs(results, tmp_path / "out")
    data_json = json.loads(paths["results"].read_text())
    assert data_json["ceiling"]["qa"]["hits"] == 1 and data_json["runs"][0]["mode"] == "tools"
    assert [json.loads(x)["hit"] for x in paths["ceiling"].read_text().splitlines()] == [True, False, False]
    report = paths["report"].read_text()
    row = next(line for line in report.splitlines() if line.startswith("| qa | WikiSearch"))
    assert [c.strip() for c in row.strip("|").split("|")][5:] == ["33.3", "66.7", "200.0"]
    # --no-ceiling (or no tools mode) runs no tool before the model.
    seen.clear()
    for off in (
        EvalConfig(model="fake", suite="qa", data=str(data), ceiling=False),
        EvalConfig(model="fake", suite="qa", data=str(data), modes="disabled"),
    ):
        quiet = evaluate(
            off, models={"model": (PolicyLM(smol_tokenizer, qa_answerer), smol_tokenizer)}, tools=registry
        )
        assert quiet.ceilings == {} and quiet.to_dict()["ceiling"] == {}
    assert seen == []
    forced = EvalConfig(model="fake", suite="qa", data=str(data), modes="disabled", ceiling=True)
    assert forced.ceiling_on()


def test_corpus_feeds_the_tools_of_ceiling_and_model(smol_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLFORMER_HOME", str(tmp_path / "home"))
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"id": "1", "title": "Louvre", "text": "The Louvre is an art museum in Paris."},
            {"id": "2", "title": "Guernica", "text": "Guernica is a 1937 painting by Pablo Picasso."},
            {"id": "3", "title": "Bread", "text": "Bread is a staple food baked from dough."},
            {"id": "4", "title": "Violin", "text": "The violin is a wooden string instrument."},
        ],
    )
    data = write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
    config = EvalConfig(
        model="fake", suite="qa", data=str(data), corpus=str(corpus), tools="WikiSearch", trigger_top_k=1
    )
    results = evaluate(config, models={"model": (PolicyLM(smol_tokenizer, qa_answerer), smol_tokenizer)})
    c = results.ceilings["qa"]
    assert [e.hit for e in c.examples] == [True, True, False]  # nothing in this corpus about oceans
    assert c.examples[1].output.startswith("Guernica: Guernica is a 1937 painting by Pablo Picasso.")
    with pytest.raises(DataError, match="corpus="):
        load_datasets(EvalConfig(suite="qa", corpus=str(tmp_path / "missing.jsonl")))


def chooser(prompt: str, gen: str) -> dict[str, float]:
    """m1: the Calculator; m2: the Clock; m3: no call."""
    a, b = _operands(prompt)
    if a == 2:
        return {f" [Calculator({a} + {b}) → {a + b}] {a + b}.": 10.0}
    if a == 4:
        return {f' [Clock("now") → noon] {a + b}.': 10.0}
    return {f" {a + b}.": 10.0}


def test_tool_choice_rates_per_tool(smol_tokenizer, math_file, tmp_path):
    registry = load_tools("Calculator")
    registry.add(_fake_tool("Clock", {"now": "noon"}))
    registry.add(_fake_tool("Unused", {}))
    config = EvalConfig(model="fake", suite="math", data=str(math_file), trigger_top_k=1)
    results = evaluate(
        config, models={"model": (PolicyLM(smol_tokenizer, chooser), smol_tokenizer)}, tools=registry
    )
    score = results.run("tools").by_dataset["tiny_math"]
    assert score.per_tool == {"Calculator": 1, "Clock": 1} and score.call_rate == pytest.approx(2 / 3)
    assert score.to_dict()["per_tool_rate"] == {
        "Calculator": pytest.approx(1 / 3),
        "Clock": pytest.approx(1 / 3),
    }
    choice = results.tool_choice()["tiny_math"]
    assert set(choice) == {"tools"}  # disabled cannot call
    assert choice["tools"] == {
        "any": pytest.approx(2 / 3),
        "Calculator": pytest.approx(1 / 3),
        "Clock": pytest.approx(1 / 3),
        "Unused": 0.0,
    }
    report = write_outputs(results, tmp_path)["report"].read_text()
    assert "## Tool choice" in report
    row = next(line for line in report.splitlines() if line.startswith("| tiny_math | tools |"))
    assert [c.strip() for c in row.strip("|").split("|")][2:] == ["66.7", "33.3", "33.3", "0.0", "0"]


def test_no_call_notice_points_to_shots(smol_tokenizer, math_file, tmp_path):
    # '[' is only the shy caller's second choice: at trigger top-1 it never calls.
    silent = _run(smol_tokenizer, shy_caller, math_file, trigger_top_k=1)
    [notice] = silent.notices()
    assert "made no tool call on any example" in notice and "identical" in notice and "--shots" in notice
    report = write_outputs(silent, tmp_path)["report"].read_text()
    assert f"> **Note:** {notice}" in report
    assert json.loads((tmp_path / "results.json").read_text())["notices"] == [notice]
    assert _run(smol_tokenizer, call_lover, math_file, trigger_top_k=1).notices() == []
    # One dataset with calls, one without: the notice names the silent one.
    other = write_jsonl(
        tmp_path / "other_math.jsonl", [{"id": "o1", "question": "What is 6 plus 1?", "answer": 7}]
    )
    loaded = [suites.load_dataset(suites.data_spec("math", p)) for p in (math_file, other)]

    def split(prompt: str, gen: str) -> dict[str, float]:
        return {" 7.": 10.0} if prompt.endswith("6 plus 1?\nAnswer:") else call_lover(prompt, gen)

    config = EvalConfig(model="fake", suite="math", trigger_top_k=1, shots=3)
    models = {"model": (PolicyLM(smol_tokenizer, split), smol_tokenizer)}
    mixed = evaluate(config, models=models, tools=load_tools("Calculator"), datasets=loaded)
    assert mixed.run("tools").by_dataset["tiny_math"].call_rate == 1.0
    [notice] = mixed.notices()
    assert "made no tool call on other_math:" in notice and "Even with --shots 3" in notice


def test_no_tool_set_counts_any_call_as_wrong(smol_tokenizer, tmp_path):
    chat = write_jsonl(
        tmp_path / "chat.jsonl",
        [
            {"id": "h", "question": "Write a short poem about snow."},
            {"id": "g", "question": "Hello, nice to meet you!"},
            {"id": "c", "question": "Share a tip for staying calm."},
        ],
    )

    def policy(prompt: str, gen: str) -> dict[str, float]:
        if "poem" in prompt:
            return {" [Calculator(2 + 2) → 4] Snow falls.": 10.0}
        return {" Sure, here you go.": 10.0}

    config = EvalConfig(model="fake", suite="notool", data=str(chat), trigger_top_k=1)
    results = evaluate(
        config,
        models={"model": (PolicyLM(smol_tokenizer, policy), smol_tokenizer)},
        tools=load_tools("Calculator"),
    )
    assert results.datasets[0].kind == "chat"
    tools, disabled = results.run("tools").by_dataset["chat"], results.run("disabled").by_dataset["chat"]
    assert (tools.call_rate, tools.accuracy) == (
        pytest.approx(1 / 3),
        pytest.approx(2 / 3),
    )  # accuracy: no call
    assert (disabled.call_rate, disabled.accuracy) == (0.0, 1.0)
    assert results.notices() == []  # making no call is what a no-tool set asks for
    assert results.ceiling()["chat"]["ceiling"] is None
    preds = {(p.mode, p.id): p for p in results.predictions}
    assert preds[("tools", "h")].correct is False and preds[("tools", "g")].correct is True
    assert preds[("tools", "h")].prompt == "Question: Write a short poem about snow.\nAnswer:"
    # A started call is a call too, and a bracket that is no call is not.
    assert metrics.score_no_call(" [WikiSearch(").correct is False
    assert metrics.score_no_call(" as noted [1], rain falls.").correct is True
    report = write_outputs(results, tmp_path)["report"].read_text()
    assert "no-tool set" in report


def test_no_tool_passages_are_half_passages_continued_as_is():
    [spec] = suites.suite_specs("notool", "notool_passages")
    passages = suites.load_dataset(spec, limit=5).examples
    texts = suites.load_dataset(suites.SUITES["ppl"][0], limit=5).examples
    for cut, full in zip(passages, texts, strict=True):
        assert full.question.startswith(cut.question) and full.question[len(cut.question)] == " "
        assert 0.4 * len(full.question) < len(cut.question) <= 0.5 * len(full.question)
        assert suites.build_prompt(cut, "continuation") == cut.question
    chat = suites.load_dataset(suites.suite_specs("notool", "notool_chat")[0]).examples
    assert len(chat) == 40 and len({e.question for e in chat}) == 40
    # A chat prompt is no dev-set question and needs no tool: no digit to compute, no date, no foreign text.
    assert not any(any(ch.isdigit() for ch in e.question) for e in chat)


def test_suite_all_runs_every_suite_and_caps_shots_per_kind():
    specs = suites.suite_specs("all")
    every = [s.suite for suite in suites.SUITES.values() for s in suite if s.kind not in suites.API_KINDS]
    assert [s.suite for s in specs] == every  # bfcl asks a chat endpoint: not part of all
    assert list(dict.fromkeys(s.suite for s in specs)) == ["math", "facts", "qa", "temporal", "ppl", "notool"]
    config = EvalConfig(suite="all", shots=4, limit=1)
    loaded = load_datasets(config)  # 4 shots: more than the choice pool holds, fine under 'all'
    assert len(loaded) == len(specs)
    shots = {ds.spec.name: suites.shots_for(ds.spec.kind, 4, "all") for ds in loaded}
    assert shots["asdiv"] == 4 and shots["date_understanding"] == 3 and shots["notool_passages"] == 0
    with pytest.raises(ConfigError, match="shots=4"):
        load_datasets(EvalConfig(suite="temporal", shots=4, limit=1))
    with pytest.raises(ConfigError, match="suite='all'"):
        EvalConfig(suite="all", data="x.jsonl")


def _other_lm(tiny_lm):
    model, tok = tiny_lm
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
    return other, tok


@pytest.mark.parametrize("baseline_tools", [False, True])
def test_ppl_against_the_baseline(tiny_lm, tmp_path, baseline_tools):
    other = _other_lm(tiny_lm)
    config = EvalConfig(model="trained", suite="ppl", limit=3, baseline="base", baseline_tools=baseline_tools)
    results = evaluate(config, models={"model": tiny_lm, "baseline": other}, tools=load_tools("Calculator"))
    texts = [e.question for e in suites.load_dataset(suites.SUITES["ppl"][0], limit=3).examples]
    mine, theirs = perplexity(*tiny_lm, texts).ppl, perplexity(*other, texts).ppl
    entry = results.perplexity()["wiki_ppl"]
    assert entry["model_ppl"] == pytest.approx(mine) and entry["baseline_ppl"] == pytest.approx(theirs)
    assert entry["relative_difference"] == pytest.approx(mine / theirs - 1) and mine != pytest.approx(theirs)
    paths = write_outputs(results, tmp_path)
    assert json.loads(paths["results"].read_text())["perplexity"]["wiki_ppl"]["baseline"] == "base"
    section = paths["report"].read_text().split("## Perplexity with tools disabled", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| wiki_ppl |"))
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "wiki_ppl",
        f"{mine:.2f}",
        f"{theirs:.2f}",
        f"{100 * (mine / theirs - 1):+.1f}",
    ]


def test_date_scorer_reads_letter_forms():
    record = shipped("date_understanding", "bbh-date-000")  # gold (B) 12/25/1937
    options, gold = record["options"], record["answer"]
    for answer in (
        "[B]",
        " The answer is [B].",
        "(B)",
        "B)",
        "B.",
        " The answer is B.",
        " Answer: B",
        " B: yes",
    ):
        assert metrics.score_choice(answer, options, gold) == metrics.Score("(B)", True), answer
    for answer in ("[A]", " A.", " It is (C)."):
        assert not metrics.score_choice(answer, options, gold).correct, answer
    assert not metrics.score_choice(" Washington D.C. had snow.", {"D": "x", "C": "y"}, "D").correct


def test_cli_eval_corpus_and_ceiling_options(tmp_path):
    missing = tmp_path / "nope.jsonl"
    result = runner.invoke(
        app, ["eval", "x", "--suite", "qa", "--corpus", str(missing), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "corpus=" in "".join(result.stderr.splitlines())
    result = runner.invoke(app, ["eval", "--help"])
    assert "--no-ceiling" in result.stdout and "--corpus" in result.stdout and "notool" in result.stdout
