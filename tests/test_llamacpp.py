"""The llama.cpp backend: the same tokens, calls and results as the transformers backend, results fed on the cache."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from toolformer.errors import ConfigError
from toolformer.runtime import llamacpp
from toolformer.runtime.decode import DecodeConfig, Event, generate
from toolformer.tools import ToolRegistry, load_tools, tool

pytest.importorskip("llama_cpp")

PROMPT = "Question: What is 12 times 9?\nAnswer:"
ANSWER = " 12 times 9 is [Calculator(12 * 9)"


@tool(name="Calculator")
def calculator(expression: str) -> str:
    """Multiplies two integers (a test double that counts its calls)."""
    calculator.calls += 1
    a, b = expression.split("*")
    return str(int(a) * int(b))


calculator.calls = 0


def _registry() -> ToolRegistry:
    reg = ToolRegistry()
    reg.add(calculator)
    return reg


def _gguf(model, tok, path, quant="f32"):
    from toolformer.export.gguf import export_gguf

    return export_gguf(model, tok, path, quant=quant).path


@pytest.fixture(scope="module")
def random_gguf(tiny_lm, tmp_path_factory):
    """`(hf model, tokenizer, llama.cpp model)`: the tiny random Llama in both runtimes (f32 weights and KV cache)."""
    model, tok = tiny_lm
    path = _gguf(model, tok, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf")
    lm = llamacpp.LlamaCppModel(path, n_ctx=512, f32_kv=True)
    yield model, tok, lm
    lm.close()


@pytest.fixture(scope="module")
def caller(tiny_lm, tmp_path_factory):
    """The tiny Llama trained to answer PROMPT with a Calculator call, in both runtimes (a few seconds)."""
    model, tok = tiny_lm
    model = copy.deepcopy(model).train()
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    # The pieces the decoder feeds: the call as sampled, the forced arrow, the result chunk, the rest.
    seq = enc(PROMPT) + enc(ANSWER) + enc(" →") + enc(" 108]") + enc(" so 108.") + [tok.eos_token_id]
    x = torch.tensor([seq])
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.03:
            break
    model.eval()
    path = _gguf(model, tok, tmp_path_factory.mktemp("gguf") / "caller-f32.gguf")
    lm = llamacpp.LlamaCppModel(path, n_ctx=512, f32_kv=True)
    yield model, tok, lm
    lm.close()


def test_greedy_tokens_equal_transformers_on_a_random_model(random_gguf):
    model, tok, lm = random_gguf
    prompts = ["The capital of France is", "Question: What is 2 + 2?\nAnswer:"]
    cfg = DecodeConfig(max_new_tokens=24)
    ref = generate(model, tok, prompts, ToolRegistry(), cfg)
    got = llamacpp.generate(lm, prompts, ToolRegistry(), cfg)
    assert [g.token_ids for g in got] == [g.token_ids for g in ref]
    assert [g.text for g in got] == [g.text for g in ref]
    assert [g.finish_reason for g in got] == [g.finish_reason for g in ref]
    assert [g.prompt_tokens for g in got] == [g.prompt_tokens for g in ref]


@pytest.mark.slow
def test_same_call_result_and_tokens_as_transformers(caller):
    model, tok, lm = caller
    cfg = DecodeConfig(max_new_tokens=40)
    (ref,) = generate(model, tok, [PROMPT], _registry(), cfg)
    assert ref.text == " 12 times 9 is [Calculator(12 * 9) → 108] so 108."  # the training took
    before = calculator.calls
    (got,) = llamacpp.generate(lm, [PROMPT], _registry(), cfg)
    assert calculator.calls == before + 1
    assert got.text == ref.text
    assert got.token_ids == ref.token_ids
    assert [(c.tool, c.input, c.output, c.ok, c.start, c.end) for c in got.calls] == [
        (c.tool, c.input, c.output, c.ok, c.start, c.end) for c in ref.calls
    ]
    assert (got.new_tokens, got.forced_tokens, got.finish_reason) == (
        ref.new_tokens,
        ref.forced_tokens,
        ref.finish_reason,
    )


@pytest.mark.slow
def test_tool_result_goes_into_the_kv_cache_once(caller, monkeypatch):
    model, tok, lm = caller
    fed: list[list[int]] = []
    original = lm.feed

    def spy(ids):
        fed.append(list(ids))
        original(ids)

    monkeypatch.setattr(lm, "feed", spy)
    lm.reset()  # a cold cache: the prompt must go in whole
    (gen,) = llamacpp.generate(lm, [PROMPT], _registry(), DecodeConfig(max_new_tokens=40))
    prompt_ids = tok.encode(PROMPT, add_special_tokens=False)
    assert fed[0] == prompt_ids
    # Afterwards only new tokens: one sampled token per step, except the step that carries the call's ")"
    # with the forced " →" and the result " 108]" as one chunk.
    assert sum(fed[1:], []) == gen.token_ids[: len(sum(fed[1:], []))]
    chunk = next(c for c in fed[1:] if len(c) > 1)
    assert tok.decode(chunk).endswith("→ 108]")
    assert sum(len(c) for c in fed) == len(prompt_ids) + gen.new_tokens - 1 + gen.forced_tokens  # eos not fed


@pytest.mark.slow
def test_events_stream_the_text_and_the_call(caller):
    _, _, lm = caller
    events: list[Event] = []
    (gen,) = llamacpp.generate(lm, [PROMPT], _registry(), DecodeConfig(max_new_tokens=40), events.append)
    assert "".join(e.text for e in events if e.kind == "text") == gen.text
    calls = [e for e in events if e.kind == "call"]
    assert len(calls) == 1 and calls[0].trace.output == "108"
    assert events[-1].kind == "done" and events[-1].finish_reason == gen.finish_reason


@pytest.mark.slow
def test_disabled_and_max_calls_zero_write_no_call(caller):
    model, tok, lm = caller
    for cfg in (DecodeConfig(max_new_tokens=30, disabled=True), DecodeConfig(max_new_tokens=30, max_calls=0)):
        before = calculator.calls
        (got,) = llamacpp.generate(lm, [PROMPT], _registry(), cfg)
        (ref,) = generate(model, tok, [PROMPT], _registry(), cfg)
        assert "[" not in got.text and not got.calls
        assert calculator.calls == before
        assert got.token_ids == ref.token_ids


@pytest.mark.slow
def test_without_force_arrow_the_call_runs_on_the_models_own_arrow(caller):
    model, tok, lm = caller
    cfg = DecodeConfig(max_new_tokens=20, force_arrow=False)
    (got,) = llamacpp.generate(lm, [PROMPT], _registry(), cfg)
    (ref,) = generate(model, tok, [PROMPT], _registry(), cfg)
    assert got.token_ids == ref.token_ids
    assert got.text.startswith(ANSWER + " → 108]")  # the model was trained to write " →" itself
    assert [(c.tool, c.output) for c in got.calls] == [("Calculator", "108")]
    assert got.forced_tokens == ref.forced_tokens == len(tok.encode(" 108]", add_special_tokens=False))


def test_stop_strings_and_length(random_gguf):
    model, tok, lm = random_gguf
    (free,) = llamacpp.generate(lm, ["Once upon a time"], ToolRegistry(), DecodeConfig(max_new_tokens=12))
    assert free.finish_reason == "length" and free.new_tokens == 12
    stop = free.text[len(free.text) // 2 :][:3]
    (cut,) = llamacpp.generate(
        lm, ["Once upon a time"], ToolRegistry(), DecodeConfig(max_new_tokens=12, stop=[stop])
    )
    assert cut.finish_reason == "stop"
    assert cut.text == free.text[: free.text.find(stop)]


def test_trigger_top_k_starts_a_call_like_transformers(random_gguf):
    model, tok, lm = random_gguf
    cfg = DecodeConfig(max_new_tokens=6, trigger_top_k=len(tok))
    (got,) = llamacpp.generate(lm, ["Hello"], _registry(), cfg)
    (ref,) = generate(model, tok, ["Hello"], _registry(), cfg)
    assert got.text.lstrip().startswith("[")
    after = got.text.lstrip()[1:]  # the forced "[" is followed by the loaded name
    assert "Calculator(".startswith(after) or after.startswith("Calculator(")
    assert got.token_ids == ref.token_ids
    # With no tool loaded, no name may follow "[": the trigger never fires, on either backend.
    (none,) = llamacpp.generate(lm, ["Hello"], ToolRegistry(), cfg)
    assert "[" not in none.text
    assert none.token_ids == generate(model, tok, ["Hello"], ToolRegistry(), cfg)[0].token_ids


def test_a_call_names_a_loaded_tool_with_the_same_tokens_as_transformers(random_gguf, monkeypatch):
    """The model leans towards `[Q(5) →`: on both backends "[" is followed by a loaded name, token for token."""
    from test_decode import Biased, q, qa, wants_q_call, weather

    model, tok, lm = random_gguf
    prefer = wants_q_call(tok)
    original = lm.logits

    def biased_logits():
        logits = original()
        for t in prefer(tok.decode(list(lm.llm.input_ids[: lm.n_tokens]))):
            logits[t] += 100.0
        return logits

    monkeypatch.setattr(lm, "logits", biased_logits)
    prompt = "Question: what is 2 + 3?\nAnswer:"
    for tools, expect in (
        ((q, calculator), {"Q"}),
        ((calculator, weather), {"Calculator", "Weather"}),
        ((qa,), {"QA"}),
    ):
        reg = ToolRegistry(tools)
        cfg = DecodeConfig(max_new_tokens=12)
        (ref,) = generate(Biased(model, tok, prefer), tok, [prompt], reg, cfg)
        (got,) = llamacpp.generate(lm, [prompt], reg, cfg)
        assert got.token_ids == ref.token_ids and got.text == ref.text
        assert got.text.startswith(" [") and got.text[2:].split("(")[0] in expect, got.text
        assert [c.tool for c in got.calls] == [c.tool for c in ref.calls]
        assert all(c.tool in expect for c in got.calls)


def test_llamacpp_token_texts_match_transformers(random_gguf):
    """The GGUF's pieces and the transformers tokenizer give the same call-name rules."""
    from toolformer.runtime.callnames import hf_vocab_texts

    _, tok, lm = random_gguf
    hf = hf_vocab_texts(tok, len(tok)).call_names(["Calculator", "QA", "Weather"])
    lc = lm.vocab_texts.call_names(["Calculator", "QA", "Weather"])
    for text in ["x", "x [", "x [Cal", "x [Q", "x [QA", "x [Weather", 'x [QA("a") → b] and']:
        a, b = hf.rule(text), lc.rule(text)
        assert a.only == b.only and a.ids.tolist() == b.ids.tolist(), text


def test_sampling_is_seeded(random_gguf):
    _, _, lm = random_gguf
    cfg = DecodeConfig(max_new_tokens=10, do_sample=True, temperature=1.5, top_p=0.9, seed=7)
    a = llamacpp.generate(lm, ["Hi"], ToolRegistry(), cfg)[0].token_ids
    b = llamacpp.generate(lm, ["Hi"], ToolRegistry(), cfg)[0].token_ids
    c = llamacpp.generate(
        lm, ["Hi"], ToolRegistry(), DecodeConfig(max_new_tokens=10, do_sample=True, seed=8)
    )[0].token_ids
    assert a == b and a != c


def test_a_shared_prompt_prefix_is_not_evaluated_twice(random_gguf, monkeypatch):
    model, tok, lm = random_gguf
    head = "Answer the question. Question: What is 3 + 4? Answer: 7. Question:"
    prompts = [head + " What is 5 + 6?\nAnswer:", head + " Who wrote Hamlet?\nAnswer:"]
    alone = llamacpp.generate(lm, [prompts[1]], ToolRegistry(), DecodeConfig(max_new_tokens=8))[0]
    fed: list[int] = []
    original = lm.feed
    monkeypatch.setattr(lm, "feed", lambda ids: (fed.append(len(ids)), original(ids)))
    both = llamacpp.generate(lm, prompts, ToolRegistry(), DecodeConfig(max_new_tokens=8))
    second_prompt_chunk = fed[1 + both[0].new_tokens - 1]  # after prompt 1 and its fed tokens
    assert second_prompt_chunk < len(tok.encode(prompts[1], add_special_tokens=False)) // 2
    assert both[1].token_ids == alone.token_ids


def test_a_cancelled_prompt_stops_between_tokens_and_the_others_are_unchanged(random_gguf):
    model, tok, lm = random_gguf
    prompts = ["Once upon a time", "The capital of France is", "Numbers: one, two"]
    config = DecodeConfig(max_new_tokens=10)
    plain = llamacpp.generate(lm, prompts, ToolRegistry(), config)
    written = [0, 0, 0]

    def count(event: Event) -> None:
        written[event.row] += event.kind == "text"

    # Prompt 1 is cancelled once it has written 3 pieces of text; prompt 0 before it starts.
    cut = llamacpp.generate(
        lm, prompts, ToolRegistry(), config, count, cancelled=lambda i: i == 0 or (i == 1 and written[1] >= 3)
    )
    assert [g.finish_reason for g in cut] == ["cancelled", "cancelled", "length"]
    assert cut[0].new_tokens == 0 and cut[0].text == ""
    assert 3 <= cut[1].new_tokens < 10 and cut[1].token_ids == plain[1].token_ids[: cut[1].new_tokens]
    assert cut[2].token_ids == plain[2].token_ids  # the next prompt on the same context is unaffected


def test_chat_template_renders_like_transformers(random_gguf):
    _, tok, lm = random_gguf
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    assert lm.tokenizer.apply_chat_template(messages) == tok.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )


def test_backend_choice(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert llamacpp.choose_backend(str(gguf)) == "llamacpp"
    assert llamacpp.choose_backend("smollm2-135m-instruct") == "transformers"  # aliases keep their HF cache
    assert llamacpp.choose_backend(str(tmp_path)) == "transformers"
    assert llamacpp.choose_backend("smollm2-135m-instruct", "llamacpp") == "llamacpp"
    with pytest.raises(ConfigError, match="backend='vllm'"):
        llamacpp.choose_backend(str(gguf), "vllm")
    with pytest.raises(ConfigError, match="llama.cpp backend runs GGUF"):
        llamacpp.resolve_gguf(str(_hf_dir(tmp_path)))


def _hf_dir(tmp_path):
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


@pytest.mark.slow
def test_ask_with_a_gguf_runs_tools_through_llamacpp(caller, tmp_path):
    from typer.testing import CliRunner

    from toolformer.cli import app
    from toolformer.runtime.engine import Toolformer

    _, _, lm = caller
    tf = Toolformer.load(str(lm.path), tools="Calculator")
    assert tf.backend == "llamacpp"
    gen = tf.generate(PROMPT, DecodeConfig(max_new_tokens=30))[0]
    assert [(c.tool, c.output) for c in gen.calls] == [("Calculator", "108")]

    res = CliRunner().invoke(
        app, ["ask", "What is 12 times 9?", "--model", str(lm.path), "--tools", "Calculator", "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["backend"] == "llamacpp"
    bad = CliRunner().invoke(app, ["ask", "hi", "--model", str(lm.path), "--backend", "nope"])
    assert bad.exit_code == 2 and "backend='nope'" in bad.output


@pytest.mark.slow
def test_real_model_makes_the_same_call_on_both_backends(smol):
    """The embedded SmolLM2: transformers runs the dequantised weights, llama.cpp the Q4_1 GGUF itself."""
    from toolformer.runtime.engine import Toolformer

    model, tok = smol
    hf = Toolformer(model, tok, load_tools("Calculator"))
    lc = Toolformer.load("smollm2-135m-instruct", tools="Calculator", backend="llamacpp")
    assert lc.backend == "llamacpp"
    for question in ("What is 23 times 47?", "What is 350 divided by 7?"):
        a = hf.ask(question, DecodeConfig(max_new_tokens=40))
        b = lc.ask(question, DecodeConfig(max_new_tokens=40))
        assert [(c.tool, c.input, c.output) for c in b.calls] == [
            (c.tool, c.input, c.output) for c in a.calls
        ]
        assert b.calls and b.calls[0].ok
