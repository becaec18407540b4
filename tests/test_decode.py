"""Tool-executing decoding: calls run mid-generation, results are read on the same KV cache, rows never stall."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fakes import ScriptedLM
from toolformer.calls import find_calls, sanitize_result
from toolformer.runtime.decode import DecodeConfig, Event, generate
from toolformer.tools import ToolRegistry, tool


@tool(name="Calculator")
def calculator(expression: str) -> str:
    """Adds or multiplies two integers (a test double of the real calculator)."""
    if "*" in expression:
        a, b = expression.split("*")
        return str(int(a) * int(b))
    a, b = expression.split("+")
    return str(int(a) + int(b))


@tool(name="Slow", timeout=5.0)
def slow(text: str) -> str:
    """Sleeps, then echoes."""
    time.sleep(0.6)
    return text.upper()


def registry(*tools):
    reg = ToolRegistry()
    for t in tools:
        reg.add(t)
    return reg


def _script(tok, *parts: str) -> list[int]:
    ids: list[int] = []
    for p in parts:
        ids.extend(tok.encode(p, add_special_tokens=False))
    return ids


def test_call_runs_and_result_is_fed_once_on_the_cache(smol_tokenizer):
    tok = smol_tokenizer
    prompt = "Q: What is 23 times 47?\nA:"
    script = _script(tok, " It is [Calculator(23 * 47) →", " so 1081.") + [tok.eos_token_id]
    model = ScriptedLM(tok, [script])
    # force_arrow=False: the paper's rule, the tool runs once the model itself writes "→".
    cfg = DecodeConfig(max_new_tokens=50, force_arrow=False)
    (gen,) = generate(model, tok, [prompt], registry(calculator), cfg)

    assert gen.text == " It is [Calculator(23 * 47) → 1081] so 1081."
    assert [(c.tool, c.input, c.output, c.ok) for c in gen.calls] == [("Calculator", "23 * 47", "1081", True)]
    assert gen.finish_reason == "stop"
    prompt_ids = tok.encode(prompt, add_special_tokens=False)
    # The prompt goes in once, then every later chunk is only the new tokens: no re-encoding of the prefix.
    assert model.chunks[0][0] == len(prompt_ids)
    assert max(model.chunks[0][1:]) < len(prompt_ids)
    assert model.fed[0] == prompt_ids + gen.token_ids
    assert len(model.fed[0]) == gen.prompt_tokens + gen.new_tokens - 1 + gen.forced_tokens  # eos is not fed
    assert model.positions[0] == list(range(len(model.fed[0])))
    span = find_calls(gen.text)[0]
    assert gen.text[span.start : span.end] == "[Calculator(23 * 47) → 1081]"
    assert (gen.calls[0].start, gen.calls[0].end) == (span.start, span.end)


def test_arrow_is_forced_when_the_model_closes_the_call(smol_tokenizer):
    tok = smol_tokenizer
    script = _script(tok, " [Calculator(2 + 3)]", " five") + [tok.eos_token_id]
    model = ScriptedLM(tok, [script])
    (gen,) = generate(model, tok, ["x"], registry(calculator), DecodeConfig(max_new_tokens=30))
    assert gen.text.startswith(" [Calculator(2 + 3) → 5]")
    assert gen.calls[0].output == "5"


def test_without_force_arrow_a_closed_call_is_plain_text(smol_tokenizer):
    tok = smol_tokenizer
    script = _script(tok, " [Calculator(2 + 3)] five") + [tok.eos_token_id]
    model = ScriptedLM(tok, [script])
    cfg = DecodeConfig(max_new_tokens=30, force_arrow=False)
    (gen,) = generate(model, tok, ["x"], registry(calculator), cfg)
    assert gen.text == " [Calculator(2 + 3)] five"
    assert gen.calls == []


def test_tool_error_is_text_not_a_crash(smol_tokenizer):
    tok = smol_tokenizer
    script = _script(tok, " [Calculator(2 / x) →", " ok") + [tok.eos_token_id]
    model = ScriptedLM(tok, [script])
    (gen,) = generate(model, tok, ["x"], registry(calculator), DecodeConfig(max_new_tokens=30))
    assert gen.calls[0].ok is False
    assert gen.calls[0].output.startswith("error:")
    assert "→ error:" in gen.text


def test_a_call_cannot_name_a_tool_that_is_not_loaded(smol_tokenizer):
    tok = smol_tokenizer
    script = _script(tok, " [Nope(1) →", " ok") + [tok.eos_token_id]
    model = ScriptedLM(tok, [script])
    (gen,) = generate(model, tok, ["x"], registry(calculator), DecodeConfig(max_new_tokens=30))
    assert gen.text.startswith(" [Calculator(")  # "[" is followed by the one loaded name
    assert [s.call.name for s in find_calls(gen.text)] == ["Calculator"]
    assert all(c.tool == "Calculator" for c in gen.calls)


def test_max_calls_masks_further_calls(smol_tokenizer):
    tok = smol_tokenizer
    # The script tries a second call; with max_calls=1 the '[' is masked, so the fake's argmax falls elsewhere.
    script = _script(tok, " [Calculator(1 + 1) →", " and [Calculator(2 + 2) →", " end") + [tok.eos_token_id]
    model = ScriptedLM(tok, [script])
    (gen,) = generate(model, tok, ["x"], registry(calculator), DecodeConfig(max_new_tokens=40, max_calls=1))
    assert len(gen.calls) == 1
    assert "[Calculator(2 + 2)" not in gen.text


def test_disabled_mode_never_writes_a_bracket(tiny_lm):
    model, tok = tiny_lm
    cfg = DecodeConfig(max_new_tokens=30, disabled=True, do_sample=True, seed=0, temperature=2.0)
    gens = generate(model, tok, ["Hello [", "What"], registry(calculator), cfg)
    for g in gens:
        assert "[" not in g.text and g.calls == []


def test_a_waiting_row_does_not_stall_the_others(smol_tokenizer):
    tok = smol_tokenizer
    slow_script = _script(tok, " [Slow(abc) →", " done") + [tok.eos_token_id]
    fast_script = _script(tok, " one two three four five six seven eight") + [tok.eos_token_id]
    model = ScriptedLM(tok, [slow_script, fast_script])
    seen: list[Event] = []
    lock = threading.Lock()

    def on_event(e: Event) -> None:
        with lock:
            seen.append(e)

    gens = generate(
        model, tok, ["a", "b"], registry(slow), DecodeConfig(max_new_tokens=40), on_event=on_event
    )
    assert gens[0].calls[0].output == "ABC"
    assert gens[1].text == " one two three four five six seven eight"
    order = [(e.kind, e.row) for e in seen]
    # The fast row finished while the slow row's tool was still running.
    assert order.index(("done", 1)) < order.index(("call", 0))
    streamed = "".join(e.text for e in seen if e.kind == "text" and e.row == 0)
    assert streamed == gens[0].text


def test_stop_strings_and_length(smol_tokenizer):
    tok = smol_tokenizer
    script = _script(tok, " alpha beta\n\nQuestion: more") + [tok.eos_token_id]
    model = ScriptedLM(tok, [script, script])
    gens = generate(model, tok, ["x", "y"], None, DecodeConfig(max_new_tokens=50, stop=["\n\n"]))
    assert gens[0].text == " alpha beta" and gens[0].finish_reason == "stop"
    model = ScriptedLM(tok, [script])
    (g,) = generate(model, tok, ["x"], None, DecodeConfig(max_new_tokens=2))
    assert g.finish_reason == "length" and g.new_tokens == 2


def test_trigger_top_k_starts_a_call(tiny_lm):
    model, tok = tiny_lm
    reg = registry(calculator)
    base = generate(model, tok, ["The sum is"], reg, DecodeConfig(max_new_tokens=5))[0]
    vocab = tok.vocab_size if hasattr(tok, "vocab_size") else len(tok)
    cfg = DecodeConfig(max_new_tokens=5, trigger_top_k=vocab)
    trig = generate(model, tok, ["The sum is"], reg, cfg)[0]
    assert "[" not in base.text or base.text != trig.text
    assert trig.text.lstrip().startswith("[")
    # What follows the forced "[" spells the loaded tool's name.
    after = trig.text.lstrip()[1:]
    assert "Calculator(".startswith(after) or after.startswith("Calculator(")
    # With no tool loaded no name can follow "[", so the trigger never fires.
    none = generate(model, tok, ["The sum is"], ToolRegistry(), cfg)[0]
    assert "[" not in base.text and none.text == base.text


def _teacher_forced_argmax(model, tok, prompt: str, ids: list[int]) -> list[int]:
    full = tok.encode(prompt, add_special_tokens=False) + ids
    with torch.no_grad():
        logits = model(torch.tensor([full])).logits[0]
    start = len(full) - len(ids) - 1
    return logits[start:-1].argmax(-1).tolist()


class PrefixScripted(torch.nn.Module):
    """Wraps a real model: the first forward passes 'sample' a fixed script, later ones are the model's own."""

    def __init__(self, inner: torch.nn.Module, script: list[int]) -> None:
        super().__init__()
        self.inner, self.script, self.step = inner, script, 0
        self.config = inner.config

    def forward(self, cache=None, **kwargs):
        out = self.inner(cache=cache, **kwargs)
        if self.step < len(self.script):
            out.logits[:, -1, :] = -1e4
            out.logits[:, -1, self.script[self.step]] = 1e4
        self.step += 1
        return out


def test_incremental_cache_matches_full_forward_in_a_batch(tiny_lm):
    """Greedy tokens chosen on the cache (batched, left-padded, with forced tool results) equal a full forward."""
    inner, tok = tiny_lm

    @tool(name="Echo")
    def echo(text: str) -> str:
        """Echo."""
        return f"forty two and {text} words"

    script = tok.encode(" [Echo(hi) →", add_special_tokens=False)
    model = PrefixScripted(inner, script)
    prompts = ["Short", "A much longer prompt with many more tokens in it than the first", "Mid length one"]
    gens = generate(model, tok, prompts, registry(echo), DecodeConfig(max_new_tokens=len(script) + 10))
    for p, g in zip(prompts, gens):
        assert g.calls and g.calls[0].output == "forty two and hi words"
        skip = len(script) + g.forced_tokens  # scripted and forced positions are not the model's choice
        preds = _teacher_forced_argmax(inner, tok, p, g.token_ids)
        assert len(g.token_ids) > skip
        for j in range(skip, len(g.token_ids)):
            assert preds[j] == g.token_ids[j], f"row {p!r} position {j}"


@pytest.mark.slow
def test_real_model_writes_and_runs_a_calculator_call(smol):
    from toolformer.runtime.prompts import build_prompt
    from toolformer.tools import builtin_tools

    model, tok = smol
    tools = builtin_tools()
    (gen,) = generate(
        model, tok, [build_prompt("What is 23 times 47?", ["Calculator"])], tools, DecodeConfig()
    )
    assert gen.calls and gen.calls[0].tool == "Calculator"
    assert gen.calls[0].output == "1081"
    assert "1081" in gen.text


def test_trigger_fires_at_most_max_calls_times(tiny_lm):
    model, tok = tiny_lm
    vocab = len(tok)
    # Every position has '[' in the top-k; without the cap every token outside a call would be a forced '['.
    (gen,) = generate(
        model,
        tok,
        ["x"],
        registry(calculator),
        DecodeConfig(max_new_tokens=12, trigger_top_k=vocab, max_calls=2),
    )
    spans = find_calls(gen.text)
    assert 1 <= len(spans) <= 2
    assert all("Calculator".startswith(s.call.name) for s in spans)


class Biased(torch.nn.Module):
    """Wraps a real model (one row) and adds `bias` to the logits of the tokens `prefer(text)` names, where `text`
    is everything fed so far decoded: a model that leans hard towards writing something."""

    def __init__(self, inner: torch.nn.Module, tok, prefer, bias: float = 100.0) -> None:
        super().__init__()
        self.inner, self.tok, self.prefer, self.bias = inner, tok, prefer, bias
        self.config = inner.config
        self.fed: list[int] = []

    def forward(self, input_ids, attention_mask, cache=None, **kwargs):
        width = input_ids.shape[1]
        self.fed += input_ids[0][attention_mask[0, -width:].bool()].tolist()
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask, cache=cache, **kwargs)
        for t in self.prefer(self.tok.decode(self.fed)):
            out.logits[0, -1, t] += self.bias
        return out


def wants_q_call(tok):
    """Preferences of a model that writes ` [Q(5) →` whenever it can."""
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    steps = [("[Q(5)", " →"), ("[Q(5", ")"), ("[Q(", "5"), ("[Q", "("), ("[", "Q")]

    def prefer(text: str) -> list[int]:
        for end, nxt in steps:
            if text.endswith(end):
                return enc(nxt)
        return enc(" [") if "[" not in text else []

    return prefer


@tool(name="Weather", examples=['Weather("Paris")'])
def weather(city: str) -> str:
    """Current weather for a city."""
    return f"sunny in {city}"


@tool(name="QA")
def qa(question: str) -> str:
    """Answers a question."""
    return "five"


@tool(name="Q")
def q(expression: str) -> str:
    """A tool that happens to be called Q."""
    return "Q ran"


def test_a_model_biased_towards_an_unknown_tool_names_a_loaded_one(tiny_lm):
    inner, tok = tiny_lm
    prompt = "Question: what is 2 + 3?\nAnswer:"
    for reg, expect in (
        (registry(q, calculator), {"Q"}),  # loaded, Q is what this model calls
        (registry(calculator, weather), {"Calculator", "Weather"}),
        (registry(calculator, qa), {"QA"}),  # "[Q" may go on, but only as QA
    ):
        model = Biased(inner, tok, wants_q_call(tok))
        (gen,) = generate(model, tok, [prompt], reg, DecodeConfig(max_new_tokens=16))
        assert gen.text.startswith(" ["), gen.text
        # "[" is followed by a loaded name and "(", then the call reads on (the fake's noise may end it).
        assert gen.text[2:].split("(")[0] in expect, gen.text
        assert all(s.call.name in expect for s in find_calls(gen.text))
        assert all(c.tool in expect for c in gen.calls)
    assert [c.tool for c in gen.calls] == ["QA"]  # a call that reads on runs the loaded tool


def test_a_users_tool_is_nameable_and_runs(tiny_lm):
    inner, tok = tiny_lm
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731

    def prefer(text: str) -> list[int]:  # spells [Weather("Paris") one piece at a time
        target = ' [Weather("Paris")'
        for k in range(len(target), -1, -1):
            if text.endswith(target[:k]) and (k or "[" not in text):
                rest = target[k:]
                return enc(rest)[:1] if rest else []
        return []

    model = Biased(inner, tok, prefer)
    (gen,) = generate(
        model, tok, ["Weather?"], registry(calculator, weather), DecodeConfig(max_new_tokens=16)
    )
    assert [(c.tool, c.input, c.output) for c in gen.calls] == [("Weather", "Paris", "sunny in Paris")]
    assert gen.text.startswith(' [Weather("Paris") → sunny in Paris]')


def _byte_tokens(tok, text: str) -> list[int]:
    """`text` spelled one byte token at a time (byte-level BPE has a token for every byte)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table = bytes_to_unicode()
    return [tok.convert_tokens_to_ids(table[b]) for b in text.encode("utf-8")]


def _results_all_came_from_tools(gen) -> None:
    ran = {c.start: sanitize_result(c.output) for c in gen.calls}
    for span in find_calls(gen.text):
        if span.call.result is not None:
            assert ran.get(span.start) == span.call.result, (gen.text, gen.calls)


@pytest.mark.parametrize("force_arrow", [False, True])
def test_an_arrow_spelled_in_byte_tokens_still_runs_the_tool(smol_tokenizer, force_arrow):
    tok = smol_tokenizer
    arrow = _byte_tokens(tok, "→")
    assert len(arrow) == 3 and tok.decode(arrow) == "→"
    script = _script(tok, " [Calculator(2 + 3) ") + arrow + _script(tok, " 7] done") + [tok.eos_token_id]
    model = ScriptedLM(tok, [script])
    cfg = DecodeConfig(max_new_tokens=40, force_arrow=force_arrow)
    (gen,) = generate(model, tok, ["x"], registry(calculator), cfg)
    assert [(c.tool, c.output) for c in gen.calls] == [("Calculator", "5")]
    assert gen.text.startswith(" [Calculator(2 + 3) → 5]")  # the tool's result, never the model's " 7"
    _results_all_came_from_tools(gen)


PIECES = [
    " [Calculator(2 + 3)",
    " [Calculator(1 + 1",
    ")",
    " →",
    " ->",
    " -",
    ">",
    " 7]",
    "]",
    " done",
    " [Calculator(4 * 4) → 99]",
    "BYTE_ARROW",
    " é",
]


@given(
    parts=st.lists(st.sampled_from(PIECES), min_size=1, max_size=8),
    force_arrow=st.booleans(),
    max_calls=st.integers(min_value=0, max_value=2),
)
def test_every_result_in_the_text_came_from_a_tool(smol_tokenizer, parts, force_arrow, max_calls):
    """Whatever the model writes (its own arrows and results included), a result in the returned text is
    always the result of a call a tool ran, at the same place."""
    tok = smol_tokenizer
    script: list[int] = []
    for p in parts:
        script += _byte_tokens(tok, " →") if p == "BYTE_ARROW" else _script(tok, p)
    model = ScriptedLM(tok, [script + [tok.eos_token_id]])
    cfg = DecodeConfig(max_new_tokens=40, force_arrow=force_arrow, max_calls=max_calls)
    (gen,) = generate(model, tok, ["x"], registry(calculator), cfg)
    _results_all_came_from_tools(gen)
    assert len(gen.calls) <= max_calls


def test_settle_results_strips_results_no_tool_ran():
    from toolformer.runtime.results import CallTrace
    from toolformer.runtime.rows import settle_results

    text = "a [Calculator(1 + 1) → 9] b [Calculator(2 + 3) → 5] c [Calculator(3) → 4"
    start = text.index("[Calculator(2 + 3)")
    ran = [CallTrace("Calculator", "2 + 3", "5", True, 0.0, start, start + len("[Calculator(2 + 3) → 5]"))]
    settled, traces = settle_results(text, ran)
    assert settled == "a [Calculator(1 + 1)] b [Calculator(2 + 3) → 5] c [Calculator(3)"
    (t,) = traces
    assert settled[t.start : t.end] == "[Calculator(2 + 3) → 5]"
    assert settle_results("plain [Calculator(1)] text", []) == ("plain [Calculator(1)] text", [])


def test_plan_feed_cuts_what_the_model_writes_past_the_arrow():
    from toolformer.runtime.rows import plan_feed

    def encode(s: str) -> list[int]:
        return [ord(c) for c in s]

    arrow = encode(" →")
    text = "x [Calculator(2 + 3)"
    # One token that writes the arrow and a result: only the arrow is kept, and the call runs.
    feed, start = plan_feed(text + " → 7]", text, 0, 999, True, False, encode, arrow)
    assert (feed, start) == (encode(" →"), 2)
    # The last byte of an arrow whose first bytes read as "\ufffd" before: the call runs on it.
    feed, start = plan_feed(text + " →", text + " \ufffd", 0, 999, True, False, encode, arrow)
    assert (feed, start) == ([999], 2)
    # A call whose arrow was written earlier and not run is never run later, past the model's own text.
    feed, start = plan_feed(text + " → 7", text + " →", 0, 999, False, False, encode, arrow)
    assert start is None
