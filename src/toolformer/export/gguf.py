"""Write a Llama-architecture transformers model as a GGUF file that llama.cpp loads (f32/f16/bf16/q8_0, or any
llama.cpp quantisation through llama-cpp-python's quantize API).

This follows llama.cpp's own `convert_hf_to_gguf.py` for the `llama` architecture: the same metadata keys, the
same tensor names (gguf-py's name map), the Q/K rows permuted back to llama.cpp's rotary layout, 1-D tensors kept
in f32, a GPT-2 style BPE vocabulary with its merges, special ids and chat template, and the pre-tokenizer named
by the hash of how the tokenizer splits llama.cpp's check text. That converter is not installed with any wheel
(llama-cpp-python's sdist vendors it, its wheel does not), so the few parts a Llama model needs live here, on top
of the `gguf` package it is built on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolformer.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

# Types gguf-py writes directly; every other name goes through llama.cpp's quantizer from an f16 file.
DIRECT_TYPES = ("f32", "f16", "bf16", "q8_0")
# llama.cpp's `llama_ftype` names (LLAMA_FTYPE_MOSTLY_<NAME>) that make sense for a CPU deployment.
LLAMACPP_TYPES = (
    "q4_0",
    "q4_1",
    "q5_0",
    "q5_1",
    "q2_k",
    "q3_k_s",
    "q3_k_m",
    "q3_k_l",
    "q4_k_s",
    "q4_k_m",
    "q5_k_s",
    "q5_k_m",
    "q6_k",
)
SUPPORTED_ARCHS = ("llama",)

# llama.cpp's check text and the pre-tokenizers of Llama-architecture BPE vocabularies, from
# convert_hf_to_gguf.py (`get_vocab_base_pre`): sha256(str(tokenizer.encode(CHECK_TEXT))) -> tokenizer.ggml.pre.
CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 333 "
    "3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на "
    "Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll make "
    "it, 'D you like some tea? We'Ve a'lL"
)
KNOWN_PRE = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "0fe1cf6eda062318a1af7270f3331a85c539a01778ff948e24388e949c5282f4": "gpt-2",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754": "deepseek-llm",
    "9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e": "falcon3",
    "35d91631860c815f952d711435f48d356ebac988362536bed955d43bfa436e34": "starcoder",
    "b6dc8df998e1cfbdc4eac8243701a65afe638679230920b50d6f17d81c098166": "olmo",
    "4e2b24cc4770243d65a2c9ec19770a72f08cffc161adbb73fcbb6b7dd45a0aae": "exaone",
    "ccc2ef013c104be7bae2965776d611e1d7a8a2a9c547dd93a682c9a9fc80352e": "gpt-4o",
}


@dataclass
class GGUFInfo:
    """What was written: the file, its type, and the tokenizer pre-tokenizer name it records."""

    path: Path
    quant: str
    pre_tokenizer: str
    tensors: int
    bytes: int


def normalize_quant(quant: str) -> str:
    """`quant` lower-cased and checked against the types this exporter writes; ConfigError otherwise."""
    q = str(quant).strip().lower()
    if q not in DIRECT_TYPES + LLAMACPP_TYPES:
        raise ConfigError(
            f"quant={quant!r} is not a GGUF type this exporter writes: {', '.join(DIRECT_TYPES + LLAMACPP_TYPES)}"
        )
    return q


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotary layout (halves) back to llama.cpp's (interleaved pairs), per head, as convert_hf_to_gguf does."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    theta = params.get("rope_theta") if isinstance(params, dict) else None
    return float(theta if theta is not None else getattr(config, "rope_theta", 10000.0))


def _check_model(model: Any) -> None:
    config = model.config
    if config.model_type not in SUPPORTED_ARCHS:
        raise ConfigError(
            f"model_type={config.model_type!r}: GGUF export supports {', '.join(SUPPORTED_ARCHS)} models"
        )
    params = getattr(config, "rope_parameters", None) or {}
    rope_type = params.get("rope_type", "default") if isinstance(params, dict) else "default"
    if rope_type not in ("default", "linear"):
        raise ConfigError(f"rope_type={rope_type!r}: GGUF export supports default and linear RoPE only")


def _pre_tokenizer(tokenizer: Any) -> str:
    ids = tokenizer.encode(CHECK_TEXT)
    digest = hashlib.sha256(str(ids).encode()).hexdigest()
    pre = KNOWN_PRE.get(digest)
    if pre is None:
        logger.warning(
            "unknown pre-tokenizer (check hash %s): writing 'default'; llama.cpp may split text differently",
            digest,
        )
        return "default"
    return pre


def _looks_special(token: str) -> bool:
    # The same rule as convert_hf_to_gguf: some added control tokens are not flagged special.
    return (token.startswith("<|") and token.endswith("|>")) or token in ("<pad>", "<mask>")


def _vocab(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """Token texts and gguf token types for ids 0..vocab_size-1 (holes become UNUSED `[PAD{i}]` entries)."""
    import gguf

    reverse = {i: t for t, i in tokenizer.get_vocab().items()}
    if max(reverse) >= vocab_size:
        raise ConfigError(f"tokenizer has id {max(reverse)} but the model's vocab_size is {vocab_size}")
    added = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = reverse[i]
        if i in added:
            types.append(
                gguf.TokenType.CONTROL
                if added[i].special or _looks_special(token)
                else gguf.TokenType.USER_DEFINED
            )
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    return tokens, types


def _check_bpe(tokenizer_dir: Path) -> None:
    """Only byte-level BPE vocabularies (GPT-2 style) are written; SentencePiece-style ones need another path."""
    path = tokenizer_dir / "tokenizer.json"
    if not path.is_file():
        raise ConfigError("GGUF export needs a fast tokenizer (tokenizer.json); this tokenizer has none")
    model = json.loads(path.read_text(encoding="utf-8")).get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise ConfigError(
            f"tokenizer model {model.get('type')!r} (byte_fallback={model.get('byte_fallback')}): GGUF export "
            "supports byte-level BPE (GPT-2 style) tokenizers only"
        )


def _tensor_type(name: str, data: np.ndarray, quant: str) -> Any:
    import gguf

    Q = gguf.GGMLQuantizationType
    if data.ndim < 2 or quant == "f32":
        return Q.F32  # norms and biases stay f32 in every llama.cpp file type
    if quant == "q8_0":
        if data.shape[-1] % gguf.GGML_QUANT_SIZES[Q.Q8_0][0] == 0:
            return Q.Q8_0
        logger.info("%s: row size %d is not a multiple of 32, kept in f16", name, data.shape[-1])
        return Q.F16
    return {"f16": Q.F16, "bf16": Q.BF16}[quant]


def _file_type(quant: str) -> int:
    import gguf

    return {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[quant]


def _write_direct(model: Any, tokenizer: Any, path: Path, quant: str, name: str) -> GGUFInfo:
    import gguf
    import numpy as np
    import torch

    config = model.config
    n_head = config.num_attention_heads
    n_kv = config.num_key_value_heads or n_head
    n_layers = config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    vocab_size = config.vocab_size

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.MODEL)
    if name:
        writer.add_name(name)
    writer.add_block_count(n_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(vocab_size)
    writer.add_rope_dimension_count(head_dim)
    params = getattr(config, "rope_parameters", None) or {}
    if isinstance(params, dict) and params.get("rope_type") == "linear" and params.get("factor"):
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(params["factor"]))
    writer.add_file_type(_file_type(quant))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    with tempfile.TemporaryDirectory(prefix="toolformer-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        _check_bpe(Path(tmp))
        pre = _pre_tokenizer(tokenizer)
        tokens, types = _vocab(tokenizer, vocab_size)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        special = gguf.SpecialVocab(tmp, load_merges=True, n_vocab=vocab_size)
        special.add_to_gguf(writer, quiet=True)
    # Whether a BOS is prepended is what the tokenizer does, not what its config claims.
    probe = tokenizer("a")["input_ids"]
    writer.add_add_bos_token(bool(probe) and probe[0] == tokenizer.bos_token_id)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    count = 0
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reads a tied output layer from token_embd
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = _permute(data, n_head)
        elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = _permute(data, n_kv)
        new_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise ConfigError(f"tensor {hf_name!r} has no GGUF name in the llama architecture")
        qtype = _tensor_type(new_name, data, quant)
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(new_name, np.ascontiguousarray(data, dtype=np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(new_name, np.ascontiguousarray(data, dtype=np.float16))
        else:
            writer.add_tensor(new_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        count += 1

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return GGUFInfo(path, quant, pre, count, path.stat().st_size)


def quantize_gguf(src: str | Path, dst: str | Path, quant: str, threads: int = 0) -> Path:
    """Quantise GGUF `src` into `dst` with llama.cpp's own quantizer (needs llama-cpp-python)."""
    from toolformer.errors import require

    quant = normalize_quant(quant)
    if quant not in LLAMACPP_TYPES:
        raise ConfigError(
            f"quant={quant!r} is written directly; llama.cpp quantisation takes {LLAMACPP_TYPES}"
        )
    require("llama_cpp", "llamacpp")
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}", None)
    if ftype is None:
        raise ConfigError(f"quant={quant!r} is not known to the installed llama-cpp-python")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    dst = Path(dst)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise ConfigError(f"llama.cpp could not quantise {src} to {quant} (return code {rc})")
    return dst


def export_gguf(
    model: Any, tokenizer: Any, out: str | Path, quant: str = "f16", name: str = "", threads: int = 0
) -> GGUFInfo:
    """Write `model` (a transformers Llama model) with `tokenizer` to the GGUF file `out` as type `quant`.

    f32, f16, bf16 and q8_0 are written by gguf-py; the llama.cpp types (q4_k_m, q4_0, …) are made by writing an
    f16 file first and quantising it with llama.cpp's quantizer (llama-cpp-python must be installed).
    """
    quant = normalize_quant(quant)
    _check_model(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if quant in DIRECT_TYPES:
        return _write_direct(model, tokenizer, out, quant, name)
    with tempfile.TemporaryDirectory(prefix="toolformer-gguf-", dir=out.parent) as tmp:
        f16 = _write_direct(model, tokenizer, Path(tmp) / "f16.gguf", "f16", name)
        quantize_gguf(f16.path, out, quant, threads)
    return GGUFInfo(out, quant, f16.pre_tokenizer, f16.tensors, out.stat().st_size)
