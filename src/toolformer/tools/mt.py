"""The MT tool: translate any language into English, with NLLB when its weights are on disk, else Apertium.

Two engines, chosen per tool by `mt_tool` (see `AutoTranslator`):
- NLLB (as in the paper): NLLB-200 distilled 600M, source language detected with py3langid (whose model ships
  inside the package) and mapped to NLLB codes, output forced to English (`forced_bos_token_id` = `eng_Latn`).
  Loaded lazily, once, from local files only unless downloads are allowed (`allow_download=True` or
  `TOOLFORMER_ALLOW_DOWNLOAD=1`). torch and transformers are imported only when the model is first used.
- Apertium: rule-based, offline, no torch: Debian's `apertium` with its pairs into English (`apt-get install
  apertium-eng-spa …`), run as a subprocess per call (`apertium -u -f txt MODE`, never a shell) with a time
  limit; on timeout the whole pipeline's process group is killed. py3langid picks the pair among the installed
  modes (`apertium -l`).
English input comes back unchanged (whitespace normalised) from both engines; a language no engine here can
translate answers a ToolError naming what to install (the apt package of its Apertium pair, or the NLLB model).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolformer.errors import ConfigError, MissingExtraError, ModelNotFoundError, ToolError, ToolTimeoutError
from toolformer.tools.base import Tool

DEFAULT_MT_MODEL = "facebook/nllb-200-distilled-600M"
MODEL_ENV = "TOOLFORMER_MT_MODEL"
DOWNLOAD_ENV = "TOOLFORMER_ALLOW_DOWNLOAD"
TARGET_LANG = "eng_Latn"
MAX_INPUT_TOKENS = 400
# Files whose presence means a local model can load without a download (single-file or sharded checkpoints).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
NLLB_INSTALL = f"pip install 'toolformer-kit[train]' && hf download {DEFAULT_MT_MODEL}"

# py3langid's ISO codes → NLLB-200 codes. Languages NLLB lacks (la, br, fy, …) are left out, and detection is
# restricted to the languages listed here so that every answer has an NLLB code.
LANGID_TO_NLLB: dict[str, str] = {
    "ace": "ace_Latn", "af": "afr_Latn", "am": "amh_Ethi", "ar": "arb_Arab", "ary": "ary_Arab",
    "arz": "arz_Arab", "as": "asm_Beng", "az": "azj_Latn", "ba": "bak_Cyrl", "be": "bel_Cyrl",
    "bg": "bul_Cyrl", "bn": "ben_Beng", "bs": "bos_Latn", "ca": "cat_Latn", "crh": "crh_Latn",
    "cs": "ces_Latn", "cy": "cym_Latn", "da": "dan_Latn", "de": "deu_Latn", "dz": "dzo_Tibt",
    "el": "ell_Grek", "en": "eng_Latn", "eo": "epo_Latn", "es": "spa_Latn", "et": "est_Latn",
    "eu": "eus_Latn", "fa": "pes_Arab", "fi": "fin_Latn", "fo": "fao_Latn", "fr": "fra_Latn",
    "fuv": "fuv_Latn", "ga": "gle_Latn", "gd": "gla_Latn", "gl": "glg_Latn", "gu": "guj_Gujr",
    "gug": "grn_Latn", "ha": "hau_Latn", "he": "heb_Hebr", "hi": "hin_Deva", "hr": "hrv_Latn",
    "ht": "hat_Latn", "hu": "hun_Latn", "hy": "hye_Armn", "id": "ind_Latn", "ig": "ibo_Latn",
    "is": "isl_Latn", "it": "ita_Latn", "ja": "jpn_Jpan", "jv": "jav_Latn", "ka": "kat_Geor",
    "kab": "kab_Latn", "kik": "kik_Latn", "kk": "kaz_Cyrl", "km": "khm_Khmr", "kn": "kan_Knda",
    "ko": "kor_Hang", "ku": "kmr_Latn", "ky": "kir_Cyrl", "lb": "ltz_Latn", "lg": "lug_Latn",
    "lij": "lij_Latn", "ln": "lin_Latn", "lo": "lao_Laoo", "lt": "lit_Latn", "ltg": "ltg_Latn",
    "lv": "lvs_Latn", "mg": "plt_Latn", "mk": "mkd_Cyrl", "ml": "mal_Mlym", "mn": "khk_Cyrl",
    "mr": "mar_Deva", "ms": "zsm_Latn", "mt": "mlt_Latn", "my": "mya_Mymr", "ne": "npi_Deva",
    "nl": "nld_Latn", "nn": "nno_Latn", "no": "nob_Latn", "nso": "nso_Latn", "oc": "oci_Latn",
    "om": "gaz_Latn", "or": "ory_Orya", "pa": "pan_Guru", "pl": "pol_Latn", "ps": "pbt_Arab",
    "pt": "por_Latn", "qu": "quy_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl", "rw": "kin_Latn",
    "sa": "san_Deva", "si": "sin_Sinh", "sk": "slk_Latn", "sl": "slv_Latn", "sn": "sna_Latn",
    "so": "som_Latn", "sq": "als_Latn", "sr": "srp_Cyrl", "st": "sot_Latn", "sv": "swe_Latn",
    "sw": "swh_Latn", "ta": "tam_Taml", "te": "tel_Telu", "tg": "tgk_Cyrl", "th": "tha_Thai",
    "tk": "tuk_Latn", "tl": "tgl_Latn", "tr": "tur_Latn", "tt": "tat_Cyrl", "ug": "uig_Arab",
    "uk": "ukr_Cyrl", "ur": "urd_Arab", "uz": "uzn_Latn", "vec": "vec_Latn", "vi": "vie_Latn",
    "xh": "xho_Latn", "yo": "yor_Latn", "yue": "yue_Hant", "zh": "zho_Hans", "zu": "zul_Latn",
}  # fmt: skip


def detect_language(text: str) -> str:
    """The NLLB code of `text`'s language (e.g. "deu_Latn"), by py3langid."""
    lang, _prob = _identifier().classify(text)
    return LANGID_TO_NLLB.get(lang, TARGET_LANG)


@functools.cache
def _identifier() -> Any:
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError as exc:
        raise MissingExtraError("py3langid is not installed: pip install 'py3langid>=0.4,<1'") from exc
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    known = set(identifier.nb_classes)
    identifier.set_languages([code for code in LANGID_TO_NLLB if code in known])
    return identifier


def resolve_model(model: str | Path | None = None) -> str:
    """The model to use: the argument, else `$TOOLFORMER_MT_MODEL`, else NLLB-200 distilled 600M."""
    if model is not None and str(model).strip():
        return str(model)
    return os.environ.get(MODEL_ENV, "").strip() or DEFAULT_MT_MODEL


def downloads_allowed(allow_download: bool | None = None) -> bool:
    """Whether model files may be fetched from the hub: the argument, else `$TOOLFORMER_ALLOW_DOWNLOAD`."""
    if allow_download is not None:
        return allow_download
    return os.environ.get(DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class Translator:
    """Lazy any-language → English translator. The model loads on the first `translate` (or `load`), once."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        allow_download: bool | None = None,
        device: str | None = None,
        max_new_tokens: int = 200,
        num_beams: int = 1,
    ) -> None:
        self.model_id = resolve_model(model)
        self.allow_download = downloads_allowed(allow_download)
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._error: Exception | None = None

    def __repr__(self) -> str:
        return f"Translator({self.model_id!r})"

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def weights_on_disk(self) -> bool:
        """Whether the model can load without a download: torch and transformers installed, config and weights local.

        Cheap (no torch import): a local directory is inspected, a hub id is looked up in the hub cache.
        """
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
            return False
        path = Path(self.model_id).expanduser()
        if path.is_dir():
            return (path / "config.json").is_file() and any((path / w).is_file() for w in WEIGHT_FILES)
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return False

        def cached(filename: str) -> bool:
            try:
                return isinstance(try_to_load_from_cache(self.model_id, filename), str)
            except Exception:  # noqa: BLE001 - a malformed repo id is simply "not cached"
                return False

        return cached("config.json") and any(cached(w) for w in WEIGHT_FILES)

    def load(self) -> None:
        """Load tokenizer and model now (idempotent); raise ModelNotFoundError if the weights are not there."""
        with self._lock:
            self._load_locked()

    def translate(self, text: str) -> str:
        """Translate `text` into English. English input comes back unchanged without loading the model."""
        return self.translate_to(text, TARGET_LANG)

    def translate_to(self, text: str, target: str, source: str | None = None) -> str:
        """Translate `text` into the NLLB language `target` (e.g. "fra_Latn"); back-translation uses both legs.

        `source` (an NLLB code) defaults to the detected language; text already in `target` comes back unchanged.
        """
        text = " ".join(str(text).split())
        if not text:
            raise ToolError("text is empty")
        src = source or detect_language(text)
        if src == target:
            return text
        ids = self._generate(text, src, target)
        return self._tokenizer.decode(ids, skip_special_tokens=True).strip()

    def _generate(self, text: str, src_lang: str, tgt_lang: str = TARGET_LANG) -> list[int]:
        import torch

        with self._lock:  # one generation at a time: the tokenizer's src_lang is shared state
            self._load_locked()
            tokenizer, model = self._tokenizer, self._model
            if hasattr(tokenizer, "src_lang") and _token_id(tokenizer, src_lang) is not None:
                tokenizer.src_lang = src_lang
            batch = tokenizer(text, return_tensors="pt", truncation=True, max_length=MAX_INPUT_TOKENS)
            batch = {k: v.to(model.device) for k, v in batch.items()}
            kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams}
            forced = _token_id(tokenizer, tgt_lang)
            if forced is not None:
                kwargs["forced_bos_token_id"] = forced
            with torch.inference_mode():
                out = model.generate(**batch, **kwargs)
            return out[0].tolist()

    def _load_locked(self) -> None:
        if self._model is not None:
            return
        if self._error is not None:  # fail fast on later calls instead of retrying a slow load
            raise self._error
        try:
            self._tokenizer, self._model = self._from_pretrained()
        except Exception as exc:
            self._error = exc
            raise

    def _from_pretrained(self) -> tuple[Any, Any]:
        try:
            import torch
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise MissingExtraError(
                "the MT tool needs transformers: pip install 'toolformer-kit[train]'"
            ) from exc
        local_only = not self.allow_download
        path = Path(self.model_id).expanduser()
        looks_like_path = (
            path.exists() or self.model_id.startswith(("/", ".", "~")) or self.model_id.count("/") > 1
        )
        if looks_like_path and not path.is_dir():
            raise ModelNotFoundError(
                f"MT model directory {self.model_id!r} does not exist (--mt-model / ${MODEL_ENV})"
            )
        source = str(path) if looks_like_path else self.model_id
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a tool call must not draw progress bars in the middle of generation
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            model = AutoModelForSeq2SeqLM.from_pretrained(source, local_files_only=local_only)
        except Exception as exc:  # noqa: BLE001 - hub, config and weight errors all mean "no usable model here"
            if looks_like_path:
                raise ModelNotFoundError(f"cannot load MT model from {source!r}: {_first_line(exc)}") from exc
            hint = f"download it with `hf download {self.model_id}`"
            if local_only:
                hint += f" (or allow downloads: {DOWNLOAD_ENV}=1)"
            raise ModelNotFoundError(
                f"MT model {self.model_id!r} is not available offline: {hint}, "
                f"or pass --mt-model DIR / set ${MODEL_ENV} to a local model directory"
            ) from exc
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device).eval()
        return tokenizer, model


# ------------------------------------------------------------------------------------------------- Apertium

APERTIUM_TIMEOUT_S = 30.0
# Below this py3langid probability the detected language is a guess (short phrases: "el gato negro" comes out
# Venetian or Italian), so the pair is chosen among the languages Apertium can translate into English.
UNSURE_BELOW = 0.5
# Debian's Apertium pairs into English: py3langid code → (language, package). A language listed here but not
# installed gets this package in its error message.
APERTIUM_PACKAGES: dict[str, tuple[str, str]] = {
    "es": ("Spanish", "apertium-eng-spa"),
    "ca": ("Catalan", "apertium-eng-cat"),
    "gl": ("Galician", "apertium-en-gl"),
    "eu": ("Basque", "apertium-eu-en"),
    "eo": ("Esperanto", "apertium-eo-en"),
    "hr": ("Croatian", "apertium-hbs-eng"),
    "sr": ("Serbian", "apertium-hbs-eng"),
    "bs": ("Bosnian", "apertium-hbs-eng"),
    "is": ("Icelandic", "apertium-isl-eng"),
    "mk": ("Macedonian", "apertium-mkd-eng"),
}
# Apertium names pairs by ISO 639-1 or 639-3 codes; where it uses a macrolanguage code rather than NLLB's
# individual language (hbs for Serbo-Croatian, ara for Arabic, …) the alias is listed here.
APERTIUM_ALIASES: dict[str, tuple[str, ...]] = {
    "hr": ("hbs",), "sr": ("hbs",), "bs": ("hbs",), "ar": ("ara",), "az": ("aze",), "fa": ("fas",),
    "lv": ("lav",), "mg": ("mlg",), "mn": ("mon",), "ms": ("msa", "zlm"), "ne": ("nep",), "no": ("nor", "nob"),
    "om": ("orm",), "ps": ("pus",), "sq": ("sqi",), "sw": ("swa",), "uz": ("uzb",),
}  # fmt: skip
_ENGLISH_CODES = ("eng", "en")
_CYRILLIC = re.compile(r"[\u0400-\u04FF]")
_MARK = re.compile(r"(?<!\w)([*#@])(?=\w)")  # Apertium's unknown (*), generation (#) and transfer (@) marks


class Apertium:
    """Rule-based any-language → English through Apertium's installed pairs; one subprocess per call.

    `command` is the executable (default `apertium`, found on PATH) with any leading arguments; `timeout` is the
    limit in seconds of one subprocess, after which its whole process group (the mode's pipeline) is killed.
    """

    def __init__(
        self, command: str | Path | Sequence[str] = "apertium", *, timeout: float = APERTIUM_TIMEOUT_S
    ) -> None:
        self.command = (str(command),) if isinstance(command, (str, Path)) else tuple(map(str, command))
        if not self.command:
            raise ConfigError("command of Apertium must name an executable, got an empty sequence")
        if not timeout > 0:
            raise ConfigError(f"timeout of Apertium must be positive seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self._modes: frozenset[str] | None = None

    def __repr__(self) -> str:
        return f"Apertium({' '.join(self.command)!r})"

    @property
    def loaded(self) -> bool:  # nothing stays loaded between calls; here for symmetry with Translator
        return False

    def installed(self) -> bool:
        """Whether the executable is on PATH (or is an existing file)."""
        return shutil.which(self.command[0]) is not None

    def modes(self) -> frozenset[str]:
        """The installed translation modes (`apertium -l`), e.g. {"spa-eng", "eng-spa"}; empty without Apertium."""
        if self._modes is None:
            if not self.installed():
                return frozenset()
            out = self._run(["-l"], "")
            self._modes = frozenset(line.strip() for line in out.splitlines() if line.strip())
        return self._modes

    def pair(self, lang: str) -> str | None:
        """The installed mode translating py3langid language `lang` (e.g. "es") into English, or None."""
        modes = self.modes()
        nllb = LANGID_TO_NLLB.get(lang, "")
        sources = dict.fromkeys((lang, nllb.split("_")[0], *APERTIUM_ALIASES.get(lang, ())))
        for source in sources:
            for target in _ENGLISH_CODES:
                if source and f"{source}-{target}" in modes:
                    return f"{source}-{target}"
        return None

    def choose(self, text: str) -> tuple[str, str | None]:
        """(language, mode) for `text`: py3langid's language and its installed pair (None when there is none).

        When py3langid is unsure (top probability below UNSURE_BELOW) of a language no pair covers, the most
        probable language among those Apertium can translate (installed or packaged) and English is taken.
        """
        ranking = _identifier().rank(text)
        top, prob = ranking[0]
        if top == "en":
            return top, None
        mode = self.pair(top)
        if mode is not None or prob >= UNSURE_BELOW:
            return top, mode
        candidates = {lang for lang in LANGID_TO_NLLB if self.pair(lang)} | set(APERTIUM_PACKAGES) | {"en"}
        lang = next(code for code, _p in ranking if code in candidates)
        return lang, (None if lang == "en" else self.pair(lang))

    def translate(self, text: str) -> str:
        """Translate `text` into English; English input comes back unchanged (whitespace normalised)."""
        text = " ".join(str(text).split())
        if not text:
            raise ToolError("text is empty")
        lang, mode = self.choose(text)
        if lang == "en":
            return text
        if mode is None:
            raise ToolError(missing_backend_message(lang, apertium_installed=self.installed()))
        source = text
        if mode.startswith("hbs-") and _CYRILLIC.search(text) and "Cyrl-Latn" in self.modes():
            text = self._run(["-u", "-f", "txt", "Cyrl-Latn"], text)  # the hbs pairs read Latin script only
        return strip_marks(self._run(["-u", "-f", "txt", mode], text), source)

    def _run(self, args: list[str], text: str) -> str:
        """Run `apertium ARGS` on `text` (stdin) and return its stdout; kill the process group at the limit."""
        exe = shutil.which(self.command[0])
        if exe is None:
            raise ToolError(f"apertium executable {self.command[0]!r} not found: apt-get install apertium")
        argv = [exe, *self.command[1:], *args]
        # A mode is a pipeline of processes (lt-proc | apertium-transfer | …) under one shell: a new session
        # makes them one process group, so a timeout kills all of them, not just the shell.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate((text + "\n").encode("utf-8"), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ToolTimeoutError(
                f"apertium {args[-1]} did not answer within {self.timeout:g} s and was killed"
            ) from None
        if proc.returncode != 0:
            detail = err.decode("utf-8", "replace").strip().splitlines()
            raise ToolError(
                f"apertium {' '.join(args)} failed (exit {proc.returncode})"
                + (f": {detail[0]}" if detail else "")
            )
        return out.decode("utf-8", "replace").strip()


def strip_marks(output: str, source: str) -> str:
    """`output` without Apertium's `*`/`#`/`@` word marks; a mark character the source itself holds is kept."""
    keep = {c for c in "*#@" if c in source}  # "#oferta" in the input comes out as "#offer": not a mark
    return _MARK.sub(lambda m: m.group(1) if m.group(1) in keep else "", output)


def missing_backend_message(lang: str, *, apertium_installed: bool = True) -> str:
    """One line saying what to install so that MT can translate py3langid language `lang` into English."""
    nllb = LANGID_TO_NLLB.get(lang, "")
    if lang in APERTIUM_PACKAGES:
        name, package = APERTIUM_PACKAGES[lang]
        return (
            f"MT cannot translate {name} ({lang}) here: install its Apertium pair "
            f"(`sudo apt-get install {package}`) or the NLLB model (`{NLLB_INSTALL}`)"
        )
    what = f"language {lang!r}" + (f" ({nllb})" if nllb else "")
    why = "" if apertium_installed else "Apertium is not installed and "
    return (
        f"MT cannot translate {what} here: {why}Debian's Apertium has no {lang}→English pair; "
        f"install the NLLB model (`{NLLB_INSTALL}`)"
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - no process groups
            proc.kill()
    except ProcessLookupError:
        pass
    try:
        proc.communicate(timeout=5)  # reap it and drain the pipes
    except subprocess.TimeoutExpired:  # a grandchild that left the group still holds a pipe: let it go
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# --------------------------------------------------------------------------------------------- choice


class AutoTranslator:
    """The MT tool's default engine: NLLB when its weights are on disk (or downloads are allowed), else Apertium.

    The choice is made on the first call and kept.
    """

    def __init__(self, nllb: Translator | None = None, apertium: Apertium | None = None) -> None:
        self.nllb = nllb if nllb is not None else Translator()
        self.apertium = apertium if apertium is not None else Apertium()
        self._backend: str | None = None

    def __repr__(self) -> str:
        return f"AutoTranslator({self.nllb!r}, {self.apertium!r})"

    @property
    def loaded(self) -> bool:
        return self.nllb.loaded

    @property
    def backend(self) -> str:
        """Which engine translates: "nllb" or "apertium"."""
        if self._backend is None:
            use_nllb = self.nllb.allow_download or self.nllb.weights_on_disk()
            self._backend = "nllb" if use_nllb else "apertium"
        return self._backend

    def translate(self, text: str) -> str:
        """Translate `text` into English with the chosen engine."""
        engine = self.nllb if self.backend == "nllb" else self.apertium
        return engine.translate(text)


def make_engine(spec: Any = None) -> Any:
    """The MT engine for `spec`: an engine (anything with `.translate`) as is; "apertium" → Apertium; a model id or
    directory → that NLLB-style model only; None → `$TOOLFORMER_MT_MODEL` if set, else AutoTranslator."""
    if spec is not None and not isinstance(spec, (str, Path)) and hasattr(spec, "translate"):
        return spec
    if spec is None or not str(spec).strip():
        spec = os.environ.get(MODEL_ENV, "").strip() or None
    if spec is None:
        return AutoTranslator()
    if str(spec).strip().lower() == "apertium":
        return Apertium()
    return Translator(spec)


def mt_tool(translator: Any = None) -> Tool:
    """An MT Tool over `translator`: an engine (Translator, Apertium, AutoTranslator), "apertium", a model id or
    directory (that model only), or None for the default (NLLB when its weights are on disk, else Apertium)."""
    engine = make_engine(translator)
    return Tool(
        name="MT",
        description="Translate text from any language into English.",
        fn=engine.translate,
        parameters={
            "type": "object",
            "properties": {"text": {"type": "string", "description": "text in any language"}},
            "required": ["text"],
        },
        examples=('MT("el gato negro")',),
        timeout=120.0,  # the first call loads the model (tens of seconds for NLLB-600M on CPU)
    )


def _token_id(tokenizer: Any, token: str) -> int | None:
    try:
        tid = tokenizer.convert_tokens_to_ids(token)
    except (KeyError, ValueError, TypeError):
        return None
    if tid is None or tid == getattr(tokenizer, "unk_token_id", None):
        return None
    return int(tid)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
