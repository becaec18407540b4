"""Benchmark: every compression variant of one model, measured in one run; writes the trade-off table and plot.

Run by hand (single-threaded, as the table in the notes was made):

    OMP_NUM_THREADS=1 .venv/bin/python bench/compress.py [--model M] [--out out/compress-bench]

Builds each variant with `toolformer.compress` (no measuring there), then measures the source and every variant
the same way, each in its own process (`toolformer.compress.measure`): weights on disk, peak RSS, tokens per
CPU-second, perplexity on the first --ppl-limit texts of the ppl suite, math accuracy with the Calculator on
--math-limit questions. Writes OUT/report.md, OUT/report.json and OUT/plot.png, and prints the table.
With --heal-steps N it adds the trimmed model healed by N fine-tune steps on Wikipedia lead sections (the
shipped corpus, minus the ppl suite's articles).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import time
from importlib import resources
from pathlib import Path

from toolformer.compress import CompressConfig, compress
from toolformer.compress.measure import Measurement, measure
from toolformer.compress.pipeline import measure_config
from toolformer.compress.report import Variant, markdown_table, write_report

VARIANTS = {
    "bf16": {"method": "bf16"},
    "int8": {"method": "int8"},
    "int8-all": {"method": "int8", "int8_skip": ""},
    "int8-wo": {"method": "int8-wo"},
    "int4-wo": {"method": "int4-wo"},
    "prune30": {"method": "prune", "sparsity": 0.3},
    "prune-structured20": {"method": "prune-structured", "sparsity": 0.2},
    "trim24": {"method": "trim", "keep_layers": 24},
}


def heal_file(path: Path, n: int = 2000) -> Path:
    """Wikipedia lead sections from the shipped corpus as JSONL, without the ppl suite's articles."""
    data = resources.files("toolformer").joinpath("data")
    with data.joinpath("evals", "wiki_ppl.jsonl").open(encoding="utf-8") as fh:
        held_out = {json.loads(line)["title"] for line in fh if line.strip()}
    rows = []
    with data.joinpath("vital_en.jsonl.gz").open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row["title"] not in held_out:
                rows.append({"id": row["id"], "text": row["text"]})
    step = max(1, len(rows) // n)
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[::step][:n]), encoding="utf-8"
    )
    return path


def report(out: Path, args: argparse.Namespace, variants: list[Variant], started: float, final: bool) -> dict:
    """Write report.md/json/png for the variants measured so far."""
    load = os.getloadavg()
    notes = [
        f"model {args.model}; ppl: first {args.ppl_limit} wiki_ppl texts × ≤{args.ppl_max_tokens} tokens; math: "
        f"{args.math_datasets}, first {args.math_limit} questions, {args.shots}-shot, Calculator",
        f"whole run {time.perf_counter() - started:.0f} s{'' if final else ' so far (partial report)'}; load "
        f"average {load[0]:.1f} (other jobs shared the machine: tokens/s are per CPU-second for that reason)",
    ]
    return write_report(
        out, "Compression trade-off (bench/compress.py)", variants, notes, {"args": vars(args)}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument(
        "--out", default="out/compress-bench", help="Report folder; variants go to OUT/models."
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"Comma-separated, of {', '.join(VARIANTS)}."
    )
    parser.add_argument("--heal-steps", type=int, default=0, help="Also trim24 healed by N steps (0: no).")
    parser.add_argument("--ppl-limit", type=int, default=10)
    parser.add_argument("--ppl-max-tokens", type=int, default=256)
    parser.add_argument("--math-limit", type=int, default=20)
    parser.add_argument("--math-datasets", default="asdiv")
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--gen-tokens", type=int, default=24)
    parser.add_argument("--keep-models", action="store_true", help="Keep OUT/models afterwards.")
    parser.add_argument("--report-only", action="store_true", help="Rewrite the report from OUT/report.json.")
    args = parser.parse_args()

    if args.report_only:  # rewrite report.md / plot.png from report.json, measuring nothing
        data = json.loads((Path(args.out) / "report.json").read_text(encoding="utf-8"))
        variants = [
            Variant(v["name"], v["method"], Measurement.from_dict(v), v["settings"], v["seconds"])
            for v in data["variants"]
        ]
        notes = data["notes"]
        write_report(args.out, data["title"], variants, notes, {k: data[k] for k in ("args",) if k in data})
        print(markdown_table(variants))
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    started = time.perf_counter()
    out = Path(args.out)
    models = out / "models"
    shutil.rmtree(models, ignore_errors=True)
    models.mkdir(parents=True)
    specs = {name: dict(VARIANTS[name]) for name in args.variants.split(",") if name}
    if args.heal_steps:
        data = heal_file(out / "heal.jsonl")
        specs["trim24-heal"] = {
            **VARIANTS["trim24"], "heal_data": str(data), "heal_steps": args.heal_steps, "heal_max_length": 128,
        }  # fmt: skip

    built: list[tuple[str, dict, Path, float, dict]] = []
    for key, spec in specs.items():
        t = time.perf_counter()
        result = compress(CompressConfig(model=args.model, out=str(models / key), measure=False, **spec))
        built.append((result.recipe["name"], spec, result.out, time.perf_counter() - t, result.recipe))
        print(f"built {result.recipe['name']} in {time.perf_counter() - t:.0f} s", flush=True)

    mc = measure_config(args)  # the argparse namespace carries the same six fields as CompressConfig
    t = time.perf_counter()
    variants = [Variant("float32 (source)", "none", measure(args.model, mc))]
    print(f"measured the source in {time.perf_counter() - t:.0f} s", flush=True)
    for name, spec, folder, seconds, recipe in built:
        t = time.perf_counter()
        m = measure(str(folder), mc)
        notes = [f"{k}={v!r}" for k, v in spec.items() if k not in ("method", "heal_data")]
        if "heal" in recipe["info"]:
            heal = recipe["info"]["heal"]
            notes.append(
                f"heal loss {heal['loss_first']:.2f} → {heal['loss_last']:.2f}, {heal['seconds']:.0f} s"
            )
        variants.append(Variant(name, spec["method"], m, {"spec": spec, "notes": notes}, seconds))
        print(f"measured {name} in {time.perf_counter() - t:.0f} s", flush=True)
        report(out, args, variants, started, final=False)  # a partial report survives an interrupted run

    paths = report(out, args, variants, started, final=True)
    print(markdown_table(variants))
    print("outputs:", ", ".join(str(p) for p in paths.values()))
    if not args.keep_models:
        shutil.rmtree(models, ignore_errors=True)


if __name__ == "__main__":
    main()
