"""`toolformer train`: data mixing and loss masks, train-then-load round trips, resume after kill -9, bad data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fakes import write_jsonl
from toolformer.cli import app
from toolformer.errors import ConfigError, DataError
from toolformer.train.config import TrainConfig, parse_mix_ratio
from toolformer.train.data import ANNOTATED, PLAIN, SOURCE, Text, encode_many, mix, read_corpus

runner = CliRunner()


# --------------------------------------------------------------------------------------------- helpers


def calc_row(i: int, split: str | None = "train") -> dict[str, Any]:
    """An annotated row as `toolformer annotate` writes it: text with a call, source text, split."""
    a, b = i + 3, i % 7 + 2
    source = f"Tom has {a} apples and buys {b} more, so he has {a}+{b} = {a + b} apples."
    text = f"Tom has {a} apples and buys {b} more, so he has {a}+{b} = [Calculator({a} + {b}) → {a + b}] {a + b} apples."
    row: dict[str, Any] = {"id": f"calc-{i}", "text": text, "source_text": source, "calls": []}
    if split is not None:
        row["split"] = split
    return row


def plain_row(i: int, split: str | None = "train") -> dict[str, Any]:
    row: dict[str, Any] = {"id": f"plain-{i}", "text": f"The river number {i} flows north past the old mill."}
    if split is not None:
        row["split"] = split
    return row


def small_corpus(path: Path, n_train: int = 24, n_dev: int = 4) -> Path:
    rows = [calc_row(i, "train") for i in range(n_train)] + [calc_row(100 + i, "dev") for i in range(n_dev)]
    rows += [plain_row(i, "train") for i in range(4)] + [plain_row(100, "dev")]
    return write_jsonl(path, rows)


def config(data: Path, out: Path, model: Path, **overrides: Any) -> TrainConfig:
    base: dict[str, Any] = dict(
        data=str(data),
        out=str(out),
        model=str(model),
        max_steps=3,
        batch_size=4,
        grad_accum=1,
        eval_steps=3,
        save_steps=3,
        tensorboard=False,
    )
    base.update(overrides)
    return TrainConfig(**base)


# --------------------------------------------------------------------------------------------- data and mixing


def test_mix_ratio_accounting(tmp_path: Path) -> None:
    """0.5 plain per annotated text: plain documents first, then source texts; the call share is counted."""
    rows = [calc_row(i) for i in range(20)] + [plain_row(i) for i in range(6)]
    corpus = read_corpus(write_jsonl(tmp_path / "d.jsonl", rows), dev_fraction=0.0)
    assert len(corpus.annotated) == 20 and len(corpus.plain) == 6 and len(corpus.source) == 20

    train, dev, stats = mix(corpus, ratio=0.5, mix_from="auto", seed=1)
    assert dev == [] and stats.dev.texts == 0
    origins = [t.origin for t in train]
    assert origins.count(ANNOTATED) == 20
    assert origins.count(PLAIN) == 6  # every plain document first ...
    assert origins.count(SOURCE) == 4  # ... then source texts up to round(0.5 × 20) = 10
    assert stats.train.plain_wanted == 10 and stats.train.plain == 10 and stats.train.with_call == 20
    assert stats.train.call_share == pytest.approx(20 / 30)
    assert stats.train.by_origin == {ANNOTATED: 20, PLAIN: 6, SOURCE: 4}
    # a source text is its annotated twin without the call
    twin = {t.id: t for t in train if t.origin == ANNOTATED}
    for t in (t for t in train if t.origin == SOURCE):
        assert "[" not in t.text and t.text.split("=")[0] == twin[t.id].text.split("=")[0]

    only_plain = mix(corpus, ratio=0.5, mix_from="plain", seed=1)[2]
    assert only_plain.train.plain == 6 and only_plain.train.call_share == pytest.approx(20 / 26)
    assert any("wants 10 plain" in note for note in only_plain.notes)

    assert mix(corpus, ratio=0.0)[2].train.call_share == 1.0
    as_given = mix(corpus, ratio=None)[2]
    assert as_given.train.by_origin == {ANNOTATED: 20, PLAIN: 6}

    # the draw depends on the seed only, not on the order rows were read in
    picked = sorted(t.id for t in mix(corpus, 0.5, "source", seed=3)[0] if t.origin == SOURCE)
    shuffled = read_corpus(write_jsonl(tmp_path / "r.jsonl", rows[::-1]), dev_fraction=0.0)
    assert picked == sorted(t.id for t in mix(shuffled, 0.5, "source", seed=3)[0] if t.origin == SOURCE)
    others = {
        tuple(sorted(t.id for t in mix(corpus, 0.5, "source", seed=s)[0] if t.origin == SOURCE))
        for s in range(6)
    }
    assert len(others) > 1


def test_split_field_then_hash_and_test_rows_left_out(tmp_path: Path) -> None:
    rows = [calc_row(i, split=None) for i in range(200)] + [calc_row(500, "test"), calc_row(501, "dev")]
    corpus = read_corpus(write_jsonl(tmp_path / "d.jsonl", rows), dev_fraction=0.2)
    dev_ids = {t.id for t in corpus.annotated if t.split == "dev"}
    assert "calc-501" in dev_ids and "calc-500" not in {t.id for t in corpus.annotated}
    assert corpus.skipped == {"split=test": 1}
    assert 20 < len(dev_ids) < 70  # about 20 % of 200 by hash, plus the marked one
    again = read_corpus(write_jsonl(tmp_path / "e.jsonl", rows[::-1]), dev_fraction=0.2)
    assert dev_ids == {t.id for t in again.annotated if t.split == "dev"}


def test_annotate_folder_reads_shards_and_documents_without_calls(tmp_path: Path) -> None:
    """An annotate output: shard rows give annotated texts; the input's documents that kept no call are plain."""
    inp = write_jsonl(
        tmp_path / "input.jsonl",
        [{"id": f"doc-{i}", "body": f"Document {i} about the weather in spring."} for i in range(5)],
    )
    folder = tmp_path / "augmented"
    write_jsonl(folder / "shard-00000.jsonl", [calc_row(i) for i in range(3)])
    records = [{"id": f"calc-{i}", "split": "train", "status": "ok", "kept_calls": 1} for i in range(3)]
    records += [{"id": f"doc-{i}", "split": "train", "status": "ok", "kept_calls": 0} for i in range(4)]
    records += [{"id": "doc-4", "split": "train", "status": "bad", "kept_calls": 0}]
    write_jsonl(folder / "records-00000.jsonl", records)
    manifest = {
        "config": {"format": "jsonl", "text_field": "body", "id_field": "id"},
        "input": {"path": str(inp)},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    corpus = read_corpus(folder)
    assert corpus.kind == "annotate" and len(corpus.annotated) == 3
    assert sorted(t.id for t in corpus.plain) == ["doc-0", "doc-1", "doc-2", "doc-3"]
    assert corpus.plain[0].text.startswith("Document")

    inp.unlink()  # the input moved away: train on the rest and say why
    moved = read_corpus(folder)
    assert moved.plain == [] and any("not a local file" in n for n in moved.notes)


def test_after_call_loss_masks_labels_before_the_call(smol_tokenizer: Any) -> None:
    from toolformer.train.trainer import collator

    text = "Natalia sold 48/2 = [Calculator(48 / 2) → 24] 24 clips in May."
    start = text.index("[")
    items = [
        Text("a", text, "train", ANNOTATED, start),
        Text("b", "Natalia sold 48/2 = 24 clips.", "train", SOURCE, start),
        Text("c", "No numbers here at all.", "train", PLAIN),
    ]
    rows = encode_many(smol_tokenizer, items, loss="after-call", max_length=64)
    batch = collator(smol_tokenizer)(rows)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    tok = smol_tokenizer

    first = int((labels[0] != -100).nonzero()[0])
    assert "[" in tok.decode(ids[0, first]) and "[" not in tok.decode(ids[0, :first])
    assert (labels[0, :first] == -100).all()
    n = int(mask[0].sum())
    assert (labels[0, first:n] == ids[0, first:n]).all() and (labels[0, n:] == -100).all()
    assert int(ids[0, n - 1]) == tok.eos_token_id  # the text ends with EOS, which is learned too

    # the source twin is masked up to where its twin's call starts: its first label is the "24" there
    first_b = int((labels[1] != -100).nonzero()[0])
    assert tok.decode(ids[1, :first_b]).rstrip() == "Natalia sold 48/2 ="
    # a plain document counts whole
    n_c = int(mask[2].sum())
    assert (labels[2, :n_c] == ids[2, :n_c]).all()

    whole = collator(tok)(encode_many(tok, items[:1], loss="all", max_length=64))
    assert (whole["labels"] == whole["input_ids"]).all()

    # a call cut off by max_length leaves nothing to learn in after-call mode: the text is dropped
    assert encode_many(tok, items[:1], loss="after-call", max_length=first - 1) == [None]
    assert encode_many(tok, items[:1], loss="all", max_length=first - 1)[0] is not None


def test_config_checks_and_mix_ratio_parsing() -> None:
    with pytest.raises(ConfigError, match="save_steps=30 must be a multiple of eval_steps=20"):
        TrainConfig(data="d", out="o", save_steps=30, eval_steps=20).check()
    with pytest.raises(ConfigError, match="loss='after'"):
        TrainConfig(data="d", out="o", loss="after").check()
    with pytest.raises(ConfigError, match="batch_size=0"):
        TrainConfig(data="d", out="o", batch_size=0).check()
    assert parse_mix_ratio("all") is None and parse_mix_ratio("0.25") == 0.25
    with pytest.raises(ConfigError, match="mix_ratio='-1'"):
        parse_mix_ratio("-1")
    assert TrainConfig(lora=True).lr > TrainConfig().lr  # LoRA default lr is larger
    assert TrainConfig(learning_rate=1e-5, lora=True).lr == 1e-5


def test_bad_data_is_one_line_naming_file_and_field(tmp_path: Path) -> None:
    out = tmp_path / "out"
    missing = write_jsonl(tmp_path / "bad.jsonl", [calc_row(0), {"id": "x", "body": "no text field"}])
    with pytest.raises(DataError) as err:
        read_corpus(missing)
    message = str(err.value)
    assert (
        "\n" not in message
        and f"{missing}:2" in message
        and "'text'" in message
        and "--text-field" in message
    )

    not_json = tmp_path / "broken.jsonl"
    not_json.write_text(json.dumps(calc_row(0)) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.jsonl:2 is not JSON"):
        read_corpus(not_json)
    with pytest.raises(DataError, match="field 'text' is a int"):
        read_corpus(write_jsonl(tmp_path / "int.jsonl", [{"text": 5}]))
    with pytest.raises(DataError, match="no such file"):
        read_corpus(tmp_path / "nope.jsonl")

    result = runner.invoke(app, ["train", str(missing), "--out", str(out), "--model", str(tmp_path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    joined = " ".join(result.stderr.split())  # rich wraps long lines at the terminal width
    assert joined.startswith("error:") and "bad.jsonl:2" in joined and "'text'" in joined
    assert not (out / "train_config.json").exists()  # nothing is written before the data checks out


def test_out_must_be_empty_without_resume_and_resume_refuses_changed_options(tmp_path: Path) -> None:
    from toolformer.train import train

    data = small_corpus(tmp_path / "d.jsonl")
    out = tmp_path / "out"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        train(config(data, out, tmp_path))
    config(data, out, tmp_path, loss="all").save(out)
    with pytest.raises(ConfigError, match="loss: 'all' -> 'after-call'"):
        train(config(data, out, tmp_path, loss="after-call", resume=True))


def test_complete_checkpoints_ignores_half_written_ones(tmp_path: Path) -> None:
    from toolformer.train.trainer import _remove_incomplete, complete_checkpoints

    for step, complete in ((2, True), (10, True), (12, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-10"]
    assert _remove_incomplete(tmp_path) == ["checkpoint-12"]
    assert not (tmp_path / "checkpoint-12").exists()


# --------------------------------------------------------------------------------------------- training


def _changed(model_a: Any, model_b: Any, name: str) -> bool:
    import torch

    a = dict(model_a.named_parameters())[name].detach().float()
    b = dict(model_b.named_parameters())[name].detach().float()
    return not torch.equal(a, b)


def test_a_trained_model_is_marked_zero_shot_keeping_other_settings(tmp_path: Path) -> None:
    from toolformer.train.trainer import _mark_trained_toolformer

    _mark_trained_toolformer(tmp_path)
    assert json.loads((tmp_path / "toolformer.json").read_text()) == {"prompt": "zero-shot"}
    (tmp_path / "toolformer.json").write_text(
        json.dumps({"base": "smollm2-135m-instruct", "prompt": "few-shot"})
    )
    _mark_trained_toolformer(tmp_path)
    meta = json.loads((tmp_path / "toolformer.json").read_text())
    assert meta == {"base": "smollm2-135m-instruct", "prompt": "zero-shot"}


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora-merged"])
def test_train_then_load_round_trip(tmp_path: Path, tiny_dir: Path, lora: bool) -> None:
    from toolformer.models import load_model
    from toolformer.runtime.decode import DecodeConfig
    from toolformer.runtime.engine import Toolformer
    from toolformer.train import train

    data = small_corpus(tmp_path / "d.jsonl")
    out = tmp_path / "tuned"
    report = train(
        config(data, out, tiny_dir, lora=lora, loss="after-call", max_steps=4, eval_steps=2, save_steps=2)
    )

    assert report.steps == 4 and report.start_step == 0 and report.resumed_from is None
    assert report.mode == ("lora-merged" if lora else "full")
    assert len(report.losses) == 4 and all(loss["loss"] > 0 for loss in report.losses)
    assert [d["step"] for d in report.dev_curve] == [0, 2, 4]  # at the start, every 2 steps, at the end
    assert report.best is not None and report.best["step"] in (2, 4)
    assert report.tokens_this_run > 0 and report.tokens_per_second and report.tokens_per_second > 0
    assert report.call_share == pytest.approx(24 / 36)  # 24 annotated + 12 plain (4 documents, 8 sources)
    if lora:
        assert report.trainable_params < report.total_params / 2
    else:
        assert report.trainable_params == report.total_params

    saved = json.loads((out / "train_report.json").read_text())
    assert saved["steps"] == 4 and saved["mix"]["train"]["with_call"] == 24
    assert json.loads((out / "train_config.json").read_text())["lora"] is lora
    assert (out / "chat_template.jinja").is_file() or "chat_template" in (
        out / "tokenizer_config.json"
    ).read_text()
    assert not (out / "checkpoints").exists()  # removed after a finished run
    assert not (out / "adapter_config.json").exists()  # LoRA is merged: a plain model folder

    model, tok = load_model(str(out))
    base, _ = load_model(str(tiny_dir))
    assert _changed(model, base, "model.layers.0.self_attn.q_proj.weight")
    # Marked as a trained Toolformer: ask and chat prompt it zero-shot, as its training texts read.
    assert json.loads((out / "toolformer.json").read_text()) == {"prompt": "zero-shot"}
    assert Toolformer(model, tok).prompt_style == "zero-shot"
    gen = Toolformer(model, tok).generate(["Tom has 3 apples"], DecodeConfig(max_new_tokens=4))
    assert len(gen) == 1 and gen[0].new_tokens >= 1


def test_init_adapter_continues_a_trained_adapter(tmp_path: Path, tiny_dir: Path) -> None:
    from safetensors.torch import load_file

    from toolformer.errors import ConfigError, ModelNotFoundError
    from toolformer.train import train

    data = small_corpus(tmp_path / "d.jsonl")
    first = tmp_path / "first"
    train(config(data, first, tiny_dir, lora=True, merge=False, max_steps=2, learning_rate=1e-2))
    # Continued with a learning rate too small to move it: the weights are the first run's, not a new adapter's
    # (a new one starts with every lora_B at zero).
    again = tmp_path / "again"
    report = train(
        config(data, again, tiny_dir, lora=True, merge=False, max_steps=1, learning_rate=1e-12,
               init_adapter=str(first))
    )  # fmt: skip
    assert report.mode == "lora-adapter"
    a, b = load_file(first / "adapter_model.safetensors"), load_file(again / "adapter_model.safetensors")
    b_keys = [k for k in a if "lora_B" in k]
    assert b_keys and set(a) == set(b)
    assert any(a[k].abs().max() > 0 for k in b_keys)
    assert all(torch_allclose(a[k], b[k]) for k in a)

    with pytest.raises(ConfigError, match="init_adapter='x' needs --lora"):
        config(data, tmp_path / "o1", tiny_dir, init_adapter="x").check()
    with pytest.raises(ModelNotFoundError, match="init_adapter='.*nowhere'"):
        train(config(data, tmp_path / "o2", tiny_dir, lora=True, init_adapter=str(tmp_path / "nowhere")))


def test_init_adapter_names_the_shipped_adapter_by_its_alias_and_refuses_another_base() -> None:
    from toolformer.errors import ModelNotFoundError
    from toolformer.models.adapters import adapter_folder
    from toolformer.models.aliases import ALIASES, adapter_dir

    folder = adapter_folder("toolformer-135m", base="smollm2-135m-instruct")
    assert folder == adapter_dir(ALIASES["toolformer-135m"]) and (folder / "adapter_config.json").is_file()
    with pytest.raises(
        ModelNotFoundError, match="was trained on 'smollm2-135m-instruct', not on model='gemma3-270m'"
    ):
        adapter_folder("toolformer-135m", base="gemma3-270m")


def torch_allclose(x: Any, y: Any) -> bool:
    import torch

    return bool(torch.allclose(x.float(), y.float(), atol=1e-6))


@pytest.mark.slow
@pytest.mark.timeout(900)  # the wait for the first checkpoint below has no deadline of its own
def test_resume_after_kill_continues_from_the_checkpoint(tmp_path: Path, tiny_dir: Path) -> None:
    data = small_corpus(tmp_path / "d.jsonl", n_train=40)
    out = tmp_path / "tuned"
    cmd = [
        sys.executable, "-m", "toolformer.cli", "train", str(data), "--out", str(out), "--model", str(tiny_dir),
        "--max-steps", "10", "--save-steps", "2", "--eval-steps", "2", "--batch-size", "2", "--grad-accum", "1",
        "--no-tensorboard", "--quiet", "--json",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        while not list((out / "checkpoints").glob("checkpoint-*/trainer_state.json")):
            assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(30)
    assert first.returncode == -signal.SIGKILL
    assert not (out / "train_report.json").exists()
    done = sorted(
        int(p.parent.name.split("-")[1])
        for p in (out / "checkpoints").glob("checkpoint-*/trainer_state.json")
    )
    assert done and done[-1] < 10

    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = json.loads(resumed.stdout)
    start = report["start_step"]
    assert (
        start >= done[-1] and start > 0
    )  # the last complete checkpoint (a newer one may have been completed)
    assert report["resumed_from"] == f"checkpoint-{start}"
    assert report["steps"] == 10 and report["steps_this_run"] == 10 - start
    # the losses before the kill come back from the checkpoint's trainer state: one per step, no restart at 0
    assert [loss["step"] for loss in report["losses"]] == list(range(1, 11))

    from toolformer.train import train

    saved = TrainConfig.load(out / "train_config.json")
    assert (
        train(saved).steps == 10
    )  # rerunning a finished run with --resume returns its report, trains nothing
