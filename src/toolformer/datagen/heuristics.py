"""Per-tool document heuristics (paper App. A): cheap tests of whether a text is worth sampling calls for.

Each heuristic is a pure function `text -> bool`; `HEURISTICS` maps a tool name to one and `applies(tool, text)`
looks it up (tools without a heuristic always apply). Replace or add entries to plug in your own.

- Calculator: at least 3 numbers, or "=", "equals", "total of", "average of", … followed by a number. The paper
  keeps only 1 % of the web texts that match *only* the "≥ 3 numbers" rule; `calculator(numbers_only_rate=0.01)`
  does that, deterministically (by a hash of the text). Off by default: our corpora are small and mostly math.
- Calendar: a date in the text (month name with a day or year, an ISO or numeric date, "today", a weekday). The
  paper used the date in the document's URL instead, which we do not have.
- MT: a non-English chunk (py3langid, ≥ 3 words, probability ≥ 0.7), with English on both sides when the text
  has any English (the paper's rule); a text with no English chunk at all qualifies as a whole.
- WikiSearch / QA: the paper applies no heuristic. We ask for a capitalised entity that is not the first word of
  a sentence (a proper name) or a question-like sentence, which drops only bare, name-free text.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Heuristic = Callable[[str], bool]

# A number as written in running text: 7, 3.5, .5, 1,400, 1,000.25 (not glued to letters: "3rd", "x86", "1990s").
NUMBER = re.compile(r"(?<![\w.,])(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?<=\d)(?![\w]|[.,]\d)")
_ARITHMETIC_CUE = re.compile(
    r"(?:=|\bequals?\b|\bequal to\b|\b(?:total|average|sum|product|mean|difference|ratio|quotient) of\b"
    r"|\bin total\b|\baltogether\b)\s*[$€£]?\s*-?\.?\d",
    re.IGNORECASE,
)

MONTHS = "January February March April May June July August September October November December".split()  # noqa: SIM905
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()  # noqa: SIM905
_MONTH = r"(?:" + "|".join(MONTHS) + r"|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.)"
DATE = re.compile(
    r"\b(?:"
    + rf"{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?"  # January 30, 2023 / January 30
    + rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}(?:,?\s+\d{{4}})?"  # 30 January 2023
    + rf"|{_MONTH},?\s+\d{{4}}"  # March 2021
    + r"|\d{4}-\d{2}-\d{2}"  # 2023-01-30
    + r"|\d{1,2}/\d{1,2}/\d{2,4}"  # 01/30/2023
    + r"|(?:"
    + "|".join(WEEKDAYS)
    + r")s?"
    + r")(?!\w)"
    + r"|\b[Tt]oday\b",
)

# Words that start a sentence or a clause in capitals without naming anything.
_FUNCTION_WORD_LIST = (
    "A An The This That These Those It Its He She They We You I His Her Their Our My In On At Of For From By "
    "With As But And Or If When While After Before Since During Then There Here Some Many Most All Each Every "
    "No Not One Two Three How What Who Whom Whose Which Where Why Is Are Was Were Do Does Did So Also However "
    "To Today"
)
_FUNCTION_WORDS = frozenset(_FUNCTION_WORD_LIST.split())
_CAPITALISED = re.compile(r"(?<![\w'’])[^\W\d_][\w'’-]*")
_QUESTION = re.compile(
    r"(?:^|[.!?\n]\s*)(?:who|what|when|where|which|why|how|whose|is|are|was|were|do|does|did|can)\b[^.!?\n]*\?",
    re.IGNORECASE,
)


def numbers(text: str) -> list[re.Match[str]]:
    """The numbers written in `text` (see NUMBER), as regex matches, in order."""
    return list(NUMBER.finditer(text))


def keep_fraction(text: str, rate: float) -> bool:
    """A deterministic coin with P(True) = rate, decided by the text's hash, so reruns subsample alike."""
    if rate >= 1:
        return True
    if rate <= 0:
        return False
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def calculator(text: str, numbers_only_rate: float = 1.0, min_numbers: int = 3) -> bool:
    """A text with an arithmetic cue followed by a number, or with at least `min_numbers` numbers.

    Texts that qualify only by their count of numbers are kept at `numbers_only_rate` (the paper: 0.01).
    """
    if _ARITHMETIC_CUE.search(text):
        return True
    if len(numbers(text)) >= min_numbers:
        return keep_fraction(text, numbers_only_rate)
    return False


def dates(text: str) -> list[re.Match[str]]:
    """Date expressions in `text` (see DATE), in order."""
    return list(DATE.finditer(text))


def calendar(text: str) -> bool:
    """A text that mentions a date: a month with a day or year, an ISO/numeric date, a weekday or "today"."""
    return DATE.search(text) is not None


@dataclass(frozen=True)
class LanguageSpan:
    """A chunk of text (`text[start:end]`) and the language py3langid gives it, with its probability."""

    start: int
    end: int
    lang: str
    prob: float


# Chunks end at clause punctuation: a gloss usually sits in parentheses, quotes or after a comma or colon.
_CHUNK = re.compile(r"[^.;:!?()\[\]\"“”«»„\n,]+")


@functools.cache
def _langid() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from toolformer.tools.mt.langid import LANGID_TO_NLLB

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    # Only languages the MT tool (NLLB) can translate: a chunk in any other language is of no use to it.
    identifier.set_languages([c for c in LANGID_TO_NLLB if c in set(identifier.nb_classes)])
    return identifier


def language_spans(text: str, min_words: int = 3) -> list[LanguageSpan]:
    """Clause-sized chunks of `text` with at least `min_words` letter words, each with its detected language."""
    spans: list[LanguageSpan] = []
    for m in _CHUNK.finditer(text):
        chunk = m.group(0)
        if sum(1 for w in chunk.split() if any(ch.isalpha() for ch in w)) < min_words:
            continue
        start = m.start() + len(chunk) - len(chunk.lstrip())
        end = m.end() - (len(chunk) - len(chunk.rstrip()))
        lang, prob = _langid().classify(text[start:end])
        spans.append(LanguageSpan(start, end, str(lang), float(prob)))
    return spans


def foreign_spans(
    text: str, min_words: int = 3, min_prob: float = 0.7, require_english_around: bool = True
) -> list[LanguageSpan]:
    """Non-English chunks detected with probability ≥ `min_prob`.

    With `require_english_around`, a text that has English chunks keeps only the foreign chunks with English
    before and after them (the paper's rule); a text without any English chunk keeps all of them.
    """
    spans = language_spans(text, min_words)
    foreign = [s for s in spans if s.lang != "en" and s.prob >= min_prob]
    english = [s for s in spans if s.lang == "en" and s.prob >= 0.5]
    if not require_english_around or not english or not foreign:
        return foreign
    return [
        s
        for s in foreign
        if any(e.end <= s.start for e in english) and any(e.start >= s.end for e in english)
    ]


def machine_translation(text: str, min_words: int = 3, min_prob: float = 0.7) -> bool:
    """A text with a non-English chunk (English on both sides when the text has English at all)."""
    return bool(foreign_spans(text, min_words, min_prob))


def entities(text: str) -> list[tuple[int, int]]:
    """(start, end) of capitalised words that are not a sentence's first word nor a function word.

    A crude proper-name detector: "Joe Biden", "Scranton" count; "The" at a sentence start does not.
    """
    found = []
    for m in _CAPITALISED.finditer(text):
        word = m.group(0)
        if not word[0].isupper() or word in _FUNCTION_WORDS:
            continue
        before = text[: m.start()].rstrip(" \t\"'“‘(")
        if not before or before[-1] in ".!?\n":  # the first word of a sentence
            continue
        found.append((m.start(), m.end()))
    return found


def entity_or_question(text: str) -> bool:
    """A text naming something (a capitalised word inside a sentence) or asking a question."""
    return bool(entities(text)) or _QUESTION.search(text) is not None


def always(text: str) -> bool:
    """The heuristic of a tool without one: every text applies."""
    return True


HEURISTICS: dict[str, Heuristic] = {
    "Calculator": calculator,
    "Calendar": calendar,
    "MT": machine_translation,
    "WikiSearch": entity_or_question,
    "QA": entity_or_question,
}


def paper_heuristics() -> dict[str, Heuristic]:
    """HEURISTICS with the paper's web-text setting: texts matching only "≥ 3 numbers" kept at 1 %."""
    out = dict(HEURISTICS)
    out["Calculator"] = functools.partial(calculator, numbers_only_rate=0.01)
    return out


def applies(tool: str, text: str, heuristics: dict[str, Heuristic] | None = None) -> bool:
    """Whether `text` passes `tool`'s heuristic (from `heuristics`, default HEURISTICS); unknown tools: True."""
    return (HEURISTICS if heuristics is None else heuristics).get(tool, always)(text)
