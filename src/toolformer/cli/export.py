"""`toolformer export`: export a model for deployment (hf, gguf, onnx) and check it in its own runtime."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from toolformer.cli.common import MODEL_HELP, clean_errors, console, err_console


@clean_errors
def export_command(
    model: str = typer.Argument(..., help=MODEL_HELP + " Or a LoRA adapter folder (merged into its base)."),
    format: str = typer.Option(..., "--format", "-f", help="hf (merged safetensors folder), gguf or onnx."),
    out: str = typer.Option(..., "--out", "-o", help="Folder to write (gguf: a .gguf file or a folder)."),
    quant: str = typer.Option(
        "f16",
        help="GGUF types, comma-separated: f32, f16, bf16, q8_0, or a llama.cpp type (q4_k_m, q4_0, q5_k_m, q6_k, …).",
    ),
    dtype: str = typer.Option(None, help="hf: save in float16 / bfloat16 instead of the stored dtype."),
    verify: bool = typer.Option(
        True,
        "--verify/--no-verify",
        help="Load the export in its runtime and compare logits with the source.",
    ),
    threads: int = typer.Option(None, help="CPU threads for llama.cpp / onnxruntime (default: theirs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Export for deployment: `toolformer export MODEL --format gguf --quant f16,q8_0 --out dist/`.

    Checks each export in its own runtime (transformers, llama.cpp, onnxruntime) on a fixed text with a tool call:
    the largest logit difference from the source model and how often both choose the same next token.
    """
    from toolformer.errors import ConfigError
    from toolformer.export import export
    from toolformer.export.hf import load_merged

    quants = (
        [q.strip() for q in quant.split(",") if q.strip()] if format.strip().lower() == "gguf" else ["f16"]
    )
    if len(quants) > 1 and out.lower().endswith(".gguf"):
        raise ConfigError(
            f"out={out!r} names one file but --quant asks for {len(quants)} types: give a folder"
        )
    with err_console.status(f"loading {model}"):
        source = load_merged(model, dtype=dtype if format.strip().lower() == "hf" else None)
    results = []
    for q in quants:
        with err_console.status(f"exporting {format} {q if format == 'gguf' else ''}".strip()):
            results.append(export(source, format, out, quant=q, dtype=dtype, verify=verify, threads=threads))
    if as_json:
        print(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=2))
        return
    table = Table(title=f"Exported {model}")
    for col in ("format", "path", "MB", "runtime", "max |Δlogit|", "same top-1", "same tokens"):
        table.add_column(col, overflow="fold")
    for r in results:
        p = r.parity
        kind = r.format + (f" {r.detail['quant']}" if "quant" in r.detail else "")
        table.add_row(
            kind,
            str(r.path),
            f"{r.bytes / 1e6:.1f}",
            p.runtime if p else "-",
            f"{p.max_abs_diff:.4g}" if p else "-",
            f"{p.top1_agreement:.0%}" if p else "-",
            "-" if p is None or p.tokens_match is None else ("yes" if p.tokens_match else "NO"),
        )
    console.print(table)
    for r in results:
        if r.format == "gguf":
            console.print(f'use it: toolformer ask --model {r.path} "What is 23 times 47?"', highlight=False)
            break
