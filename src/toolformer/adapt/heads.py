"""Build the model a task trains: the base LM's weights under a task head (or the LM itself), LoRA or full.

The base weights come from `toolformer.models.load_model` (so aliases and GGUF files work, through their cache).
A task head cannot simply be `from_pretrained` from a causal-LM folder: `LlamaForQuestionAnswering` names its
backbone `transformer`, not `model`, so every weight would be reported missing and silently re-initialised. So the
head model is built from the base config (dropout set, labels set) and its backbone is loaded from the causal LM's
backbone with `strict=True` (a mismatch is an error, never a random backbone). The head is new (random init).

LoRA: peft with the task type (SEQ_CLS, TOKEN_CLS, QUESTION_ANS, CAUSAL_LM); the head module is in
`modules_to_save`, so it is fully trained and saved with the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolformer.errors import ConfigError, MissingExtraError

PEFT_TASK_TYPES = {
    "classification": "SEQ_CLS",
    "ner": "TOKEN_CLS",
    "qa": "QUESTION_ANS",
    "seq2seq": "CAUSAL_LM",
}


@dataclass
class BuiltModel:
    model: Any  # the model to train (a PeftModel with LoRA)
    head_modules: list[str]  # names of the new, randomly initialised modules ([] for seq2seq)
    trainable_params: int
    total_params: int
    mode: str  # "lora" or "full"


def _auto_class(task: str) -> Any:
    import transformers

    name = {
        "classification": "AutoModelForSequenceClassification",
        "ner": "AutoModelForTokenClassification",
        "qa": "AutoModelForQuestionAnswering",
        "seq2seq": "AutoModelForCausalLM",
    }[task]
    return getattr(transformers, name)


def head_config(
    base_config: Any, task: str, labels: list[str], dropout: float, pad_token_id: int | None
) -> Any:
    """A copy of the base config with the task's label maps and dropout."""
    config = base_config.__class__.from_dict(base_config.to_dict())
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    if hasattr(config, "attention_dropout"):
        config.attention_dropout = dropout
    if labels:
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    if task == "classification":
        config.problem_type = "single_label_classification"
    if task == "ner":
        config.classifier_dropout = dropout
    if pad_token_id is not None:
        # The sequence-classification head finds each row's last real token by the pad id.
        config.pad_token_id = pad_token_id
    return config


def build_task_model(
    base: Any,
    tokenizer: Any,
    task: str,
    labels: list[str],
    *,
    dropout: float = 0.1,
    lora: bool = True,
    lora_r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.05,
    target_modules: str | list[str] = "all-linear",
    seed: int = 0,
) -> BuiltModel:
    """The trainable model for `task` from the causal LM `base` (its weights are taken over, not copied)."""
    import torch

    config = head_config(base.config, task, labels, dropout, tokenizer.pad_token_id)
    auto = _auto_class(task)
    torch.manual_seed(seed)  # the new head's initialisation is part of the run's seed
    try:
        model = auto.from_config(config, dtype=base.dtype)
    except ValueError:  # transformers: "Unrecognized configuration class … for this kind of AutoModel"
        raise ConfigError(
            f"task={task!r}: transformers has no {auto.__name__.removeprefix('AutoModelFor')} head for model type "
            f"{config.model_type!r}"
        ) from None
    # assign=True adopts the base tensors (no second copy); strict=True refuses a partial backbone.
    try:
        if task == "seq2seq":
            model.load_state_dict(base.state_dict(), strict=True, assign=True)
            model.tie_weights()
        else:
            model.base_model.load_state_dict(base.base_model.state_dict(), strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"task={task!r}: the {type(base).__name__} weights do not fit {type(model).__name__}'s backbone ({first})"
        ) from None
    model.to(base.device)
    if base.generation_config is not None and hasattr(model, "generation_config"):
        model.generation_config = base.generation_config
    head = [
        name
        for name, module in model.named_children()
        if name != model.base_model_prefix and any(True for _ in module.parameters())
    ]
    if task == "seq2seq":
        head = []  # the LM head is the (tied) pretrained one, not new
    mode = "full"
    if lora:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as exc:
            raise MissingExtraError("peft is not installed: pip install 'toolformer-kit[train]'") from exc
        peft_config = LoraConfig(
            r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=target_modules,
            bias="none",
            task_type=PEFT_TASK_TYPES[task],
            modules_to_save=list(head) or None,  # a copy: peft appends its defaults to the list it gets
        )
        model = get_peft_model(model, peft_config)
        mode = "lora"
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return BuiltModel(model, head, trainable, total, mode)


def unwrap_for_saving(model: Any, merge: bool) -> tuple[Any, str]:
    """The model to `save_pretrained`: LoRA merged into a plain model (or the adapter itself), and the mode name."""
    if not hasattr(model, "peft_config"):
        return model, "full"
    if merge:
        return model.merge_and_unload(), "lora-merged"
    return model, "lora-adapter"
