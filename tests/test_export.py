"""`toolformer export`: HF, GGUF and ONNX exports of a tiny random Llama load in their runtimes and match the source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from toolformer.errors import ConfigError
from toolformer.export import CHECK_TEXT, export, reference_logits


@pytest.fixture
def llama_cpp():
    return pytest.importorskip("llama_cpp")


def test_hf_export_reloads_with_identical_logits(tiny_lm, tmp_path):
    model, tok = tiny_lm
    result = export((model, tok), "hf", tmp_path / "hf")
    assert (result.path / "model.safetensors").is_file()
    assert (result.path / "tokenizer.json").is_file()
    assert result.parity.max_abs_diff == 0.0
    assert result.parity.top1_agreement == 1.0


def test_hf_export_merges_a_lora_adapter_into_its_base(tiny_lm, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny_lm
    base_dir = tmp_path / "base"
    model.save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    base = type(model).from_pretrained(base_dir).eval()
    peft = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_alpha=8))
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA's B starts at zero; make the adapter change the model
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    adapter_dir = tmp_path / "adapter"
    peft.save_pretrained(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_dir)
    ids = tok.encode(CHECK_TEXT, add_special_tokens=False)
    expected = reference_logits(peft.eval(), ids)

    result = export(str(adapter_dir), "hf", tmp_path / "merged")

    assert not (result.path / "adapter_config.json").exists()
    merged = type(model).from_pretrained(result.path).eval()
    got = reference_logits(merged, ids)
    assert abs(got - expected).max() < 1e-4
    assert abs(got - reference_logits(model, ids)).max() > 1e-3  # the adapter really is in the weights


def test_gguf_f32_loads_in_llamacpp_with_the_same_logits_and_tokens(tiny_lm, tmp_path, llama_cpp):
    model, tok = tiny_lm
    result = export((model, tok), "gguf", tmp_path, quant="f32")
    assert result.path == tmp_path / "model-f32.gguf"
    assert result.detail["pre_tokenizer"] == "smollm"
    parity = result.parity
    assert parity.runtime == "llama.cpp"
    assert (
        parity.tokens_match is True
    )  # llama.cpp's tokenizer, read from the file, splits text like transformers
    assert parity.max_abs_diff < 1e-3
    assert parity.top1_agreement == 1.0


def test_gguf_types_shrink_the_file_and_stay_close(tiny_lm, tmp_path, llama_cpp):
    model, tok = tiny_lm
    results = {
        q: export((model, tok), "gguf", tmp_path / f"{q}.gguf", quant=q) for q in ("f32", "f16", "q8_0")
    }
    sizes = [results[q].bytes for q in ("f32", "f16", "q8_0")]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 3
    spread = float(reference_logits(model, tok.encode(CHECK_TEXT, add_special_tokens=False)).std())
    for q in ("f16", "q8_0"):
        # Quantisation noise stays a small fraction of how much the logits vary at all.
        assert results[q].parity.max_abs_diff < 0.25 * spread, q
        assert results[q].parity.max_abs_diff > results["f32"].parity.max_abs_diff, q


def test_gguf_llamacpp_quantisation_type(tiny_lm, tmp_path, llama_cpp):
    model, tok = tiny_lm
    f16 = export((model, tok), "gguf", tmp_path / "f16.gguf", quant="f16", verify=False)
    q4 = export((model, tok), "gguf", tmp_path / "q4.gguf", quant="q4_0")
    assert q4.bytes < f16.bytes
    assert q4.parity.tokens_match is True
    lm = llama_cpp.Llama(model_path=str(q4.path), vocab_only=True, verbose=False)
    assert lm.metadata["general.file_type"] == str(llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0)


def test_gguf_export_refuses_what_it_cannot_write(tiny_lm, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    model, tok = tiny_lm
    with pytest.raises(ConfigError, match="quant='q9_9'"):
        export((model, tok), "gguf", tmp_path, quant="q9_9")
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tok))).eval()
    with pytest.raises(ConfigError, match="model_type='gpt2'"):
        export((gpt2, tok), "gguf", tmp_path)
    with pytest.raises(ConfigError, match="format='tflite'"):
        export((model, tok), "tflite", tmp_path)


@pytest.mark.slow
def test_onnx_export_runs_in_onnxruntime_with_its_kv_cache(tiny_lm, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from toolformer.export.onnx import OnnxDecoder

    model, tok = tiny_lm
    result = export((model, tok), "onnx", tmp_path / "onnx")
    assert (result.path / "model.onnx").is_file() and (result.path / "tokenizer.json").is_file()
    assert result.parity.runtime == "onnxruntime"
    assert result.parity.max_abs_diff < 1e-4
    assert result.parity.top1_agreement == 1.0
    # Greedy decoding on the ONNX cache gives the same tokens as transformers' generate.
    prompt = tok.encode("Question: What is 12 times 9?\nAnswer:", add_special_tokens=False)
    with torch.inference_mode():
        ref = model.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False)[
            0, len(prompt) :
        ].tolist()
    decoder = OnnxDecoder(result.path)
    logits = decoder.run(prompt)[-1]
    got = []
    for _ in range(8):
        got.append(int(logits.argmax()))
        logits = decoder.run([got[-1]])[-1]
    assert got == ref


def test_cli_export_writes_two_gguf_types_and_reports_parity(tiny_lm, tmp_path, llama_cpp):
    from typer.testing import CliRunner

    from toolformer.cli import app

    model, tok = tiny_lm
    src = tmp_path / "src"
    model.save_pretrained(src)
    tok.save_pretrained(src)
    out = tmp_path / "dist"
    res = CliRunner().invoke(
        app, ["export", str(src), "--format", "gguf", "--quant", "f32,q8_0", "--out", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [Path(r["path"]).name for r in rows] == ["model-f32.gguf", "model-q8_0.gguf"]
    assert all(r["parity"]["top1_agreement"] > 0.5 for r in rows)
    assert rows[0]["parity"]["max_abs_diff"] < 1e-3

    bad = CliRunner().invoke(
        app, ["export", str(src), "--format", "gguf", "--quant", "f32,f16", "--out", "x.gguf"]
    )
    assert bad.exit_code == 2
    assert "give a folder" in bad.output
