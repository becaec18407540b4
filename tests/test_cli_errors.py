"""Every command against bad input: exit 2, one line naming the culprit, no traceback, nothing that looks done.

The inputs: a missing file, an empty file, one malformed line among good ones, a wrong field, a directory, a binary
file and a nonexistent model. Where a command reads data and also loads a model, the data cases run with a model
that does not exist either: the line must name the data, which shows the input is checked before any model loads.
No real model is loaded (the model paths do not exist or are not models), so the module runs in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakes import write_jsonl
from toolformer.cli import app

runner = CliRunner()

CASES = ("missing", "empty", "malformed", "wrong_field", "directory", "binary", "no_model")
BINARY = bytes(range(256)) * 4  # not UTF-8, not JSON, not GGUF
NO_MODEL = "no-such-model-dir/model"  # path-shaped, so it fails at once without asking the Hub


@dataclass
class Command:
    """How one command is called: `argv(data, model, out)`, its good rows and the field the wrong rows lack."""

    argv: Callable[[str, str, str], list[str]]
    rows: list[dict]
    field: str
    suffix: str = ".jsonl"
    takes_model: bool = True  # False: no model to get wrong (index build)
    # The "nonexistent model" call when it is not argv(good data, NO_MODEL, out).
    no_model_argv: list[str] | None = None


TEXTS = [{"id": f"d{i}", "text": f"Of {400 + i} runners, {200 + i} finished the race."} for i in range(4)]
LABELLED = [
    {"id": f"r{i}", "text": f"a {'good' if i % 2 else 'bad'} film", "label": "ab"[i % 2]} for i in range(6)
]
PASSAGES = [
    {"id": str(i), "title": f"City {i}", "text": f"City {i} is the capital of Country {i}."} for i in range(3)
]
TRAINING = [{"id": f"t{i}", "text": f"4 + {i} is [Calculator(4 + {i}) → {4 + i}] {4 + i}."} for i in range(6)]
MATH = [{"id": f"m{i}", "question": f"What is {i} plus 2?", "answer": i + 2} for i in range(3)]

TRIM = ["--method", "trim", "--keep-layers", "1", "-q"]  # the compress method that takes --heal-data

COMMANDS: dict[str, Command] = {
    "annotate": Command(
        lambda d, m, o: ["annotate", d, "-o", o, "-m", m, "-t", "Calculator", "--proposer", "rule", "-q"],
        TEXTS,
        "text",
    ),
    "train": Command(
        lambda d, m, o: ["train", d, "--out", o, "--model", m, "--max-steps", "1", "-q"], TRAINING, "text"
    ),
    "eval": Command(
        lambda d, m, o: ["eval", m, "--suite", "math", "--data", d, "--out", o, "-q"], MATH, "answer"
    ),
    "adapt": Command(
        lambda d, m, o: ["adapt", d, "--task", "classification", "--out", o, "--model", m, "-q"],
        LABELLED,
        "text",
    ),
    "augment": Command(
        lambda d, m, o: ["augment", d, "--out", o + ".jsonl", "--methods", "backtranslate", "--mt-model", m],
        LABELLED,
        "text",
    ),
    "compress": Command(
        lambda d, m, o: ["compress", m, *TRIM, "--heal-data", d, "-o", o],
        TRAINING,
        "text",
    ),
    "index build": Command(lambda d, m, o: ["index", "build", d], PASSAGES, "text", takes_model=False),
    "ask": Command(
        lambda d, m, o: ["ask", "What is the capital of Country 1?", "--model", m, "--corpus", d],
        PASSAGES,
        "text",
    ),
    "tools call": Command(
        lambda d, m, o: ["tools", "call", "WikiSearch", "capital of Country 1", "--corpus", d],
        PASSAGES,
        "text",
        no_model_argv=["tools", "call", "MT", "hola", "--mt-model", NO_MODEL],  # the one tool with a model
    ),
}


def make_input(case: str, cmd: Command, tmp: Path) -> tuple[str, str]:
    """(data path, culprit text the error line must contain) for a data case."""
    data = tmp / f"data{cmd.suffix}"
    if case == "missing":
        return str(tmp / f"missing{cmd.suffix}"), f"missing{cmd.suffix}"
    if case == "empty":
        data.write_bytes(b"")
    elif case == "malformed":
        write_jsonl(data, [*cmd.rows[:1], '{"id": "broken", "text": ', *cmd.rows[1:]])
    elif case == "wrong_field":
        write_jsonl(data, [{("body" if k == cmd.field else k): v for k, v in r.items()} for r in cmd.rows])
        return str(data), cmd.field
    elif case == "directory":
        (tmp / "folder").mkdir()
        return str(tmp / "folder"), "folder"
    elif case == "binary":
        data.write_bytes(BINARY)
    return str(data), data.name


def invoke(argv: list[str]) -> tuple[int, str, str]:
    result = runner.invoke(app, argv)
    assert result.exception is None or isinstance(result.exception, SystemExit), (argv, result.exception)
    return result.exit_code, result.stdout, result.stderr


def assert_one_clean_line(code: int, stdout: str, stderr: str, culprit: str) -> str:
    assert "Traceback" not in stdout + stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, (code, stdout, stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and culprit in lines[0], (culprit, lines[0])
    return lines[0]


def assert_nothing_done(out: Path, home: Path | None = None) -> None:
    """No output at all: no folder, file, lock, manifest or report; with `home`, no search index of bad data."""
    for path in (out, out.with_name(out.name + ".jsonl"), out.with_name(out.name + ".jsonl.report.json")):
        assert not path.exists(), sorted(p.name for p in path.parent.iterdir())
    if home is not None:
        indexes = home / "indexes"
        assert not indexes.exists() or not list(indexes.glob("*/meta.json"))


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.mark.parametrize(
    ("name", "case"),
    [(n, c) for n, cmd in COMMANDS.items() for c in CASES if cmd.takes_model or c != "no_model"],
)
def test_bad_input_is_one_line_and_leaves_nothing(
    name: str, case: str, tmp_path: Path, toolformer_home: Path
):
    cmd = COMMANDS[name]
    out = tmp_path / "out"
    if case == "no_model":
        data = write_jsonl(tmp_path / f"data{cmd.suffix}", cmd.rows)
        argv, culprit = cmd.no_model_argv or cmd.argv(str(data), NO_MODEL, str(out)), NO_MODEL
    else:
        data, culprit = make_input(case, cmd, tmp_path)
        argv = cmd.argv(data, NO_MODEL, str(out))
    code, stdout, stderr = invoke(argv)
    assert_one_clean_line(code, stdout, stderr, culprit)
    # A good corpus may stay indexed (a cache, like a converted model) when only the model is bad.
    assert_nothing_done(out, None if case == "no_model" else toolformer_home)


@pytest.mark.parametrize("case", [c for c in CASES if c != "no_model"])  # inspect loads no model
def test_annotate_inspect_bad_folder_is_one_line(case: str, tmp_path: Path):
    """`annotate inspect DIR`: the input is an annotate folder, so "a directory" is turned round into a file."""
    folder = tmp_path / "ann"
    records = folder / "records-00000.jsonl"
    good = [{"id": "a", "split": "train", "status": "ok", "verdict": "no call kept", "kept_calls": 0}]
    doc_id, culprit = "a", "ann"
    if case != "missing":
        folder.mkdir()
    if case == "malformed":
        write_jsonl(records, [*good, '{"id": "b", "split": ', *good])
        culprit = "records-00000.jsonl"
    elif case == "wrong_field":  # a document id that is not there
        write_jsonl(records, good)
        doc_id, culprit = "zzz", "'zzz'"
    elif case == "directory":
        folder = tmp_path / "ann.jsonl"
        write_jsonl(folder, good)
        culprit = "ann.jsonl"
    elif case == "binary":
        records.write_bytes(BINARY)
        culprit = "records-00000.jsonl"
    before = sorted(tmp_path.rglob("*"))
    assert_one_clean_line(*invoke(["annotate", "inspect", str(folder), "--id", doc_id]), culprit=culprit)
    assert sorted(tmp_path.rglob("*")) == before


# --------------------------------------------------------------------------------------------- model files


@pytest.mark.parametrize("kind", ["missing", "empty", "binary", "directory", "bad config"])
@pytest.mark.parametrize("name", ["ask", "export", "compress"])
def test_a_bad_model_file_is_one_line(name: str, kind: str, tmp_path: Path, toolformer_home: Path):
    model = tmp_path / "model.gguf"
    if kind == "empty":
        model.write_bytes(b"")
    elif kind == "binary":
        model.write_bytes(BINARY)
    elif kind == "directory":
        model = tmp_path / "model"
        model.mkdir()
    elif kind == "bad config":  # a model folder whose config.json is cut off
        model = tmp_path / "model"
        model.mkdir()
        (model / "config.json").write_text('{"model_type": "llama",\n', encoding="utf-8")
    out = tmp_path / "out"
    argv = {
        "ask": ["ask", "hi", "--model", str(model)],
        "export": ["export", str(model), "--format", "hf", "--out", str(out)],
        "compress": ["compress", str(model), "--method", "bf16", "--out", str(out), "-q"],
    }[name]
    assert_one_clean_line(*invoke(argv), culprit=model.name)
    assert_nothing_done(out, toolformer_home)
    assert not (toolformer_home / "models").exists() or not any((toolformer_home / "models").iterdir())


@pytest.mark.parametrize("name", ["export", "compress"])
def test_a_gguf_that_starts_right_but_is_cut_off_is_one_line(
    name: str, tmp_path: Path, toolformer_home: Path
):
    model = tmp_path / "cut.gguf"
    # magic, version 3, 1 tensor, 5 metadata entries, then nothing that parses
    model.write_bytes(
        b"GGUF" + (3).to_bytes(4, "little") + (1).to_bytes(8, "little") + (5).to_bytes(8, "little") + b"x"
    )
    out = tmp_path / "out"
    argv = {
        "export": ["export", str(model), "--format", "hf", "--out", str(out)],
        "compress": ["compress", str(model), "--method", "bf16", "--out", str(out), "-q"],
    }[name]
    line = assert_one_clean_line(*invoke(argv), culprit="cut.gguf")
    assert "damaged" in line
    assert_nothing_done(out, toolformer_home)
    assert not any((toolformer_home / "models").glob("*/*"))  # no half-converted cache


# --------------------------------------------------------------------------------------------- specifics


def test_annotate_text_field_that_no_row_has_names_the_field_and_the_fields_there(tmp_path: Path):
    data = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "body": "x"}, {"id": "b", "body": "y"}])
    out = tmp_path / "out"
    argv = ["annotate", str(data), "--text-field", "content", "--out", str(out), "--model", NO_MODEL, "-q"]
    line = assert_one_clean_line(*invoke(argv), culprit="c.jsonl")
    assert "'content'" in line and "body" in line and "--text-field" in line
    assert not out.exists()


def test_annotate_non_utf8_line_is_named_by_file_and_line(tmp_path: Path):
    data = tmp_path / "c.jsonl"
    data.write_bytes(json.dumps(TEXTS[0]).encode() + b"\n" + '{"text": "caf\xe9"}\n'.encode("latin-1"))
    line = assert_one_clean_line(
        *invoke(["annotate", str(data), "--out", str(tmp_path / "o"), "--model", NO_MODEL, "-q"]),
        culprit="c.jsonl:2",
    )
    assert "UTF-8" in line


def test_augment_whose_every_copy_failed_writes_nothing(tmp_path: Path):
    data = write_jsonl(tmp_path / "d.jsonl", LABELLED)
    out = tmp_path / "aug.jsonl"
    argv = [
        "augment",
        str(data),
        "-o",
        str(out),
        "--methods",
        "backtranslate",
        "--mt-model",
        str(tmp_path / "nope"),
    ]
    line = assert_one_clean_line(*invoke(argv), culprit="backtranslate")
    assert "nope" in line and "failed" in line
    assert not out.exists() and not Path(str(out) + ".report.json").exists()


def test_an_existing_directory_is_not_called_missing(tmp_path: Path):
    folder = tmp_path / "folder"
    folder.mkdir()
    for argv in (
        ["adapt", str(folder), "--task", "classification", "--out", str(tmp_path / "o"), "--model", NO_MODEL],
        ["augment", str(folder), "--out", str(tmp_path / "o.jsonl")],
        ["eval", NO_MODEL, "--suite", "math", "--data", str(folder), "--out", str(tmp_path / "o")],
        ["index", "build", str(folder)],
    ):
        line = assert_one_clean_line(*invoke(argv), culprit="folder")
        assert "does not exist" not in line and "no such file" not in line, (argv, line)


def test_a_mistyped_tool_name_gets_a_suggestion():
    line = assert_one_clean_line(*invoke(["tools", "call", "calculator", "1 + 1"]), culprit="'calculator'")
    assert "did you mean 'Calculator'?" in line


def test_a_failing_tool_exits_2_with_one_line():
    line = assert_one_clean_line(
        *invoke(["tools", "call", "Calculator", "1 / 0"]), culprit="Calculator(1 / 0)"
    )
    assert "division by zero" in line


def test_install_hints_keep_their_extras_in_help():
    for argv, extra in (
        (["annotate", "run", "--help"], "'toolformer-kit[scale]'"),
        (["annotate", "run", "--help"], "'toolformer-kit[gpu]'"),
        (["annotate", "--help"], "`toolformer annotate FILE [options]`"),
    ):
        result = runner.invoke(app, argv, env={"COLUMNS": "400"})
        assert result.exit_code == 0
        assert extra in result.stdout, argv


def test_an_install_hint_in_an_error_keeps_its_extra(capsys: pytest.CaptureFixture[str]):
    import typer

    from toolformer.cli import clean_errors
    from toolformer.errors import MissingExtraError

    @clean_errors
    def needs_peft() -> None:
        raise MissingExtraError("peft is not installed: pip install 'toolformer-kit[train]'")

    with pytest.raises(typer.Exit) as exit_info:
        needs_peft()
    assert exit_info.value.exit_code == 2
    assert capsys.readouterr().err == "error: peft is not installed: pip install 'toolformer-kit[train]'\n"


def test_the_error_line_is_not_wrapped_when_stderr_is_a_pipe(tmp_path: Path):
    """The real console script, stderr piped: one line however long, and the markup-like extra kept."""
    long_dir = tmp_path / ("a-rather-long-folder-name-" * 4)
    long_dir.mkdir()
    env = dict(os.environ, COLUMNS="80", HF_HUB_OFFLINE="1", TOOLFORMER_HOME=str(tmp_path / "home"))
    proc = subprocess.run(
        [sys.executable, "-m", "toolformer.cli", "index", "build", str(long_dir / "missing[train].jsonl")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and len(lines[0]) > 80, proc.stderr
    assert "missing[train].jsonl" in lines[0] and "Traceback" not in proc.stderr
