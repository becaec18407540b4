"""Batched llama.cpp (`runtime.llamaslots`): rows in their own sequences of one decode batch, joining and leaving."""

from __future__ import annotations

import time

import pytest

from fakes import drain
from toolformer.runtime import llamacpp
from toolformer.runtime.decode import DecodeConfig
from toolformer.tools import ToolRegistry, tool

pytest.importorskip("llama_cpp")

from toolformer.runtime.llamaslots import LlamaSlotDecoder  # noqa: E402

SHARED = "You are a helpful assistant. Answer every question briefly and truthfully, in English. "
PROMPTS = [
    "Short",
    SHARED + "What is the capital of France?",
    "A longer prompt with more tokens",
    SHARED + "x",
]


@pytest.fixture(scope="module")
def tiny_gguf(tiny_lm, tmp_path_factory):
    """The tiny random Llama in llama.cpp, f32 weights and KV cache."""
    from toolformer.export.gguf import export_gguf

    model, tok = tiny_lm
    path = export_gguf(model, tok, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf", quant="f32").path
    lm = llamacpp.LlamaCppModel(path, n_ctx=512, f32_kv=True)
    yield lm
    lm.close()


def test_rows_joining_mid_decode_write_what_they_write_alone(tiny_gguf):
    config = DecodeConfig(max_new_tokens=8)
    alone = []
    for p in PROMPTS:
        tiny_gguf.reset()
        alone.append(llamacpp.generate(tiny_gguf, [p], ToolRegistry(), config)[0])
    dec = LlamaSlotDecoder(tiny_gguf, slots=4, slot_ctx=256)
    try:
        futures = [dec.add(PROMPTS[0], config)]
        dec.tick()
        futures.append(
            dec.add(PROMPTS[1], config)
        )  # alone: all of it but its last token is kept as the prefix
        dec.tick()
        futures.append(dec.add(PROMPTS[2], config))  # shares nothing with it, and is too short to replace it
        dec.tick()
        futures.append(dec.add(PROMPTS[3], config))  # starts from the prefix kept from PROMPTS[1]
        drain(dec)
        assert dec.prefix == tiny_gguf.tokenizer.encode(PROMPTS[1])[:-1]
        assert sorted(dec.free) == [0, 1, 2, 3]  # every slot is free again
    finally:
        dec.close()
    for fut, ref in zip(futures, alone, strict=True):
        gen = fut.result(timeout=0)
        assert gen.token_ids == ref.token_ids and gen.text == ref.text


@tool(name="Slow", timeout=5.0)
def slow(text: str) -> str:
    """Sleeps, then echoes."""
    time.sleep(0.5)
    return text.upper()


class _Scripted(LlamaSlotDecoder):
    """Rows write a fixed script whatever the logits say (the random model never closes a call itself)."""

    scripts: dict[str, list[int]] = {}

    def _chooser(self, config):
        def choose(logits, row):
            assert logits.shape == (self.n_vocab,)  # the row's own logits came back from the batch
            script = self.scripts[row.prompt]
            at = len(row.ids) - row.forced
            return script[at] if at < len(script) else min(self.eos)

        return choose


def test_a_row_waiting_on_its_tool_stalls_no_other_row_and_a_cancelled_one_frees_its_slot(tiny_gguf):
    tools = ToolRegistry()
    tools.add(slow)
    enc = lambda s: tiny_gguf.tokenizer.encode(s)  # noqa: E731
    _Scripted.scripts = {
        "a": enc(" [Slow(abc)") + enc(" done"),
        "b": enc(" one two three four five six seven"),
    }
    dec = _Scripted(tiny_gguf, tools, slots=2, slot_ctx=256)
    events: list[tuple[str, str]] = []
    gone = False
    try:
        waiting = dec.add(
            "a", DecodeConfig(max_new_tokens=20), on_event=lambda e: events.append((e.kind, "a"))
        )
        other = dec.add("b", DecodeConfig(max_new_tokens=40), on_event=lambda e: events.append((e.kind, "b")))
        cut = dec.add("b", DecodeConfig(max_new_tokens=40), cancelled=lambda: gone)  # waits for a free slot
        for _ in range(4):
            dec.tick()
        assert dec.joining and not cut.done()  # both slots are busy
        gone = True
        drain(dec)
    finally:
        dec.close()
    assert waiting.result(timeout=0).calls[0].output == "ABC"
    assert other.result(timeout=0).text == " one two three four five six seven"
    assert events.index(("done", "b")) < events.index(("call", "a"))  # b ended while a's tool ran
    assert cut.result(timeout=0).finish_reason == "cancelled"
    assert sorted(dec.free) == [0, 1]
