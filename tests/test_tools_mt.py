"""MT: language detection, the NLLB engine (lazy single load, forced English BOS, offline errors), the Apertium
engine (pair choice, missing-pair errors, time limit), the choice between them, and the real Apertium.

The NLLB model is a tiny random M2M100 (NLLB's architecture) with a real NllbTokenizer built here from a small
BPE vocabulary (tokenizers library), saved to tmp_path: no download, a few seconds on CPU. Apertium is faked by
a shell script that lists chosen modes and echoes its mode and input; the last tests run the real `apertium`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolformer.calls import Call
from toolformer.errors import ModelNotFoundError, ToolError, ToolTimeoutError
from toolformer.tools.mt import (
    APERTIUM_PACKAGES,
    DEFAULT_MT_MODEL,
    LANGID_TO_NLLB,
    MODEL_ENV,
    TARGET_LANG,
    Apertium,
    AutoTranslator,
    Translator,
    detect_language,
    downloads_allowed,
    make_engine,
    mt_tool,
    resolve_model,
    strip_marks,
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
    transformers = pytest.importorskip("transformers")
    loads: list[str] = []
    load_tokenizer = transformers.AutoTokenizer.from_pretrained
    monkeypatch.setattr(
        transformers.AutoTokenizer,
        "from_pretrained",
        staticmethod(lambda source, **kw: loads.append(source) or load_tokenizer(source, **kw)),
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TOOLFORMER_ALLOW_DOWNLOAD", raising=False)
    tool = mt_tool("toolformer-tests/no-such-model")
    out = tool.run(Call("MT", f'"{SPANISH}"'))
    assert not out.ok and out.text.startswith("error: ")
    assert "hf download toolformer-tests/no-such-model" in out.text and "--mt-model" in out.text
    tried = len(loads)
    again = tool.run(Call("MT", f'"{SPANISH}"'))
    assert (
        tried >= 1 and again.text == out.text and len(loads) == tried
    )  # the failure is remembered, not retried


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


def test_tool_strings_are_unchanged() -> None:
    tool = mt_tool("apertium")  # the trained model's training texts were built from these strings
    assert tool.description == "Translate text from any language into English."
    assert tool.examples == ('MT("el gato negro")',)


# ---------------------------------------------------------------------------------------------- Apertium

CATALAN = "El gat negre dorm a la casa i el gos menja al jardí."
CROATIAN = "Crna mačka spava u kući, a pas jede u vrtu."
ICELANDIC = "Svarti kötturinn sefur í húsinu og hundurinn borðar í garðinum."
FRENCH = "Bonjour tout le monde, je suis très content de vous voir aujourd'hui."


def fake_apertium(tmp_path: Path, modes: list[str], body: str = 'read line; echo "[$4] $line"') -> Path:
    """An executable that answers `-l` with `modes` and otherwise runs `body` (shell); every argv is logged."""
    script = tmp_path / "apertium"
    listing = "\\n".join(modes)
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{tmp_path / "argv.log"}"\n'
        f'if [ "$1" = "-l" ]; then printf "{listing}\\n"; exit 0; fi\n'
        f"{body}\n"
    )
    script.chmod(0o755)
    return script


def logged(tmp_path: Path) -> list[str]:
    log = tmp_path / "argv.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        (SPANISH, "spa-eng"),
        (CATALAN, "cat-eng"),
        (CROATIAN, "hbs-eng"),
        ("O gato negro dorme na casa.", "gl-en"),
    ],
)
def test_detection_picks_the_installed_pair(tmp_path, text: str, mode: str) -> None:
    engine = Apertium(
        fake_apertium(tmp_path, ["eng-spa", "spa-eng", "cat-eng", "hbs-eng", "gl-en", "Cyrl-Latn"])
    )
    assert engine.translate(text) == f"[{mode}] {text}"
    runs = [line for line in logged(tmp_path) if line.startswith("-u")]
    assert runs[0] == f"-u -f txt {mode}"  # plain text in and out, unknown-word stars off


def test_pair_names_in_either_code_style(tmp_path) -> None:
    engine = Apertium(fake_apertium(tmp_path, ["spa-eng_US", "eng-spa", "eu-en", "mkd-eng", "en-eo"]))
    assert engine.modes() == {"spa-eng_US", "eng-spa", "eu-en", "mkd-eng", "en-eo"}
    assert engine.pair("eu") == "eu-en" and engine.pair("mk") == "mkd-eng"
    assert (
        engine.pair("es") is None and engine.pair("eo") is None
    )  # a variant or the other direction is not it


def test_unsure_short_phrase_goes_to_a_translatable_language(tmp_path) -> None:
    engine = Apertium(fake_apertium(tmp_path, ["spa-eng"]))
    # py3langid alone guesses Venetian or Italian for the tool's own example; Spanish is the language Apertium has.
    assert engine.choose("el gato negro") == ("es", "spa-eng")
    assert engine.translate("el gato negro") == "[spa-eng] el gato negro"


def test_an_unsure_guess_keeps_the_pair_that_translates_most_words(tmp_path) -> None:
    # py3langid ranks Galician above Spanish for this lower-case phrase; Galician leaves "perro" untranslated.
    body = 'read line; if [ "$4" = spa-eng ]; then echo "The dog eats bread"; else echo "He perro eats bread"; fi'
    engine = Apertium(fake_apertium(tmp_path, ["gl-en", "spa-eng"], body))
    assert engine.choose("el perro come pan") == ("gl", "gl-en")
    assert engine.translate("el perro come pan") == "The dog eats bread"
    assert [line for line in logged(tmp_path) if line.startswith("-u")] == [
        "-u -f txt gl-en",
        "-u -f txt spa-eng",
    ]
    # a sure detection runs its one pair only
    engine.translate(SPANISH)
    assert [line for line in logged(tmp_path) if line.startswith("-u")][-1] == "-u -f txt spa-eng"
    assert sum(line.startswith("-u") for line in logged(tmp_path)) == 3


def test_cyrillic_serbo_croatian_is_transliterated_first(tmp_path) -> None:
    body = 'read line; if [ "$4" = Cyrl-Latn ]; then echo "LATIN"; else echo "[$4] $line"; fi'
    engine = Apertium(fake_apertium(tmp_path, ["hbs-eng", "Cyrl-Latn"], body))
    assert engine.translate("Црна мачка спава у кући, а пас једе у врту.") == "[hbs-eng] LATIN"


def test_missing_pair_says_what_to_install(tmp_path) -> None:
    tool = mt_tool(Apertium(fake_apertium(tmp_path, ["spa-eng"])))
    out = tool.run(Call("MT", f'"{ICELANDIC}"'))
    assert not out.ok and out.text.startswith("error: MT cannot translate Icelandic (is)")
    assert "apt-get install apertium-isl-eng" in out.text and f"hf download {DEFAULT_MT_MODEL}" in out.text
    french = tool.run(Call("MT", f'"{FRENCH}"')).text
    assert "'fr' (fra_Latn)" in french and "apt-get" not in french and "hf download" in french
    assert not any(line.startswith("-u") for line in logged(tmp_path))  # nothing was run for either


def test_without_apertium_the_spanish_package_is_named(tmp_path) -> None:
    engine = Apertium(str(tmp_path / "no-apertium-here"))
    assert not engine.installed() and engine.modes() == frozenset()
    with pytest.raises(ToolError, match="apt-get install apertium-eng-spa"):
        engine.translate(SPANISH)


def test_every_packaged_language_is_detectable() -> None:
    assert set(APERTIUM_PACKAGES) <= set(LANGID_TO_NLLB)


def test_english_is_returned_unchanged_without_running_a_pair(tmp_path) -> None:
    engine = Apertium(fake_apertium(tmp_path, ["spa-eng"]))
    assert engine.translate("  The weather is nice   today.  ") == "The weather is nice today."
    assert not any(line.startswith("-u") for line in logged(tmp_path))


def test_marks_are_removed_but_source_characters_kept(tmp_path) -> None:
    assert (
        strip_marks("The *Xyzzqq #sleeps @in the house.", "El Xyzzqq duerme.")
        == "The Xyzzqq sleeps in the house."
    )
    assert strip_marks("Price #offer @juan", "precio #oferta @juan") == "Price #offer @juan"
    engine = Apertium(
        fake_apertium(tmp_path, ["spa-eng"], "read line; echo 'The black #cat sleeps @in *Xyz.'")
    )
    assert engine.translate(SPANISH) == "The black cat sleeps in Xyz."


def test_a_failing_pair_reports_its_error(tmp_path) -> None:
    body = 'echo "Error: Mode $4 does not exist." >&2; exit 1'
    engine = Apertium(fake_apertium(tmp_path, ["spa-eng"], body))
    with pytest.raises(ToolError, match=r"apertium -u -f txt spa-eng failed \(exit 1\): Error: Mode spa-eng"):
        engine.translate(SPANISH)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" in status.read_text()  # killed, awaiting its reaper


def test_a_hanging_pair_is_killed_at_the_limit(tmp_path) -> None:
    pidfile = tmp_path / "child.pid"
    # Like a real mode, the work runs in a child of the shell: killing only the shell would leave it running.
    body = f'sleep 60 & echo $! > "{pidfile}"; wait'
    tool = mt_tool(Apertium(fake_apertium(tmp_path, ["spa-eng"], body), timeout=0.5))
    out = tool.run(Call("MT", f'"{SPANISH}"'))  # the pair would answer (nothing) only after 60 s
    assert out.text == "error: apertium spa-eng did not answer within 0.5 s and was killed"
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)
    with pytest.raises(ToolTimeoutError):
        Apertium(fake_apertium(tmp_path, ["spa-eng"], body), timeout=0.2).translate(SPANISH)


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="timeout of Apertium"):
        Apertium(timeout=0)
    with pytest.raises(ValueError, match="command of Apertium"):
        Apertium([])


# ------------------------------------------------------------------------------------------------ choice


def test_nllb_first_when_its_weights_are_on_disk(tiny_model_dir, tmp_path) -> None:
    apertium = Apertium(fake_apertium(tmp_path, ["spa-eng"]))
    with_weights = AutoTranslator(Translator(tiny_model_dir, max_new_tokens=4, device="cpu"), apertium)
    assert with_weights.backend == "nllb"
    assert not with_weights.translate(SPANISH).startswith("[spa-eng]")
    without = AutoTranslator(Translator(tmp_path / "no-model-here", allow_download=False), apertium)
    assert without.backend == "apertium" and without.translate(SPANISH) == f"[spa-eng] {SPANISH}"
    assert not without.loaded


def test_weights_on_disk_needs_config_and_weights(tmp_path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    (tmp_path / "config.json").write_text("{}")
    assert not Translator(tmp_path).weights_on_disk()
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert Translator(tmp_path).weights_on_disk()
    assert not Translator("toolformer-tests/no-such-model").weights_on_disk()


def test_engine_from_spec(monkeypatch) -> None:
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert isinstance(make_engine(), AutoTranslator) and isinstance(make_engine("Apertium"), Apertium)
    assert make_engine("some/model").model_id == "some/model"
    monkeypatch.setenv(MODEL_ENV, "apertium")
    assert isinstance(make_engine(), Apertium)
    engine = Apertium()
    assert make_engine(engine) is engine


def test_apertium_path_imports_no_torch(tmp_path) -> None:
    fake = fake_apertium(tmp_path, ["spa-eng"])
    code = (
        "import sys; from toolformer.calls import Call; import toolformer.tools\n"
        "from toolformer.tools.mt import Apertium, AutoTranslator, Translator, mt_tool\n"
        f"auto = AutoTranslator(Translator({str(tmp_path / 'none')!r}), Apertium({str(fake)!r}))\n"
        "out = mt_tool(auto).run(Call('MT', '\"Hola, me llamo Juan y vivo en Madrid.\"'))\n"
        "print(auto.backend, out.text, 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == [
        "apertium", "[spa-eng]", "Hola,", "me", "llamo", "Juan", "y", "vivo", "en", "Madrid.", "False", "False",
    ], result.stderr  # fmt: skip


# ------------------------------------------------------------------------------------------- real Apertium

needs_apertium = pytest.mark.skipif(
    shutil.which("apertium") is None,
    reason="the apertium executable is not on PATH (apt-get install apertium-eng-spa); CI installs it",
)


@needs_apertium
def test_real_apertium_spanish() -> None:
    out = mt_tool("apertium").run(Call("MT", '"El gato negro duerme en la casa."'))
    assert out.ok and out.text == "The black cat sleeps in the house.", out.text


@needs_apertium
def test_real_apertium_short_lower_case_spanish() -> None:
    out = mt_tool("apertium").run(Call("MT", '"el perro come pan"'))
    assert out.ok and out.text == "The dog eats bread", out.text


@needs_apertium
def test_real_apertium_through_the_cli() -> None:
    from typer.testing import CliRunner

    from toolformer.cli import app

    args = [
        "tools",
        "call",
        "MT",
        "El gato negro duerme en la casa.",
        "--tools",
        "MT",
        "--mt-model",
        "apertium",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and result.output.strip() == "The black cat sleeps in the house.", (
        result.output
    )


@needs_apertium
@pytest.mark.parametrize(
    ("text", "lang", "word"),
    [
        (CATALAN, "ca", "cat"),
        ("O gato negro dorme na casa e o can come no xardín.", "gl", "cat"),
        ("Katu beltza etxean lo dago eta txakurra lorategian jaten ari da.", "eu", "cat"),
        ("La nigra kato dormas en la domo kaj la hundo manĝas en la ĝardeno.", "eo", "cat"),
        (CROATIAN, "hr", "cat"),
        ("Црна мачка спава у кући, а пас једе у врту.", "sr", "cat"),  # transliterated to Latin first
        (ICELANDIC, "is", "cat"),
        ("Црната мачка спие во куќата, а кучето јаде во градината.", "mk", "house"),  # no "мачка" in mkd-eng
    ],
)
def test_real_apertium_other_pairs(text: str, lang: str, word: str) -> None:
    engine = Apertium()
    if engine.pair(lang) is None:
        pytest.skip(f"{APERTIUM_PACKAGES[lang][1]} is not installed")
    assert engine.choose(" ".join(text.split()))[0] == lang
    out = engine.translate(text)
    words = re.findall(r"\w+", out.lower())
    assert word in words and "dog" in words and not any(m in out for m in "*#@"), out
