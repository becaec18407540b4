"""The call-name constraint: after "[" only tokens that spell a loaded tool's `Name(`, whatever the tokens carry."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from toolformer.runtime.callnames import VocabTexts, hf_vocab_texts

# A made-up vocabulary with the awkward cases: tokens carrying the bracket with other text, a name split anywhere.
TEXTS = [
    "[",
    " [",
    "[Calc",
    " [Calc",
    "[Q",
    " [Qu",
    '["',
    "[[",
    "])[",
    "Calc",
    "ulator",
    "ulator(",
    'ulator("',
    "(",
    "Q",
    "QA",
    "A(",
    "Weather",
    "W",
    "eat",
    "her(",
    " ",
    "x",
    ")",
    "",  # a special token: adds no text
]


def _vocab() -> VocabTexts:
    return VocabTexts(TEXTS)


def _allowed(rule, n=len(TEXTS)) -> set[str]:
    if rule is None:
        return set(TEXTS)
    ids = set(rule.ids.tolist())
    return {TEXTS[i] for i in range(n) if (i in ids) == rule.only}


def test_outside_a_call_a_bracket_token_must_lead_to_a_loaded_name():
    names = _vocab().call_names(["Calculator", "Weather"])
    allowed = _allowed(names.rule(" The answer is"))
    assert {"[", " [", "[Calc", " [Calc", "])[", "x", "Calc"} <= allowed
    assert not {"[Q", " [Qu", '["', "[["} & allowed


def test_inside_a_name_only_tokens_that_continue_a_loaded_name():
    names = _vocab().call_names(["Calculator", "Weather"])
    assert _allowed(names.rule("so [")) == {"Calc", "W", "Weather"}
    assert _allowed(names.rule("so [Calc")) == {"ulator", "ulator(", 'ulator("'}
    assert _allowed(names.rule("so [Weather")) == {"("}
    assert _allowed(names.rule("so [W")) == {"eat"}  # "Weather" after "W" would be "WWeather"
    # Past the name nothing is constrained: arguments are free text.
    assert names.rule('so [Weather("Paris') is None
    # After a finished call the next "[" is constrained again.
    assert names.rule("so [Weather(Paris) → 18 C] and").only is False


def test_a_loaded_name_that_another_extends():
    names = _vocab().call_names(["Q", "QA"])
    assert _allowed(names.rule("[Q")) == {"(", "A("}
    assert "[Q" in _allowed(names.rule("x"))


def test_no_tools_loaded_no_bracket_may_open_a_call():
    names = _vocab().call_names([])
    allowed = _allowed(names.rule("x"))
    assert not any("[" in t for t in allowed)
    assert "x" in allowed


def test_the_constraint_is_cached_per_vocabulary_and_names():
    vocab = _vocab()
    assert vocab.call_names(["Weather", "Calculator"]) is vocab.call_names(["Calculator", "Weather"])
    names = vocab.call_names(["Calculator"])
    assert names.in_name("Cal") is names.in_name("Cal")


@given(st.lists(st.sampled_from([t for t in TEXTS if t]), max_size=12))
def test_greedy_spelling_under_the_rule_never_names_an_unknown_tool(choices):
    """Whatever a model would pick, taking the first allowed token instead keeps every call's name loaded."""
    from toolformer.calls import find_calls

    loaded = {"Calculator", "Weather"}
    names = _vocab().call_names(loaded)
    text = ""
    for want in choices:
        allowed = _allowed(names.rule(text)) - {""}
        text += want if want in allowed else sorted(allowed)[0]
    for span in find_calls(text):
        if span.stage == "name":
            assert any(n.startswith(span.call.name) for n in loaded)
        else:
            assert span.call.name in loaded


def test_a_bracket_after_a_closed_call_is_held_to_the_rule():
    names = _vocab().call_names(["Calculator"])
    for text in ("[Calculator(1)", "[Calculator(1) ", "[Calculator(1) →"):
        allowed = _allowed(names.rule(text))
        assert "[Q" not in allowed and "[Calc" in allowed


def test_transformers_token_texts_keep_leading_spaces(smol_tokenizer):
    tok = smol_tokenizer
    texts = hf_vocab_texts(tok, len(tok))
    assert hf_vocab_texts(tok, len(tok)) is texts  # cached per tokenizer
    assert texts.texts[tok.convert_tokens_to_ids("Ġ[")] == " ["
    names = texts.call_names(["Calculator", "QA"])
    after = set(names.rule("x [").ids.tolist())
    assert tok.encode("Calcul", add_special_tokens=False)[0] in after
    assert tok.encode("QA", add_special_tokens=False)[0] in after
    assert tok.encode("Q", add_special_tokens=False)[0] in after
    assert tok.encode(" Calcul", add_special_tokens=False)[0] not in after
    assert tok.convert_tokens_to_ids('["') in names.opening.ids.tolist()
