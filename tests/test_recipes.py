"""The user recipes of `runs/` (support bot, own tool): their data, their scripts and the eval option they need."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolformer.cli import app
from toolformer.evals import suites
from toolformer.evals.config import EvalConfig
from toolformer.evals.evaluate import load_datasets
from toolformer.evals.metrics import normalize_answer

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = REPO / "runs" / "support_questions.jsonl"
SCRIPTS = [REPO / "runs" / "support_bot.sh", REPO / "runs" / "own_tool.sh"]


def test_support_questions_load_as_a_qa_file_answerable_from_the_docs():
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 30 and len({r["id"] for r in rows}) == 30
    loaded = suites.load_dataset(suites.data_spec("qa", QUESTIONS))
    assert len(loaded.examples) == 30 and loaded.spec.kind == "qa"
    docs = " ".join(
        p.read_text(encoding="utf-8") for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    )
    haystack = f" {normalize_answer(docs)} "
    for row in rows:  # the corpus holds a gold answer of every question (as the lenient metric reads it)
        assert any(f" {normalize_answer(g)} " in haystack for g in row["answers"]), row


@pytest.mark.parametrize(
    ("blocked", "expected"),
    [(None, ("QA",)), ("none", ()), ("None", ()), ("", ()), ("WikiSearch, QA", ("WikiSearch", "QA"))],
)
def test_blocked_replaces_the_suites_blocked_tools(blocked, expected):
    config = EvalConfig(suite="qa", data=str(QUESTIONS), blocked=blocked, limit=1)
    (loaded,) = load_datasets(config)
    assert loaded.spec.blocked == expected


def test_blocked_applies_to_shipped_suites_too():
    (lama, *_) = load_datasets(EvalConfig(suite="facts", limit=1))
    assert lama.spec.blocked == ("WikiSearch",)
    assert all(
        d.spec.blocked == () for d in load_datasets(EvalConfig(suite="facts", limit=1, blocked="none"))
    )


def test_eval_help_lists_blocked():
    result = CliRunner().invoke(app, ["eval", "--help"])
    assert result.exit_code == 0 and "--blocked" in result.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_recipe_scripts_parse_and_use_existing_options(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text(encoding="utf-8").replace("\\\n", " ")
    runner = CliRunner()
    commands = []
    for line in text.splitlines():
        m = re.match(r'\s*"\$TF" (index build|annotate run|train|eval)\b(.*)', line)
        if not m:
            continue
        commands.append(m.group(1))
        helptext = runner.invoke(app, [*m.group(1).split(), "--help"], terminal_width=200).stdout
        for option in re.findall(r"(--[a-z][a-z0-9-]+)", m.group(2)):
            assert option in helptext, (script.name, m.group(1), option)
    assert len(commands) >= 2 and {"index build", "eval"} & set(commands)
