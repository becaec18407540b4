"""The bfcl suite: BFCL's AST checker on hand-written cases, the data loader, the tolerant reader of calls in text,
and the whole suite through the server's in-process chat path on a scripted fake model."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from toolformer.errors import ConfigError, DataError
from toolformer.evals import EvalConfig, write_outputs
from toolformer.evals import bfcl as suite
from toolformer.evals.bfcl_check import check, standardize_string
from toolformer.evals.bfcl_data import CATEGORIES, load_cases, openai_name, openai_tools
from toolformer.evals.evaluate import evaluate, load_datasets, total_steps
from toolformer.evals.results import EvalResults
from toolformer.runtime.grammar import bounded, call_grammar

AREA = {
    "name": "geometry.area",
    "description": "Area of a triangle.",
    "parameters": {
        "type": "dict",
        "properties": {
            "base": {"type": "integer", "description": "Base."},
            "height": {"type": "float", "description": "Height."},
            "unit": {"type": "string", "description": "Unit."},
            "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags."},
        },
        "required": ["base", "height"],
    },
}
AREA_ANSWER = {
    "geometry.area": {"base": [10], "height": [5.0], "unit": ["units", ""], "tags": ["", ["Red Box"]]}
}
WEATHER = {
    "name": "weather.get",
    "description": "Weather in a city.",
    "parameters": {"type": "dict", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def simple(args: dict[str, Any], name: str = "geometry_area") -> Any:
    return check("simple_python", [AREA], [{name: args}], [AREA_ANSWER])


# ---------------------------------------------------------------------------------------------------------------
# The checker: BFCL's documented rules


def test_a_right_call_passes_with_the_int_to_float_allowance_and_optional_parameters_left_out() -> None:
    assert simple({"base": 10, "height": 5}).valid  # height is a float: 5 stands for 5.0
    assert simple({"base": 10, "height": 5.0, "unit": "Units"}).valid  # strings compare case-insensitively


def test_the_function_name_must_match_in_its_openai_form() -> None:
    verdict = simple({"base": 10, "height": 5}, name="area")
    assert not verdict.valid and verdict.error_type == "simple_function_checker:wrong_func_name"
    assert not simple({"base": 10, "height": 5}, name="geometry.area").valid  # we offer it as geometry_area


def test_a_missing_required_parameter_fails() -> None:
    assert simple({"base": 10}).error_type == "simple_function_checker:missing_required"


def test_a_parameter_of_the_wrong_type_fails() -> None:
    assert simple({"base": "10", "height": 5}).error_type == "type_error:simple"
    assert simple({"base": 10.0, "height": 5}).error_type == "type_error:simple"  # no float for an integer
    answer = {"geometry.area": {"base": [10], "height": [5.0], "tags": [["Red Box"]]}}
    nested = check(
        "simple_python", [AREA], [{"geometry_area": {"base": 10, "height": 5, "tags": [3]}}], [answer]
    )
    assert nested.error_type == "type_error:nested"  # array items are checked one level deep


def test_an_unexpected_parameter_fails() -> None:
    verdict = simple({"base": 10, "height": 5, "colour": "red"})
    assert not verdict.valid and verdict.error_type == "simple_function_checker:unexpected_param"


def test_a_value_outside_the_possible_answers_fails() -> None:
    assert simple({"base": 11, "height": 5}).error_type == "value_error:others"
    assert simple({"base": 10, "height": 5, "unit": "cm"}).error_type == "value_error:string"
    assert simple(
        {"base": 10, "height": 5, "tags": ["red-box"]}
    ).valid  # lists compare item by item, normalised
    assert simple({"base": 10, "height": 5, "tags": ["blue"]}).error_type == "value_error:list/tuple"


def test_a_parameter_without_an_empty_option_must_be_given() -> None:
    answer = {"geometry.area": {"base": [10], "height": [5.0], "unit": ["units"]}}
    verdict = check("simple_python", [AREA], [{"geometry_area": {"base": 10, "height": 5}}], [answer])
    assert verdict.error_type == "simple_function_checker:missing_optional"


def test_simple_wants_exactly_one_call() -> None:
    call = {"geometry_area": {"base": 10, "height": 5}}
    assert check("simple_python", [AREA], [call, call], [AREA_ANSWER]).error_type.endswith("wrong_count")
    assert not check("simple_python", [AREA], [], [AREA_ANSWER]).valid


def test_string_normalisation_drops_spaces_and_punctuation() -> None:
    assert standardize_string("April 1, 2024") == standardize_string("april 1 2024") == "april12024"
    assert standardize_string("New_York-City") == "newyorkcity"


def test_multiple_picks_the_expected_function_among_those_offered() -> None:
    answer = [{"weather.get": {"city": ["Oslo"]}}]
    assert check("multiple", [AREA, WEATHER], [{"weather_get": {"city": "oslo"}}], answer).valid
    wrong = check("multiple", [AREA, WEATHER], [{"geometry_area": {"base": 1, "height": 1}}], answer)
    assert wrong.error_type == "simple_function_checker:wrong_func_name"


def test_parallel_calls_match_in_any_order_but_each_call_only_once() -> None:
    answers = [{"weather.get": {"city": ["Oslo"]}}, {"weather.get": {"city": ["Paris"]}}]
    paris, oslo = {"weather_get": {"city": "Paris"}}, {"weather_get": {"city": "Oslo"}}
    assert check("parallel", [WEATHER], [paris, oslo], answers).valid
    assert check("parallel", [WEATHER], [oslo, paris], answers).valid
    twice = check("parallel", [WEATHER], [oslo, oslo], answers)
    assert twice.error_type == "parallel_function_checker_no_order:cannot_find_match"
    assert check("parallel", [WEATHER], [oslo], answers).error_type.endswith("wrong_count")


def test_irrelevance_is_right_only_without_a_call() -> None:
    assert check("irrelevance", [WEATHER], [], []).valid
    made = check("irrelevance", [WEATHER], [{"weather_get": {"city": "Oslo"}}], [])
    assert not made.valid and made.error_type == "irrelevance_error:decoder_success"


def test_each_shipped_possible_answer_passes_its_own_check() -> None:
    def first(options: list[Any]) -> Any:
        value = next(o for o in options if o != "")
        if isinstance(value, dict):
            return {k: first(o) for k, o in value.items() if any(x != "" for x in o)}
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            return [first([v]) for v in value]  # a list of dicts: each dict's keys hold options
        return value

    # parallel_multiple holds two cases that BFCL's greedy order-free matching fails on its own answer
    for dataset in ("bfcl_simple", "bfcl_multiple", "bfcl_parallel"):
        for case in load_cases(dataset):
            output = [
                {openai_name(name): {p: first(o) for p, o in params.items() if any(x != "" for x in o)}}
                for answer in case.ground_truth
                for name, params in answer.items()
            ]
            verdict = check(case.category, case.functions, output, case.ground_truth)
            assert verdict.valid, (case.id, verdict.errors)


# ---------------------------------------------------------------------------------------------------------------
# Data


def _write_bfcl(folder: Path, gz: bool = False) -> Path:
    """A BFCL data folder with two simple cases and one irrelevance case."""
    rows = {
        "BFCL_v4_simple_python.json": [
            {
                "id": "simple_python_0",
                "question": [[{"role": "user", "content": "Area for base 10, height 5?"}]],
                "function": [AREA],
            },
            {
                "id": "simple_python_1",
                "question": [[{"role": "user", "content": "Weather in Oslo?"}]],
                "function": [WEATHER],
            },
        ],
        "possible_answer/BFCL_v4_simple_python.json": [
            {"id": "simple_python_0", "ground_truth": [AREA_ANSWER]},
            {"id": "simple_python_1", "ground_truth": [{"weather.get": {"city": ["Oslo"]}}]},
        ],
        "BFCL_v4_irrelevance.json": [
            {
                "id": "irrelevance_0",
                "question": [[{"role": "user", "content": "Tell me a joke."}]],
                "function": [WEATHER],
            },
        ],
    }
    for name, records in rows.items():
        path = folder / (name + (".gz" if gz else ""))
        path.parent.mkdir(parents=True, exist_ok=True)
        data = "\n".join(json.dumps(r) for r in records).encode()
        path.write_bytes(gzip.compress(data) if gz else data)
    return folder


def test_cases_load_from_a_folder_a_gzipped_folder_and_a_wheel(tmp_path: Path) -> None:
    plain = _write_bfcl(tmp_path / "plain")
    packed = _write_bfcl(tmp_path / "gz", gz=True)
    wheel = tmp_path / "bfcl_eval-1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path in plain.rglob("*.json"):
            zf.write(path, f"bfcl_eval/data/{path.relative_to(plain).as_posix()}")
    for source in (plain, packed, wheel):
        cases = load_cases("bfcl_simple", source)
        assert [c.id for c in cases] == ["simple_python_0", "simple_python_1"]
        assert cases[1].question == "Weather in Oslo?" and cases[1].ground_truth[0]["weather.get"][
            "city"
        ] == ["Oslo"]
    assert [c.id for c in load_cases("bfcl_simple", plain, limit=1)] == ["simple_python_0"]
    assert load_cases("bfcl_irrelevance", wheel)[0].ground_truth == []
    with pytest.raises(DataError, match="BFCL_v4_multiple"):
        load_cases("bfcl_multiple", plain)


def test_the_shipped_data_has_every_dataset_of_the_suite() -> None:
    sizes = {name: len(load_cases(name)) for name in CATEGORIES}
    assert sizes == {
        "bfcl_simple": 400,
        "bfcl_multiple": 200,
        "bfcl_parallel": 200,
        "bfcl_parallel_multiple": 200,
        "bfcl_irrelevance": 240,
    }


def test_functions_become_openai_tools_as_bfcl_sends_them() -> None:
    [tool] = openai_tools([AREA])
    fn = tool["function"]
    assert fn["name"] == "geometry_area" and fn["parameters"]["type"] == "object"
    props = fn["parameters"]["properties"]
    assert props["height"]["type"] == "number" and props["tags"]["items"]["type"] == "string"
    assert AREA["parameters"]["type"] == "dict"  # the case's own schema is left as it was


def test_call_grammars_hold_schemas_with_a_property_named_type_or_undescribed_required_keys() -> None:
    schema = {
        "type": "object",
        "properties": {"type": {"type": "string"}, "who": {"type": "object", "required": ["adults"]}},
    }
    out = bounded(schema)
    assert out["properties"]["type"] == {"type": "string", "maxLength": 128}
    assert out["properties"]["who"]["properties"] == {"adults": {}}  # else no object could satisfy it
    call_grammar([{"type": "function", "function": {"name": "f", "parameters": schema}}], "auto")


# ---------------------------------------------------------------------------------------------------------------
# Tolerant reading


def test_content_calls_finds_json_calls_to_offered_functions_only() -> None:
    text = (
        'Sure! {"name": "weather.get", "arguments": {"city": "Oslo"}} and '
        "{'function': 'weather_get', 'city': 'Paris'} but not {\"name\": \"other\", \"arguments\": {}} "
        'nor {"city": "Rome"}.'
    )
    calls = suite.content_calls(text, [WEATHER])
    assert [(c.name, c.arguments) for c in calls] == [
        ("weather_get", {"city": "Oslo"}),
        ("weather_get", {"city": "Paris"}),
    ]
    assert suite.content_calls("no calls {here", [WEATHER]) == []


# ---------------------------------------------------------------------------------------------------------------
# The suite end to end, through the server's in-process chat path


def _tool_call(name: str, args: dict[str, Any]) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': args})}\n</tool_call>"


def _choose(prompt: str) -> str:
    """The scripted model: a proper call for the area, a call written as plain text for the weather, no call for the
    joke."""
    last = prompt.rsplit("<|im_start|>user\n", 1)[-1]
    if "Area for base" in last:
        return _tool_call("geometry_area", {"base": 10, "height": 5})
    if "Weather in Oslo" in last:
        return 'I would call weather_get like this: {"tool": "weather_get", "args": {"city": "Oslo"}}'
    return "Why did the chicken cross the road?"


@pytest.fixture()
def chat(smol_tokenizer: Any) -> Any:
    from serve_helpers import scripted_backend
    from toolformer.serve.config import ServeConfig
    from toolformer.serve.inprocess import InProcessChat

    with InProcessChat(scripted_backend(smol_tokenizer, _choose, tools=""), ServeConfig(examples="off")) as c:
        yield c


def test_the_suite_scores_strict_and_tolerant_readings_side_by_side(chat: Any, tmp_path: Path) -> None:
    data = _write_bfcl(tmp_path / "data")
    config = EvalConfig(
        model="fake-model",
        suite="bfcl",
        datasets="bfcl_simple,bfcl_irrelevance",
        data=str(data),
        max_new_tokens=64,
        out=str(tmp_path / "out"),
    )
    loaded = load_datasets(config)
    assert total_steps(config, loaded) == 3
    seen: list[str] = []
    results = evaluate(config, datasets=loaded, chats={"model": chat}, progress=lambda d, n: seen.append(d))
    assert seen == ["tools · bfcl_simple"] * 2 + ["tools · bfcl_irrelevance"]
    strict, tolerant = results.run("tools"), results.run("tools-tolerant")
    assert (strict.by_dataset["bfcl_simple"].correct, tolerant.by_dataset["bfcl_simple"].correct) == (1, 2)
    assert strict.by_dataset["bfcl_simple"].with_call == 1
    assert (
        strict.by_dataset["bfcl_irrelevance"].accuracy
        == tolerant.by_dataset["bfcl_irrelevance"].accuracy
        == 1
    )
    weather = next(p for p in results.predictions if p.id == "simple_python_1" and p.mode == "tools")
    assert weather.correct is False and weather.extracted.startswith("simple_function_checker:wrong_count")
    paths = write_outputs(results, config.out)
    saved = json.loads(paths["results"].read_text())
    assert [r["mode"] for r in saved["runs"]] == ["tools", "tools-tolerant"]
    assert (
        saved["datasets"][0]["kind"] == "function"
        and saved["runs"][1]["by_dataset"]["bfcl_simple"]["accuracy"] == 1
    )
    assert EvalResults.from_dict(saved).run("tools").by_dataset["bfcl_simple"].correct == 1
    assert "tools (strict)" in paths["report"].read_text()


def test_limit_applies_per_dataset_and_a_missing_endpoint_is_named(tmp_path: Path) -> None:
    config = EvalConfig(model="m", suite="bfcl", limit=2, datasets="bfcl_parallel,bfcl_irrelevance")
    loaded = load_datasets(config)
    assert [len(ds.examples) for ds in loaded] == [2, 2]
    with pytest.raises(ConfigError, match="chat endpoint"):
        evaluate(config, datasets=loaded)


def test_a_refused_request_is_a_wrong_answer_not_a_crash(chat: Any) -> None:
    case = load_cases("bfcl_simple", limit=1)[0]
    bad = suite.BfclCase(
        case.id, case.dataset, case.category, [], case.functions, case.ground_truth
    )  # no messages
    strict, tolerant = suite._ask(chat, bad, 16)
    assert (
        strict.correct is False
        and strict.finish_reason == "error"
        and strict.extracted.startswith("request_error")
    )


def test_all_leaves_bfcl_out() -> None:
    from toolformer.evals.suites import suite_specs

    assert not any(s.suite == "bfcl" for s in suite_specs("all"))


def test_the_cli_runs_the_suite_on_a_model_folder(tiny_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from toolformer.cli import app

    out = tmp_path / "out"
    args = ["eval", str(tiny_dir), "--suite", "bfcl", "--datasets", "bfcl_simple,bfcl_irrelevance"]
    args += ["--limit", "1", "--max-new-tokens", "4", "--baseline", str(tiny_dir), "--out", str(out), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    modes = ["tools", "tools-tolerant", "baseline", "baseline-tolerant"]
    assert [r["mode"] for r in saved["runs"]] == modes
    assert all(r["by_dataset"]["bfcl_simple"]["n"] == 1 for r in saved["runs"])
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 8 and all(json.loads(line)["finish_reason"] for line in lines)
