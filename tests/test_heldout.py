"""The GSM8K dev slice: one rule, the shipped eval file follows it, and no training builder uses its problems."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from toolformer.evals.suites import gold_expression, load_dataset, suite_specs
from toolformer.heldout import GSM8K_DEV_MODULUS, is_gsm8k_dev


def _shipped() -> list[dict]:
    path = Path(str(resources.files("toolformer").joinpath("data", "evals", "gsm8k.jsonl")))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_rule_holds_out_about_one_problem_in_twenty() -> None:
    ids = [f"gsm8k-train-{i:05d}" for i in range(7473)]
    held = [i for i in ids if is_gsm8k_dev(i)]
    assert abs(len(held) / len(ids) - 1 / GSM8K_DEV_MODULUS) < 0.01
    assert is_gsm8k_dev("gsm8k-train-00014") and not is_gsm8k_dev("gsm8k-train-00000")


def test_the_shipped_gsm8k_file_is_the_dev_slice_in_file_order() -> None:
    rows = _shipped()
    assert len(rows) == 300 and all(is_gsm8k_dev(r["id"]) for r in rows)
    numbers = [int(r["id"].rsplit("-", 1)[1]) for r in rows]
    assert numbers == sorted(numbers)
    # every record with an expression computes its gold answer (the Calculator ceiling's input)
    from toolformer.calls import Call
    from toolformer.tools import load_tools

    calc = load_tools("Calculator")["Calculator"]
    with_expr = [r for r in rows if r.get("expression")]
    assert len(with_expr) > 250
    for r in with_expr[:40]:
        assert float(calc.run(Call("Calculator", gold_expression(r))).text) == float(r["answer"])


def test_the_math_suite_reads_gsm8k() -> None:
    spec = next(s for s in suite_specs("math") if s.name == "gsm8k")
    data = load_dataset(spec, limit=5)
    assert len(data.examples) == 5 and data.examples[0].golds == [float(_shipped()[0]["answer"])]
