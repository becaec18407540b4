"""Benchmark: decode tokens/s of the llama.cpp backend ÷ the transformers backend, and of our llama.cpp backend with
tool calls ÷ plain llama.cpp (llama-cpp-python's own `create_completion`), on the same model and prompts.

Run by hand: `.venv/bin/python bench/backends.py [--model smollm2-135m-instruct] [--gguf FILE] [--new 64]
[--threads 1] [--repeat 3]`. transformers runs the model's dequantised float32 weights; llama.cpp runs the GGUF
(for the default alias, the Q4_1 file it ships in; `--gguf` takes another export). Every run is one prompt
(batch 1), greedy, end to end (prompt + decoding + tools); tokens/s counts sampled plus tool-result tokens, so a
run with a call is not credited for tokens it did not compute. The runs alternate prompt by prompt, `--repeat`
times, and the median total is kept, so a drift in machine speed hits every column alike. Pin the threads
(`--threads`, default 1) on a shared machine: llama.cpp's threads wait for each other at every layer.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from toolformer.models import load_model
from toolformer.runtime import llamacpp
from toolformer.runtime.decode import DecodeConfig, generate
from toolformer.runtime.prompts import build_prompt
from toolformer.tools import load_tools

QUESTIONS = [
    "What is 23 times 47?",
    "A shop had 560 apples and sold 245. How many are left?",
    "What is 918 divided by 27?",
    "Sara buys 14 boxes of 36 pencils. How many pencils is that?",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--gguf", default=None, help="GGUF for llama.cpp (default: the model's own GGUF)")
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, tok = load_model(args.model)
    lm = llamacpp.load_llamacpp(args.gguf or args.model, n_threads=args.threads)
    tools = load_tools("Calculator")
    prompts = [build_prompt(q, ["Calculator"]) for q in QUESTIONS]
    cfg = DecodeConfig(max_new_tokens=args.new)
    plain_cfg = DecodeConfig(max_new_tokens=args.new, disabled=True)

    def hf_plain(p: str) -> int:
        ids = tok(p, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=args.new, do_sample=False, pad_token_id=tok.pad_token_id)
        return out.shape[1] - ids.shape[1]

    def hf_tools(p: str) -> tuple[int, int]:
        g = generate(model, tok, [p], tools, cfg)[0]
        return g.new_tokens + g.forced_tokens, len(g.calls)

    def lc_plain(p: str) -> int:
        out = lm.llm.create_completion(p, max_tokens=args.new, temperature=0.0, top_k=1)
        return out["usage"]["completion_tokens"]

    def lc_ours_plain(p: str) -> int:
        g = llamacpp.generate(lm, [p], tools, plain_cfg)[0]
        return g.new_tokens

    def lc_tools(p: str) -> tuple[int, int]:
        g = llamacpp.generate(lm, [p], tools, cfg)[0]
        return g.new_tokens + g.forced_tokens, len(g.calls)

    runs = {
        "transformers, model.generate": hf_plain,
        "transformers backend, tools": hf_tools,
        "llama.cpp, create_completion": lc_plain,
        "llama.cpp backend, tools off": lc_ours_plain,
        "llama.cpp backend, tools": lc_tools,
    }
    for fn in runs.values():  # warm-up: caches, thread pools, the first prompt's prefix
        fn(prompts[0])
    seconds: dict[str, list[float]] = {k: [] for k in runs}
    tokens: dict[str, int] = dict.fromkeys(runs, 0)
    calls: dict[str, int] = dict.fromkeys(runs, 0)
    for rep in range(args.repeat):
        spent = dict.fromkeys(runs, 0.0)
        for p in prompts:  # prompt-major, so a slow patch of the machine hits every run about alike
            for name, fn in runs.items():
                t0 = time.perf_counter()
                r = fn(p)
                spent[name] += time.perf_counter() - t0
                n, c = r if isinstance(r, tuple) else (r, 0)
                if rep == 0:
                    tokens[name] += n
                    calls[name] += c
        for name in runs:
            seconds[name].append(spent[name])
    rate = {k: tokens[k] / statistics.median(seconds[k]) for k in runs}

    print(
        f"model {args.model}; llama.cpp file {lm.path.name}; threads {args.threads}; {len(prompts)} prompts, "
        f"batch 1, greedy, max {args.new} new tokens; median of {args.repeat}"
    )
    print(f"| {'run':<30} | {'tokens':>6} | {'calls':>5} | {'tok/s':>7} |")
    print(f"|{'-' * 32}|{'-' * 8}|{'-' * 7}|{'-' * 9}|")
    for k in runs:
        print(f"| {k:<30} | {tokens[k]:>6} | {calls[k]:>5} | {rate[k]:>7.1f} |")
    print()
    ratios = [
        (
            "llama.cpp backend ÷ transformers backend (tools)",
            rate["llama.cpp backend, tools"] / rate["transformers backend, tools"],
        ),
        (
            "llama.cpp ÷ transformers (plain generation)",
            rate["llama.cpp, create_completion"] / rate["transformers, model.generate"],
        ),
        (
            "our llama.cpp backend with tools ÷ plain llama.cpp (goal ≥ 0.9)",
            rate["llama.cpp backend, tools"] / rate["llama.cpp, create_completion"],
        ),
        (
            "our llama.cpp backend, tools off ÷ plain llama.cpp",
            rate["llama.cpp backend, tools off"] / rate["llama.cpp, create_completion"],
        ),
    ]
    print(f"| {'ratio':<66} | {'value':>5} |")
    print(f"|{'-' * 68}|{'-' * 7}|")
    for name, value in ratios:
        print(f"| {name:<66} | {value:>5.2f} |")


if __name__ == "__main__":
    main()
