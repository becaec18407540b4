"""Benchmark: tokens/s of tool-executing decoding ÷ plain `generate` of the same model on the same prompts.

Run by hand: `.venv/bin/python bench/decode.py [--model M] [--batch 1,4] [--new 48]`. Prints one table, all
measured side by side in this run, plus a naive loop that re-encodes the prefix after each call (as most
Toolformer re-implementations do) for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from toolformer.calls import find_calls
from toolformer.models import load_model
from toolformer.runtime.decode import DecodeConfig, generate
from toolformer.runtime.prompts import build_prompt
from toolformer.tools import load_tools

QUESTIONS = [
    "What is 23 times 47?",
    "What is 1234 plus 5678?",
    "A shop had 560 apples and sold 245. How many are left?",
    "What is 918 divided by 27?",
    "Sara buys 14 boxes of 36 pencils. How many pencils is that?",
    "What is 7 times 86?",
    "A train travels 315 km in 5 hours. What is its speed?",
    "What is 4500 minus 1275?",
]


def hf_generate(model, tok, prompts, new):
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=new, do_sample=False, pad_token_id=tok.pad_token_id)
    gen = out[:, batch.input_ids.shape[1] :]
    return int((gen != tok.pad_token_id).sum())


def naive_loop(model, tok, prompt, tools, new):
    """Generate until a call's arrow, run the tool, then re-encode everything and continue (no cache reuse)."""
    text, produced = "", 0
    while produced < new:
        ids = tok(prompt + text, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=1, do_sample=False, pad_token_id=tok.pad_token_id)
        nxt = int(out[0, -1])
        produced += 1
        if nxt == tok.eos_token_id:
            break
        text += tok.decode([nxt])
        spans = find_calls(text)
        if spans and spans[-1].awaiting_result:
            text += f" {tools.run(spans[-1].call).text}]"
    return produced


def side_by_side(fns, repeat=5):
    """Run the functions in turn `repeat` times (so drifts in machine speed hit all alike); median seconds each."""
    times = [[] for _ in fns]
    values = [None] * len(fns)
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t = time.perf_counter()
            values[k] = fn()
            times[k].append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times], values


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--batch", default="1,4")
    ap.add_argument("--new", type=int, default=48)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_model(args.model)
    tools = load_tools("Calculator")
    print(f"model {args.model}, torch threads {torch.get_num_threads()}, max new tokens {args.new}")
    print(
        f"{'batch':>5} {'plain tok/s':>12} {'tools tok/s':>12} {'ratio':>6} {'calls':>5} {'naive tok/s':>12}"
    )
    for b in [int(x) for x in args.batch.split(",")]:
        prompts = [build_prompt(q, ["Calculator"]) for q in QUESTIONS[:b]]
        cfg = DecodeConfig(max_new_tokens=args.new)
        hf_generate(model, tok, prompts, 4)  # warm-up
        (t_plain, t_tool), (n_plain, gens) = side_by_side(
            [
                lambda: hf_generate(model, tok, prompts, args.new),
                lambda: generate(model, tok, prompts, tools, cfg),
            ]
        )
        n_tool = sum(g.new_tokens + g.forced_tokens for g in gens)
        calls = sum(len(g.calls) for g in gens)
        naive = ""
        if b == 1:
            (t_naive,), (n_naive,) = side_by_side(
                [lambda: naive_loop(model, tok, prompts[0], tools, args.new)], 1
            )
            naive = f"{n_naive / t_naive:12.1f}"
        r_plain, r_tool = n_plain / t_plain, n_tool / t_tool
        print(f"{b:>5} {r_plain:12.1f} {r_tool:12.1f} {r_tool / r_plain:6.2f} {calls:>5} {naive:>12}")


if __name__ == "__main__":
    main()
