"""The vLLM engine of LMProposer's sampling step (`SampleConfig.backend="vllm"`), over the scoring model's path.

It samples from the same token prompts as the transformers path (prefix + the call-opening token) and cuts each
sample at its first "]" or newline, keeping it, as the transformers path keeps its stop token. The p_i scoring
pass always runs in transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from toolformer.datagen.config import SampleConfig
from toolformer.errors import ConfigError, require

VLLM_STOP = ["]", "\n"]  # a call ends at its "]"; a newline ends a sample without one (a call is one line)
VLLM_GPU_MEMORY = 0.5  # share of GPU memory vLLM may take: the transformers model scoring p_i lives there too


def load_vllm() -> Any:
    """The `vllm` module, or MissingExtraError naming the `gpu` extra (tests replace this function)."""
    require("vllm", "gpu")
    import vllm

    return vllm


class VLLMSampler:
    """Samples calls with a `vllm.LLM` over the same weights as `model` (a transformers model with a path)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.llm: Any = None  # the vllm.LLM, made on first use and kept

    def engine(self) -> Any:
        """The vllm.LLM over the same weights as `self.model`, created on first use and kept."""
        engine = self.llm
        if engine is None:
            vllm = load_vllm()
            path = getattr(self.model, "name_or_path", None) or getattr(
                self.model.config, "_name_or_path", None
            )
            if not path:
                raise ConfigError("backend='vllm' needs the model's path (model.name_or_path is empty)")
            engine = vllm.LLM(model=str(path), gpu_memory_utilization=VLLM_GPU_MEMORY)
            self.llm = engine
        return engine

    def sample(self, prompts: Sequence[list[int]], cfg: SampleConfig, seed: int | None) -> list[list[str]]:
        """m samples per token prompt (prefix + "[" token), cut at the first "]" or newline, which is kept."""
        vllm = load_vllm()
        engine = self.engine()
        params = vllm.SamplingParams(
            n=cfg.m if cfg.do_sample else 1,
            temperature=cfg.temperature if cfg.do_sample else 0.0,
            top_p=cfg.top_p if cfg.do_sample else 1.0,
            max_tokens=cfg.max_new_tokens,
            stop=VLLM_STOP,
            include_stop_str_in_output=True,
            seed=seed,
        )
        outputs = engine.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return [[cut_at_stop(o.text) for o in out.outputs] for out in outputs]


def cut_at_stop(text: str) -> str:
    """`text` up to and including its first "]" or newline (vLLM may stop after a token holding more)."""
    ends = [i for i in (text.find("]"), text.find("\n")) if i >= 0]
    return text[: min(ends) + 1] if ends else text
