"""The paper's lenient metrics: first number (math), word in the first 5 words (LAMA), answer in the first 20 (QA).

Every scorer looks at what a reader sees: the generated text with its complete calls removed
(`toolformer.calls.strip_calls`) and cut before a call left unfinished, so neither a call's input nor its result
counts as the model's answer. Standard library only.

Decisions (the paper names the rule, not these details):
- math: the first number, read as written: "1,081" is 1081, "$12.50" is 12.5, "-3" is -3, ".5" is 0.5, "3/4"
  (no spaces, not part of a date like 12/25/1937) is 0.75, "50%" is 50. Number words ("fifteen") are not
  numbers, as in the paper's "first number". Correct iff |prediction - gold| <= max(0.01, 1e-4 * |gold|): the
  absolute 0.01 absorbs the Calculator's rounding to two decimals (0.83 for 0.8333); the relative part only
  matters for large non-integers, so 430 is never accepted for 432.
- cloze (LAMA) and QA: SQuAD normalisation (lowercase, punctuation and the articles a/an/the removed,
  whitespace collapsed) of both sides; correct iff a normalised gold appears as whole words in the normalised
  first 5 (LAMA) or 20 (QA) words.
- choice (BBH date understanding): the first option the answer names, by letter "(B)", "[B]", "B)", "B." or "B:"
  (after a space or at the start, not "B.C."), a bare "B" at the start or end, or by its text "12/25/1937", must
  be the gold option. An answer that names no option is wrong, and one that lists every option gets the first it
  names, so listing cannot score.
- no-tool prompts: correct iff the text holds no call, finished or started (any call is wrong there).
- tool ceiling (`mentions`): a tool's output counts when a normalised gold occurs in it as whole words, anywhere
  (the word windows above judge what the model writes, not what a tool returns).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from toolformer.calls import find_calls, strip_calls

MATH_ABS_TOL = 0.01
MATH_REL_TOL = 1e-4
LAMA_WORDS = 5
QA_WORDS = 20

_INT = r"\d{1,3}(?:,\d{3})+(?!\d)|\d+"
_NUMBER = re.compile(
    r"(?<![\w.])"  # not inside a word ("H2O") or after a decimal point
    r"(?P<sign>[-−–]\s?)?[$€£]?\s?"
    rf"(?P<num>(?:{_INT})(?:\.\d+)?|\.\d+)"
    r"(?:/(?P<den>\d+)(?![\d/]))?"
)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


@dataclass(frozen=True)
class Score:
    """What was read out of an answer (None: nothing) and whether it matches the gold."""

    extracted: str | None
    correct: bool


def visible_answer(text: str) -> str:
    """`text` as a reader sees it: complete calls removed, and everything from an unfinished call's "[" cut."""
    shown = strip_calls(text)
    spans = find_calls(shown)
    open_calls = [s for s in spans if not s.complete]
    if open_calls:
        shown = shown[: open_calls[0].start]
    return shown.strip()


def first_number(text: str) -> float | None:
    """The first number written in `text` (see the module docstring for the formats), or None."""
    match = _NUMBER.search(text)
    if match is None:
        return None
    value = float(match.group("num").replace(",", ""))
    den = match.group("den")
    if den is not None and int(den) != 0 and "." not in match.group("num"):
        value /= int(den)
    return -value if match.group("sign") else value


def numbers_match(prediction: float, gold: float) -> bool:
    """Whether a predicted number counts as the gold one (tolerance in the module docstring)."""
    return abs(prediction - gold) <= max(MATH_ABS_TOL, MATH_REL_TOL * abs(gold))


def score_math(text: str, gold: float) -> Score:
    """The first number of the visible answer against the gold number."""
    value = first_number(visible_answer(text))
    if value is None:
        return Score(None, False)
    return Score(_format_number(value), numbers_match(value, float(gold)))


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lowercase, drop punctuation (ASCII and Unicode) and articles, squash spaces."""
    text = text.lower()
    text = "".join(" " if _is_punct(ch) else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def first_words(text: str, n: int) -> str:
    """The first `n` whitespace-separated words of `text`."""
    return " ".join(text.split()[:n])


def contains_answer(text: str, golds: Iterable[str], n_words: int) -> Score:
    """Whether a normalised gold occurs as whole words in the normalised first `n_words` words of `text`."""
    window = first_words(visible_answer(text), n_words)
    haystack = f" {normalize_answer(window)} "
    for gold in golds:
        needle = normalize_answer(str(gold))
        if needle and f" {needle} " in haystack:
            return Score(str(gold), True)
    return Score(window or None, False)


def score_cloze(text: str, gold: str) -> Score:
    """LAMA: the gold word among the first 5 words."""
    return contains_answer(text, [gold], LAMA_WORDS)


def score_qa(text: str, golds: Iterable[str]) -> Score:
    """Open-domain QA: any gold answer among the first 20 words."""
    return contains_answer(text, golds, QA_WORDS)


def mentions(text: str, golds: Iterable[str]) -> Score:
    """Whether a normalised gold occurs as whole words anywhere in `text` (a tool's output, for the ceiling)."""
    return contains_answer(text, golds, len(text.split()) + 1)


def score_no_call(text: str) -> Score:
    """No-tool prompts: correct iff `text` holds no call, finished or started; `extracted` is the first call."""
    spans = find_calls(text)
    if not spans:
        return Score(None, True)
    first = spans[0]
    return Score(text[first.start : first.end], False)


def score_choice(text: str, options: Mapping[str, str], gold: str) -> Score:
    """Multiple choice: the first option named in the first 20 words must be `gold` (a letter like "B" or "(B)")."""
    window = first_words(visible_answer(text), QA_WORDS)
    gold_letter = gold.strip().strip("()[]").upper()
    first: tuple[int, str] | None = None
    for letter, option in options.items():
        let = re.escape(letter)
        patterns = [
            rf"\({let}\)",
            rf"\[{let}\]",
            rf"(?<![\w(\[]){let}\)",
            rf"(?:^|(?<=\s)){let}[.:](?!\w)",  # "D." / "D:" but not "D.C."
            rf"^{let}(?=[.):\]]|\s*$)",
            rf"(?<=\s){let}\s*$",  # "The answer is D"
        ]
        if str(option).strip():
            patterns.append(re.escape(str(option).strip()))
        for pattern in patterns:
            found = re.search(pattern, window)
            if found and (first is None or found.start() < first[0]):
                first = (found.start(), letter.upper())
    if first is None:
        return Score(None, False)
    return Score(f"({first[1]})", first[1] == gold_letter)


def _is_punct(ch: str) -> bool:
    return ch in _PUNCT or unicodedata.category(ch).startswith("P")


def _format_number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"
