"""Tests for adapter aliases (`toolformer-135m`): base GGUF + shipped LoRA adapter, merged once and cached."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from toolformer import models
from toolformer.errors import ConfigError, MissingExtraError, ModelNotFoundError
from toolformer.models.aliases import _adapter_alias
from toolformer.models.cache import _adapter_fingerprint, _build_merged

BASE = "tiny-base"
TOOLED = "tiny-tooled"
META = {"prompt": "zero-shot", "base": BASE}
TEXT = "Question: what is 23 * 47?\nAnswer: [Calculator(23 * 47) → 1081] 1081"


@pytest.fixture
def fake_base(fake_gguf_alias: Any) -> SimpleNamespace:
    """A base alias whose 'GGUF' reads as the tiny model (conftest's `fake_gguf_alias`)."""
    return fake_gguf_alias(BASE, "tiny base")


def _write_adapter(folder: Path, model: Any, seed: int) -> None:
    """A random (non-zero) LoRA adapter for `model` saved by peft, plus toolformer.json and a model card."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(copy.deepcopy(model), config)
    peft_model.save_pretrained(str(folder))
    (folder / "toolformer.json").write_text(json.dumps(META), encoding="utf-8")
    (folder / "README.md").write_text(f"# {TOOLED}\n\nseed {seed}\n", encoding="utf-8")


@pytest.fixture
def tooled(fake_base: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """An adapter alias TOOLED = BASE + a tiny LoRA adapter in a temporary ADAPTERS_ROOT; counts merges."""
    root = tmp_path / "adapters"
    folder = root / TOOLED
    folder.mkdir(parents=True)
    _write_adapter(folder, fake_base.model, seed=1)
    monkeypatch.setattr("toolformer.models.aliases.ADAPTERS_ROOT", root)
    monkeypatch.setitem(models.ALIASES, TOOLED, _adapter_alias(TOOLED, fake_base.alias, "tiny tooled"))
    state = SimpleNamespace(folder=folder, base=fake_base, merges=0)
    real_build = _build_merged

    def counting_build(source: Any, fingerprint: dict[str, Any]) -> None:
        state.merges += 1
        real_build(source, fingerprint)

    monkeypatch.setattr("toolformer.models.cache._build_merged", counting_build)
    return state


def _logits(model: Any, tokenizer: Any) -> Any:
    import torch

    ids = tokenizer(TEXT, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits[0]


def _peft_logits(base_model: Any, folder: Path, tokenizer: Any) -> Any:
    from peft import PeftModel

    return _logits(PeftModel.from_pretrained(copy.deepcopy(base_model), str(folder)).eval(), tokenizer)


# --------------------------------------------------------------------------------------------- merging


def test_merged_logits_equal_base_plus_adapter(tooled: SimpleNamespace) -> None:
    import torch

    model, tokenizer = models.load_model(TOOLED)
    merged = _logits(model, tokenizer)
    expected = _peft_logits(tooled.base.model, tooled.folder, tokenizer)
    base = _logits(tooled.base.model, tokenizer)
    assert not torch.allclose(expected, base, atol=1e-3)  # the adapter changes the model ...
    torch.testing.assert_close(merged, expected, atol=1e-5, rtol=1e-5)  # ... and the merge is exactly it
    assert not model.training and tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    assert "lora" not in " ".join(name for name, _ in model.named_parameters())


def test_merged_cache_is_reused_then_rebuilt_when_the_adapter_changes(tooled: SimpleNamespace) -> None:
    import torch

    first, tokenizer = models.load_model(TOOLED)
    cache = models.cache_dir(TOOLED)
    marker = json.loads((cache / models.MARKER).read_text())
    assert tooled.merges == 1 and len(tooled.base.model_reads) == 1
    assert marker["source"]["adapter"]["sha256"] == _adapter_fingerprint(tooled.folder)["sha256"]
    assert "model.safetensors" in marker["files"]
    assert not any(name.startswith("adapter_") for name in marker["files"])  # a plain model, not an adapter

    again, _ = models.load_model(TOOLED)
    assert tooled.merges == 1 and len(tooled.base.model_reads) == 1  # nothing rebuilt or re-read
    torch.testing.assert_close(_logits(again, tokenizer), _logits(first, tokenizer), atol=0, rtol=0)

    _write_adapter(tooled.folder, tooled.base.model, seed=2)  # the lead ships a new adapter
    changed, _ = models.load_model(TOOLED)
    assert tooled.merges == 2 and len(tooled.base.model_reads) == 1  # merged again; the base cache is reused
    expected = _peft_logits(tooled.base.model, tooled.folder, tokenizer)
    torch.testing.assert_close(_logits(changed, tokenizer), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(_logits(changed, tokenizer), _logits(first, tokenizer), atol=1e-3)
    assert "seed 2" in (cache / "README.md").read_text()
    assert {p.name for p in (models.toolformer_home() / "models").iterdir()} == {BASE, TOOLED}  # no leftovers


def test_merged_folder_carries_toolformer_json(tooled: SimpleNamespace) -> None:
    assert models.model_meta(TOOLED) == META  # from the shipped adapter, before anything is built
    model, _ = models.load_model(TOOLED)
    cache = models.cache_dir(TOOLED)
    assert json.loads((cache / models.META_FILE).read_text()) == META
    assert Path(model.config._name_or_path) == cache
    assert models.model_meta(model) == META  # what the engine reads from a loaded model
    assert models.model_meta(BASE) == {} and models.model_meta(tooled.base.model) == {}


def test_engine_loads_the_alias_and_finds_its_settings(tooled: SimpleNamespace) -> None:
    from toolformer.runtime.engine import Toolformer

    tf = Toolformer.load(TOOLED, tools="Calculator")
    assert tf.name == TOOLED and models.model_meta(tf.model) == META


def test_resolve_and_tokenizer_before_and_after_merging(tooled: SimpleNamespace) -> None:
    before = models.resolve_model(TOOLED)
    assert "merged on first load" in before and str(tooled.folder) in before and BASE in before
    tokenizer = models.load_tokenizer(TOOLED)  # never merges
    assert tooled.merges == 0 and not models.cache_dir(TOOLED).exists()
    assert tokenizer.encode(TEXT) == tooled.base.tokenizer.encode(TEXT)
    assert models.cache_model(TOOLED) == models.cache_dir(TOOLED) and tooled.merges == 1
    assert "merged cache" in models.resolve_model(TOOLED)
    assert models.load_tokenizer(TOOLED).padding_side == "left"


def test_cached_merge_loads_without_peft_but_building_needs_it(
    tooled: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    models.load_model(TOOLED)
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` now fails as if it were not installed
    models.load_model(TOOLED)
    (tooled.folder / "README.md").write_text("# a newer card\n", encoding="utf-8")  # any change re-merges
    with pytest.raises(MissingExtraError) as info:
        models.load_model(TOOLED)
    assert "pip install 'toolformer-kit[train]'" in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("missing", ["folder", *models.ADAPTER_FILES])
def test_missing_or_incomplete_adapter_is_one_line(
    missing: str, tooled: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if missing == "folder":
        monkeypatch.setattr("toolformer.models.aliases.ADAPTERS_ROOT", tmp_path / "empty")
    else:
        (tooled.folder / missing).unlink()
    for call in (models.load_model, models.resolve_model, models.load_tokenizer, models.cache_model):
        with pytest.raises(ModelNotFoundError) as info:
            call(TOOLED)
        message = str(info.value)
        assert "\n" not in message and TOOLED in message and "no trained adapter" in message
        assert "bash runs/toolformer_cpu.sh" in message and missing in message
    assert tooled.merges == 0


def test_shipped_alias_without_adapter_says_how_to_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    alias = models.ALIASES["toolformer-135m"]
    assert alias.base == models.BASE_MODEL and alias.adapter == "toolformer-135m"
    assert (
        models.adapter_dir(alias) == Path(models.__file__).parents[1] / "data" / "models" / "toolformer-135m"
    )
    monkeypatch.setattr("toolformer.models.resolve._find_package_dir", lambda package: tmp_path)
    (tmp_path / alias.gguf_file).write_bytes(b"GGUF")
    monkeypatch.setattr("toolformer.models.aliases.ADAPTERS_ROOT", tmp_path / "no-adapters")
    with pytest.raises(ModelNotFoundError, match=r"toolformer-135m.*no trained adapter.*toolformer_cpu\.sh"):
        models.load_model("toolformer-135m")


def test_adapter_for_another_base_is_refused(tooled: SimpleNamespace) -> None:
    (tooled.folder / "toolformer.json").write_text(json.dumps({"prompt": "zero-shot", "base": "gemma3-270m"}))
    with pytest.raises(ModelNotFoundError, match=r"trained on 'gemma3-270m'"):
        models.load_model(TOOLED)
    (tooled.folder / "toolformer.json").write_text("[1, 2]")
    with pytest.raises(ModelNotFoundError, match=r"toolformer\.json holds list"):
        models.load_model(TOOLED)


def test_llamacpp_backend_refuses_the_alias_with_export_hint(tooled: SimpleNamespace) -> None:
    from toolformer.runtime.llamacpp import resolve_gguf

    with pytest.raises(ConfigError) as info:
        resolve_gguf(TOOLED)
    message = str(info.value)
    assert "\n" not in message and f"toolformer export {TOOLED} --format gguf" in message


def test_defaults_read_one_constant(tooled: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    from toolformer.evals.config import EvalConfig
    from toolformer.runtime.engine import Toolformer

    assert EvalConfig().model == models.DEFAULT_MODEL
    monkeypatch.setattr("toolformer.models.aliases.DEFAULT_MODEL", TOOLED)  # what flipping the default does
    tf = Toolformer.load(tools="Calculator")
    assert tf.name == TOOLED and models.model_meta(tf.model) == META


def test_ship_adapter_stores_half_precision_weights_and_names_the_base(
    tooled: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from safetensors.torch import load_file

    trained = tmp_path / "trained"
    _write_adapter(trained, tooled.base.model, seed=5)
    config = json.loads((trained / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "/a/path/of/this/machine"
    (trained / "adapter_config.json").write_text(json.dumps(config))
    (tooled.folder / "toolformer.json").unlink()
    dest = models.ship_adapter(trained, TOOLED, base=BASE)
    assert dest == tooled.folder
    shipped = json.loads((dest / "adapter_config.json").read_text())
    assert shipped["base_model_name_or_path"] == BASE
    assert json.loads((dest / "toolformer.json").read_text()) == META
    weights = load_file(dest / "adapter_model.safetensors")
    assert weights and all(w.dtype == torch.float16 for w in weights.values())
    model, tokenizer = models.load_model(TOOLED)  # merged from the shipped copy
    expected = _peft_logits(tooled.base.model, trained, tokenizer)
    assert torch.allclose(_logits(model, tokenizer), expected, atol=1e-2)


def test_ship_adapter_refuses_a_merged_training_output(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="--lora --no-merge"):
        models.ship_adapter(tmp_path, "toolformer-135m")


def test_a_training_output_adapter_folder_loads_merged_on_the_base_it_names(
    fake_base: SimpleNamespace, tmp_path: Path
) -> None:
    """`toolformer train --lora --no-merge --out DIR` prints `ask --model DIR`: the folder has no config.json, only
    the adapter; it loads merged onto the base its train_config.json names (an alias, not a cache path)."""
    folder = tmp_path / "trained"
    folder.mkdir()
    _write_adapter(folder, fake_base.model, seed=3)
    (folder / "toolformer.json").write_text(
        '{"prompt": "zero-shot"}', encoding="utf-8"
    )  # no "base", as train writes
    (folder / "train_config.json").write_text(json.dumps({"model": BASE}), encoding="utf-8")
    model, tokenizer = models.load_model(str(folder))
    _, base_tok = models.load_model(BASE)
    expected = _peft_logits(fake_base.model, folder, base_tok)
    import torch

    torch.testing.assert_close(_logits(model, tokenizer), expected, atol=1e-5, rtol=1e-5)
    assert models.model_meta(str(folder)) == {"prompt": "zero-shot"}
    (folder / "train_config.json").unlink()
    adapter_config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    adapter_config["base_model_name_or_path"] = ""
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config), encoding="utf-8")
    with pytest.raises(ModelNotFoundError, match="does not name its base model"):
        models.load_model(str(folder))
