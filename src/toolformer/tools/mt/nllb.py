"""The NLLB engine of MT: NLLB-200 (or any seq2seq model with NLLB language codes), loaded lazily, once.

Loaded from local files only unless downloads are allowed (`allow_download=True` or
`TOOLFORMER_ALLOW_DOWNLOAD=1`). torch and transformers are imported only when the model is first used.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

from toolformer.errors import MissingExtraError, ModelNotFoundError, ToolError
from toolformer.tools.mt.langid import TARGET_LANG, detect_language

DEFAULT_MT_MODEL = "facebook/nllb-200-distilled-600M"
MODEL_ENV = "TOOLFORMER_MT_MODEL"
DOWNLOAD_ENV = "TOOLFORMER_ALLOW_DOWNLOAD"
MAX_INPUT_TOKENS = 400
# Files whose presence means a local model can load without a download (single-file or sharded checkpoints).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
NLLB_INSTALL = f"pip install 'toolformer-kit[train]' && hf download {DEFAULT_MT_MODEL}"


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
