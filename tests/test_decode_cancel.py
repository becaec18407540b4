"""`generate(..., cancelled=)`: a cancelled row stops and leaves the batch; the other rows decode exactly as before."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from fakes import ScriptedLM
from toolformer.runtime.decode import DecodeConfig, Event, generate
from toolformer.runtime.engine import Toolformer
from toolformer.tools import ToolRegistry, tool

PROMPTS = ["Short", "A much longer prompt with many more tokens in it than the first", "Mid length one"]
# Rows that open alike share an encoded prefix (a DynamicCache repeated per row): dropping a row must work there too.
SHARED = "You are a helpful assistant. Answer every question briefly and truthfully, in English. "
SHARED_PROMPTS = [SHARED + p for p in PROMPTS]


def _after(row: int, steps: int):
    """`cancelled(i)`: true for `row` once it has been asked `steps` times (each ask is one decoding step)."""
    asked: Counter[int] = Counter()

    def cancelled(i: int) -> bool:
        asked[i] += 1
        return i == row and asked[i] > steps

    return cancelled


@pytest.mark.parametrize("prompts", [PROMPTS, SHARED_PROMPTS], ids=["own-prompts", "shared-prefix"])
@pytest.mark.parametrize("steps", [0, 3])
def test_a_cancelled_row_leaves_the_batch_and_the_others_decode_as_without_it(tiny_lm, prompts, steps):
    model, tok = tiny_lm
    config = DecodeConfig(max_new_tokens=12)
    plain = generate(model, tok, prompts, ToolRegistry(), config)
    assert all(g.finish_reason == "length" and g.new_tokens == 12 for g in plain)
    events: list[Event] = []
    sizes: list[int] = []  # the batch size of every forward pass
    handle = model.get_input_embeddings().register_forward_hook(
        lambda mod, args, out: sizes.append(out.shape[0])
    )
    try:
        cut = generate(model, tok, prompts, ToolRegistry(), config, events.append, cancelled=_after(1, steps))
    finally:
        handle.remove()
    for i in (0, 2):  # token for token what they wrote without the cancellation
        assert cut[i].token_ids == plain[i].token_ids and cut[i].text == plain[i].text
        assert cut[i].finish_reason == "length"
    assert cut[1].finish_reason == "cancelled"
    assert cut[1].new_tokens == steps and cut[1].token_ids == plain[1].token_ids[:steps]
    assert ("done", 1, "cancelled") in [(e.kind, e.row, e.finish_reason) for e in events]
    # Row 1 was in the batch for its `steps` steps and not after (the shared prefix, if any, is one pass of 1).
    batched = [s for s in sizes if s > 1]
    assert batched[:steps] == [3] * steps and set(batched[steps:]) <= {2}
    assert sum(1 for s in sizes if s == 2) == 12 - steps


def test_every_row_cancelled_ends_the_batch_at_once(tiny_lm):
    model, tok = tiny_lm
    gens = generate(model, tok, PROMPTS, None, DecodeConfig(max_new_tokens=50), cancelled=lambda i: True)
    assert [g.finish_reason for g in gens] == ["cancelled"] * 3
    assert [g.new_tokens for g in gens] == [0, 0, 0] and all(g.text == "" for g in gens)


def test_a_row_waiting_on_its_tool_is_cancelled_without_waiting_for_the_tool(smol_tokenizer):
    tok = smol_tokenizer
    release = threading.Event()
    started = threading.Event()
    finished = threading.Event()

    @tool(name="Hang", timeout=60.0)
    def hang(text: str) -> str:
        """Waits until the test lets it go."""
        started.set()
        release.wait(60)
        finished.set()
        return "late"

    tools = ToolRegistry()
    tools.add(hang)
    calling = tok.encode(" [Hang(x) →", add_special_tokens=False) + tok.encode(
        " after", add_special_tokens=False
    )
    words = tok.encode(" one two three", add_special_tokens=False)
    model = ScriptedLM(tok, [words, calling, words])
    try:
        gens = generate(
            model,
            tok,
            ["a", "b", "c"],
            tools,
            DecodeConfig(max_new_tokens=20),
            cancelled=lambda i: i == 1 and started.is_set(),
        )
        returned_while_the_tool_ran = not finished.is_set()  # it did not wait for the tool
    finally:
        release.set()
    assert returned_while_the_tool_ran
    assert [g.text for g in (gens[0], gens[2])] == [" one two three"] * 2
    assert gens[1].finish_reason == "cancelled" and gens[1].calls == []
    assert "late" not in gens[1].text


def test_toolformer_generate_passes_cancelled_on(tiny_lm):
    model, tok = tiny_lm
    tf = Toolformer(model, tok, ToolRegistry(), name="tiny")
    gens = tf.generate(PROMPTS[:2], DecodeConfig(max_new_tokens=5), cancelled=lambda i: i == 0)
    assert [g.finish_reason for g in gens] == ["cancelled", "length"]
