"""Benchmark: the cost per token of holding JSON tool calls to a grammar (`runtime.grammar`, llguidance masks).

Run by hand: `.venv/bin/python bench/grammar.py [--model M] [--new 64] [--repeat 3] [--gguf PATH]`. One prompt (the
chat template with a tools block, ending in the `required` prefill), decoded side by side in this run:

- plain: no grammar (today's unconstrained decoding);
- forced: the call held to the grammar from the first token (`tool_choice="required"`), a mask every token;
- auto: the grammar on, the text free (only the `<tool_call>` opener rule applies).

Each row is greedy, `--new` tokens at most. `decode tok/s` counts the tokens after the first over the time after
the first (a one-token run of the same row, measured alongside, gives the prompt's time), so rows that stop at
different lengths compare. `mask µs/tok` is the time spent in `GrammarMask.rule` (llguidance's mask and the numpy
work around it) per token it was asked for.
"""

from __future__ import annotations

import argparse
import statistics
import time

from toolformer.runtime import grammar as grammar_module
from toolformer.runtime.decode import DecodeConfig
from toolformer.runtime.engine import Toolformer
from toolformer.runtime.grammar import call_grammar
from toolformer.runtime.jsoncalls import parse_json_calls, render_tools_prompt
from toolformer.serve.session import REQUIRED_PREFILL

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "book_table",
            "description": "Book a restaurant table.",
            "parameters": {
                "type": "object",
                "properties": {
                    "restaurant": {"type": "string"},
                    "seats": {"type": "integer", "minimum": 1, "maximum": 12},
                },
                "required": ["restaurant", "seats"],
            },
        },
    },
]


class _Timed:
    """Wraps `GrammarMask.rule` to add up the time spent in it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.original = grammar_module.GrammarMask.rule

    def __enter__(self) -> _Timed:
        timed = self

        def rule(mask, row):  # noqa: ANN001, ANN202
            t = time.perf_counter()
            try:
                return timed.original(mask, row)
            finally:
                timed.seconds += time.perf_counter() - t
                timed.calls += 1

        grammar_module.GrammarMask.rule = rule
        return self

    def __exit__(self, *exc: object) -> None:
        grammar_module.GrammarMask.rule = self.original


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="Model alias or path (default: the embedded SmolLM2-135M).")
    ap.add_argument("--gguf", default=None, help="Also run a GGUF through llama.cpp.")
    ap.add_argument("--new", type=int, default=64, help="Tokens per run at most.")
    ap.add_argument("--repeat", type=int, default=3, help="Runs per row (median shown).")
    args = ap.parse_args()

    engines = [("transformers", Toolformer.load(args.model, tools=[]))]
    if args.gguf:
        engines.append(("llama.cpp", Toolformer.load(args.gguf, tools=[], backend="llamacpp")))
    messages = [
        {"role": "system", "content": render_tools_prompt(TOOLS)},
        {
            "role": "user",
            "content": "What is the weather in Lisbon, and can you book a table for 4 at Tasca?",
        },
    ]
    rows = {
        "plain": None,
        "forced": call_grammar(TOOLS, "forced", True, REQUIRED_PREFILL),
        "auto": call_grammar(TOOLS, "auto", True),
    }
    print(
        f"{'backend':<13}{'row':<8}{'tokens':>7}{'decode tok/s':>13}{'ms/token':>10}{'mask µs/tok':>12}  calls"
    )
    for backend, tf in engines:
        prompt = tf._render(messages, []) + REQUIRED_PREFILL
        tf.generate([prompt], DecodeConfig(max_new_tokens=4, grammar=rows["forced"]))  # warm the caches
        results: dict[str, list[tuple[int, float, float, int]]] = {name: [] for name in rows}
        texts: dict[str, str] = {}
        for _ in range(args.repeat):
            for name, grammar in rows.items():  # interleaved, so load on the machine hits every row alike
                t = time.perf_counter()
                tf.generate([prompt], DecodeConfig(max_new_tokens=1, grammar=grammar))
                first = time.perf_counter() - t  # the prompt and the first token
                with _Timed() as timed:
                    t = time.perf_counter()
                    [gen] = tf.generate([prompt], DecodeConfig(max_new_tokens=args.new, grammar=grammar))
                    seconds = time.perf_counter() - t
                results[name].append((gen.new_tokens, seconds - first, timed.seconds, timed.calls))
                texts[name] = REQUIRED_PREFILL + gen.text
        for name, runs in results.items():
            tokens = statistics.median(r[0] for r in runs)
            rate = statistics.median((r[0] - 1) / r[1] for r in runs)
            mask = sum(r[2] for r in runs) / max(1, sum(r[3] for r in runs)) * 1e6
            calls = "; ".join(f"{c.name}({c.arguments})" for c in parse_json_calls(texts[name])[1]) or "-"
            print(
                f"{backend:<13}{name:<8}{tokens:>7.0f}{rate:>13.1f}{1000 / rate:>10.2f}{mask:>12.1f}  {calls}"
            )


if __name__ == "__main__":
    main()
