"""The annotation pipeline: execute, merge, split, resumable sharded runs, the CLI, and a real kill -9."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakes import write_jsonl
from shared_data import shared_data
from toolformer.calls import strip_calls
from toolformer.cli import app
from toolformer.datagen import annotate as ann
from toolformer.datagen.annotate import AnnotateConfig, annotate
from toolformer.datagen.execute import ToolCache, execute
from toolformer.datagen.merge import (
    NOT_BEST,
    best_per_position,
    merge,
    merge_spans,
    shard_of,
    split_by_document,
    split_of,
)
from toolformer.datagen.records import Candidate, Document
from toolformer.errors import ConfigError
from toolformer.tools import ToolRegistry, load_tools, tool

runner = CliRunner()


# --------------------------------------------------------------------------------------------- fakes


class SumProposer:
    """Proposes `Calculator(a + b)` before the last number of a text that has three numbers or more."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def propose(self, doc: Document, tool_name: str) -> list[Candidate]:
        self.seen.append(doc.id)
        if tool_name != "Calculator":
            return []
        nums = list(re.finditer(r"\d+", doc.text))
        if len(nums) < 3:
            return []
        a, b, last = nums[0].group(), nums[1].group(), nums[-1]
        return [Candidate(doc.id, tool_name, f"{a} + {b}", last.start(), "rule")]


def answer_filter(model, tokenizer, docs, config):
    """A stand-in for the LM: a call helps (gain 1.8) exactly when its result is the text that follows it."""
    for text, cands in docs:
        for i, c in enumerate(cands):
            c.token_index = i
            c.loss_empty, c.loss_noresult = 2.0, 2.2
            c.loss_minus = 2.0
            c.loss_plus = 0.2 if c.ok and text[c.position :].startswith(c.result or "\0") else 2.5
            if c.ok is False:
                c.kept, c.reason = False, "tool error"
            else:
                c.kept = c.gain >= config.tau_for(c.tool)
                c.reason = "kept" if c.kept else "below tau_f"
    return [c for _, c in docs]


def corpus(tmp_path: Path, n: int, name: str = "c.jsonl", bad: bool = False) -> Path:
    rows = []
    for i in range(n):
        a, b = i + 2, 3 * i + 1
        right = i % 3 != 0  # every third text has a wrong sum, so its call does not help
        rows.append(
            {
                "id": f"doc-{i:04d}",
                "text": f"Ann had {a} pens and got {b} more, so {a + b if right else a + b + 1} in all.",
            }
        )
    if bad:
        rows.insert(1, {"id": "no-text"})
        rows.insert(3, {"id": "doc-0000", "text": "a repeated id 1 2 3"})
    return write_jsonl(tmp_path / name, rows)


def run_fake(config: AnnotateConfig, proposer: SumProposer | None = None, **kwargs):
    return annotate(
        config,
        model=object(),
        tokenizer=object(),
        tools=kwargs.pop("tools", None) or load_tools("Calculator"),
        proposers=[proposer or SumProposer()],
        applies=kwargs.pop("applies", lambda tool_name, text: True),
        filter_fn=answer_filter,
        **kwargs,
    )


def all_records(out: Path) -> list[dict]:
    return [
        json.loads(line) for p in sorted(out.glob("records-*.jsonl")) for line in p.read_text().splitlines()
    ]


def all_rows(out: Path) -> list[dict]:
    return [
        json.loads(line) for p in sorted(out.glob("shard-*.jsonl")) for line in p.read_text().splitlines()
    ]


def input_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------------------------- merge


def cand(
    position: int, args: str = "2 + 3", result: str | None = "5", tool_name: str = "Calculator", gain=None
):
    c = Candidate("d", tool_name, args, position, "rule", result=result, ok=True)
    if gain is not None:
        c.loss_minus, c.loss_plus, c.kept = gain + 1.0, 1.0, True
    return c


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("costs 5 dollars", 6, "costs [Calculator(2 + 3) → 5] 5 dollars"),  # at the word
        ("costs 5 dollars", 5, "costs [Calculator(2 + 3) → 5] 5 dollars"),  # at the space before it
        ("5 dollars", 0, "[Calculator(2 + 3) → 5] 5 dollars"),  # start of the text
        ("it costs", 8, "it costs [Calculator(2 + 3) → 5]"),  # end of the text
        ("(or 5%)", 4, "(or [Calculator(2 + 3) → 5] 5%)"),
        ("x=5", 2, "x= [Calculator(2 + 3) → 5] 5"),  # glued text gets spaces on both sides
    ],
)
def test_merge_space_policy(text, position, expected):
    merged = merge(text, [cand(position)])
    assert merged == expected
    if text[position - 1 : position] in (" ", "") or text[position : position + 1] == " ":
        assert strip_calls(merged) == text


def test_merge_several_calls_right_to_left_with_spans():
    text = "Add 2 and 3 to get 5, then double it to get 10."
    kept = [cand(text.index("10"), "5 * 2", "10"), cand(text.index("5,"), "2 + 3", "5")]
    merged, spans = merge_spans(text, kept)
    assert merged == (
        "Add 2 and 3 to get [Calculator(2 + 3) → 5] 5, then double it to get [Calculator(5 * 2) → 10] 10."
    )
    for c, (start, end) in zip(kept, spans):
        assert merged[start:end] == c.text()
    assert strip_calls(merged) == text


def test_merge_sanitizes_results_and_rejects_bad_positions():
    merged = merge("see here", [cand(4, "q", "a [bracket]\nresult", "QA")])
    assert merged == "see [QA(q) → a (bracket) result] here"
    with pytest.raises(ConfigError, match="position=99"):
        merge("short", [cand(99)])


def test_best_per_position_keeps_the_largest_gain():
    a, b, c = cand(3, "1 + 1", gain=1.0), cand(3, "2 + 2", gain=2.5), cand(7, gain=1.2)
    best = best_per_position([a, b, c])
    assert best == [b, c]
    assert a.kept is False and a.reason == NOT_BEST
    assert b.kept and c.kept


def test_split_is_deterministic_by_id_and_near_the_fraction():
    ids = [f"id-{i}" for i in range(2000)]
    split = split_by_document(ids, dev_fraction=0.2, seed=1)
    assert split == split_by_document(list(reversed(ids)), dev_fraction=0.2, seed=1)
    assert {k: split_of(k, 0.2, 1) for k in ids[:50]} == {k: split[k] for k in ids[:50]}
    dev = sum(v == "dev" for v in split.values()) / len(ids)
    assert 0.17 < dev < 0.23
    assert split != split_by_document(ids, dev_fraction=0.2, seed=2)
    assert set(split_by_document(ids, 0.0).values()) == {"train"}
    with pytest.raises(ConfigError, match="dev_fraction"):
        split_by_document(ids, 1.0)


def test_shard_of_partitions_ids():
    ids = [f"id-{i}" for i in range(300)]
    counts = [sum(shard_of(i, 3) == k for i in ids) for k in range(3)]
    assert sum(counts) == 300 and min(counts) > 70


# --------------------------------------------------------------------------------------------- execute


def counting_tools(delay: float = 0.0) -> tuple[ToolRegistry, list[str]]:
    calls: list[str] = []
    lock = threading.Lock()

    @tool(name="Echo", timeout=2.0)
    def echo(text: str) -> str:
        """Echo."""
        with lock:
            calls.append(text)
        time.sleep(delay)
        if text == "fail":
            raise ValueError("cannot echo fail")
        return text.upper()

    @tool(name="Sleepy", timeout=0.2)
    def sleepy(text: str) -> str:
        """Sleeps."""
        time.sleep(3)
        return "late"

    return ToolRegistry([echo, sleepy]), calls


def test_execute_runs_each_distinct_call_once_and_records_errors():
    tools, calls = counting_tools()
    cands = [
        Candidate("d", "Echo", "hi", 0, "rule"),
        Candidate("d", "Echo", "hi", 5, "rule"),
        Candidate("d", "Echo", "fail", 1, "rule"),
        Candidate("d", "Nope", "x", 1, "rule"),
    ]
    out = execute(cands, tools)
    assert out is not None and [c.result for c in out[:2]] == ["HI", "HI"]
    assert sorted(calls) == ["fail", "hi"]
    assert out[2].ok is False and out[2].result == "error: cannot echo fail"
    assert out[3].ok is False and "unknown tool Nope" in out[3].result


def test_execute_bounds_time_and_runs_in_parallel():
    tools, _ = counting_tools()
    out = execute([Candidate("d", "Sleepy", "x", 0, "rule")], tools)
    assert out[0].ok is False and "timed out" in out[0].result
    barrier = threading.Barrier(4, timeout=10)

    @tool(name="Meet", timeout=20.0)
    def meet(text: str) -> str:
        """Returns once four calls are running at the same time."""
        barrier.wait()
        return text

    out = execute(
        [Candidate("d", "Meet", str(i), 0, "rule") for i in range(4)], ToolRegistry([meet]), workers=4
    )
    # Side by side all four meet at the barrier; one after another, the first would wait there alone and fail.
    assert [(c.ok, c.result) for c in out] == [(True, str(i)) for i in range(4)]


def test_cache_in_memory_and_on_disk(tmp_path):
    tools, calls = counting_tools()
    cache = ToolCache(tmp_path / "cache.sqlite")
    execute([Candidate("d", "Echo", "a", 0, "rule"), Candidate("d", "Echo", "fail", 0, "rule")], tools, cache)
    execute([Candidate("e", "Echo", "a", 0, "rule"), Candidate("e", "Echo", "fail", 0, "rule")], tools, cache)
    assert sorted(calls) == ["a", "fail"]  # the second round came from memory, errors included
    cache.close()
    calls.clear()
    again = ToolCache(tmp_path / "cache.sqlite")
    out = execute(
        [Candidate("f", "Echo", "a", 0, "rule"), Candidate("f", "Echo", "fail", 0, "rule")], tools, again
    )
    assert calls == ["fail"]  # only successes persist on disk: a failure is retried by the next run
    assert out[0].result == "A" and out[0].ok


# --------------------------------------------------------------------------------------------- pipeline


def test_pipeline_outputs_records_rows_and_manifest(tmp_path):
    path = corpus(tmp_path, 12, bad=True)
    config = AnnotateConfig(
        input=str(path), out=str(tmp_path / "out"), tools="Calculator", shard_size=5, dev_fraction=0.3
    )
    report = run_fake(config)
    out = tmp_path / "out"
    records = all_records(out)
    assert [r["id"] for r in records] == input_ids(path)  # every input row, in order, once
    bad = {r["id"]: r["verdict"] for r in records if r["status"] == "bad"}
    assert bad["no-text"] == "missing field 'text'"
    assert bad["doc-0000"].startswith("duplicate id")
    rows = all_rows(out)
    # Texts whose sum is right get a kept call; the others are only in the records, with why.
    expected_kept = [f"doc-{i:04d}" for i in range(12) if i % 3 != 0]
    assert [r["id"] for r in rows] == expected_kept
    for row in rows:
        call = row["calls"][0]
        assert row["text"][call["start"] : call["end"]].startswith("[Calculator(")
        assert strip_calls(row["text"]) == row["source_text"]
        assert row["split"] == split_of(row["id"], 0.3, 0)
        assert call["gain"] >= 0.5  # the paper's Calculator τ_f
    dropped = next(r for r in records if r["id"] == "doc-0003")
    assert dropped["verdict"] == "no call kept" and dropped["candidates"][0]["reason"] == "below tau_f"
    assert dropped["candidates"][0]["gain"] == pytest.approx(-0.5)
    assert report.texts_kept == len(expected_kept) and report.bad == 2
    stats = report.per_tool["Calculator"]
    assert (stats.texts, stats.proposed, stats.executed_ok, stats.kept) == (12, 12, 12, 8)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["config"]["shard_size"] == 5
    assert manifest["counts"]["per_tool"]["Calculator"]["kept"] == 8
    assert manifest["input"]["sha256"] and manifest["tools"][0]["name"] == "Calculator"
    assert [b["id"] for b in manifest["bad_rows"]] == ["no-text", "doc-0000"]


def test_heuristic_skips_a_tool_and_errors_are_recorded(tmp_path):
    path = corpus(tmp_path, 4)
    tools, _ = counting_tools()
    registry = ToolRegistry([*load_tools("Calculator").values(), tools["Echo"]])

    class FailingEcho:
        def propose(self, doc, tool_name):
            return [Candidate(doc.id, tool_name, "fail", 0, "rule")] if tool_name == "Echo" else []

    config = AnnotateConfig(input=str(path), out=str(tmp_path / "out"), tools="Calculator,Echo")
    report = annotate(
        config,
        model=object(),
        tokenizer=object(),
        tools=registry,
        proposers=[SumProposer(), FailingEcho()],
        applies=lambda tool_name, text: tool_name == "Echo" or "pens" not in text,
        filter_fn=answer_filter,
    )
    assert report.per_tool["Calculator"].texts == 0 and report.per_tool["Calculator"].proposed == 0
    echo = report.per_tool["Echo"]
    assert (echo.texts, echo.proposed, echo.executed_error, echo.kept) == (4, 4, 4, 0)
    record = all_records(tmp_path / "out")[0]
    assert record["tools_applied"] == ["Echo"]
    assert record["candidates"][0]["ok"] is False and record["candidates"][0]["reason"] == "tool error"


def test_resume_after_a_crash_redoes_only_unfinished_chunks(tmp_path):
    path = corpus(tmp_path, 23)
    config = AnnotateConfig(
        input=str(path), out=str(tmp_path / "out"), tools="Calculator", shard_size=5, batch_docs=5
    )

    class Crash(SumProposer):
        def propose(self, doc, tool_name):
            if doc.id == "doc-0012":
                raise RuntimeError("power cut")
            return super().propose(doc, tool_name)

    with pytest.raises(RuntimeError, match="power cut"):
        run_fake(config, Crash())
    assert len(list((tmp_path / "out").glob("records-*.jsonl"))) == 2  # chunks 0 and 1 landed
    second = SumProposer()
    report = run_fake(config, second)
    assert report.chunks_done_before == 2 and report.chunks_written == 3
    assert second.seen == input_ids(path)[10:]  # nothing finished was redone
    assert [r["id"] for r in all_records(tmp_path / "out")] == input_ids(path)
    third = SumProposer()
    assert run_fake(config, third).chunks_written == 0 and third.seen == []


def test_a_damaged_chunk_is_redone(tmp_path):
    path = corpus(tmp_path, 10)
    config = AnnotateConfig(input=str(path), out=str(tmp_path / "out"), tools="Calculator", shard_size=5)
    run_fake(config)
    rec = tmp_path / "out" / "records-00001.jsonl"
    rec.write_text("\n".join(rec.read_text().splitlines()[:3]) + "\n")  # lost lines
    again = SumProposer()
    report = run_fake(config, again)
    assert report.chunks_written == 1 and again.seen == input_ids(path)[5:]
    assert [r["id"] for r in all_records(tmp_path / "out")] == input_ids(path)


def test_rerun_with_other_options_or_input_is_refused(tmp_path):
    path = corpus(tmp_path, 6)
    config = AnnotateConfig(input=str(path), out=str(tmp_path / "out"), tools="Calculator", shard_size=5)
    run_fake(config)
    with pytest.raises(ConfigError, match=r"tau_f=1\.0 .* tau_f=2\.0"):
        run_fake(AnnotateConfig(**{**config.__dict__, "tau_f": 2.0}))
    # Options that only change speed may differ.
    run_fake(AnnotateConfig(**{**config.__dict__, "workers": 1, "batch_docs": 2, "limit": 100}))
    corpus(tmp_path, 7)
    with pytest.raises(ConfigError, match="changed"):
        run_fake(config)


def test_workers_share_a_folder_and_cover_every_document_once(tmp_path):
    path = corpus(tmp_path, 40, bad=True)
    out = tmp_path / "out"
    for k in range(3):
        config = AnnotateConfig(
            input=str(path), out=str(out), tools="Calculator", shard_size=4, num_shards=3, shard_id=k
        )
        run_fake(config)
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert {"manifest-w000of003.json", "manifest-w001of003.json", "manifest-w002of003.json"} <= set(names)
    assert "manifest.json" not in names and any(n.startswith("shard-w002of003-") for n in names)
    ids = sorted(
        r["id"] for r in all_records(out) if r["verdict"] != "duplicate id (first seen at c.jsonl:1)"
    )
    assert ids == sorted(set(input_ids(path)))
    for k in range(3):
        mine = [
            json.loads(line)
            for f in out.glob(f"records-w{k:03d}of003-*.jsonl")
            for line in f.read_text().splitlines()
        ]
        assert mine and all(shard_of(r["id"], 3) == k for r in mine)
    with pytest.raises(ConfigError, match="num_shards"):
        run_fake(AnnotateConfig(input=str(path), out=str(out), tools="Calculator", shard_size=4))


def test_limit_reads_the_first_rows_only(tmp_path):
    path = corpus(tmp_path, 30)
    config = AnnotateConfig(input=str(path), out=str(tmp_path / "out"), tools="Calculator", limit=7)
    report = run_fake(config)
    assert report.documents == 7
    assert [r["id"] for r in all_records(tmp_path / "out")] == input_ids(path)[:7]


def test_config_check_names_the_field():
    with pytest.raises(ConfigError, match="proposer='rule,magic'"):
        AnnotateConfig(input="x", proposer="rule,magic").check()
    with pytest.raises(ConfigError, match="shard_id=3"):
        AnnotateConfig(input="x", num_shards=2, shard_id=3).check()
    with pytest.raises(ConfigError, match="backend='spark'"):
        AnnotateConfig(input="x", backend="spark").check()
    assert ann.parse_tau_f_tool(["QA=2", "Calculator=1"]) == {"Calculator": 1.0, "MT": 0.5, "QA": 2.0}
    with pytest.raises(ConfigError, match="TOOL=NUMBER"):
        ann.parse_tau_f_tool(["QA"])


def test_every_config_field_has_help():
    from dataclasses import fields

    assert all(f.metadata.get("help") for f in fields(AnnotateConfig))


def test_ray_backend_needs_the_scale_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("no ray here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    config = AnnotateConfig(
        input=str(corpus(tmp_path, 3)), out=str(tmp_path / "out"), tools="Calculator", backend="ray"
    )
    from toolformer.errors import MissingExtraError

    with pytest.raises(MissingExtraError, match=r"toolformer-kit\[scale\]"):
        annotate(config)


def test_ray_backend_refuses_objects_it_cannot_ship(tmp_path):
    config = AnnotateConfig(
        input=str(corpus(tmp_path, 3)), out=str(tmp_path / "out"), tools="Calculator", backend="ray"
    )
    with pytest.raises(ConfigError, match="proposers"):
        run_fake(config)


# --------------------------------------------------------------------------------------------- CLI


def test_cli_inspect_shows_losses_and_verdicts(tmp_path):
    path = corpus(tmp_path, 4)
    run_fake(AnnotateConfig(input=str(path), out=str(tmp_path / "out"), tools="Calculator"))
    result = runner.invoke(app, ["annotate", "inspect", str(tmp_path / "out"), "--id", "doc-0001"])
    assert result.exit_code == 0, result.output
    assert "Calculator(3 + 4)" in result.stdout and "kept" in result.stdout and "1.800" in result.stdout
    dropped = runner.invoke(app, ["annotate", "inspect", str(tmp_path / "out"), "--id", "doc-0000", "--json"])
    data = json.loads(dropped.stdout)
    assert data["record"]["verdict"] == "no call kept" and data["shard_row"] is None
    missing = runner.invoke(app, ["annotate", "inspect", str(tmp_path / "out"), "--id", "nope"])
    assert missing.exit_code == 2 and "nope" in missing.stderr and "Traceback" not in missing.output


def test_cli_refuses_a_changed_config_in_one_line(tmp_path):
    path = corpus(tmp_path, 4)
    run_fake(AnnotateConfig(input=str(path), out=str(tmp_path / "out"), tools="Calculator"))
    result = runner.invoke(
        app, ["annotate", str(path), "--out", str(tmp_path / "out"), "--tools", "Calculator", "--tau-f", "3"]
    )
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())  # one message; rich wraps it at the terminal width
    assert message.startswith("error:") and "tau_f=1.0" in message and "tau_f=3.0" in message
    assert "Traceback" not in result.output


def test_cli_help_lists_run_and_inspect():
    result = runner.invoke(app, ["annotate", "--help"])
    assert result.exit_code == 0 and "inspect" in result.stdout and "run" in result.stdout
    run_help = runner.invoke(app, ["annotate", "run", "--help"])
    assert "--tau-f-tool" in run_help.stdout and "--shard-size" in run_help.stdout


# --------------------------------------------------------------------------------------------- real model runs


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.slow
@pytest.mark.timeout(900)  # the wait for the first shard below has no deadline of its own
def test_kill_9_then_rerun_loses_and_duplicates_nothing(tmp_path, tiny_dir):
    path = corpus(tmp_path, 240)
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "toolformer.cli", "annotate", str(path), "--out", str(out), "--model",
        str(tiny_dir), "--tools", "Calculator", "--proposer", "rule", "--shard-size", "16", "--quiet",
    ]  # fmt: skip
    env = cli_env() | {ann.DELAY_ENV: "0.02"}  # ~0.3 s per shard: the kill lands mid-run
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not (out / "records-00000.jsonl").exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(p.name for p in out.glob("records-*.jsonl"))
    assert 1 <= len(finished) < 15, finished  # killed part-way: some shards done, not all
    rerun = subprocess.run([*cmd[:-1]], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    last_run = json.loads((out / "manifest.json").read_text())["runs"][-1]
    assert last_run["chunks_skipped"] == len(finished) and last_run["chunks_written"] == 15 - len(finished)
    ids = [r["id"] for r in all_records(out)]
    assert sorted(ids) == sorted(input_ids(path)) and len(ids) == len(set(ids)) == 240
    rows = [r["id"] for r in all_rows(out)]
    assert len(rows) == len(set(rows))
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_cli_end_to_end_on_the_tiny_model(tmp_path, tiny_dir):
    path = corpus(tmp_path, 6)
    result = runner.invoke(
        app,
        ["annotate", str(path), "--out", str(tmp_path / "out"), "--model", str(tiny_dir), "--tools", "Calculator",
         "--tau-f", "-100", "--tau-f-tool", "Calculator=-100", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Calculator" in result.stdout and "texts/hour" in result.stdout
    records = all_records(tmp_path / "out")
    scored = [c for r in records for c in r["candidates"]]
    assert scored and all(c["loss_plus"] is not None and c["token_index"] is not None for c in scored)
    # With τ_f = −100 every scored call passes: each text gets exactly its best call per position.
    rows = all_rows(tmp_path / "out")
    assert rows and all(strip_calls(r["text"]) == r["source_text"] for r in rows)


@pytest.mark.slow
def test_ray_backend_matches_local(tmp_path, tiny_dir):
    pytest.importorskip("ray")
    path = corpus(tmp_path, 12)
    base = dict(input=str(path), model=str(tiny_dir), tools="Calculator", shard_size=5, tau_f=-100.0,
                tau_f_tool={"Calculator": -100.0})  # fmt: skip
    local = annotate(AnnotateConfig(out=str(tmp_path / "local"), **base))
    ray_report = annotate(AnnotateConfig(out=str(tmp_path / "ray"), backend="ray", ray_actors=1, **base))
    assert ray_report.chunks_written == 3 and ray_report.texts_kept == local.texts_kept

    def losses(folder):
        return [(r["id"], [round(c["loss_plus"], 4) for c in r["candidates"]]) for r in all_records(folder)]

    assert losses(tmp_path / "ray") == losses(tmp_path / "local")


@pytest.mark.slow
def test_gsm8k_with_the_data_proposer_on_the_real_model(tmp_path, smol):
    model, tokenizer = smol
    src = shared_data("gsm8k/gsm8k_train.jsonl")
    path = tmp_path / "gsm8k20.jsonl"
    path.write_text("".join(src.read_text().splitlines(keepends=True)[:20]))
    config = AnnotateConfig(
        input=str(path), out=str(tmp_path / "out"), format="gsm8k", proposer="data", tools="Calculator"
    )
    report = annotate(config, model=model, tokenizer=tokenizer)
    assert report.documents == 20 and report.bad == 0
    rows = all_rows(tmp_path / "out")
    assert rows, "no kept call in 20 GSM8K solutions"
    tau = config.filter_config().tau_for("Calculator")
    for row in rows:
        for call in row["calls"]:
            assert call["gain"] >= tau
            assert call["loss_minus"] - call["loss_plus"] == pytest.approx(call["gain"])
    assert report.per_tool["Calculator"].kept == sum(len(r["calls"]) for r in rows)


def test_tool_names_come_from_the_registry(tmp_path):
    path = corpus(tmp_path, 3)
    config = AnnotateConfig(input=str(path), out=str(tmp_path / "out"), tools="calculator")
    report = annotate(
        config,
        model=object(),
        tokenizer=object(),
        proposers=[SumProposer()],
        applies=lambda tool_name, text: True,
        filter_fn=answer_filter,
    )
    assert list(report.per_tool) == ["Calculator"] and report.per_tool["Calculator"].kept == 2
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [t["name"] for t in manifest["tools"]] == ["Calculator"] and manifest["tau_f"] == {
        "Calculator": 0.5
    }


def keep_all(model, tokenizer, docs, config):
    for _, cands in docs:
        for c in cands:
            c.loss_plus, c.loss_empty, c.loss_noresult, c.loss_minus = 1.0, 3.0, 3.0, 3.0
            c.kept, c.reason = c.ok is not False, "kept" if c.ok is not False else "tool error"
    return [c for _, c in docs]


NATALIA = {
    "id": "g1",
    "question": "Natalia sold 48 clips in April and half as many in May. How many in all?",
    "solution": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nShe sold 48+24 = <<48+24=72>>72 clips.\n#### 72",
    "answer": 72,
}


def test_gsm8k_records_with_the_data_proposer(tmp_path):
    path = write_jsonl(tmp_path / "gsm.jsonl", [NATALIA, {"id": "g2", "question": "no solution"}])
    config = AnnotateConfig(
        input=str(path), out=str(tmp_path / "out"), format="gsm8k", proposer="data", tools="Calculator"
    )
    report = annotate(config, model=object(), tokenizer=object(), filter_fn=keep_all)
    (row,) = all_rows(tmp_path / "out")
    assert "<<" not in row["source_text"] and "####" not in row["source_text"]
    assert "48/2 = [Calculator(48 / 2) → 24] 24 clips" in row["text"]
    assert "48+24 = [Calculator(48 + 24) → 72] 72 clips" in row["text"]
    assert report.bad == 1 and "solution" in report.bad_rows[0].reason


def test_gsm8k_answer_format_writes_question_answer_texts_with_one_composed_call(tmp_path):
    path = write_jsonl(tmp_path / "gsm.jsonl", [NATALIA])
    config = AnnotateConfig(
        input=str(path), out=str(tmp_path / "out"), format="gsm8k-answer", proposer="data", tools="Calculator"
    )
    annotate(config, model=object(), tokenizer=object(), filter_fn=keep_all)
    (row,) = all_rows(tmp_path / "out")
    assert row["text"] == f"Question: {NATALIA['question']}\nAnswer: [Calculator(48 + 48 / 2) → 72] 72"


def test_inline_calls_in_the_input_are_rescored_with_the_data_proposer(tmp_path):
    annotated = "It costs [Calculator(2 + 3) → 5] 5 dollars, [Calendar() → Today is Monday.] today."
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"id": "a", "text": annotated}) + "\n")
    config = AnnotateConfig(
        input=str(path), out=str(tmp_path / "out"), proposer="data", tools="Calculator,Calendar"
    )
    annotate(
        config, model=object(), tokenizer=object(), filter_fn=keep_all, applies=lambda tool_name, text: True
    )
    (row,) = all_rows(tmp_path / "out")
    assert row["source_text"] == "It costs 5 dollars, today."
    assert strip_calls(row["text"]) == row["source_text"]
    assert "[Calculator(2 + 3) → 5] 5 dollars" in row["text"] and "[Calendar() → " in row["text"]


# --------------------------------------------------------------------------------------------- self-exclusion

LEADS = [
    {"id": "w1", "title": "Eiffel Tower", "text": "The Eiffel Tower is a lattice tower in Paris. It is 330 metres tall."},
    {"id": "w2", "title": "Gustave Eiffel", "text": "Gustave Eiffel was a French civil engineer. His company built the tower."},
    {"id": "w3", "title": "Seine", "text": "The Seine is a river in northern France. It flows through Paris to the sea."},
    {"id": "w4", "title": "Paris", "text": "Paris is the capital and largest city of France. The Seine flows through it."},
]  # fmt: skip


class SearchProposer:
    """Proposes `WikiSearch(<title>)` and `QA(What is <title>?)` after the first word of each lead."""

    def __init__(self) -> None:
        self.titles = {row["id"]: row["title"] for row in LEADS}

    def propose(self, doc: Document, tool_name: str) -> list[Candidate]:
        title = self.titles[doc.id]
        args = {"WikiSearch": title, "QA": f"What is {title}?"}.get(tool_name)
        return [] if args is None else [Candidate(doc.id, tool_name, args, doc.text.index(" ") + 1, "rule")]


def _leaks(result: str, text: str) -> bool:
    """Whether `result` holds a sentence of `text` (the document's own passage)."""
    from toolformer.tools.wikisearch import normalize, split_sentences

    return any(normalize(s) in normalize(result) for s in split_sentences(text))


@pytest.mark.parametrize("exclude", [True, False])
def test_search_calls_never_return_the_documents_own_passage(tmp_path, exclude):
    from toolformer.tools.qa import qa_tool
    from toolformer.tools.wikisearch import Searcher, wikisearch_tool

    path = write_jsonl(tmp_path / "leads.jsonl", LEADS)
    searcher = Searcher(path)  # the annotated texts are the search corpus
    tools = ToolRegistry([wikisearch_tool(searcher), qa_tool(searcher)])
    config = AnnotateConfig(
        input=str(path), out=str(tmp_path / "out"), tools="WikiSearch,QA", exclude_self_from_search=exclude
    )
    annotate(
        config,
        model=object(),
        tokenizer=object(),
        tools=tools,
        proposers=[SearchProposer()],
        applies=lambda tool_name, text: True,
        filter_fn=keep_all,
    )
    texts = {row["id"]: row["text"] for row in LEADS}
    results = [
        (rec["id"], c["result"])
        for rec in all_records(tmp_path / "out")
        for c in rec["candidates"]
        if c["ok"]
    ]
    kept = [(row["id"], call["result"]) for row in all_rows(tmp_path / "out") for call in row["calls"]]
    assert kept and {doc_id for doc_id, _ in kept} == set(texts)  # every document got calls
    leaked = [(doc_id, result) for doc_id, result in results if _leaks(result, texts[doc_id])]
    if exclude:
        assert leaked == []
    else:  # without the exclusion every title query finds its own lead first
        assert {doc_id for doc_id, _ in leaked} == set(texts)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["config"]["exclude_self_from_search"] is exclude
    assert manifest["search_exclusion"]["enabled"] is exclude


def test_excluded_search_results_are_cached_per_document(tmp_path):
    from toolformer.tools.wikisearch import Searcher, wikisearch_tool

    path = write_jsonl(tmp_path / "leads.jsonl", LEADS)
    tools = ToolRegistry([wikisearch_tool(Searcher(path), k=1)])
    cache = ToolCache(tmp_path / "cache.sqlite")
    docs = {row["id"]: row["text"] for row in LEADS[:2]}

    def search(doc_id: str, documents: dict | None) -> str:
        (cand,) = execute(
            [Candidate(doc_id, "WikiSearch", "Eiffel Tower", 0, "rule")], tools, cache, 1, None, documents
        )
        return cand.result

    assert search("w1", None).startswith("Eiffel Tower:")  # unscoped: cached under the plain key
    assert search("w1", docs).startswith("Gustave Eiffel:")  # scoped: the plain entry is not reused
    assert search("w2", docs).startswith("Eiffel Tower:")  # another document: its own scope
    hits = cache.hits
    assert (
        search("w1", docs).startswith("Gustave Eiffel:") and cache.hits == hits + 1
    )  # same document: cached
    both = execute(
        [Candidate(d, "WikiSearch", "Eiffel Tower", 0, "rule") for d in ("w1", "w2")], tools, documents=docs
    )
    assert [c.result.split(":")[0] for c in both] == ["Gustave Eiffel", "Eiffel Tower"]


def test_sample_backend_is_checked_and_reaches_the_cli(tmp_path):
    with pytest.raises(ConfigError, match="sample_backend='onnx'"):
        AnnotateConfig(input="x", sample_backend="onnx").check()
    path = corpus(tmp_path, 2)
    result = runner.invoke(
        app, ["annotate", str(path), "--out", str(tmp_path / "out"), "--sample-backend", "onnx", "--quiet"]
    )
    assert result.exit_code == 2 and "sample_backend='onnx'" in result.output
