"""Run a task model over examples: batched forward passes (greedy generation for seq2seq), predictions, loss, metrics.

`TaskRunner` ties one task's encoding (`features.py`), decoding and metrics (`metrics.py`) together; the trainer
encodes the training rows with it and calls `evaluate` at every dev evaluation, and the report stores its
predictions. One collator pads every task's rows explicitly (right padding for training and scoring, left padding
for generation), independent of the tokenizer's own padding side, which `load_model` sets to left.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from toolformer.adapt import features as F
from toolformer.adapt import metrics as M
from toolformer.adapt.tasks import ClassificationExample, NerExample, QaExample, Seq2SeqExample


def pad_batch(rows: list[dict[str, Any]], pad_id: int, left: bool = False) -> dict[str, Any]:
    """Tensors from rows of lists: input_ids padded with `pad_id`, attention_mask with 0, list labels with -100."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    batch: dict[str, Any] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if isinstance(values[0], list):
            fill = pad_id if key == "input_ids" else (0 if key == "attention_mask" else F.IGNORE)
            padded = [
                ([fill] * (width - len(v)) + v) if left else (v + [fill] * (width - len(v))) for v in values
            ]
            batch[key] = torch.tensor(padded, dtype=torch.long)
        else:
            batch[key] = torch.tensor(values, dtype=torch.long)
    return batch


@dataclass
class Collator:
    """The Trainer's data collator: right padding (`pad_batch`)."""

    pad_id: int

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return pad_batch(rows, self.pad_id)


@dataclass
class Evaluation:
    """Predictions on a set of examples, their metrics (percent) and the mean loss."""

    metrics: dict[str, float]
    predictions: list[Any]
    records: list[dict[str, Any]] = field(default_factory=list)  # one JSON-able record per example


@dataclass
class TaskRunner:
    """Encoding, prediction and scoring for one task (see the module docstring)."""

    task: str
    tokenizer: Any
    labels: list[str]
    max_length: int
    prompt_template: str = "{source}\n"
    max_new_tokens: int = 64
    max_answer_tokens: int = 30
    doc_stride: int = 64
    batch_size: int = 8
    bf16: bool = False

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    # ----------------------------------------------------------------------------------------- encoding

    def encode(self, examples: list[Any]) -> tuple[list[dict[str, Any]], list[Any]]:
        """Model rows for `examples` and per-row decoding info (NER word positions, QA windows; else [])."""
        tok = self.tokenizer
        if self.task == "classification":
            return F.encode_classification(tok, examples, self.label2id, self.max_length), []
        if self.task == "ner":
            return F.encode_ner(tok, examples, self.label2id, self.max_length)
        if self.task == "qa":
            return F.encode_qa(tok, examples, self.max_length, self.doc_stride)
        return F.encode_seq2seq(tok, examples, self.prompt_template, self.max_length), []

    # ----------------------------------------------------------------------------------------- running

    def _autocast(self, model: Any) -> Any:
        import torch

        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=model.device.type, dtype=torch.bfloat16)

    def _forward_all(self, model: Any, rows: list[dict[str, Any]]) -> tuple[list[Any], float | None]:
        """Per-row outputs (logits without padding, on CPU) and the mean loss over the batches."""
        import torch

        outputs: list[Any] = []
        losses: list[tuple[float, int]] = []
        for i in range(0, len(rows), self.batch_size):
            chunk = rows[i : i + self.batch_size]
            batch = {k: v.to(model.device) for k, v in pad_batch(chunk, self.pad_id).items()}
            with torch.no_grad(), self._autocast(model):
                out = model(**batch)
            if out.loss is not None:
                losses.append((float(out.loss), len(chunk)))
            for j, row in enumerate(chunk):
                n = len(row["input_ids"])
                if self.task == "classification":
                    outputs.append(out.logits[j].float().cpu())
                elif self.task == "ner":
                    outputs.append(out.logits[j, :n].float().cpu())
                elif self.task == "qa":
                    outputs.append(
                        (out.start_logits[j, :n].float().cpu(), out.end_logits[j, :n].float().cpu())
                    )
        total = sum(n for _, n in losses)
        return outputs, (sum(loss * n for loss, n in losses) / total if total else None)

    def _generate_all(self, model: Any, examples: list[Seq2SeqExample]) -> list[str]:
        import torch

        tok = self.tokenizer
        room = max(1, self.max_length - self.max_new_tokens)
        prompts = [F.prompt_ids(tok, self.prompt_template, ex.source, room) for ex in examples]
        texts: list[str] = []
        for i in range(0, len(prompts), self.batch_size):
            chunk = [
                {"input_ids": p, "attention_mask": [1] * len(p)} for p in prompts[i : i + self.batch_size]
            ]
            batch = {k: v.to(model.device) for k, v in pad_batch(chunk, self.pad_id, left=True).items()}
            with torch.no_grad(), self._autocast(model):
                out = model.generate(
                    **batch,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.pad_id,
                    eos_token_id=tok.eos_token_id,
                )
            new = out[:, batch["input_ids"].shape[1] :]
            texts.extend(t.strip() for t in tok.batch_decode(new, skip_special_tokens=True))
        return texts

    def evaluate(self, model: Any, examples: list[Any]) -> Evaluation:
        """Predict every example with `model` (put in eval mode) and score the predictions."""
        was_training = model.training
        model.eval()
        try:
            return self._evaluate(model, examples)
        finally:
            model.train(was_training)

    def _evaluate(self, model: Any, examples: list[Any]) -> Evaluation:
        rows, info = self.encode(examples)
        outputs, loss = self._forward_all(model, rows)
        if self.task == "classification":
            preds = [self.labels[int(o.argmax())] for o in outputs]
            gold = [e.label for e in examples]
            metrics = M.classification_metrics(gold, preds)
            records = [_record(e, e.label, p) for e, p in zip(examples, preds, strict=True)]
        elif self.task == "ner":
            id2tag = dict(enumerate(self.labels))
            outside = "O" if "O" in self.labels else self.labels[0]
            preds = [F.decode_ner(o, f, id2tag, outside) for o, f in zip(outputs, info, strict=True)]
            metrics = M.ner_metrics([e.tags for e in examples], preds)
            records = [
                {"id": e.id, "tokens": e.tokens, "gold": e.tags, "prediction": p}
                for e, p in zip(examples, preds, strict=True)
            ]
        elif self.task == "qa":
            preds = F.decode_qa(
                [o[0] for o in outputs], [o[1] for o in outputs], info, len(examples),
                [e.context for e in examples], self.max_answer_tokens,
            )  # fmt: skip
            metrics = M.qa_metrics([e.answers for e in examples], preds)
            records = [
                _record(e, e.answers, p, question=e.question) for e, p in zip(examples, preds, strict=True)
            ]
        else:
            preds = self._generate_all(model, examples)
            metrics = M.seq2seq_metrics([e.references for e in examples], preds)
            records = [
                _record(e, e.references, p, source=e.source) for e, p in zip(examples, preds, strict=True)
            ]
        if loss is not None:
            metrics["loss"] = loss
        return Evaluation(metrics, preds, records)


def _record(example: Any, gold: Any, prediction: Any, **extra: Any) -> dict[str, Any]:
    text = getattr(example, "text", None)
    out: dict[str, Any] = {"id": example.id}
    if text is not None:
        out["text"] = text
    out.update(extra)
    out["gold"] = gold
    out["prediction"] = prediction
    out["correct"] = _correct(example, prediction)
    return out


def _correct(example: Any, prediction: Any) -> bool:
    if isinstance(example, ClassificationExample):
        return prediction == example.label
    if isinstance(example, QaExample):
        return any(M.squad_exact(prediction, a) for a in example.answers)
    if isinstance(example, Seq2SeqExample):
        return any(M.squad_exact(prediction, r) for r in example.references)
    if isinstance(example, NerExample):
        return prediction == example.tags
    return False
