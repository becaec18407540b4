"""Tests for the Sample step: the rule, data and LM proposers, the annotation prompts and the sampling config."""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import replace

import pytest
import torch

from fakes import tiny_llama_config
from shared_data import shared_data
from toolformer.calls import find_calls, strip_calls
from toolformer.datagen import prompts as pr
from toolformer.datagen.config import PAPER_DEFAULTS, SampleConfig, paper_config
from toolformer.datagen.heuristics import NUMBER
from toolformer.datagen.proposers.base import Proposer
from toolformer.datagen.proposers.data import (
    DATA_CALLS,
    DataProposer,
    compose_gsm8k_expression,
    gsm8k_answer_document,
    gsm8k_document,
    spaced_expression,
)
from toolformer.datagen.proposers.kvcache import cut_cache
from toolformer.datagen.proposers.lm import LMProposer, Position, select_positions
from toolformer.datagen.proposers.rules import RuleProposer, calculator_rules
from toolformer.datagen.records import Candidate, Document
from toolformer.errors import ConfigError, DataError
from toolformer.tools.calculator import calculate


def _gsm8k(n: int) -> list[dict]:
    with shared_data("gsm8k/gsm8k_train.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in itertools.islice(f, n)]


def _number_at(text: str, position: int) -> float:
    m = re.compile(r"-?\d[\d,]*(?:\.\d+)?|\.\d+").match(text, position)  # "4S" (algebra) holds a 4 too
    assert m is not None, f"no number at {position}: {text[position : position + 20]!r}"
    return float(m.group(0).replace(",", ""))


def test_the_three_proposers_share_one_interface(tiny_lm):
    model, tok = tiny_lm
    for proposer in (RuleProposer(), DataProposer(), DataProposer.gsm8k(), LMProposer(model, tok)):
        assert isinstance(proposer, Proposer)


# ---------------------------------------------------------------------------------------------------- rules


def test_rule_calculator_finds_the_expression_whose_result_is_written_later():
    text = "Out of 1400 participants, 400 passed the test, that is 0.29 of them."
    cands = RuleProposer().propose(Document("d", text), "Calculator")
    assert [(c.args, c.position, c.source, c.tool) for c in cands] == [
        ("400 / 1400", text.index("0.29"), "rule", "Calculator")
    ]
    assert calculate(cands[0].args) == "0.29"


def test_rule_calculator_on_the_papers_example():
    text = "I went to Paris in 1994 and stayed there until 2011, so in total, it was 17 years."
    assert calculator_rules(text) == [(text.index("17"), "2011 - 1994")]


def test_rule_calculator_skips_identities_and_texts_without_a_result():
    assert calculator_rules("I have 3 apples and 4 pears.") == []
    assert calculator_rules("Take 1 box of 5 eggs: 5 eggs.") == []  # 1 * 5 = 5 is no calculation
    assert calculator_rules("He had 7 and lost 7, so 0 left.") == []  # x - x


def test_rule_calculator_candidates_on_real_gsm8k_are_sound_and_capped():
    proposer = RuleProposer(max_candidates=6)
    total = 0
    for row in _gsm8k(30):
        doc, _ = gsm8k_document(row)
        cands = proposer.propose(doc, "Calculator")
        assert len(cands) <= 6
        assert [c.position for c in cands] == sorted(c.position for c in cands)
        for c in cands:
            total += 1
            a, _op, b = c.args.split(" ")
            assert _number_at(doc.text, c.position) == pytest.approx(float(calculate(c.args)))
            before = [float(m.group(0).replace(",", "")) for m in NUMBER.finditer(doc.text[: c.position])]
            assert float(a) in before and float(b) in before
    assert total >= 30
    assert RuleProposer().propose(Document("x", "a b c"), "Calculator") == []


def test_rule_calendar_goes_before_date_words():
    text = "Today is the first Friday of the year. On January 30, 2023 we met; see 2023-02-01."
    cands = RuleProposer().propose(Document("d", text), "Calendar")
    assert [text[c.position :].split()[0] for c in cands] == ["Today", "Friday", "January", "2023-02-01."]
    assert {c.args for c in cands} == {""}


def test_rule_search_tools_go_before_the_object_of_a_relation():
    text = "Joe Biden was born in Scranton, Pennsylvania. Anarchism is a political philosophy."
    doc = Document("d", text)
    qa = RuleProposer().propose(doc, "QA")
    wiki = RuleProposer().propose(doc, "WikiSearch")
    assert [(c.args, text[c.position :][:8]) for c in qa] == [
        ('"Where was Joe Biden born?"', "Scranton"),
        ('"What is Anarchism?"', "politica"),
    ]
    assert [(c.args, c.position) for c in wiki] == [
        ('"Joe Biden"', text.index("Scranton")),
        ('"Anarchism"', text.index("political")),
    ]
    born = "In 1942, Joe Biden was born in 1942 in a town."
    assert [c.args for c in RuleProposer().propose(Document("d", born), "QA")] == [
        '"When was Joe Biden born?"'
    ]
    assert RuleProposer().propose(Document("d", "He was born in a small town."), "QA") == []


def test_rule_mt_goes_before_the_english_gloss_of_a_foreign_span():
    text = 'He has published one book: O homem suprimido que vive sozinho ("The suppressed man who lives alone").'
    (cand,) = RuleProposer().propose(Document("d", text), "MT")
    assert cand.args == '"O homem suprimido que vive sozinho"'
    assert cand.position == text.index('("The')
    assert RuleProposer().propose(Document("d", "A plain English sentence with no gloss."), "MT") == []


def test_rules_are_deterministic_and_unknown_tools_get_none():
    row = _gsm8k(1)[0]
    doc, _ = gsm8k_document(row)
    first = RuleProposer().propose(doc, "Calculator")
    assert first and first == RuleProposer().propose(doc, "Calculator")
    assert RuleProposer().propose(doc, "Weather") == []


# ----------------------------------------------------------------------------------------------------- data


@pytest.mark.parametrize(
    ("raw", "spaced"),
    [
        ("48/2", "48 / 2"),
        ("-3+4*(2-1)", "-3 + 4 * (2 - 1)"),
        ("2*-3", "2 * -3"),
        ("12*.5", "12 * .5"),
        ("1,000-250", "1,000 - 250"),
    ],
)
def test_spaced_expression(raw, spaced):
    assert spaced_expression(raw) == spaced


def test_gsm8k_document_cleans_the_text_and_places_each_call_before_its_result():
    rows = _gsm8k(50)
    total = 0
    for row in rows:
        doc, cands = gsm8k_document(row)
        annotations = [
            (expr, result)
            for expr, result in re.findall(r"<<([^<>=]*)=([^<>]*)>>", row["solution"])
            if re.fullmatch(r"-?[\d.]+", result) and re.search(r"[-+*/]", expr)  # not <<4*S=4S>>, <<4=4>>
        ]
        assert "<<" not in doc.text and ">>" not in doc.text and "####" not in doc.text
        assert doc.id == row["id"] and doc.text.startswith(row["question"].strip())
        assert len(cands) == len(annotations)  # a few solutions have no annotation
        total += len(cands)
        for cand, (expr, result) in zip(cands, annotations):
            assert (cand.tool, cand.source, cand.doc_id) == ("Calculator", "data", row["id"])
            assert cand.args == spaced_expression(expr)
            written = _number_at(doc.text, cand.position)
            assert written == pytest.approx(float(result))
            assert float(calculate(cand.args)) == pytest.approx(written, abs=0.01)
    assert total > 100
    doc, cands = gsm8k_document(rows[0])
    assert doc.text.endswith("Natalia sold 48+24 = 72 clips altogether in April and May.")
    assert (cands[0].args, doc.text[cands[0].position :][:8]) == ("48 / 2", "24 clips")
    solution_only, _ = gsm8k_document(rows[0], with_question=False, answer_line=True)
    assert solution_only.text.startswith("Natalia sold 48/2 = 24") and solution_only.text.endswith("#### 72")


def test_gsm8k_algebra_annotations_are_removed_but_not_proposed():
    solution = "So 4S = <<4*S=4S>>4S, <<4=4>>4 and 2*3 = <<2*3=6>>6.\n#### 6"
    doc, cands = gsm8k_document({"id": "g", "question": "Q?", "solution": solution})
    assert doc.text == "Q?\nSo 4S = 4S, 4 and 2*3 = 6."
    assert [(c.args, doc.text[c.position :]) for c in cands] == [("2 * 3", "6.")]


def test_gsm8k_document_rejects_a_record_without_a_solution():
    with pytest.raises(DataError, match="'solution'"):
        gsm8k_document({"id": "x", "question": "q"})


def test_composed_expressions_on_real_gsm8k_give_the_answer_and_use_only_question_numbers():
    rows = _gsm8k(200)
    composed = 0
    for row in rows:
        expression = compose_gsm8k_expression(row["question"], row["solution"], row["answer"])
        if expression is None:
            continue
        composed += 1
        assert float(calculate(expression)) == pytest.approx(float(row["answer"]), abs=0.01)
        assert "<<" not in expression and len(expression) <= 80
    assert composed > 150  # most solutions compose; the rest are algebra, text steps or too long
    assert compose_gsm8k_expression(rows[0]["question"], rows[0]["solution"], 72) == "48 + 48 / 2"


def test_composition_keeps_numbers_the_question_states_and_refuses_a_wrong_answer():
    question = "Tom has 3 boxes of 4 pens and buys 12 more pens. How many pens?"
    solution = "3*4 = <<3*4=12>>12 pens.\n12+12 = <<12+12=24>>24 pens.\n#### 24"
    # 12 is both a result and a number of the question: left as written, not replaced by (3 * 4).
    assert compose_gsm8k_expression(question, solution, 24) == "12 + 12"
    assert compose_gsm8k_expression("Q?", solution, 24) == "3 * 4 + 3 * 4"
    assert compose_gsm8k_expression("Q?", solution, 25) is None  # no step gives the gold answer
    assert compose_gsm8k_expression("Q?", "No calculator steps.\n#### 5", 5) is None


def test_gsm8k_answer_document_is_a_short_answer_with_the_call_before_it():
    row = _gsm8k(1)[0]
    doc, (cand,) = gsm8k_answer_document(row)
    assert doc.text == f"Question: {row['question'].strip()}\nAnswer: 72"
    assert (cand.tool, cand.args, doc.text[cand.position :]) == ("Calculator", "48 + 48 / 2", "72")
    bare, cands = gsm8k_answer_document(
        {"id": "b", "question": "Q?", "solution": "No steps.\n#### 5", "answer": 5}
    )
    assert bare.text == "Question: Q?\nAnswer: 5" and cands == []
    with pytest.raises(DataError, match="'answer'"):
        gsm8k_answer_document({"id": "x", "question": "q", "solution": "s"})


def test_inline_calls_are_taken_out_and_proposed_back():
    raw = 'The total is [Calculator(2 + 3) → 5] 5 apples. Then [QA("Who came?")] Bob came [Calendar()].'
    proposer = DataProposer()
    clean, cands = proposer.extract(Document("d", raw, {"lang": "en"}))
    assert clean.text == strip_calls(raw) == "The total is 5 apples. Then Bob came."
    assert clean.meta["lang"] == "en" and len(clean.meta[DATA_CALLS]) == 3
    assert [(c.tool, c.args, clean.text[c.position :]) for c in cands] == [
        ("Calculator", "2 + 3", "5 apples. Then Bob came."),
        ("QA", '"Who came?"', "Bob came."),
        ("Calendar", "", "."),
    ]
    assert proposer.propose(clean, "QA") == [cands[1]]
    with pytest.raises(DataError, match="still holds annotations"):
        proposer.propose(Document("d", raw), "QA")
    assert proposer.propose(Document("plain", "No calls here."), "QA") == []


def test_a_custom_annotation_pattern():
    proposer = DataProposer(r"\{\{(?P<tool>\w+):(?P<args>[^}]*)\}\}", format_args=lambda a: f'"{a}"')
    clean, cands = proposer.extract(Document("d", "Paris is in {{WikiSearch:Paris}}France."))
    assert clean.text == "Paris is in France."
    assert [(c.tool, c.args, c.position) for c in cands] == [("WikiSearch", '"Paris"', 12)]
    with pytest.raises(ConfigError, match="args"):
        DataProposer(r"<<(.*)>>")


# -------------------------------------------------------------------------------------------------- prompts


@pytest.mark.parametrize("tool", sorted(pr.PROMPTS))
def test_every_prompt_example_is_its_input_plus_calls_of_its_tool(tool):
    template = pr.PROMPTS[tool]
    inputs = re.findall(r"^Input: (.*)$", template, re.M)[:-1]
    outputs = re.findall(r"^Output: (.*)$", template, re.M)
    assert len(inputs) == len(outputs) >= 2
    for x, y in zip(inputs, outputs):
        spans = find_calls(y, include_incomplete=False)
        assert spans and {s.call.name for s in spans} == {tool}
        assert strip_calls(y) == x


def test_annotation_prompt_ends_with_the_input():
    text = "From this, {we} have 4 * 30 = 120."
    prompt = pr.annotation_prompt("Calculator", text)
    assert prompt.startswith("Your task is to add calls to a Calculator API to a piece of text.")
    assert prompt.endswith(f"Input: {text}\nOutput:")
    generic = pr.annotation_prompt("Weather", "Rain in Paris.", description="Today's weather in a city.")
    assert '"[Weather(input)]"' in generic and "weather in a city" in generic
    assert generic.endswith("Input: Rain in Paris.\nOutput:")
    custom = pr.annotation_prompt("Calculator", "x", prompts={"Calculator": "Mine: {x} ->"})
    assert custom == "Mine: x ->"
    with pytest.raises(ConfigError, match="placeholder"):
        pr.annotation_prompt("Calculator", "x", prompts={"Calculator": "no slot"})


# --------------------------------------------------------------------------------------------------- config


def test_sample_config_defaults_follow_the_paper():
    for tool in ("Calculator", "MT"):
        assert (PAPER_DEFAULTS[tool].tau_s, PAPER_DEFAULTS[tool].k, PAPER_DEFAULTS[tool].m) == (0.0, 20, 10)
    for tool in ("QA", "WikiSearch", "Calendar", "Weather"):
        cfg = paper_config(tool)
        assert (cfg.tau_s, cfg.k, cfg.m) == (0.05, 5, 5)
    assert paper_config("Calculator") is not PAPER_DEFAULTS["Calculator"]  # a copy, safe to change
    assert all(SampleConfig.help().values())


@pytest.mark.parametrize(
    "kwargs", [{"tau_s": 1.0}, {"k": 0}, {"m": 0}, {"temperature": 0}, {"top_p": 0}, {"batch_size": 0}]
)
def test_sample_config_rejects_bad_values(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ConfigError, match=name):
        SampleConfig(**kwargs)


def test_select_positions_keeps_the_k_likeliest_above_tau_in_text_order():
    ps = [Position(c, c, p, 0) for c, p in [(0, 0.01), (3, 0.4), (7, 0.9), (9, 0.06), (12, 0.4)]]
    assert [p.char for p in select_positions(ps, 0.05, 5)] == [3, 7, 9, 12]
    assert [p.char for p in select_positions(ps, 0.05, 2)] == [3, 7]  # tie at 0.4: the earlier one
    assert [p.char for p in select_positions(ps, 0.5, 5)] == [7]
    assert len(select_positions(ps, 0.0, 20)) == 5


# ------------------------------------------------------------------------------------------------ LM sampler


class BigramLM:
    """Builds a scripted causal LM: a real tiny Llama (so `generate` and its KV cache work as usual) whose
    logits are replaced by bigram rules: after token `cur`, token `nxt` gets logit `rules[cur][nxt]`, every
    other token 0."""

    @staticmethod
    def make(tok, rules: dict[int, dict[int, float]]) -> torch.nn.Module:
        from transformers import LlamaForCausalLM

        keys = sorted(rules)
        rows = torch.zeros(len(keys), len(tok))  # one logit row per rule, not a vocab x vocab table
        for r, cur in enumerate(keys):
            for nxt, logit in rules[cur].items():
                rows[r, nxt] = logit

        class _Bigram(LlamaForCausalLM):
            def forward(self, input_ids=None, **kwargs):
                out = super().forward(input_ids=input_ids, **kwargs)
                ids = input_ids[:, -out.logits.shape[1] :]
                logits = torch.zeros(*ids.shape, len(tok))
                for r, cur in enumerate(keys):
                    logits[ids == cur] = rows[r]
                out.logits = logits
                return out

        config = tiny_llama_config(
            tok,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
        torch.manual_seed(0)
        return _Bigram(config).eval()


def _ids(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def _one(tok, text: str) -> int:
    (i,) = _ids(tok, text)
    return i


def _scripted(tok, trigger: str, logit: float = 30.0) -> torch.nn.Module:
    """After the token `trigger`, " [" is near certain; after "[" or " [", "Calculator(2 + 3)]" follows."""
    script = _ids(tok, "Calculator(2 + 3)]")
    rules: dict[int, dict[int, float]] = {_one(tok, trigger): {_one(tok, " ["): logit}}
    for opener in (_one(tok, "["), _one(tok, " [")):
        rules[opener] = {script[0]: 30.0}
    for cur, nxt in zip(script, script[1:]):
        rules.setdefault(cur, {})[nxt] = 30.0
    return BigramLM.make(tok, rules)


TEXT = "Tom has 2 apples and 3 pears, so 5 fruits in all."


def test_lm_proposer_returns_exactly_the_scripted_call_at_the_scripted_position(smol_tokenizer):
    tok = smol_tokenizer
    model = _scripted(tok, " so")
    cfg = SampleConfig(tau_s=0.05, k=5, m=3, max_new_tokens=12)
    cands = LMProposer(model, tok, cfg).propose(Document("d", TEXT), "Calculator")
    assert [(c.tool, c.args, c.position, c.source) for c in cands] == [
        ("Calculator", "2 + 3", TEXT.index(" so") + 3, "lm")
    ]
    assert cands[0].p_start > 0.99
    # The same samples under another tool's name are not calls of that tool.
    assert LMProposer(model, tok, cfg).propose(Document("d", TEXT), "QA") == []


def test_lm_proposer_keeps_the_k_likeliest_positions_above_tau_s(smol_tokenizer):
    tok = smol_tokenizer
    bracket = _one(tok, " [")
    # p(" [") after " has" ≈ 0.985, after " and" ≈ 0.31, after " so" ≈ 0.02 (the vocabulary is ~49k tokens).
    rules = {
        _one(tok, " has"): {bracket: 15.0},
        _one(tok, " and"): {bracket: 10.0},
        _one(tok, " so"): {bracket: 7.0},
    }
    model = BigramLM.make(tok, rules)
    after = {w: TEXT.index(w) + len(w) for w in (" has", " and", " so")}
    positions = {p.char: p.p for p in LMProposer(model, tok).positions(TEXT, "Calculator")}
    assert positions[after[" has"]] == pytest.approx(math.exp(15) / (math.exp(15) + len(tok) - 1), rel=1e-3)
    assert 0.25 < positions[after[" and"]] < 0.35 and 0.01 < positions[after[" so"]] < 0.05

    def kept(tau_s: float, k: int) -> list[int]:
        cfg = SampleConfig(tau_s=tau_s, k=k, m=1, max_new_tokens=2)
        return [s.position.char for s in LMProposer(model, tok, cfg).samples(Document("d", TEXT), "QA")]

    assert kept(0.05, 5) == [after[" has"], after[" and"]]
    assert kept(0.05, 1) == [after[" has"]]
    assert kept(0.5, 5) == [after[" has"]]
    assert len(kept(0.0, 20)) == min(20, len(positions)) and after[" so"] in kept(0.0, 20)


def test_positions_never_fall_inside_a_word_or_number(smol_tokenizer):
    tok = smol_tokenizer
    text = "Natalia sold 48 clips."
    model = BigramLM.make(tok, {})
    chars = [p.char for p in LMProposer(model, tok).positions(text, "Calculator")]
    # Before each word (and before "48" after its space token), after "48" and "clips"; none inside them.
    assert chars == [0, 7, 12, 13, 15, 21]
    loose = LMProposer(model, tok, SampleConfig(word_boundaries=False)).positions(text, "Calculator")
    assert len(loose) > len(chars)  # "Natalia" and "48" are several tokens each


def test_lm_proposer_on_a_tiny_random_model_is_well_formed_and_seeded(tiny_lm):
    model, tok = tiny_lm
    doc = Document("d", "Natalia sold 48/2 = 24 clips in May.")
    cfg = SampleConfig(tau_s=0.0, k=3, m=2, max_new_tokens=6, batch_size=4)
    proposer = LMProposer(model, tok, cfg)
    samples = proposer.samples(doc, "Calculator")
    assert len(samples) == 3 and all(len(s.texts) == 2 for s in samples)
    assert [s.texts for s in samples] == [s.texts for s in proposer.samples(doc, "Calculator")]
    other = LMProposer(model, tok, replace(cfg, seed=1))
    assert [s.texts for s in samples] != [s.texts for s in other.samples(doc, "Calculator")]
    fresh = LMProposer(model, tok, replace(cfg, share_prefix=False)).samples(
        doc, "Calculator"
    )  # the fallback
    assert [s.position for s in fresh] == [s.position for s in samples] and all(
        len(s.texts) == 2 for s in fresh
    )
    cands = proposer.propose(doc, "Calculator")
    assert cands == proposer.candidates(doc, "Calculator", samples)
    for cand in cands:
        assert isinstance(cand, Candidate) and cand.tool == "Calculator" and cand.source == "lm"
        assert 0 <= cand.position < len(doc.text) and 0 <= cand.p_start <= 1


def test_sampling_on_the_shared_cache_equals_sampling_from_scratch(tiny_lm):
    """Greedy continuations cut from the scoring pass's cache (left-padded, batched) match re-encoded prefixes."""
    model, tok = tiny_lm
    doc = Document("d", "Tom has 2 apples and 3 pears, so 5 fruits in all. He ate one.")
    texts = {}
    for share in (True, False):
        cfg = SampleConfig(
            tau_s=0.0, k=7, m=1, do_sample=False, max_new_tokens=8, batch_size=3, share_prefix=share
        )
        samples = LMProposer(model, tok, cfg).samples(doc, "Calculator")
        texts[share] = [(s.position.char, s.texts) for s in samples]
    assert len(texts[True]) == 7
    assert texts[True] == texts[False]


def test_cut_cache_rows_give_the_logits_of_their_own_prefix(tiny_lm):
    """A row cut from the shared cache and left-padded predicts as if its prefix had been encoded alone."""
    model, tok = tiny_lm
    full = tok.encode(
        "Tom has 2 apples and 3 pears, so 5 fruits in all. He ate one of them.", add_special_tokens=False
    )
    with torch.inference_mode():
        cache = model(input_ids=torch.tensor([full]), use_cache=True).cache
    lengths = [3, len(full) - 1, 9]
    nxt = torch.tensor([[full[n]] for n in lengths])
    width = max(lengths)
    mask = torch.tensor([[0] * (width - n) + [1] * (n + 1) for n in lengths])
    with torch.inference_mode():
        out = model(
            input_ids=nxt,
            attention_mask=mask,
            position_ids=torch.tensor([[n] for n in lengths]),
            cache=cut_cache(cache, lengths),
            use_cache=True,
        )
        for r, n in enumerate(lengths):
            alone = model(input_ids=torch.tensor([full[: n + 1]])).logits[0, -1]
            assert torch.allclose(out.logits[r, -1], alone, atol=1e-4), f"row {r} (prefix of {n} tokens)"
        # A row that kept the wrong positions would not match.
        wrong = model(input_ids=torch.tensor([full[1 : lengths[0] + 2]])).logits[0, -1]
        assert not torch.allclose(out.logits[0, -1], wrong, atol=1e-4)


@pytest.mark.slow
def test_real_model_proposes_on_a_gsm8k_text(smol):
    model, tok = smol
    doc, _ = gsm8k_document(_gsm8k(1)[0])
    # The paper's Calculator setting (k=20, m=10: 200 samples) takes minutes on a CPU; 16 samples here.
    cfg = SampleConfig(tau_s=0.0, k=4, m=4, max_new_tokens=16)
    proposer = LMProposer(model, tok, cfg)
    samples = proposer.samples(doc, "Calculator")
    cands = proposer.candidates(doc, "Calculator", samples)
    assert len(samples) == 4 and all(len(s.texts) == 4 for s in samples)
    for cand in cands:
        assert cand.tool == "Calculator" and 0 <= cand.position < len(doc.text) and cand.source == "lm"


# ------------------------------------------------------------------------------------------------ vLLM backend


class FakeVLLM:
    """Stands in for the `vllm` module: `LLM.generate` continues each token prompt greedily with the given HF
    model and cuts it at the first stop string, as vLLM does with `include_stop_str_in_output=True`."""

    def __init__(self, model) -> None:
        self.hf = model
        self.made: list[dict] = []
        self.calls: list[tuple[list, object]] = []
        fake = self

        class LLM:
            def __init__(self, **kwargs) -> None:
                fake.made.append(kwargs)

            def generate(self, prompts, params, use_tqdm=True):
                fake.calls.append((prompts, params))
                tok = fake.tokenizer
                outs = []
                for prompt in prompts:
                    ids = torch.tensor([prompt["prompt_token_ids"]])
                    with torch.inference_mode():
                        gen = fake.hf.generate(ids, do_sample=False, max_new_tokens=params.max_tokens)
                    text = tok.decode(gen[0, ids.shape[1] :].tolist(), skip_special_tokens=True)
                    ends = [i + len(s) for s in params.stop if (i := text.find(s)) >= 0]
                    text = text[: min(ends)] if ends else text
                    outs.append(
                        type("RequestOutput", (), {"outputs": [type("Out", (), {"text": text})] * params.n})
                    )
                return outs

        class SamplingParams:
            def __init__(self, **kwargs) -> None:
                self.__dict__.update(kwargs)

        self.LLM, self.SamplingParams = LLM, SamplingParams


def test_vllm_backend_samples_the_same_calls_from_the_same_prompts(smol_tokenizer, monkeypatch):
    from toolformer.datagen.proposers import vllm_engine

    tok = smol_tokenizer
    model = _scripted(tok, " so")
    model.name_or_path = "scripted-model"
    fake = FakeVLLM(model)
    fake.tokenizer = tok
    monkeypatch.setattr(vllm_engine, "load_vllm", lambda: fake)
    cfg = SampleConfig(tau_s=0.05, k=5, m=3, max_new_tokens=12, seed=7)
    doc = Document("d", TEXT)
    hf = LMProposer(model, tok, cfg)
    vl = LMProposer(model, tok, replace(cfg, backend="vllm"))
    want = hf.propose(doc, "Calculator")
    assert want and vl.propose(doc, "Calculator") == want
    assert [s.position for s in vl.samples(doc, "Calculator")] == [
        s.position for s in hf.samples(doc, "Calculator")
    ]
    assert len(fake.made) == 1 and fake.made[0]["model"] == "scripted-model"  # one engine, made once
    prompts, params = fake.calls[0]
    assert (params.n, params.max_tokens, params.stop) == (
        3,
        12,
        ["]", "\n"],
    ) and params.include_stop_str_in_output
    assert params.temperature == cfg.temperature and params.top_p == cfg.top_p and params.seed is not None
    (prompt,) = prompts  # one kept position: the prompt is P(x) + x up to it + the opening token
    assert tok.decode(prompt["prompt_token_ids"]).endswith(TEXT[: TEXT.index(" so") + 3] + " [")


def test_vllm_backend_without_vllm_names_the_gpu_extra(smol_tokenizer, monkeypatch):
    import sys

    from toolformer.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "vllm", None)  # importing it now raises ImportError
    tok = smol_tokenizer
    proposer = LMProposer(_scripted(tok, " so"), tok, SampleConfig(m=2, max_new_tokens=8, backend="vllm"))
    with pytest.raises(MissingExtraError, match=r"pip install 'toolformer-kit\[gpu\]'"):
        proposer.propose(Document("d", TEXT), "Calculator")
    with pytest.raises(ConfigError, match="backend"):
        SampleConfig(backend="onnx")
