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

Modules: `langid` (py3langid → NLLB codes), `nllb` (`Translator`), `apertium` (`Apertium`). This package holds the
tool and the engine choice, and re-exports their public names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from toolformer.tools.base import Tool

# The engines' public names, importable from here as before the split.
from toolformer.tools.mt.apertium import (
    APERTIUM_ALIASES,
    APERTIUM_PACKAGES,
    APERTIUM_TIMEOUT_S,
    UNSURE_BELOW,
    Apertium,
    missing_backend_message,
    strip_marks,
)
from toolformer.tools.mt.langid import LANGID_TO_NLLB, TARGET_LANG, detect_language
from toolformer.tools.mt.nllb import (
    DEFAULT_MT_MODEL,
    DOWNLOAD_ENV,
    MAX_INPUT_TOKENS,
    MODEL_ENV,
    NLLB_INSTALL,
    WEIGHT_FILES,
    Translator,
    downloads_allowed,
    resolve_model,
)

__all__ = [
    "APERTIUM_ALIASES",
    "APERTIUM_PACKAGES",
    "APERTIUM_TIMEOUT_S",
    "DEFAULT_MT_MODEL",
    "DOWNLOAD_ENV",
    "LANGID_TO_NLLB",
    "MAX_INPUT_TOKENS",
    "MODEL_ENV",
    "NLLB_INSTALL",
    "TARGET_LANG",
    "UNSURE_BELOW",
    "WEIGHT_FILES",
    "Apertium",
    "AutoTranslator",
    "Translator",
    "detect_language",
    "downloads_allowed",
    "make_engine",
    "missing_backend_message",
    "mt_tool",
    "resolve_model",
    "strip_marks",
]


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
