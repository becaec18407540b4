"""Task metrics from the standard libraries, all in percent: scikit-learn, seqeval, sacrebleu, rouge-score.

- classification: accuracy and macro-F1 (scikit-learn; macro over the labels present in gold or prediction);
- ner: entity-level precision / recall / F1 (seqeval, CoNLL evaluation: an entity counts only if its type and
  both boundaries match) and token accuracy;
- qa: SQuAD v1.1 exact match and token F1, max over the gold answers. No maintained package ships the official
  SQuAD scorer offline (`evaluate.load("squad")` fetches a script from the Hub), so the official v1.1 script's
  normalisation and F1 are written out here, line for line;
- seq2seq: corpus BLEU and chrF (sacrebleu, first reference of each row), ROUGE-1/2/L F-measure (rouge-score with
  the Porter stemmer, best over the references), exact match after SQuAD normalisation (any reference).
The libraries are imported inside the functions: `pip install 'toolformer-kit[adapt]'` brings them.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

from toolformer.errors import MissingExtraError

_INSTALL = "pip install 'toolformer-kit[adapt]'"


def _require(module: str, dist: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{dist} is not installed, which adapt's metrics need: {_INSTALL}") from exc


def classification_metrics(gold: Sequence[str], pred: Sequence[str]) -> dict[str, float]:
    """accuracy and macro_f1 (percent)."""
    skm = _require("sklearn.metrics", "scikit-learn")
    return {
        "accuracy": 100.0 * float(skm.accuracy_score(gold, pred)),
        "macro_f1": 100.0 * float(skm.f1_score(gold, pred, average="macro", zero_division=0)),
    }


def ner_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level f1 / precision / recall and token accuracy (percent), by seqeval."""
    sq = _require("seqeval.metrics", "seqeval")
    gold_l, pred_l = [list(g) for g in gold], [list(p) for p in pred]
    return {
        "f1": 100.0 * float(sq.f1_score(gold_l, pred_l, zero_division=0)),
        "precision": 100.0 * float(sq.precision_score(gold_l, pred_l, zero_division=0)),
        "recall": 100.0 * float(sq.recall_score(gold_l, pred_l, zero_division=0)),
        "accuracy": 100.0 * float(sq.accuracy_score(gold_l, pred_l)),
    }


# --------------------------------------------------------------------------------------------- SQuAD v1.1


def normalize_answer(s: str) -> str:
    """The official SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces."""

    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def squad_f1(prediction: str, ground_truth: str) -> float:
    """Token-overlap F1 of the normalised strings (official SQuAD v1.1 `f1_score`)."""
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def squad_exact(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def qa_metrics(golds: Sequence[Sequence[str]], preds: Sequence[str]) -> dict[str, float]:
    """SQuAD exact_match and f1 (percent), each the max over a row's gold answers."""
    if not preds:
        return {"exact_match": 0.0, "f1": 0.0}
    em = sum(max(float(squad_exact(p, g)) for g in gs) for p, gs in zip(preds, golds, strict=True))
    f1 = sum(max(squad_f1(p, g) for g in gs) for p, gs in zip(preds, golds, strict=True))
    return {"exact_match": 100.0 * em / len(preds), "f1": 100.0 * f1 / len(preds)}


# --------------------------------------------------------------------------------------------- generation


def seq2seq_metrics(references: Sequence[Sequence[str]], preds: Sequence[str]) -> dict[str, float]:
    """rougeL / rouge1 / rouge2 (best over references), corpus bleu and chrf (first reference), exact_match."""
    sacrebleu = _require("sacrebleu", "sacrebleu")
    rouge = _require("rouge_score.rouge_scorer", "rouge-score")
    if not preds:
        return dict.fromkeys(("rougeL", "rouge1", "rouge2", "bleu", "chrf", "exact_match"), 0.0)
    firsts = [refs[0] for refs in references]
    scorer = rouge.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = Counter[str]()
    for pred, refs in zip(preds, references, strict=True):
        scores = scorer.score_multi(list(refs), pred)
        for key, value in scores.items():
            totals[key] += value.fmeasure
    n = len(preds)
    return {
        "rougeL": 100.0 * totals["rougeL"] / n,
        "rouge1": 100.0 * totals["rouge1"] / n,
        "rouge2": 100.0 * totals["rouge2"] / n,
        "bleu": float(sacrebleu.corpus_bleu(list(preds), [firsts]).score),
        "chrf": float(sacrebleu.corpus_chrf(list(preds), [firsts]).score),
        "exact_match": 100.0
        * sum(any(squad_exact(p, r) for r in refs) for p, refs in zip(preds, references, strict=True))
        / n,
    }
