"""MT: language detection → NLLB codes, lazy single load, forced English BOS, and the offline error message.

The model is a tiny random M2M100 (NLLB's architecture) with a real NllbTokenizer built here from a small BPE
vocabulary (tokenizers library), saved to tmp_path: no download, a few seconds on CPU.
"""

from __future__ import annotations

import pytest

from toolformer.calls import Call
from toolformer.errors import ModelNotFoundError
from toolformer.tools.mt import (
    DEFAULT_MT_MODEL,
    LANGID_TO_NLLB,
    MODEL_ENV,
    TARGET_LANG,
    Translator,
    detect_language,
    downloads_allowed,
    mt_tool,
    resolve_model,
)

SPANISH = "Hola, ¿cómo estás? Me llamo Juan y vivo en Madrid con mi familia."


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Der schnelle braune Fuchs springt über den faulen Hund und läuft in den Wald.", "deu_Latn"),
        (SPANISH, "spa_Latn"),
        ("Bonjour tout le monde, je suis très content de vous voir aujourd'hui.", "fra_Latn"),
        ("Это простой пример текста на русском языке.", "rus_Cyrl"),
        ("The quick brown fox jumps over the lazy dog.", "eng_Latn"),
    ],
)
def test_detects_language_as_nllb_code(text: str, code: str) -> None:
    assert detect_language(text) == code


def test_mapping_targets_are_real_nllb_codes() -> None:
    nllb = pytest.importorskip("transformers.models.nllb.tokenization_nllb")
    assert set(LANGID_TO_NLLB.values()) <= set(nllb.FAIRSEQ_LANGUAGE_CODES)


def test_model_resolution_and_download_switch(monkeypatch) -> None:
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert resolve_model() == DEFAULT_MT_MODEL
    monkeypatch.setenv(MODEL_ENV, "/models/mt")
    assert resolve_model() == "/models/mt" and resolve_model("other/model") == "other/model"
    monkeypatch.setenv("TOOLFORMER_ALLOW_DOWNLOAD", "1")
    assert downloads_allowed() and not downloads_allowed(False)
    monkeypatch.delenv("TOOLFORMER_ALLOW_DOWNLOAD")
    assert not downloads_allowed()


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    letters = list("abcdefghijklmnopqrstuvwxyzáéíóúñü¿?,.")
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for piece in ["▁", *letters, *("▁" + c for c in letters)]:
        vocab.setdefault(piece, len(vocab))
    tokenizer = NllbTokenizer(vocab=vocab, merges=[])  # adds the 202 NLLB language codes as special tokens
    config = M2M100Config(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=256,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    transformers.set_seed(0)
    path = tmp_path_factory.mktemp("tiny-nllb")
    tokenizer.save_pretrained(path)
    M2M100ForConditionalGeneration(config).save_pretrained(path)
    return path


def test_translates_with_detected_source_and_forced_english(tiny_model_dir) -> None:
    translator = Translator(tiny_model_dir, max_new_tokens=8, device="cpu")
    assert not translator.loaded
    ids = translator._generate(SPANISH, "spa_Latn")
    tokenizer = translator._tokenizer
    assert tokenizer.src_lang == "spa_Latn"
    assert ids[1] == tokenizer.convert_tokens_to_ids(TARGET_LANG)  # ids[0] is the decoder start token
    text = translator.translate(SPANISH)
    assert isinstance(text, str) and TARGET_LANG not in text  # special tokens are not in the output


def test_model_is_loaded_once(tiny_model_dir, monkeypatch) -> None:
    import transformers

    loads = []
    original = transformers.AutoModelForSeq2SeqLM.from_pretrained

    def counting(*args, **kwargs):
        loads.append(kwargs.get("local_files_only"))
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForSeq2SeqLM, "from_pretrained", counting)
    tool = mt_tool(Translator(tiny_model_dir, max_new_tokens=4, device="cpu"))
    outs = [tool.run(Call("MT", f'"{SPANISH}"')) for _ in range(3)]
    assert all(o.ok for o in outs), outs
    assert loads == [True]  # once, and from local files only


def test_english_input_is_returned_without_loading(tmp_path) -> None:
    translator = Translator(tmp_path / "no-model-here")
    assert translator.translate("  The weather is nice   today.  ") == "The weather is nice today."
    assert not translator.loaded


def test_missing_weights_say_how_to_get_them(monkeypatch, tmp_path) -> None:
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TOOLFORMER_ALLOW_DOWNLOAD", raising=False)
    tool = mt_tool("toolformer-tests/no-such-model")
    out = tool.run(Call("MT", f'"{SPANISH}"'))
    assert not out.ok and out.text.startswith("error: ")
    assert "hf download toolformer-tests/no-such-model" in out.text and "--mt-model" in out.text
    again = tool.run(Call("MT", f'"{SPANISH}"'))
    assert again.text == out.text and again.seconds < 0.5  # the failure is remembered, not retried


def test_missing_directory_is_named(tmp_path) -> None:
    pytest.importorskip("transformers")
    translator = Translator(tmp_path / "missing-dir")
    with pytest.raises(ModelNotFoundError, match="missing-dir.*does not exist"):
        translator.translate(SPANISH)


def test_tool_schema() -> None:
    tool = mt_tool()
    assert tool.name == "MT" and tool.parameters["required"] == ["text"]
    assert not tool.fn.__self__.loaded  # building the tool loads nothing


def test_unusable_directory_is_named(tmp_path) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(ModelNotFoundError, match="cannot load MT model from"):
        Translator(tmp_path).translate(SPANISH)
