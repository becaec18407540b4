"""Benchmark: candidates/s of the batched filter ÷ a naive loop (three full forwards per candidate), same model.

Run by hand: `.venv/bin/python bench/filter.py [--docs 20] [--per-doc 10] [--budgets 2048,4096,8192]`.
Candidates come from GSM8K solutions: each `<<48/2=24>>` annotation gives `Calculator(48 / 2)` at the position
of its result, with the right result, a wrong one, and at other number positions of the same text (what the
sampling step produces: the same call proposed at several places). Everything is measured side by side in one
run; the naive loop is the usual public re-implementation (every candidate's three sequences run separately and
in full, logits for every position, no reuse of the plain-text forward).

About 3 minutes on 2 idle cores. On a shared, oversubscribed machine pass `--threads 1`: with more torch threads
than free cores, OpenMP spin-waiting made each forward ~15x slower here and the table meaningless.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import torch

from toolformer.datagen import filter as filt
from toolformer.datagen.filter import FilterConfig, loss_weights, score_documents
from toolformer.datagen.records import Candidate
from toolformer.models import load_model

# ../shared/data beside the checkout, as CI lays it out (tests/shared_data.py finds it the same way).
GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "gsm8k_train.jsonl"
ANNOTATION = re.compile(r"<<([^=<>]+)=([^<>]+)>>")
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse(solution: str) -> tuple[str, list[tuple[str, str, int]]]:
    """Solution text without annotations, and (expression, result, position of the result) per annotation."""
    out, calls, last = [], [], 0
    for m in ANNOTATION.finditer(solution):
        out.append(solution[last : m.start()])
        at = sum(len(p) for p in out)
        expr = re.sub(r"\s*([-+*/])\s*", r" \1 ", m.group(1).strip())
        calls.append((expr, m.group(2).strip(), at))
        last = m.end()
    out.append(solution[last:])
    return "".join(out), calls


def wrong(result: str) -> str:
    try:
        value = float(result)
    except ValueError:
        return result + "1"
    return f"{value * 2 + 3:g}"


def build(n_docs: int, per_doc: int) -> list[tuple[str, list[Candidate]]]:
    docs = []
    for line in GSM8K.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        solution, calls = parse(row["solution"])
        if len(calls) < 2:
            continue
        head = row["question"] + "\n"
        text = head + solution
        numbers = [len(head) + m.start() for m in NUMBER.finditer(solution)]
        cands = []
        for k, (expr, result, at) in enumerate(calls):
            at += len(head)
            cands.append(Candidate(row["id"], "Calculator", expr, at, "data", result=result, ok=True))
            cands.append(Candidate(row["id"], "Calculator", expr, at, "data", result=wrong(result), ok=True))
            others = [p for p in numbers if p != at]
            for p in others[k :: max(1, len(calls))][:2]:
                cands.append(Candidate(row["id"], "Calculator", expr, p, "data", result=result, ok=True))
        docs.append((text, cands[:per_doc]))
        if len(docs) == n_docs:
            break
    return docs


def copy_docs(docs):
    return [(t, [Candidate.from_dict(c.to_dict()) for c in cs]) for t, cs in docs]


def naive(model, tok, docs) -> tuple[list[float], int]:
    """Per candidate: three separate full forwards (e(c,r)+x, x, e(c,ε)+x), full logits; returns the gains."""
    weights = loss_weights(5)
    start = [tok.bos_token_id]
    gains, tokens = [], 0
    for text, cands in docs:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        starts = [s for s, _ in enc["offset_mapping"]]
        for c in cands:
            i = next(k for k, s in enumerate(starts) if s >= c.position)

            def loss(prefix):
                nonlocal tokens
                head = start + (tok(prefix + "\n", add_special_tokens=False)["input_ids"] if prefix else [])
                tokens += len(head) + len(ids)
                with torch.inference_mode():
                    logits = model(torch.tensor([head + ids]), use_cache=False).logits[0]
                logp = torch.log_softmax(logits.float(), dim=-1)
                n = min(5, len(ids) - i)
                return -sum(weights[t] * float(logp[len(head) + i + t - 1, ids[i + t]]) for t in range(n))

            plus = loss(c.text())
            minus = min(loss(None), loss(f"[{c.tool}({c.args}) → ]"))
            gains.append(minus - plus)
    return gains, tokens


def batched(model, tok, docs, config) -> tuple[list[float], dict]:
    stats = {"forwards": 0, "rows": 0, "padded_tokens": 0}
    original = filt._forward

    def counting(model_, batch, pad, cfg):
        stats["forwards"] += 1
        stats["rows"] += len(batch)
        stats["padded_tokens"] += len(batch) * max(j.length for j in batch)
        return original(model_, batch, pad, cfg)

    filt._forward = counting
    try:
        work = copy_docs(docs)
        score_documents(model, tok, work, config)
    finally:
        filt._forward = original
    return [c.gain for _, cs in work for c in cs], stats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=20)
    ap.add_argument("--per-doc", type=int, default=10)
    ap.add_argument("--budgets", default="4096")
    ap.add_argument(
        "--repeat", type=int, default=3, help="batched runs per variant (median); naive runs once"
    )
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_model()
    docs = build(args.docs, args.per_doc)
    n = sum(len(cs) for _, cs in docs)
    n_tokens = [len(tok(t, add_special_tokens=False)["input_ids"]) for t, _ in docs]
    print(
        f"model {model.config._name_or_path or type(model).__name__}, {len(docs)} GSM8K texts "
        f"({statistics.mean(n_tokens):.0f} tokens avg), {n} candidates, torch threads {torch.get_num_threads()}"
    )

    variants = []
    for budget in [int(b) for b in args.budgets.split(",")]:
        for bf16 in (False, True):
            name = f"batched {'bf16 autocast' if bf16 else 'fp32'}, max_batch_tokens={budget}"
            variants.append((name, FilterConfig(max_batch_tokens=budget, autocast_bf16=bf16)))

    batched(model, tok, docs[:2], variants[0][1])  # warm-up (thread pools, first-shape kernels, probe)
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    results: dict[str, tuple[list[float], dict]] = {}
    t = time.perf_counter()
    reference, naive_tokens = naive(model, tok, docs)
    naive_s = time.perf_counter() - t
    for _ in range(args.repeat):  # interleaved, so machine-speed drift hits all variants alike
        for name, config in variants:
            t = time.perf_counter()
            results[name] = batched(model, tok, docs, config)
            times[name].append(time.perf_counter() - t)

    rows = [("naive loop (3 full forwards / candidate, fp32)", naive_s, 3 * n, naive_tokens, 0.0, 1.0)]
    for name, _ in variants:
        gains, stats = results[name]
        sec = statistics.median(times[name])
        dev = max(abs(a - b) for a, b in zip(gains, reference))
        agree = sum((a >= 0.5) == (b >= 0.5) for a, b in zip(gains, reference)) / n
        rows.append((name, sec, stats["rows"], stats["padded_tokens"], dev, agree))
    print()
    print(
        f"| {'method':56} | {'s':>7} | {'cand/s':>7} | {'speedup':>7} | {'seqs':>5} | {'tokens':>7} |"
        f" {'max |Δgain|':>11} | {'τ=0.5 agree':>11} |"
    )
    print(f"|{'-' * 58}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 7}|{'-' * 9}|{'-' * 13}|{'-' * 13}|")
    for name, sec, seqs, tokens, dev, agree in rows:
        print(
            f"| {name:56} | {sec:7.2f} | {n / sec:7.1f} | {naive_s / sec:6.1f}x | {seqs:5} | {tokens:7} |"
            f" {dev:11.2e} | {agree:11.1%} |"
        )
    kept = sum(g >= 0.5 for g in reference)
    print(
        "\nseqs/tokens: sequences and (padded) tokens forwarded; Δgain vs the naive fp32 gains; agree: same"
    )
    print(f"keep/drop verdict at the Calculator τ_f = 0.5. Naive keeps {kept}/{n} candidates.")


if __name__ == "__main__":
    main()
