"""Tool-executing decoding: calls run mid-generation, results are read on the same KV cache, rows never stall."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
import torch

from toolformer.calls import find_calls
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


class _Cache:
    """Counts positions; supports dropping finished rows like transformers' DynamicCache."""

    def __init__(self) -> None:
        self.length = 0
        self.selected: list[list[int]] = []

    def batch_select_indices(self, index: torch.Tensor) -> None:
        self.selected.append(index.tolist())


class ScriptedLM(torch.nn.Module):
    """A fake causal LM that 'samples' a fixed token script per row and records every token it is fed.

    It proposes script[k], where k counts the script tokens it has been fed back so far (matched in order), so
    forced tool-result tokens never advance the script, however the decoder chunks them.
    """

    def __init__(self, scripts: list[list[int]], vocab_size: int, eos: int) -> None:
        super().__init__()
        self.scripts = [list(s) for s in scripts]
        self.config = SimpleNamespace(vocab_size=vocab_size, eos_token_id=eos)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.fed: list[list[int]] = [[] for _ in scripts]  # real tokens fed per row, in order
        self.positions: list[list[int]] = [[] for _ in scripts]
        self.chunks: list[list[int]] = [[] for _ in scripts]  # real tokens per forward, per row
        self.slots = list(range(len(scripts)))  # batch slot -> row
        self.cursor = [0] * len(scripts)

    def forward(self, input_ids, attention_mask, position_ids, cache=None, use_cache=True, logits_to_keep=0):
        cache = cache or _Cache()
        if cache.selected and len(cache.selected[-1]) < len(self.slots):
            self.slots = [self.slots[b] for b in cache.selected[-1]]
        width = input_ids.shape[1]
        step_mask = attention_mask[:, -width:]
        logits = torch.full((input_ids.shape[0], 1, self.config.vocab_size), -1e4)
        for b, row in enumerate(self.slots):
            real = step_mask[b].bool()
            toks = input_ids[b][real].tolist()
            script = self.scripts[row]
            if self.fed[row]:  # not the prompt: count the script tokens fed back
                for t in toks:
                    if self.cursor[row] < len(script) and t == script[self.cursor[row]]:
                        self.cursor[row] += 1
            self.fed[row].extend(toks)
            self.positions[row].extend(position_ids[b][real].tolist())
            self.chunks[row].append(len(toks))
            if toks:
                k = self.cursor[row]
                logits[b, 0, script[k] if k < len(script) else self.config.eos_token_id] = 1e4
        return SimpleNamespace(logits=logits, cache=cache)


def _script(tok, *parts: str) -> list[int]:
    ids: list[int] = []
    for p in parts:
        ids.extend(tok.encode(p, add_special_tokens=False))
    return ids


def test_call_runs_and_result_is_fed_once_on_the_cache(smol_tokenizer):
    tok = smol_tokenizer
    prompt = "Q: What is 23 times 47?\nA:"
    script = _script(tok, " It is [Calculator(23 * 47) →", " so 1081.") + [tok.eos_token_id]
    model = ScriptedLM([script], len(tok), tok.eos_token_id)
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
    model = ScriptedLM([script], len(tok), tok.eos_token_id)
    (gen,) = generate(model, tok, ["x"], registry(calculator), DecodeConfig(max_new_tokens=30))
    assert gen.text.startswith(" [Calculator(2 + 3) → 5]")
    assert gen.calls[0].output == "5"


def test_without_force_arrow_a_closed_call_is_plain_text(smol_tokenizer):
    tok = smol_tokenizer
    script = _script(tok, " [Calculator(2 + 3)] five") + [tok.eos_token_id]
    model = ScriptedLM([script], len(tok), tok.eos_token_id)
    cfg = DecodeConfig(max_new_tokens=30, force_arrow=False)
    (gen,) = generate(model, tok, ["x"], registry(calculator), cfg)
    assert gen.text == " [Calculator(2 + 3)] five"
    assert gen.calls == []


def test_tool_error_is_text_not_a_crash(smol_tokenizer):
    tok = smol_tokenizer
    script = _script(tok, " [Calculator(2 / x) →", " ok") + [tok.eos_token_id]
    model = ScriptedLM([script], len(tok), tok.eos_token_id)
    (gen,) = generate(model, tok, ["x"], registry(calculator), DecodeConfig(max_new_tokens=30))
    assert gen.calls[0].ok is False
    assert gen.calls[0].output.startswith("error:")
    assert "→ error:" in gen.text


def test_unknown_tool_is_an_error_result(smol_tokenizer):
    tok = smol_tokenizer
    script = _script(tok, " [Nope(1) →", " ok") + [tok.eos_token_id]
    model = ScriptedLM([script], len(tok), tok.eos_token_id)
    (gen,) = generate(model, tok, ["x"], registry(calculator), DecodeConfig(max_new_tokens=30))
    assert gen.calls[0].output.startswith("error:") and "Nope" in gen.calls[0].output


def test_max_calls_masks_further_calls(smol_tokenizer):
    tok = smol_tokenizer
    # The script tries a second call; with max_calls=1 the '[' is masked, so the fake's argmax falls elsewhere.
    script = _script(tok, " [Calculator(1 + 1) →", " and [Calculator(2 + 2) →", " end") + [tok.eos_token_id]
    model = ScriptedLM([script], len(tok), tok.eos_token_id)
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
    model = ScriptedLM([slow_script, fast_script], len(tok), tok.eos_token_id)
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
    model = ScriptedLM([script, script], len(tok), tok.eos_token_id)
    gens = generate(model, tok, ["x", "y"], None, DecodeConfig(max_new_tokens=50, stop=["\n\n"]))
    assert gens[0].text == " alpha beta" and gens[0].finish_reason == "stop"
    model = ScriptedLM([script], len(tok), tok.eos_token_id)
    (g,) = generate(model, tok, ["x"], None, DecodeConfig(max_new_tokens=2))
    assert g.finish_reason == "length" and g.new_tokens == 2


def test_trigger_top_k_starts_a_call(tiny_lm):
    model, tok = tiny_lm
    base = generate(model, tok, ["The sum is"], None, DecodeConfig(max_new_tokens=5))[0]
    vocab = tok.vocab_size if hasattr(tok, "vocab_size") else len(tok)
    trig = generate(model, tok, ["The sum is"], None, DecodeConfig(max_new_tokens=5, trigger_top_k=vocab))[0]
    assert "[" not in base.text or base.text != trig.text
    assert trig.text.lstrip().startswith("[")


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
    # Every position has '[' in the top-k; a random model never completes a call, so without the cap every
    # token would be a forced '['.
    (gen,) = generate(
        model, tok, ["x"], None, DecodeConfig(max_new_tokens=12, trigger_top_k=vocab, max_calls=2)
    )
    assert gen.text.count("[") <= 2 + gen.text.count("[[")
    assert gen.calls == []
