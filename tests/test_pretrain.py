"""`toolformer pretrain`: sizes, corpus reading and packing, a tiny run that learns, resume, loading, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fakes import write_jsonl
from toolformer.cli import app
from toolformer.errors import ConfigError, DataError
from toolformer.pretrain.config import SIZES, PretrainConfig
from toolformer.pretrain.data import pack, read_documents

runner = CliRunner()

SENTENCE = "The cat sat on the mat, and 23 times 47 is 1081. "


def repeated_corpus(path: Path, n: int = 40) -> Path:
    """`n` copies of one short document: a corpus a model can learn in a few steps (train and dev alike)."""
    return write_jsonl(path, [{"id": f"d{i}", "text": SENTENCE * 3} for i in range(n)])


def cfg(corpus: Path, out: Path, **overrides: Any) -> PretrainConfig:
    base = dict(
        corpus=str(corpus), out=str(out), size="tiny", seq_len=32, batch_size=4, grad_accum=1,
        learning_rate=1e-2, warmup_ratio=0.0, max_steps=12, eval_steps=4, save_steps=4, logging_steps=1,
        dev_fraction=0.2, tensorboard=False,
    )  # fmt: skip
    return PretrainConfig(**(base | overrides))


# --------------------------------------------------------------------------------------------- sizes, config


@pytest.mark.parametrize("name", ["tiny", "10m"])
def test_size_table_counts_the_parameters_of_the_built_model(name: str, smol_tokenizer: Any) -> None:
    from transformers import LlamaForCausalLM

    size = SIZES[name]
    model = LlamaForCausalLM(size.llama_config(smol_tokenizer, seq_len=64))
    assert sum(p.numel() for p in model.parameters()) == size.parameters(len(smol_tokenizer))
    # Tied: the output head is the input embedding, so the vocabulary is paid for once.
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    # The names promise the order of magnitude, with SmolLM2's 49,152-token vocabulary.
    assert {"tiny": 1e6, "10m": 10e6}[name] * 0.9 < size.parameters(49152) < {"tiny": 2e6, "10m": 11e6}[name]


def test_config_checks_name_the_field_and_steps_follow_the_budget() -> None:
    with pytest.raises(ConfigError, match="size='1b' is not one of tiny, 10m, 30m"):
        PretrainConfig(corpus="c", out="o", size="1b").check()
    with pytest.raises(ConfigError, match="seq_len=4 must be at least 8"):
        PretrainConfig(corpus="c", out="o", seq_len=4).check()
    with pytest.raises(ConfigError, match="min_lr_ratio=1.5"):
        PretrainConfig(corpus="c", out="o", min_lr_ratio=1.5).check()
    with pytest.raises(ConfigError, match="out=''"):
        PretrainConfig(corpus="c").check()
    c = PretrainConfig(corpus="c", out="o", seq_len=100, batch_size=2, grad_accum=5)  # 1,000 tokens a step
    assert c.tokens_per_step == 1000
    assert c.planned_steps(train_blocks=95) == 10  # one epoch of 95 blocks, 10 blocks a step: 9.5 -> 10
    assert PretrainConfig(**(c.to_dict() | {"epochs": 2.0})).planned_steps(95) == 19
    assert PretrainConfig(**(c.to_dict() | {"max_steps": 7})).planned_steps(95) == 7
    assert PretrainConfig(**(c.to_dict() | {"max_steps": 7, "max_tokens": 2001})).planned_steps(95) == 3


# --------------------------------------------------------------------------------------------- corpus


def test_documents_from_jsonl_text_and_folders_with_their_splits(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "c" / "a.jsonl",
        [
            {"id": "1", "text": "first", "split": "train"},
            {"id": "2", "text": "second", "split": "dev"},
            {"id": "3", "text": "third", "split": "test"},  # kept out of both
            {"id": "4", "text": "  "},
            {"id": "5", "text": "Tom has [Calculator(2 + 3) → 5] 5 apples.", "split": "train"},
        ],
    )
    (tmp_path / "c" / "b.txt").write_text("para one\nstill one\n\n\npara two\n", encoding="utf-8")
    (tmp_path / "c" / "skip.csv").write_text("not,read\n", encoding="utf-8")
    docs = read_documents(tmp_path / "c", dev_fraction=0.0)
    assert docs.files == [str(tmp_path / "c" / "a.jsonl"), str(tmp_path / "c" / "b.txt")]
    assert docs.train == [
        "first",
        "Tom has [Calculator(2 + 3) → 5] 5 apples.",
        "para one\nstill one",
        "para two",
    ]
    assert docs.dev == ["second"]
    assert docs.with_call == 1
    assert docs.skipped == {"split=test": 1, "empty text": 1}
    # Without a split field the dev share comes from a hash of the id: the same documents whatever the order.
    rows = [{"id": f"doc-{i}", "text": f"text {i}"} for i in range(200)]
    one = read_documents(write_jsonl(tmp_path / "x.jsonl", rows), dev_fraction=0.25)
    two = read_documents(write_jsonl(tmp_path / "y.jsonl", rows[::-1]), dev_fraction=0.25)
    assert sorted(one.dev) == sorted(two.dev) and 20 < len(one.dev) < 80


def test_packing_joins_documents_with_end_of_text_into_full_blocks(smol_tokenizer: Any) -> None:
    texts = ["Paris is in France.", "23 times 47 is 1081."]
    ids = [smol_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    stream = ids[0] + [smol_tokenizer.eos_token_id] + ids[1] + [smol_tokenizer.eos_token_id]
    packed = pack(smol_tokenizer, texts, seq_len=4, batch=1)
    assert packed.tokens == len(stream) and packed.documents == 2
    assert [t for b in packed.blocks for t in b] == stream[: len(stream) // 4 * 4]
    assert all(len(b) == 4 for b in packed.blocks) and packed.dropped_tokens == len(stream) % 4


def test_bad_corpus_is_one_line_and_exit_2(tmp_path: Path) -> None:
    no_field = write_jsonl(tmp_path / "bad.jsonl", [{"text": "ok"}, {"body": "no text field"}])
    with pytest.raises(DataError, match=r"bad\.jsonl:2 has no field 'text'; pick the text with --text-field"):
        read_documents(no_field)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.jsonl:2 is not JSON"):
        read_documents(broken)
    with pytest.raises(DataError, match="no training document"):
        read_documents(write_jsonl(tmp_path / "dev.jsonl", [{"text": "x", "split": "dev"}]))
    with pytest.raises(DataError, match="without .jsonl, .txt or .md files"):
        (tmp_path / "empty").mkdir()
        read_documents(tmp_path / "empty")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"fine\n\xff\xfe oops\n")
    with pytest.raises(DataError, match=r"bin\.txt:2: not UTF-8"):
        read_documents(binary)

    for corpus, expected in ((tmp_path / "nope.jsonl", "no such file"), (no_field, "bad.jsonl:2")):
        out = tmp_path / f"out-{corpus.stem}"
        result = runner.invoke(app, ["pretrain", str(corpus), "--out", str(out), "--size", "tiny"])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        joined = " ".join(result.stderr.split())  # rich wraps long lines at the terminal width
        assert joined.startswith("error:") and expected in joined and result.stderr.count("error:") == 1
        assert not out.exists()  # nothing is written before the corpus checks out


def test_a_corpus_shorter_than_one_block_is_refused(tmp_path: Path, smol_tokenizer: Any) -> None:
    from toolformer.pretrain import pretrain

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": "short"}])
    with pytest.raises(DataError, match="fewer than one block"):
        pretrain(cfg(corpus, tmp_path / "out", dev_fraction=0.0, seq_len=64), smol_tokenizer)


# --------------------------------------------------------------------------------------------- training


def test_a_tiny_model_learns_a_repeated_corpus_and_loads_as_a_model(
    tmp_path: Path, smol_tokenizer: Any
) -> None:
    from toolformer.models import load_model
    from toolformer.pretrain import pretrain
    from toolformer.runtime.decode import DecodeConfig
    from toolformer.runtime.engine import Toolformer

    corpus = repeated_corpus(tmp_path / "c.jsonl")
    out = tmp_path / "model"
    report = pretrain(cfg(corpus, out), smol_tokenizer)

    assert report.steps == 12 and report.start_step == 0 and report.stopped_by == "steps"
    assert report.parameters == SIZES["tiny"].parameters(len(smol_tokenizer))
    assert report.tokens_per_step == 128 and report.tokens_seen == report.losses[-1]["tokens"]
    # Counted as fed: steps of 4 blocks of 32 tokens, but the step that ends an epoch holds only what is left.
    blocks = report.train["blocks"]
    epochs, steps = divmod(12, -(-blocks // 4))
    assert report.tokens_seen == 32 * (epochs * blocks + min(4 * steps, blocks))
    losses = [p["loss"] for p in report.losses]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 1.0  # it learns
    assert [d["step"] for d in report.dev_curve] == [0, 4, 8, 12]  # at the start, every 4 steps, at the end
    ppl = [d["ppl"] for d in report.dev_curve]
    assert ppl[0] > 10_000 and ppl[-1] < ppl[0] / 10  # from ~uniform over 49k tokens to far better
    assert report.dev["scored"] >= 1 and report.documents["dev"] >= 1
    lrs = [p["learning_rate"] for p in report.losses]
    assert max(lrs) == pytest.approx(1e-2) and lrs[-1] < 0.2e-2  # cosine down towards 10 % of the peak

    saved = json.loads((out / "pretrain_report.json").read_text())
    assert saved["steps"] == 12 and saved["dev_curve"] == report.dev_curve
    assert json.loads((out / "pretrain_config.json").read_text())["size"] == "tiny"
    assert (out / "loss.png").stat().st_size > 1000 and report.plot == str(out / "loss.png")
    assert not (out / "checkpoints").exists()  # removed after a finished run
    assert not (out / "toolformer.json").exists()  # no call in the corpus: not marked zero-shot

    model, tok = load_model(str(out))
    assert len(tok) == len(smol_tokenizer) and model.config.tie_word_embeddings
    gen = Toolformer(model, tok).generate(["The cat sat"], DecodeConfig(max_new_tokens=6))
    assert len(gen) == 1 and gen[0].new_tokens >= 1


def test_resume_continues_from_the_last_checkpoint(tmp_path: Path, smol_tokenizer: Any) -> None:
    from transformers import TrainerCallback

    from toolformer.pretrain import pretrain

    class Crash(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 6:
                raise KeyboardInterrupt  # killed after checkpoint-4 was written, before checkpoint-8

    corpus = write_jsonl(
        tmp_path / "c.jsonl",
        [{"text": SENTENCE * 2, "split": "train"}] * 30
        + [{"text": "Tom has [Calculator(2 + 3) → 5] 5 apples.", "split": "dev"}] * 6,
    )
    out = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg(corpus, out), smol_tokenizer, callbacks=[Crash()])
    assert not (out / "pretrain_report.json").exists()
    assert (out / "checkpoints" / "checkpoint-4" / "trainer_state.json").is_file()

    with pytest.raises(ConfigError, match="other options"):
        pretrain(cfg(corpus, out, resume=True, seq_len=16), smol_tokenizer)
    report = pretrain(cfg(corpus, out, resume=True, keep_checkpoints=True), smol_tokenizer)
    assert report.resumed_from == "checkpoint-4" and report.start_step == 4 and report.steps == 12
    assert [d["step"] for d in report.dev_curve] == [0, 4, 8, 12]  # the first run's points come back too
    assert report.checkpoints == [
        "checkpoint-4",
        "checkpoint-8",
        "checkpoint-12",
    ]  # kept: each loads as a model
    assert report.documents["with_call"] == 6
    # A corpus with calls marks the model zero-shot, like `toolformer train` output.
    assert json.loads((out / "toolformer.json").read_text()) == {"prompt": "zero-shot"}
    # A finished run is not redone, and without --resume the folder is refused.
    assert pretrain(cfg(corpus, out, resume=True), smol_tokenizer).steps == 12
    with pytest.raises(ConfigError, match="already holds a pretrained model"):
        pretrain(cfg(corpus, out), smol_tokenizer)


def test_cli_pretrains_a_tiny_model_that_ask_loads(tmp_path: Path, tiny_dir: Path) -> None:
    corpus = repeated_corpus(tmp_path / "c.jsonl", n=20)
    out = tmp_path / "model"
    args = ["pretrain", str(corpus), "--out", str(out), "--size", "tiny", "--tokenizer", str(tiny_dir)]
    args += [
        "--seq-len",
        "32",
        "--max-steps",
        "3",
        "--eval-steps",
        "3",
        "--save-steps",
        "3",
        "--dev-fraction",
        "0.3",
    ]
    args += ["--json", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["steps"] == 3 and report["size"] == "tiny" and report["dev_curve"][-1]["step"] == 3
    asked = runner.invoke(app, ["ask", "--model", str(out), "--max-new-tokens", "4", "Hello"])
    assert asked.exit_code == 0, asked.output


def test_a_run_stopped_by_max_minutes_keeps_its_checkpoint_and_resumes(
    tmp_path: Path, smol_tokenizer: Any
) -> None:
    from toolformer.pretrain import pretrain

    corpus = repeated_corpus(tmp_path / "c.jsonl")
    out = tmp_path / "model"
    # A budget shorter than one step: the run stops after its first, saving and evaluating it.
    stopped = pretrain(cfg(corpus, out, max_minutes=1e-6), smol_tokenizer)
    assert stopped.stopped_by == "max_minutes" and stopped.steps == 1 and stopped.planned_steps == 12
    assert [d["step"] for d in stopped.dev_curve] == [0, 1] and stopped.checkpoints == ["checkpoint-1"]
    assert (out / "model.safetensors").is_file()  # a usable model already
    with pytest.raises(ConfigError, match="already holds a pretrained model"):
        pretrain(cfg(corpus, out, max_minutes=1e-6), smol_tokenizer)

    done = pretrain(cfg(corpus, out, resume=True), smol_tokenizer)  # without the budget, to the planned end
    assert done.stopped_by == "steps" and done.resumed_from == "checkpoint-1" and done.steps == 12
    assert not (out / "checkpoints").exists()  # a finished run removes them (no keep_checkpoints)
    assert pretrain(cfg(corpus, out, resume=True), smol_tokenizer).steps == 12  # finished: not redone
