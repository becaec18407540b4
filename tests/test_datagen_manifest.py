"""The manifest of an annotation folder (`datagen/manifest.py`): the rerun check, what a run records when it starts
and ends."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fakes import write_jsonl
from toolformer.datagen.config import AnnotateConfig
from toolformer.datagen.io import BadRow, Source
from toolformer.datagen.layout import OutputNames
from toolformer.datagen.manifest import (
    MANIFEST_VERSION,
    check_manifests,
    finish_manifest,
    model_info,
    new_manifest,
    tools_info,
)
from toolformer.datagen.report import AnnotateReport, ToolStats
from toolformer.errors import ConfigError, DataError
from toolformer.tools import load_tools

SHA = "a" * 64


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def _start(
    out: Path, config: AnnotateConfig, names: OutputNames = OutputNames(), sha: str | None = SHA
) -> dict:
    """Write the manifest a run with `config` writes when it starts; returns it."""
    source = Source("jsonl", "in.jsonl", out.parent / "in.jsonl")
    manifest = new_manifest(config, source, sha, names, {})
    names.manifest(out).write_text(json.dumps(manifest), encoding="utf-8")
    return manifest


def test_a_rerun_with_the_same_options_gets_its_own_previous_manifest(out):
    config = AnnotateConfig(input="in.jsonl", tau_f=0.5)
    written = _start(out, config)
    assert check_manifests(out, config, SHA, OutputNames()) == json.loads(json.dumps(written))
    assert check_manifests(out / "nothing-here", config, SHA, OutputNames()) == {}


def test_options_that_do_not_change_a_chunk_may_differ(out):
    config = AnnotateConfig(input="in.jsonl")
    _start(out, config)
    rerun = replace(config, device="cuda", workers=9, limit=3, batch_docs=2, out="elsewhere")
    assert check_manifests(out, rerun, SHA, OutputNames())["status"] == "running"


def test_a_rerun_with_another_option_is_refused_naming_the_field_and_both_values(out):
    config = AnnotateConfig(input="in.jsonl", tau_f=0.5)
    _start(out, config)
    with pytest.raises(ConfigError) as err:
        check_manifests(out, replace(config, tau_f=2.0), SHA, OutputNames())
    assert str(err.value) == (
        f"{out} was written with tau_f=0.5 (manifest.json), this run has tau_f=2.0: rerun with the same options "
        "or use another --out"
    )


def test_every_workers_manifest_is_checked_but_only_this_workers_is_returned(out):
    config = AnnotateConfig(input="in.jsonl", num_shards=2)
    first, second = OutputNames(0, 2), OutputNames(1, 2)
    _start(out, config, first)
    assert check_manifests(out, replace(config, shard_id=1), SHA, second) == {}
    with pytest.raises(ConfigError, match=r"horizon=5 \(manifest-w000of002.json\), this run has horizon=3"):
        check_manifests(out, replace(config, shard_id=1, horizon=3), SHA, second)


def test_a_changed_input_or_an_unreadable_manifest_is_refused(out):
    config = AnnotateConfig(input="in.jsonl")
    _start(out, config)
    with pytest.raises(ConfigError, match="input 'in.jsonl' changed since manifest.json was written"):
        check_manifests(out, config, "b" * 64, OutputNames())
    assert check_manifests(
        out, config, None, OutputNames()
    )  # an input without a hash (a Hub id) is not checked
    (out / "manifest.json").write_text("{cut", encoding="utf-8")
    with pytest.raises(DataError, match="manifest.json is not readable JSON"):
        check_manifests(out, config, SHA, OutputNames())


def test_a_new_manifest_describes_the_run_and_keeps_the_earlier_runs(tmp_path):
    config = AnnotateConfig(input="in.jsonl", num_shards=4, shard_id=2)
    source = Source("jsonl", "in.jsonl", write_jsonl(tmp_path / "in.jsonl", []))
    earlier = [{"started": "2026-01-01T00:00:00"}]
    manifest = new_manifest(config, source, SHA, OutputNames(2, 4), {"runs": earlier})
    assert (manifest["manifest_version"], manifest["status"]) == (MANIFEST_VERSION, "running")
    assert manifest["config"]["tau_f"] == config.tau_f and manifest["worker"] == {
        "shard_id": 2,
        "num_shards": 4,
    }
    assert manifest["input"] == {
        "path": str((tmp_path / "in.jsonl").resolve()),
        "kind": "jsonl",
        "sha256": SHA,
    }
    assert manifest["layout"]["shards"] == "shard-w002of004-NNNNN.jsonl"
    assert manifest["runs"] == earlier
    hub = new_manifest(config, Source("hf", "owner/data"), None, OutputNames(), {})
    assert hub["input"]["path"] == "owner/data" and hub["runs"] == []


def test_finish_manifest_marks_it_done_with_counts_and_appends_this_run(out):
    config = AnnotateConfig(input="in.jsonl", tools="Calculator", tau_f_tool={"Calculator": 0.5})
    names = OutputNames()
    manifest = _start(out, config)
    manifest["runs"] = [{"started": "earlier"}]
    report = AnnotateReport(
        out=out, manifest=names.manifest(out), documents=5, bad=1, texts_kept=3, calls_kept=4
    )
    report.dev_texts, report.bad_rows = 1, [BadRow("x", "empty text")]
    report.per_tool = {"Calculator": ToolStats(proposed=4, kept=4)}
    report.records, report.shards = [names.records(out, 0)], [names.shard(out, 0)]
    report.documents_this_run, report.seconds, report.load_seconds = 5, 10.0, 1.0
    write_jsonl(names.records(out, 7), [])  # left by an earlier plan
    finish_manifest(manifest, config, report, names, None, load_tools("Calculator"), ["Calculator"], 0.0)
    assert manifest["status"] == "done"
    assert (
        manifest["counts"]["train_texts"] == 2 and manifest["counts"]["per_tool"]["Calculator"]["kept"] == 4
    )
    assert manifest["tau_f"] == {"Calculator": 0.5}
    assert manifest["bad_rows"] == [{"id": "x", "reason": "empty text"}]
    assert manifest["chunks"] == [{"shard": "shard-00000.jsonl", "records": "records-00000.jsonl"}]
    assert manifest["extra_records_not_in_this_plan"] == ["records-00007.jsonl"]
    assert manifest["search_exclusion"]["enabled"] is True
    assert manifest["model"] == {"name": config.model}
    assert [r["started"] for r in manifest["runs"]][0] == "earlier" and len(manifest["runs"]) == 2
    assert manifest["runs"][1]["documents"] == 5 and manifest["runs"][1]["texts_per_hour"] == pytest.approx(
        2000.0
    )
    json.dumps(manifest)  # it is written as JSON


def test_model_and_tools_info_describe_what_was_loaded():
    model = torch.nn.Linear(3, 2)
    model.name_or_path = "tiny/model"
    assert model_info("alias", model) == {
        "name": "alias",
        "name_or_path": "tiny/model",
        "class": "Linear",
        "parameters": 8,
    }
    assert model_info("alias", SimpleNamespace()) == {
        "name": "alias",
        "name_or_path": None,
        "class": "SimpleNamespace",
    }
    info = tools_info(load_tools("Calculator"), ["Calculator", "Missing"])
    assert info[0]["name"] == "Calculator" and info[0]["description"]
    assert info[1] == {"name": "Missing", "version": None, "description": None}
