"""`toolformer.compress` on a tiny random Llama: each method gives a loadable model with the expected changes."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from toolformer.compress import CompressConfig, compress
from toolformer.compress.measure import Measurement
from toolformer.compress.report import Variant, markdown_table, table_rows, write_report
from toolformer.compress.trim import select_layers
from toolformer.errors import ConfigError, ModelNotFoundError
from toolformer.models import load_model

HAS_TORCHAO = importlib.util.find_spec("torchao") is not None


@pytest.fixture(scope="module")
def ids(tiny_lm: tuple[Any, Any]) -> Any:
    return tiny_lm[1]("The cat sat on the mat and looked at the", return_tensors="pt").input_ids


def run(tiny_dir: Path, out: Path, method: str, **kwargs: Any) -> Any:
    return compress(CompressConfig(model=str(tiny_dir), method=method, out=str(out), measure=False, **kwargs))


def logits(model: Any, ids: Any) -> Any:
    import torch

    with torch.inference_mode():
        return model(input_ids=ids).logits.float()


def n_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def weight_file(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


# --------------------------------------------------------------------------------------------- trim


def test_select_layers_rules():
    assert select_layers(30, 24, "first") == list(range(24))
    spread = select_layers(30, 4, "spread")
    assert spread[0] == 0 and spread[-1] == 29 and len(spread) == 4 and spread == sorted(set(spread))
    assert select_layers(30, 30, "spread") == list(range(30))
    scores = [0.9, 0.1, 0.5, 0.05, 0.7]
    assert select_layers(5, 3, "importance", scores) == [0, 2, 4]  # the three highest, in model order
    with pytest.raises(ConfigError, match="keep_layers=31"):
        select_layers(30, 31, "spread")
    with pytest.raises(ConfigError, match="importance"):
        select_layers(5, 3, "importance", None)


def test_block_influence_scores_an_identity_layer_lowest(tiny_lm):
    import torch

    from toolformer.compress.trim import block_influence

    model, tokenizer = copy.deepcopy(tiny_lm[0]), tiny_lm[1]
    texts = ["The cat sat on the mat.", "Numbers like 23 and 47 multiply to 1081."]
    before = block_influence(model, tokenizer, texts)
    assert len(before) == 2 and all(0.0 < s < 2.0 for s in before)
    with torch.no_grad():  # zero the residual branches of layer 1: its output equals its input
        model.model.layers[1].self_attn.o_proj.weight.zero_()
        model.model.layers[1].mlp.down_proj.weight.zero_()
    after = block_influence(model, tokenizer, texts)
    assert after[1] == pytest.approx(0.0, abs=1e-5) and after[0] == pytest.approx(before[0])


def test_trim_keeps_n_layers_and_still_generates(tiny_lm, tiny_dir, ids, tmp_path):
    source, tokenizer = tiny_lm
    result = run(tiny_dir, tmp_path / "trim", "trim", keep_layers=1, layer_choice="first")
    model, _ = load_model(str(result.out))
    assert model.config.num_hidden_layers == 1 and len(model.model.layers) == 1
    assert result.recipe["info"]["layers_kept"] == [0]
    layer_params = sum(p.numel() for p in source.model.layers[1].parameters())
    assert n_params(model) == n_params(source) - layer_params
    assert weight_file(result.out) < weight_file(tiny_dir)
    # The kept layer is the source's layer 0, weight for weight.
    assert model.model.layers[0].mlp.up_proj.weight.equal(source.model.layers[0].mlp.up_proj.weight)
    out = model.generate(
        ids, max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    assert out.shape[1] == ids.shape[1] + 6
    # Cached decoding must equal a full forward pass: the KV-cache slots follow the new layer numbering.
    assert logits(model, out[:, :-1])[0, -1].argmax() == out[0, -1]


def test_trim_explicit_layers_renumbers_the_cache_slots(tiny_lm, tiny_dir, tmp_path):
    source, _ = tiny_lm
    result = run(tiny_dir, tmp_path / "trim1", "trim", layers="1")
    model, _ = load_model(str(result.out))
    assert model.model.layers[0].self_attn.layer_idx == 0
    assert model.model.layers[0].self_attn.q_proj.weight.equal(source.model.layers[1].self_attn.q_proj.weight)
    assert result.recipe["name"] == "trim 1 (listed)"


@pytest.mark.slow
def test_trim_with_heal_fine_tunes_the_trimmed_model(tiny_dir, tmp_path):
    data = tmp_path / "heal.txt"
    data.write_text("\n\n".join(f"Paragraph {i} about cats, dogs and the number {i * 7}." for i in range(40)))
    plain = run(tiny_dir, tmp_path / "plain", "trim", keep_layers=1)
    healed = run(
        tiny_dir,
        tmp_path / "healed",
        "trim",
        keep_layers=1,
        heal_data=str(data),
        heal_steps=2,
        heal_batch_size=2,
    )
    heal = healed.recipe["info"]["heal"]
    assert heal["steps"] == 2 and heal["train_texts"] > 0
    a, _ = load_model(str(plain.out))
    b, _ = load_model(str(healed.out))
    assert b.config.num_hidden_layers == 1
    assert not a.model.layers[0].mlp.up_proj.weight.equal(b.model.layers[0].mlp.up_proj.weight)
    assert healed.recipe["name"] == "trim 1 (importance) + heal 2"


# --------------------------------------------------------------------------------------------- prune


def test_prune_zeroes_the_share_of_each_linear_but_not_the_file(tiny_lm, tiny_dir, tmp_path):
    import torch

    source, _ = tiny_lm
    result = run(tiny_dir, tmp_path / "prune", "prune", sparsity=0.3)
    model, _ = load_model(str(result.out))
    for name, module in model.model.layers.named_modules():
        if isinstance(module, torch.nn.Linear):
            zeros = float((module.weight == 0).float().mean())
            assert zeros == pytest.approx(0.3, abs=0.01), name
    # Untouched: embeddings (tied to the head); the pruning is permanent (no masks or *_orig left behind).
    assert model.model.embed_tokens.weight.equal(source.model.embed_tokens.weight)
    assert not any(n.endswith("_orig") for n, _ in model.named_parameters())
    assert n_params(model) == n_params(source)
    # Dense storage: zeros take as many bytes as any value.
    assert abs(weight_file(result.out) - weight_file(tiny_dir)) < 4096
    source_stats, pruned_stats = (v.measurement for v in result.variants)
    assert pruned_stats.nonzero_params < source_stats.nonzero_params


def test_prune_structured_removes_the_channels_that_contribute_nothing(tiny_lm, tiny_dir, ids, tmp_path):
    import torch

    source, tokenizer = tiny_lm
    folder = tmp_path / "src"
    model = copy.deepcopy(source)
    dead = torch.arange(
        0, 128, 4
    )  # 32 channels = 25 %: their down_proj columns are zero, so they add nothing
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.down_proj.weight[:, dead] = 0.0
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    result = run(folder, tmp_path / "ps", "prune-structured", sparsity=0.25)
    assert result.recipe["info"]["score"] == "activation"
    pruned, _ = load_model(str(result.out))
    assert pruned.config.intermediate_size == 96  # 128 × 0.75
    mlp, old = pruned.model.layers[0].mlp, model.model.layers[0].mlp
    assert mlp.up_proj.weight.shape == (96, 64) and mlp.down_proj.weight.shape == (64, 96)
    alive = torch.tensor([j for j in range(128) if j % 4])
    assert mlp.up_proj.weight.equal(old.up_proj.weight[alive])
    assert mlp.down_proj.weight.equal(old.down_proj.weight[:, alive])
    # Only dead channels went, so the function is unchanged; the model and its file are smaller.
    assert torch.allclose(logits(pruned, ids), logits(model, ids), atol=1e-4)
    assert n_params(pruned) < n_params(model) and weight_file(result.out) < weight_file(folder)


def test_prune_structured_without_calibration_falls_back_to_weight_norms(tiny_lm):
    from toolformer.compress.prune import prune_mlp_channels

    model = copy.deepcopy(tiny_lm[0])
    old = model.model.layers[1].mlp
    score = (
        old.gate_proj.weight.norm(dim=1) * old.up_proj.weight.norm(dim=1) * old.down_proj.weight.norm(dim=0)
    )
    kept = score.topk(64).indices.sort().values
    gate = old.gate_proj.weight.detach().clone()  # the module is rebuilt in place
    info = prune_mlp_channels(model, 0.5)
    assert info["score"] == "weight-norm" and model.config.intermediate_size == 64
    assert model.model.layers[1].mlp.gate_proj.weight.equal(gate[kept])


def test_bf16_halves_the_file_and_stays_close(tiny_lm, tiny_dir, ids, tmp_path):
    import torch

    source, _ = tiny_lm
    result = run(tiny_dir, tmp_path / "bf16", "bf16")
    model, _ = load_model(str(result.out))
    assert model.dtype == torch.bfloat16
    assert weight_file(result.out) == pytest.approx(weight_file(tiny_dir) / 2, rel=0.01)
    ref, got = logits(source, ids), logits(model, ids)
    assert (got - ref).abs().max() < 0.05 * ref.abs().max()


def test_int8_saves_int8_weights_and_reloads_bit_identical(tiny_lm, tiny_dir, ids, tmp_path):
    import torch

    from toolformer.compress.quantize import quantize_int8
    from toolformer.models.int8 import INT8_WEIGHTS, _dynamic_linear_class

    source, _ = tiny_lm
    result = run(tiny_dir, tmp_path / "int8", "int8")
    assert (result.out / INT8_WEIGHTS).is_file() and not (result.out / "model.safetensors").exists()
    assert result.recipe["name"] == "int8 (float: down_proj)"
    model, _ = load_model(str(result.out))
    linear = _dynamic_linear_class()
    assert isinstance(model.model.layers[0].mlp.up_proj, linear) and isinstance(model.lm_head, linear)
    floats = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert floats == ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    assert model.model.layers[1].mlp.down_proj.weight.equal(source.model.layers[1].mlp.down_proj.weight)
    in_memory = quantize_int8(copy.deepcopy(source))
    assert logits(model, ids).equal(logits(in_memory, ids))  # the file round trip loses nothing
    ref, got = logits(source, ids), logits(model, ids)
    assert (got - ref).abs().max() < 0.05 * ref.abs().max()
    assert (got[0].argmax(-1) == ref[0].argmax(-1)).float().mean() > 0.8


def test_int8_with_no_skip_quantises_every_linear_layer(tiny_dir, tmp_path):
    import torch

    result = run(tiny_dir, tmp_path / "int8all", "int8", int8_skip="")
    model, _ = load_model(str(result.out))
    assert result.recipe["name"] == "int8 (all layers)"
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    with pytest.raises(ConfigError, match="int8_skip"):
        run(tiny_dir, tmp_path / "none", "int8", int8_skip="proj,lm_head")


def test_int8_file_not_written_by_compress_is_refused(tiny_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    from toolformer.models.int8 import INT8_WEIGHTS

    result = run(tiny_dir, tmp_path / "int8", "int8")
    file = result.out / INT8_WEIGHTS
    save_file(load_file(str(file)), str(file))  # same tensors, no toolformer tag
    with pytest.raises(ModelNotFoundError, match=INT8_WEIGHTS):
        load_model(str(result.out))


def test_a_quantised_model_is_not_compressed_again(tiny_dir, tmp_path):
    first = run(tiny_dir, tmp_path / "int8", "int8")
    with pytest.raises(ConfigError, match="already quantised"):
        compress(
            CompressConfig(model=str(first.out), method="prune", out=str(tmp_path / "again"), measure=False)
        )


@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao is not installed")
@pytest.mark.parametrize(("method", "tolerance"), [("int8-wo", 0.05), ("int4-wo", 0.5)])
def test_torchao_weight_only_reloads_as_a_hugging_face_folder(
    tiny_lm, tiny_dir, ids, tmp_path, method, tolerance
):
    source, _ = tiny_lm
    result = run(tiny_dir, tmp_path / method, method)
    config = json.loads((result.out / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "torchao"
    model, _ = load_model(str(result.out))
    weight = model.model.layers[0].mlp.up_proj.weight
    assert type(weight).__name__ != "Parameter" or hasattr(weight, "qdata")  # a torchao tensor subclass
    ref, got = logits(source, ids), logits(model, ids)
    assert 0 < (got - ref).abs().max() < tolerance * ref.abs().max()


# --------------------------------------------------------------------------------------------- checks, report


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"method": "zip"}, "method='zip'"),
        ({"method": "trim"}, "keep_layers"),
        ({"method": "trim", "keep_layers": 0}, "keep_layers=0"),
        ({"method": "trim", "layers": "1,x"}, "layers='1,x'"),
        ({"method": "prune", "sparsity": 1.5}, "sparsity=1.5"),
        ({"method": "int8", "heal_data": "x.jsonl"}, "heal_data='x.jsonl'"),
        ({"method": "int8", "keep_layers": 3}, "keep_layers"),
        ({"method": "int8", "out": ""}, "out="),
        ({"method": "int8", "gen_tokens": 0}, "gen_tokens=0"),
    ],
)
def test_config_errors_name_the_argument(kwargs, field):
    config = CompressConfig(**{"out": "o", **kwargs})
    with pytest.raises(ConfigError, match=field.replace("(", r"\(")) as info:
        config.check()
    assert "\n" not in str(info.value)


def test_trim_beyond_the_model_depth_names_keep_layers(tiny_dir, tmp_path):
    with pytest.raises(ConfigError, match="keep_layers=5 must be between 1 and 2"):
        run(tiny_dir, tmp_path / "t", "trim", keep_layers=5)


def test_output_folder_is_not_overwritten_by_accident(tiny_dir, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="out="):
        run(tiny_dir, other, "bf16")
    with pytest.raises(ConfigError, match="not an output of toolformer compress"):
        run(tiny_dir, other, "bf16", overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"
    first = run(tiny_dir, tmp_path / "out", "bf16")
    again = run(tiny_dir, first.out, "prune", overwrite=True)
    assert again.recipe["method"] == "prune"


def test_report_files_and_deltas(tmp_path):
    base = Measurement(model="a", weights_bytes=400_000_000, params=100, nonzero_params=100, ppl=20.0,
                       math_accuracy=0.5, tokens_per_second=10.0, peak_rss_mb=900.0, base_rss_mb=400.0)  # fmt: skip
    small = Measurement(model="b", weights_bytes=100_000_000, params=100, nonzero_params=70, ppl=22.0,
                        math_accuracy=0.45, tokens_per_second=25.0, peak_rss_mb=600.0, base_rss_mb=400.0)  # fmt: skip
    variants = [Variant("source", "none", base), Variant("int8", "int8", small, {"notes": ["a note"]})]
    from toolformer.compress.report import HEADER

    row = dict(zip(HEADER, table_rows(variants)[1]))
    assert row["zeros %"] == "30.0" and row["weights MB"] == "100.0" and row["peak RSS MB"] == "600"
    assert row["speed ×"] == "2.50" and row["Δppl %"] == "+10.0" and row["Δacc (pts)"] == "-5.0"
    paths = write_report(tmp_path / "r", "Title", variants)
    text = paths["md"].read_text()
    assert markdown_table(variants) in text and "a note" in text
    data = json.loads(paths["json"].read_text())
    assert [v["name"] for v in data["variants"]] == ["source", "int8"]
    assert data["variants"][1]["model_rss_mb"] == 200.0
    if "png" in paths:
        assert paths["png"].read_bytes()[:4] == b"\x89PNG"
