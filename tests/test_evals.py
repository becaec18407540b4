"""Evaluation like the paper: lenient metrics, suites and dev files, modes and call rates, reports, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from toolformer.cli import app
from toolformer.errors import ConfigError, DataError
from toolformer.evals import EvalConfig, evaluate, metrics, suites, write_outputs
from toolformer.evals.evaluate import plan_runs
from toolformer.evals.perplexity import perplexity
from toolformer.runtime.prompts import EXAMPLES
from toolformer.tools import load_tools

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


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


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
        path = _write_jsonl(tmp_path / f"bad{i}.jsonl", rows)
        with pytest.raises(DataError) as info:
            suites.load_dataset(suites.data_spec(suite, path))
        assert f"bad{i}.jsonl{message}" in str(info.value)
        assert "\n" not in str(info.value)


def test_unscorable_records_are_skipped_and_counted(tmp_path):
    rows = [
        {"question": "Who has more money?", "answer": None},
        {"question": "What is 2 plus 3?", "answer": "5"},
    ]
    loaded = suites.load_dataset(suites.data_spec("math", _write_jsonl(tmp_path / "m.jsonl", rows)))
    assert [e.golds for e in loaded.examples] == [[5.0]] and loaded.skipped == 1
    clozes = [
        {"question": "The [MASK] clothing company sponsored it.", "answer": "Gap"},
        {"question": "Ginzburg works in the field of [MASK] .", "answer": "physics"},
    ]
    loaded = suites.load_dataset(suites.data_spec("facts", _write_jsonl(tmp_path / "c.jsonl", clozes)))
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
    with pytest.raises(ConfigError, match="datasets='gsm8k'"):
        suites.suite_specs("math", "gsm8k")


# --------------------------------------------------------------------------------------------- a scripted model


class _Cache:
    """Per-row token history; drops finished rows like transformers' DynamicCache."""

    def __init__(self, rows: int) -> None:
        self.hist: list[list[int]] = [[] for _ in range(rows)]
        self.prompt_len: list[int | None] = [None] * rows

    def batch_select_indices(self, index: torch.Tensor) -> None:
        keep = index.tolist()
        self.hist = [self.hist[i] for i in keep]
        self.prompt_len = [self.prompt_len[i] for i in keep]


class PolicyLM(torch.nn.Module):
    """A fake LM: `policy(prompt, generated)` gives {full continuation: score}; the next token of every
    continuation that extends the text so far gets that score, end-of-text 0, everything else -1e4.
    """

    def __init__(self, tokenizer, policy) -> None:
        super().__init__()
        self.tok = tokenizer
        self.policy = policy
        self.config = SimpleNamespace(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id)
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(
        self, input_ids, attention_mask, position_ids=None, cache=None, use_cache=True, logits_to_keep=0
    ):
        rows, width = input_ids.shape
        cache = cache or _Cache(rows)
        step = attention_mask[:, -width:]
        logits = torch.full((rows, 1, self.config.vocab_size), -1e4)
        for b in range(rows):
            toks = input_ids[b][step[b].bool()].tolist()
            if cache.prompt_len[b] is None:
                cache.prompt_len[b] = len(toks)
            cache.hist[b].extend(toks)
            n = cache.prompt_len[b]
            prompt = self.tok.decode(cache.hist[b][:n])
            gen = self.tok.decode(cache.hist[b][n:], skip_special_tokens=True)
            logits[b, 0, self.tok.eos_token_id] = 0.0
            for cont, value in self.policy(prompt, gen).items():
                if cont.startswith(gen) and len(cont) > len(gen):
                    nxt = self.tok.encode(cont[len(gen) :], add_special_tokens=False)[0]
                    logits[b, 0, nxt] = max(float(logits[b, 0, nxt]), value)
        return SimpleNamespace(logits=logits, cache=cache)


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
    return _write_jsonl(tmp_path / "tiny_math.jsonl", MATH)


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


@pytest.fixture(scope="module")
def tiny_dir(tiny_lm, tmp_path_factory):
    model, tok = tiny_lm
    path = tmp_path_factory.mktemp("tiny-eval-model")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


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
    bad = _write_jsonl(tmp_path / "broken.jsonl", [MATH[0], {"id": "x", "question": "Q?"}])
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
    assert len(preds) == 3 * 3 * 4
    for name in ("asdiv", "svamp", "mawps"):
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
