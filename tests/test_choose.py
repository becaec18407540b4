"""The token chooser: calls masked when off or used up, names held to the loaded tools, the top-k trigger; the same
choices with the transformers (torch) and llama.cpp (numpy) arithmetic."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from toolformer.runtime.callnames import VocabTexts
from toolformer.runtime.choose import CallTokens, NumpyLogits, TokenChooser, TorchLogits
from toolformer.runtime.results import DecodeConfig

TEXTS = ["a", " b", "[", " [", "Calc", "ulator", "(", ")", "x", "[Calculator(", "[[", " the"]
ID = {t: i for i, t in enumerate(TEXTS)}


@dataclass
class _Row:
    text: str = ""
    offset: int = 0
    calls: list[Any] = field(default_factory=list)
    triggers: int = 0


def _chooser(backend: str, **fields: Any) -> TokenChooser:
    config = DecodeConfig(**fields)
    tokens = CallTokens.from_texts({i: t for i, t in enumerate(TEXTS) if "[" in t})
    names = VocabTexts(TEXTS).call_names(["Calculator"])
    ops = (
        TorchLogits(config, torch.Generator())
        if backend == "torch"
        else NumpyLogits(config, np.random.default_rng(0))
    )
    return TokenChooser(config, tokens, names, ops)


def _logits(backend: str, values: np.ndarray) -> Any:
    return torch.tensor(values, dtype=torch.float32) if backend == "torch" else values.astype(np.float32)


def _ranked(*first: str) -> np.ndarray:
    """Logits that rank the tokens `first` highest, in that order, the rest below."""
    values = np.linspace(0.0, 1.0, len(TEXTS))
    for rank, text in enumerate(first):
        values[ID[text]] = 10.0 - rank
    return values


BACKENDS = ["torch", "numpy"]


def test_call_tokens_are_the_bracket_tokens_and_the_lone_brackets():
    tokens = CallTokens.from_texts({i: t for i, t in enumerate(TEXTS) if "[" in t})
    assert tokens.bracket.tolist() == [ID["["], ID[" ["], ID["[Calculator("], ID["[["]]
    assert tokens.call_start.tolist() == [ID["["], ID[" ["]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_calls_off_or_used_up_mask_every_bracket_token(backend):
    logits = _ranked("[[", "[Calculator(", " [", "x")
    assert _chooser(backend, disabled=True)(_logits(backend, logits), _Row()) == ID["x"]
    used_up = _Row(calls=[object()])
    assert _chooser(backend, max_calls=1)(_logits(backend, logits), used_up) == ID["x"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_outside_a_call_a_bracket_must_open_a_loaded_name(backend):
    # "[[" cannot become `Calculator(`, "[Calculator(" can: the latter wins though it ranks second.
    choose = _chooser(backend)
    assert choose(_logits(backend, _ranked("[[", "[Calculator(")), _Row()) == ID["[Calculator("]


@pytest.mark.parametrize("backend", BACKENDS)
def test_after_the_bracket_only_the_name_may_be_spelled(backend):
    choose = _chooser(backend)
    row = _Row(text="so [")
    assert choose(_logits(backend, _ranked("x", " the", "Calc")), row) == ID["Calc"]
    row = _Row(text="so [Calc")
    assert choose(_logits(backend, _ranked("x", "(", "ulator")), row) == ID["ulator"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_trigger_takes_a_bracket_in_the_top_k_once_per_call(backend):
    logits = _ranked("a", " b", " [")
    row = _Row()
    assert _chooser(backend, trigger_top_k=2)(_logits(backend, logits), row) == ID["a"]
    assert row.triggers == 0
    assert _chooser(backend, trigger_top_k=3)(_logits(backend, logits), row) == ID[" ["]
    assert row.triggers == 1
    # The row's one call was spent by the trigger: the same logits now decode greedily.
    assert _chooser(backend, trigger_top_k=3)(_logits(backend, logits), row) == ID["a"]


@pytest.mark.parametrize("seed", range(20))
def test_torch_and_numpy_choose_the_same_token(seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=len(TEXTS))
    text = ["", "so [", "so [Calc", "so [Calculator(1 + 2)"][seed % 4]
    fields = {"trigger_top_k": int(rng.integers(0, 6)), "max_calls": int(rng.integers(0, 3))}
    picks = {b: _chooser(b, **fields)(_logits(b, values), _Row(text=text)) for b in BACKENDS}
    assert picks["torch"] == picks["numpy"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_top_p_samples_only_inside_the_nucleus(backend):
    # Two tokens hold nearly all the mass: with top_p 0.5 only the likelier one is ever drawn.
    values = np.full(len(TEXTS), -20.0)
    values[ID["a"]], values[ID[" b"]] = 5.0, 4.0
    choose = _chooser(backend, do_sample=True, top_p=0.5, seed=0)
    assert {choose(_logits(backend, values), _Row()) for _ in range(20)} == {ID["a"]}
    choose = _chooser(backend, do_sample=True, top_p=1.0, seed=0)
    assert {choose(_logits(backend, values), _Row()) for _ in range(200)} == {ID["a"], ID[" b"]}
