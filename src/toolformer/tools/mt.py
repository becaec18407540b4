"""The MT tool: translate any language into English with a seq2seq model (default NLLB-200 distilled 600M).

As in the paper: NLLB, source language detected automatically (here with py3langid, whose model ships inside
the package, mapped to NLLB codes), output always English (`forced_bos_token_id` = `eng_Latn` when the
tokenizer knows it). The model is loaded lazily, once, from local files only unless downloads are allowed
(`allow_download=True` or `TOOLFORMER_ALLOW_DOWNLOAD=1`). Without weights a call fails with a message saying
how to get them. torch and transformers are imported only when the model is first used.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Any

from toolformer.errors import MissingExtraError, ModelNotFoundError, ToolError
from toolformer.tools.base import Tool

DEFAULT_MT_MODEL = "facebook/nllb-200-distilled-600M"
MODEL_ENV = "TOOLFORMER_MT_MODEL"
DOWNLOAD_ENV = "TOOLFORMER_ALLOW_DOWNLOAD"
TARGET_LANG = "eng_Latn"
MAX_INPUT_TOKENS = 400

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
        raise MissingExtraError("py3langid is not installed: pip install 'toolformer-kit[train]'") from exc
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


def mt_tool(translator: Translator | str | Path | None = None) -> Tool:
    """An MT Tool over `translator` (a Translator, a model id or directory, or None for the default)."""
    engine = translator if isinstance(translator, Translator) else Translator(translator)
    return Tool(
        name="MT",
        description="Translate text from any language into English.",
        fn=engine.translate,
        parameters={
            "type": "object",
            "properties": {"text": {"type": "string", "description": "text in any language"}},
            "required": ["text"],
        },
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
