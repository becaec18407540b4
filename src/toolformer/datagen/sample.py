"""The "Sample" step of data generation (paper §2): propose candidate calls c at character positions i of a text x.

The proposers share one interface, `propose(doc, tool) -> list[Candidate]` (`proposers.base.Proposer`):

- `RuleProposer` (`proposers.rules`): deterministic rules, for models too small to follow the annotation prompt.
- `DataProposer` (`proposers.data`): calls already in the data (GSM8K's `<<48/2=24>>`, or inline `[Tool(args) →
  r]` calls).
- `LMProposer` (`proposers.lm`): the paper's method. One forward pass over P(x) + x gives p_i = p("[" | P(x),
  x_<i) at every position; the top k positions with p_i > τ_s each get m sampled calls from [P(x), x_<i, "["].
- the user's own (`proposers.user`): `--proposer mypkg.mod:propose`, a function `propose(text) -> [(position,
  tool, args), ...]` or a Proposer object.

`default_proposers` builds the ones `--proposer` names; `propose` runs them over a document's tools. The
proposers' names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from toolformer.datagen.config import (
    PAPER_DEFAULTS,
    PROPOSERS,
    SAMPLE_BACKENDS,
    SampleConfig,
    paper_config,
)
from toolformer.datagen.proposers.base import Proposer, dedupe
from toolformer.datagen.proposers.data import (
    DATA_CALLS,
    GSM8K_PATTERN,
    MAX_COMPOSED_CHARS,
    DataProposer,
    compose_gsm8k_expression,
    gsm8k_answer_document,
    gsm8k_document,
    spaced_expression,
)
from toolformer.datagen.proposers.kvcache import cut_cache
from toolformer.datagen.proposers.lm import LMProposer, Position, Sample, select_positions
from toolformer.datagen.proposers.rules import (
    RELATIONS,
    RelationMatch,
    RuleProposer,
    calculator_rules,
    calendar_rules,
    mt_rules,
    relation_rules,
)
from toolformer.datagen.proposers.user import FunctionProposer, is_user_spec, load_proposer
from toolformer.datagen.proposers.vllm_engine import VLLM_GPU_MEMORY, VLLM_STOP
from toolformer.datagen.records import Candidate, Document
from toolformer.errors import ConfigError

__all__ = [
    "DATA_CALLS",
    "GSM8K_PATTERN",
    "MAX_COMPOSED_CHARS",
    "PAPER_DEFAULTS",
    "RELATIONS",
    "SAMPLE_BACKENDS",
    "VLLM_GPU_MEMORY",
    "VLLM_STOP",
    "DataProposer",
    "FunctionProposer",
    "LMProposer",
    "Position",
    "Proposer",
    "RelationMatch",
    "RuleProposer",
    "Sample",
    "SampleConfig",
    "calculator_rules",
    "calendar_rules",
    "compose_gsm8k_expression",
    "cut_cache",
    "dedupe",
    "default_proposers",
    "gsm8k_answer_document",
    "gsm8k_document",
    "load_proposer",
    "mt_rules",
    "paper_config",
    "propose",
    "relation_rules",
    "select_positions",
    "spaced_expression",
]


def propose(doc: Document, tools: Sequence[str], proposers: Sequence[Proposer]) -> list[Candidate]:
    """Every proposer's candidates of every tool in `tools` for `doc`, each (tool, args, position) once."""
    seen: set[tuple[str, str, int]] = set()
    found: list[Candidate] = []
    for tool_name in tools:
        for proposer in proposers:
            for cand in proposer.propose(doc, tool_name):
                key = (cand.tool, cand.args, cand.position)
                if key not in seen:  # rule and lm may propose the same call; score it once
                    seen.add(key)
                    cand.doc_id = doc.id
                    found.append(cand)
    return found


def default_proposers(
    names: Sequence[str],
    model: Any = None,
    tokenizer: Any = None,
    seed: int = 0,
    sample_backend: str = "transformers",
) -> list[Proposer]:
    """The proposers named by `--proposer` (rule, data, lm, or the user's `module:attr`, `proposers.user`).

    `data` proposes the calls the input already holds: GSM8K's `<<…>>` annotations (`--format gsm8k`) or inline
    `[Tool(args) → r]` calls, which are taken out of the text first (see `plan.make_item`). `lm` samples with the
    paper's per-tool settings (τ_s, k, m), seeded with `seed`, sampling with `sample_backend`.
    """
    out: list[Proposer] = []
    for name in names:
        if name == "rule":
            out.append(RuleProposer())
        elif name == "data":
            out.append(DataProposer())
        elif name == "lm":
            configs = {tool: _lm_config(tool, seed, sample_backend) for tool in PAPER_DEFAULTS}
            out.append(_SeededLM(LMProposer(model, tokenizer, configs), seed, sample_backend))
        elif is_user_spec(name):
            out.append(load_proposer(name))
        else:
            raise ConfigError(f"proposer={name!r} is not one of {', '.join(PROPOSERS)}")
    return out


def _lm_config(tool: str, seed: int, backend: str) -> SampleConfig:
    return replace(paper_config(tool), seed=seed, backend=backend)


class _SeededLM:
    """LMProposer with the run's seed and backend also for tools outside the paper's five (else: defaults)."""

    def __init__(self, inner: Any, seed: int, backend: str = "transformers") -> None:
        self.inner = inner
        self.seed = seed
        self.backend = backend

    def propose(self, doc: Document, tool: str) -> list[Candidate]:
        configs = self.inner.config
        if isinstance(configs, dict) and tool not in configs:
            configs[tool] = _lm_config(tool, self.seed, self.backend)
        return self.inner.propose(doc, tool)
