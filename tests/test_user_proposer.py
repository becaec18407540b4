"""The user's own proposer (`--proposer mypkg.mod:propose`) and the worked example `examples/unit_converter.py`."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakes import write_jsonl
from toolformer.calls import Call, find_calls, strip_calls
from toolformer.cli import app
from toolformer.datagen.annotate import AnnotateConfig, annotate
from toolformer.datagen.proposers.user import FunctionProposer, load_proposer
from toolformer.datagen.records import Candidate, Document
from toolformer.datagen.sample import default_proposers
from toolformer.errors import ConfigError
from toolformer.tools import load_tools

REPO = Path(__file__).resolve().parents[1]
SPEC = "examples.unit_converter:propose"
TOOL_SPEC = "examples.unit_converter:convert"
runner = CliRunner()


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The repo root (for `examples`) and a folder with the user's test module `mine` on sys.path."""
    monkeypatch.syspath_prepend(str(REPO))
    user = tmp_path / "user"
    user.mkdir()
    (user / "mine.py").write_text(
        textwrap.dedent(
            '''
            import json as a_module

            from toolformer.datagen.records import Candidate

            def before_numbers(text):
                """Echo("n") before every number."""
                import re
                return [(m.start(), "Echo", '"' + m.group() + '"') for m in re.finditer(r"\\d+", text)]

            def two_params(text, tools):
                return []

            def explodes(text):
                raise ValueError("no " + text[:3])

            def bad_items(text):
                return [(len(text) + 5, "Echo", "x")]

            class ByClass:
                def propose(self, doc, tool):
                    return [Candidate(doc.id, tool, "x", 0, "mine")] if tool == "Echo" else []

            INSTANCE = ByClass()
            NOT_A_PROPOSER = 42
            '''
        )
    )
    monkeypatch.syspath_prepend(str(user))
    sys.modules.pop("mine", None)
    return user


# --------------------------------------------------------------------------------------------- the example tool


def test_convert_tool_converts_and_fails_cleanly():
    from examples.unit_converter import convert

    assert convert.name == "Convert" and convert.param_names == ["query"]
    assert convert.run(Call("Convert", '"5 km to miles"')).text == "3.11 miles"
    assert convert.run(Call("Convert", '"20 °C to °F"')).text == "68 °F"
    assert convert.run(Call("Convert", '"-40 °F to °C"')).text == "-40 °C"
    assert convert.run(Call("Convert", '"1,000 m to km"')).text == "1 kilometers"
    wrong_dimension = convert.run(Call("Convert", '"3 kg to miles"'))
    assert not wrong_dimension.ok and "mass" in wrong_dimension.text and "length" in wrong_dimension.text
    garbled = convert.run(Call("Convert", '"five km"'))
    assert not garbled.ok and garbled.text.startswith("error:")


def test_convert_loads_as_a_user_tool_by_module_function():
    registry = load_tools(TOOL_SPEC)
    assert list(registry) == ["Convert"]
    assert registry.run(Call("Convert", '"2 pounds to kg"')).text == "0.91 kilograms"


def test_example_proposer_puts_the_call_before_the_converted_quantity():
    from examples.unit_converter import propose

    text = "The trail is 5 km long, about 3.11 miles, and climbs 300 m."
    assert propose(text) == [(text.index("3.11"), "Convert", '"5 km to miles"')]
    answer = "Question: How many pounds is 10 kg?\nAnswer: 22.05 pounds."
    assert propose(answer) == [(answer.index("22.05"), "Convert", '"10 kg to pounds"')]
    # Same unit twice, other dimensions, a quantity with nothing before it, or one too far away: no call.
    assert propose("It weighs 5 kg, and the box 7 kg.") == []
    assert propose("A 5 km road and a 3 kg parcel.") == []
    assert propose("Only 12 miles.") == []
    assert propose("5 km " + "x" * 250 + " 3.11 miles") == []
    assert propose("Five o'clock in the morning, 5 in total.") == []  # "in" is no unit


def test_example_corpus_and_questions_are_seeded_and_disjoint():
    from examples.unit_converter import convert, corpus, propose, questions

    rows = corpus(200)
    assert len(rows) == 200 and rows == corpus(200) and rows != corpus(200, seed=1)
    assert len({r["id"] for r in rows}) == 200
    for row in rows:
        calls = propose(row["text"])
        assert calls, row
        for position, _tool, args in calls:
            result = convert.run(Call("Convert", args)).text
            assert row["text"][position:].startswith(result.split()[0]), (row, args, result)
    asked = questions(20)
    assert len(asked) == 20 and asked == questions(20)
    seen = {json.loads(args) for r in rows for _, _, args in propose(r["text"])}
    for q in asked:
        number, _, rest = q["conversion"].partition(" ")
        source, _, target = rest.partition(" to ")
        assert q["conversion"] not in seen and number in q["question"] and source in q["question"], q
        assert target in q["question"], q
        answer = convert.run(Call("Convert", json.dumps(q["conversion"], ensure_ascii=False))).text
        assert float(answer.split()[0]) == q["answer"], q


# --------------------------------------------------------------------------------------------- resolving specs


def test_a_function_spec_becomes_a_proposer_called_once_per_document():
    proposer = load_proposer("mine:before_numbers")
    assert isinstance(proposer, FunctionProposer)
    calls = []
    proposer.fn = lambda text, fn=proposer.fn: calls.append(text) or fn(text)
    doc = Document("d1", "a 12 b 345")
    echo = proposer.propose(doc, "Echo")
    assert [(c.position, c.args, c.source, c.doc_id) for c in echo] == [
        (2, '"12"', "user", "d1"),
        (7, '"345"', "user", "d1"),
    ]
    assert proposer.propose(doc, "Calculator") == []  # other tools' calls are not this tool's
    assert calls == ["a 12 b 345"]
    proposer.propose(Document("d2", "7"), "Echo")
    assert len(calls) == 2


def test_a_class_or_an_object_spec_is_used_as_a_proposer():
    for spec in ("mine:ByClass", "mine:INSTANCE"):
        found = load_proposer(spec)
        assert found.propose(Document("d", "t"), "Echo")[0].args == "x"


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("nope_missing_module:propose", "cannot import 'nope_missing_module'"),
        ("mine:absent", "mine has no attribute 'absent'"),
        ("mine:", "must be module:attribute"),
        ("mine:two_params", "takes 2 positional parameters"),
        ("mine:NOT_A_PROPOSER", "is a int, not a function"),
        ("mine:a_module", "is a module; name its function"),
    ],
)
def test_a_bad_spec_is_one_config_error_naming_the_option(spec, says):
    with pytest.raises(ConfigError) as info:
        AnnotateConfig(input="x", proposer=f"rule,{spec}").check()
    message = str(info.value)
    assert message.startswith(f"--proposer {spec!r}") and says in message and "\n" not in message


def test_config_keeps_the_spec_as_written_and_builds_it():
    config = AnnotateConfig(input="x", proposer=f"Rule, {SPEC}")
    config.check()
    assert config.proposer_names() == ["rule", SPEC]
    built = default_proposers(config.proposer_names())
    assert type(built[0]).__name__ == "RuleProposer" and isinstance(built[1], FunctionProposer)
    with pytest.raises(ConfigError, match="'magic' is not one of rule, data, lm or module:function"):
        AnnotateConfig(input="x", proposer="rule,magic").check()


def test_cli_bad_proposer_exits_2_in_one_line_before_loading_a_model(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "5 km, 3.11 miles"}])
    result = runner.invoke(
        app, ["annotate", "run", str(path), "--out", str(tmp_path / "out"), "--proposer", "nope_mod:propose",
              "--model", str(tmp_path / "no-such-model")],
    )  # fmt: skip
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert message.startswith("error: --proposer 'nope_mod:propose': cannot import 'nope_mod'"), message
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_cli_help_names_the_extension_point():
    result = runner.invoke(app, ["annotate", "run", "--help"])
    assert "module:function" in " ".join(result.stdout.split())


# --------------------------------------------------------------------------------------------- annotate runs


def number_filter(model, tokenizer, docs, config):
    """A stand-in for the LM: a call helps exactly when the text goes on with its result's first word."""
    for text, cands in docs:
        for i, c in enumerate(cands):
            c.token_index = i
            c.loss_empty = c.loss_noresult = c.loss_minus = 2.0
            first = (c.result or "\0").split()[0] if c.ok else "\0"
            c.loss_plus = 0.2 if text[c.position :].startswith(first) else 2.5
            c.kept = c.ok is not False and c.gain >= config.tau_for(c.tool)
            c.reason = "kept" if c.kept else ("tool error" if c.ok is False else "below tau_f")
    return [c for _, c in docs]


def rows_of(out: Path, kind: str) -> list[dict]:
    return [
        json.loads(line) for p in sorted(out.glob(f"{kind}-*.jsonl")) for line in p.read_text().splitlines()
    ]


def test_annotate_resolves_the_spec_uses_it_and_records_it(tmp_path):
    from examples.unit_converter import corpus

    path = write_jsonl(tmp_path / "convert.jsonl", corpus(12))
    out = tmp_path / "out"
    config = AnnotateConfig(input=str(path), out=str(out), tools=TOOL_SPEC, proposer=SPEC, shard_size=8)
    report = annotate(config, model=object(), tokenizer=object(), filter_fn=number_filter)
    assert report.documents == 12 and report.per_tool["Convert"].kept == 12
    rows = rows_of(out, "shard")
    assert len(rows) == 12
    for row in rows:
        (span,) = find_calls(row["text"])
        assert span.call.name == "Convert" and strip_calls(row["text"]) == row["source_text"]
        assert row["text"][span.end :].lstrip().startswith(span.call.result.split()[0])
    sources = {c["source"] for r in rows_of(out, "records") for c in r["candidates"]}
    assert sources == {"user"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["proposer"] == SPEC and [t["name"] for t in manifest["tools"]] == ["Convert"]
    # A rerun with another proposer is refused like any other changed option; the same one resumes.
    other = AnnotateConfig(**{**config.__dict__, "proposer": f"rule,{SPEC}"})
    with pytest.raises(ConfigError, match=r"proposer="):
        annotate(other, model=object(), tokenizer=object(), filter_fn=number_filter)
    again = annotate(config, model=object(), tokenizer=object(), filter_fn=number_filter)
    assert again.chunks_done_before == 2 and again.chunks_written == 0


def test_a_failing_user_proposer_makes_bad_rows_and_the_run_goes_on(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "abc 1"}, {"id": "b", "text": "def 2"}])
    for spec, says in (
        ("mine:explodes", "failed on document"),
        ("mine:bad_items", "expected (position, tool"),
    ):
        out = tmp_path / spec.replace(":", "-")
        config = AnnotateConfig(input=str(path), out=str(out), tools="Calculator", proposer=spec)
        report = annotate(
            config,
            model=object(),
            tokenizer=object(),
            filter_fn=number_filter,
            applies=lambda tool, text: True,
        )
        assert report.bad == 2
        records = rows_of(out, "records")
        assert all(r["status"] == "bad" and spec in r["verdict"] and says in r["verdict"] for r in records)


def test_annotate_scores_user_calls_on_the_tiny_model(tmp_path, tiny_lm):
    from examples.unit_converter import corpus

    model, tok = tiny_lm
    path = write_jsonl(tmp_path / "convert.jsonl", corpus(4))
    config = AnnotateConfig(
        input=str(path), out=str(tmp_path / "out"), tools=TOOL_SPEC, proposer=SPEC, tau_f=-100.0,
        tau_f_tool={"Convert": -100.0},
    )  # fmt: skip
    report = annotate(config, model=model, tokenizer=tok)
    assert report.per_tool["Convert"].kept == 4
    scored = [c for r in rows_of(tmp_path / "out", "records") for c in r["candidates"]]
    assert all(c["loss_plus"] is not None and c["ok"] for c in scored)


def test_candidate_is_unchanged_by_the_pipeline_between_documents():
    # The pipeline sets doc_id and the filter's fields on the candidates it gets: each call hands out new ones.
    proposer = load_proposer("mine:before_numbers")
    doc = Document("d", "1 2")
    first = proposer.propose(doc, "Echo")
    first[0].kept = True
    assert all(isinstance(c, Candidate) and c.kept is None for c in proposer.propose(doc, "Echo"))
