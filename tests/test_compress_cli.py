"""`toolformer compress` on the command line, and the measuring subprocess, on a tiny random Llama."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from toolformer.cli import app
from toolformer.compress.measure import MeasureConfig, measure

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--method", "zip"], "method='zip'"),
        (["--method", "trim"], "keep_layers"),
        (["--method", "prune", "--sparsity", "1.5"], "sparsity=1.5"),
        (["--method", "int8", "--heal-data", "x.jsonl"], "heal_data='x.jsonl'"),
        (["--method", "trim", "--layers", "a,b"], "layers='a,b'"),
    ],
)
def test_bad_arguments_are_one_line_errors(tiny_dir, tmp_path, args, named):
    result = runner.invoke(app, ["compress", str(tiny_dir), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2
    # One message (rich wraps it at the terminal width), naming the argument, and no traceback.
    text = result.stderr.strip().replace("\n", "")
    assert text.startswith("error:") and text.count("error:") == 1 and named in text
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_trim_without_measuring_writes_the_model_and_the_report(tiny_dir, tmp_path):
    out = tmp_path / "trimmed"
    result = runner.invoke(app, ["compress", str(tiny_dir), "--method", "trim", "--keep-layers", "1", "--out",
                                 str(out), "--no-measure", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "trim 1 (importance)" in result.stdout
    recipe = json.loads((out / "toolformer-compress.json").read_text())
    scores = recipe["info"]["block_influence"]
    assert recipe["method"] == "trim" and recipe["info"]["layers_kept"] == [scores.index(max(scores))]
    report = json.loads((out / "report.json").read_text())
    source, trimmed = report["variants"]
    assert trimmed["layers"] == 1 and source["layers"] == 2 and trimmed["params"] < source["params"]
    assert (out / "report.md").read_text().count("| trim 1 (importance) |") == 1
    again = runner.invoke(
        app, ["compress", str(tiny_dir), "--method", "bf16", "--out", str(out), "--no-measure"]
    )
    assert again.exit_code == 2 and "--overwrite" in again.stderr


@pytest.mark.slow
def test_measure_runs_in_its_own_process(tiny_lm, tiny_dir):
    config = MeasureConfig(
        gen_tokens=6, ppl_limit=3, ppl_max_tokens=32, math_limit=2, math_datasets="asdiv", shots=1
    )
    m = measure(str(tiny_dir), config, timeout=300)
    assert m.weights_bytes == (tiny_dir / "model.safetensors").stat().st_size
    assert m.layers == 2 and m.params == sum(p.numel() for p in tiny_lm[0].parameters())
    assert m.peak_rss_mb >= m.base_rss_mb > 0 and m.tokens_per_second > 0
    assert m.ppl is not None and math.isfinite(m.ppl) and m.ppl_tokens > 0
    assert m.math_n == 2 and 0.0 <= m.math_accuracy <= 1.0
    assert m.threads >= 1


@pytest.mark.slow
def test_compress_with_measurement_reports_both_models(tiny_dir, tmp_path):
    out = tmp_path / "bf16"
    result = runner.invoke(app, ["compress", str(tiny_dir), "--method", "bf16", "--out", str(out), "--ppl-limit",
                                 "2", "--ppl-max-tokens", "32", "--math-limit", "1", "--math-datasets", "asdiv",
                                 "--shots", "1", "--gen-tokens", "4", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text())
    source, half = data["variants"]
    assert half["weights_bytes"] < 0.6 * source["weights_bytes"]
    assert all(v["tokens_per_second"] > 0 and v["ppl"] > 0 for v in (source, half))
    assert (out / "plot.png").is_file()
