"""Continuous batching (`runtime.continuous`): rows join a running decode, leave when done, never wait on each other."""

from __future__ import annotations

import time

import pytest

from fakes import ScriptedLM, drain
from toolformer.runtime.continuous import ContinuousDecoder
from toolformer.runtime.decode import DecodeConfig, generate
from toolformer.tools import ToolRegistry, tool

SHARED = "You are a helpful assistant. Answer every question briefly and truthfully, in English. "
PROMPTS = [
    "Short",
    SHARED + "What is the capital of France?",
    "A much longer prompt with many more tokens in it than the first one has",
    SHARED + "Name a prime number.",
    SHARED + "x",
]


@tool(name="Slow", timeout=5.0)
def slow(text: str) -> str:
    """Sleeps, then echoes."""
    time.sleep(0.6)
    return text.upper()


@pytest.mark.parametrize("max_new", [1, 9])
def test_rows_joining_mid_decode_write_what_they_write_alone(tiny_lm, max_new):
    model, tok = tiny_lm
    config = DecodeConfig(max_new_tokens=max_new)
    alone = [generate(model, tok, [p], ToolRegistry(), config)[0] for p in PROMPTS]
    sizes: list[int] = []
    hook = model.get_input_embeddings().register_forward_hook(lambda m, a, out: sizes.append(out.shape[0]))
    dec = ContinuousDecoder(model, tok)
    try:
        futures = [dec.add(PROMPTS[0], config)]
        dec.tick()
        dec.tick()
        futures += [dec.add(p, config) for p in PROMPTS[1:3]]  # two join together, mid-decode
        dec.tick()
        futures.append(dec.add(PROMPTS[3], config))  # reuses the shared prefix kept from PROMPTS[1]
        dec.tick()
        futures.append(dec.add(PROMPTS[4], config))
        drain(dec)
    finally:
        hook.remove()
        dec.close()
    for fut, ref in zip(futures, alone, strict=True):
        gen = fut.result(timeout=0)
        assert gen.token_ids == ref.token_ids and gen.text == ref.text
        assert gen.finish_reason == ref.finish_reason and gen.prompt_tokens == ref.prompt_tokens
    assert dec.prefix is not None and len(dec.prefix[0]) >= 16
    if max_new > 1:
        assert max(sizes) >= 3  # rows that joined decoded in one forward pass with the running ones
    assert not dec.rows and dec.cache is None and dec.mask.shape == (0, 0)  # nothing left behind


def test_a_row_waiting_on_its_tool_stalls_no_other_row(smol_tokenizer):
    tok = smol_tokenizer
    scripts = {"a": [" [Slow(", "abc", ")", " done"], "b": " one two three four five six"}
    model = ScriptedLM(tok, lambda prompt: scripts[prompt.strip()])
    tools = ToolRegistry()
    tools.add(slow)
    events: list[tuple[str, str]] = []
    dec = ContinuousDecoder(model, tok, tools)
    config = DecodeConfig(max_new_tokens=40)
    try:
        a = dec.add("a", config, on_event=lambda e: events.append((e.kind, "a")))
        for _ in range(8):  # until row a waits on its tool
            dec.tick()
        assert dec.rows[0].pending is not None
        b = dec.add("b", config, on_event=lambda e: events.append((e.kind, "b")))  # joins while a's tool runs
        drain(dec)
    finally:
        dec.close()
    assert a.result(timeout=0).calls[0].output == "ABC"
    assert b.result(timeout=0).text == " one two three four five six"
    assert events.index(("done", "b")) < events.index(("call", "a"))  # b finished before a's tool returned
    assert model.batch_sizes == [1, 1]  # b was prefilled alone, then decoded beside a


def test_a_cancelled_row_leaves_and_frees_its_cache_row(tiny_lm):
    model, tok = tiny_lm
    config = DecodeConfig(max_new_tokens=10)
    ref = generate(model, tok, [PROMPTS[2]], ToolRegistry(), config)[0]
    gone = False
    dec = ContinuousDecoder(model, tok)
    try:
        kept = dec.add(PROMPTS[2], config)
        cut = dec.add(PROMPTS[0], config, cancelled=lambda: gone)
        dec.tick()
        dec.tick()
        assert dec.mask.shape[0] == 2
        gone = True
        dec.tick()
        assert dec.active == [0] and dec.mask.shape[0] == 1  # its cache and mask rows are dropped
        assert cut.done() and cut.result().finish_reason == "cancelled"
        drain(dec)
    finally:
        dec.close()
    assert kept.result(timeout=0).token_ids == ref.token_ids
    # The first tick chose two tokens (one from its prefill, one from the round after), the second one more.
    assert (
        cut.result().new_tokens == 3
        and cut.result().token_ids
        == generate(model, tok, [PROMPTS[0]], ToolRegistry(), config)[0].token_ids[:3]
    )


def test_a_failed_forward_fails_every_row_instead_of_hanging(tiny_lm):
    model, tok = tiny_lm
    dec = ContinuousDecoder(model, tok)
    fut = dec.add("hello", DecodeConfig(max_new_tokens=3))

    def boom(*args, **kwargs):
        raise RuntimeError("out of memory")

    dec._forward = boom  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        dec.tick()
    with pytest.raises(RuntimeError, match="out of memory"):
        fut.result(timeout=0)
    dec.close()
