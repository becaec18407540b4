"""Turn task examples into model inputs with labels, and model outputs back into predictions, for each task.

Decoder-only models read left to right, which shapes three choices:
- classification: the head reads the last non-padding token (transformers' `*ForSequenceClassification`), which
  has seen the whole text;
- ner: a word's tag is trained and read at the word's *last* sub-token, the first position that has seen the whole
  word (encoders use the first sub-token); the other sub-tokens are ignored (-100);
- qa: the question comes first and the context after it, so every context token has read the question; a long
  context is cut into overlapping windows (`doc_stride`); a window without the answer points at position 0.
Words are mapped to tokens through the fast tokenizer's character offsets, so any fast tokenizer works.
seq2seq: prompt (the template around the source) + target + EOS, loss on the target and EOS only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolformer.adapt.tasks import ClassificationExample, NerExample, QaExample, Seq2SeqExample

IGNORE = -100


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


# --------------------------------------------------------------------------------------------- classification


def encode_classification(
    tokenizer: Any, examples: list[ClassificationExample], label2id: dict[str, int], max_length: int
) -> list[dict[str, Any]]:
    """input_ids / attention_mask / labels per example (texts cut at `max_length` tokens)."""
    rows = []
    for ex in examples:
        ids = _ids(tokenizer, ex.text)[:max_length] or [tokenizer.eos_token_id]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": label2id[ex.label]})
    return rows


# --------------------------------------------------------------------------------------------- ner


@dataclass
class NerFeature:
    """Where each word's tag is read: the token index of its last sub-token (None: cut by max_length)."""

    word_token: list[int | None]


def encode_ner(
    tokenizer: Any, examples: list[NerExample], tag2id: dict[str, int], max_length: int
) -> tuple[list[dict[str, Any]], list[NerFeature]]:
    """Words joined by single spaces, tokenized once; each word's tag sits on its last sub-token."""
    rows, feats = [], []
    for ex in examples:
        text, spans, pos = "", [], 0
        for i, word in enumerate(ex.tokens):
            if i:
                text += " "
                pos += 1
            spans.append((pos, pos + len(word)))
            text += word
            pos += len(word)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])[:max_length]
        offsets = list(enc["offset_mapping"])[: len(ids)]
        word_token: list[int | None] = [None] * len(ex.tokens)
        w = 0
        for t, (start, end) in enumerate(offsets):
            if end <= start:
                continue
            # The token's last character decides its word (byte-level BPE tokens carry the leading space).
            while w < len(spans) and spans[w][1] <= end - 1:
                w += 1
            last_char = end - 1
            for k in (w - 1, w):
                if 0 <= k < len(spans) and spans[k][0] <= last_char < spans[k][1]:
                    word_token[k] = t  # later tokens of the same word overwrite: the last one wins
        labels = [IGNORE] * len(ids)
        for k, t in enumerate(word_token):
            if t is not None:
                labels[t] = tag2id[ex.tags[k]]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
        feats.append(NerFeature(word_token))
    return rows, feats


def decode_ner(logits: Any, feature: NerFeature, id2tag: dict[int, str], outside: str = "O") -> list[str]:
    """One tag per word from the token logits of one row (words cut by max_length get `outside`)."""
    best = logits.argmax(-1).tolist()
    return [outside if t is None or t >= len(best) else id2tag[best[t]] for t in feature.word_token]


# --------------------------------------------------------------------------------------------- qa


@dataclass
class QaFeature:
    """One window of one example: its example index and, per token, the context character span (None: question)."""

    example: int
    offsets: list[tuple[int, int] | None]


def encode_qa(
    tokenizer: Any, examples: list[QaExample], max_length: int, doc_stride: int
) -> tuple[list[dict[str, Any]], list[QaFeature]]:
    """Question tokens then a context window; start/end positions of the first answer (0 when outside)."""
    rows, feats = [], []
    for index, ex in enumerate(examples):
        q_ids = _ids(tokenizer, f"{ex.question}\n")[: max_length // 2]
        enc = tokenizer(ex.context, add_special_tokens=False, return_offsets_mapping=True)
        c_ids, c_off = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        room = max_length - len(q_ids)
        step = max(1, room - doc_stride)
        a_start = ex.starts[0]
        a_end = a_start + len(ex.answers[0])
        # The answer's first and last tokens in the whole context; a window is labelled only if it holds both.
        covering = [t for t, (s, e) in enumerate(c_off) if e > a_start and s < a_end and e > s]
        first, last = (covering[0], covering[-1]) if covering else (-1, -1)
        start = 0
        while True:
            stop = min(start + room, len(c_ids))
            s_pos = e_pos = 0
            if first >= start and 0 <= last < stop:
                s_pos, e_pos = len(q_ids) + first - start, len(q_ids) + last - start
            ids = q_ids + c_ids[start:stop]
            rows.append(
                {
                    "input_ids": ids,
                    "attention_mask": [1] * len(ids),
                    "start_positions": s_pos,
                    "end_positions": e_pos,
                }
            )
            feats.append(QaFeature(index, [None] * len(q_ids) + c_off[start:stop]))
            if stop >= len(c_ids):
                break
            start += step
    return rows, feats


def decode_qa(
    start_logits: list[Any], end_logits: list[Any], feats: list[QaFeature], n_examples: int,
    contexts: list[str], max_answer_tokens: int, n_best: int = 20,
) -> list[str]:  # fmt: skip
    """The best span per example over its windows: max start + end logit, start ≤ end, within the context."""
    best: list[tuple[float, str] | None] = [None] * n_examples
    for s_log, e_log, feat in zip(start_logits, end_logits, feats, strict=True):
        n = len(feat.offsets)
        s_log, e_log = s_log[:n], e_log[:n]
        s_top = s_log.argsort(descending=True)[:n_best].tolist()
        e_top = e_log.argsort(descending=True)[:n_best].tolist()
        for s in s_top:
            if feat.offsets[s] is None:
                continue
            for e in e_top:
                if feat.offsets[e] is None or e < s or e - s + 1 > max_answer_tokens:
                    continue
                score = float(s_log[s] + e_log[e])
                current = best[feat.example]
                if current is None or score > current[0]:
                    char_s, char_e = feat.offsets[s][0], feat.offsets[e][1]
                    best[feat.example] = (score, contexts[feat.example][char_s:char_e].strip())
    return [b[1] if b is not None else "" for b in best]


# --------------------------------------------------------------------------------------------- seq2seq


def prompt_ids(tokenizer: Any, template: str, source: str, room: int) -> list[int]:
    """The prompt's tokens; a long source is cut at its end so the template's tail (the cue) always stays."""
    head, _, tail = template.partition("{source}")
    tail_ids = _ids(tokenizer, tail) if tail else []
    body = _ids(tokenizer, head + source)
    return body[: max(1, room - len(tail_ids))] + tail_ids


def encode_seq2seq(
    tokenizer: Any, examples: list[Seq2SeqExample], template: str, max_length: int
) -> list[dict[str, Any]]:
    """prompt + target + EOS; labels only on target and EOS (the target keeps at most half of max_length)."""
    eos = tokenizer.eos_token_id
    rows = []
    for ex in examples:
        target = _ids(tokenizer, ex.target)[: max_length // 2 - 1] + [eos]
        prompt = prompt_ids(tokenizer, template, ex.source, max_length - len(target))
        ids = prompt + target
        rows.append(
            {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [IGNORE] * len(prompt) + target}
        )
    return rows
