"""Load a causal LM and its tokenizer by alias, GGUF file, local directory or hub id, caching GGUF conversions.

A GGUF file takes ~20 s to dequantise with transformers and the result refuses `save_pretrained`, so the first
load rebuilds a plain model from the config, saves it once as safetensors (with the tokenizer and its chat
template) under `$TOOLFORMER_HOME/models/<name>/`, and later loads read that cache in seconds (`cache`). An
adapter alias (`toolformer-135m`) is a base alias plus a LoRA adapter shipped in the package, merged into the
base's cached weights once. A name that is neither an alias nor a local path is a Hub id; when the Hub cannot be
reached it is looked up in the local Hub cache only, and fails at once (`hub`).

Modules: `aliases` (the built-in names, the default model), `resolve` (what a spec points to, cache folders),
`gguf` (reading GGUF files), `cache` (building and checking caches), `hf` (reading model folders), `int8` (the
int8 folder format), `hub`, `load` (`load_model`, `load_tokenizer`, `resolve_model`), `adapters` (a model's
settings, shipping an adapter). This package re-exports their public names.

Importing this package is cheap: torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

from toolformer.models.adapters import model_meta, ship_adapter
from toolformer.models.aliases import (
    ADAPTER_BUILD,
    ADAPTER_FILES,
    ADAPTERS_ROOT,
    ALIASES,
    BASE_MODEL,
    DEFAULT_MODEL,
    META_FILE,
    ModelAlias,
    adapter_dir,
)
from toolformer.models.cache import CACHE_FORMAT, MARKER, cache_model, cache_status
from toolformer.models.hub import HUB_TIMEOUT_S
from toolformer.models.load import load_model, load_tokenizer, resolve_model
from toolformer.models.resolve import cache_dir
from toolformer.paths import HOME_ENV, toolformer_home

__all__ = [
    "ADAPTERS_ROOT",
    "ADAPTER_BUILD",
    "ADAPTER_FILES",
    "ALIASES",
    "BASE_MODEL",
    "CACHE_FORMAT",
    "DEFAULT_MODEL",
    "HOME_ENV",
    "HUB_TIMEOUT_S",
    "MARKER",
    "META_FILE",
    "ModelAlias",
    "adapter_dir",
    "cache_dir",
    "cache_model",
    "cache_status",
    "load_model",
    "load_tokenizer",
    "model_meta",
    "resolve_model",
    "ship_adapter",
    "toolformer_home",
]
