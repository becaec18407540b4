"""Rule proposers: deterministic candidate calls per tool, for models too small to follow the annotation prompt.

- Calculator (`calculator_rules`): `a op b` over two numbers of the text whose value is written later.
- Calendar (`calendar_rules`): before date words.
- WikiSearch / QA (`relation_rules`): before the object of a relation phrase ("born in", "capital of", …).
- MT (`mt_rules`): before an English gloss that follows a non-English span.

`RuleProposer` turns them into candidates.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from toolformer.calls import quote
from toolformer.datagen.heuristics import DATE, NUMBER, foreign_spans, language_spans
from toolformer.datagen.proposers.base import dedupe
from toolformer.datagen.records import Candidate, Document
from toolformer.errors import ToolError
from toolformer.tools.calculator import calculate


@dataclass(frozen=True)
class _Num:
    start: int
    end: int
    literal: str  # as written, thousands separators dropped: "1,400" -> "1400"
    value: float
    decimals: int


def _numbers(text: str) -> list[_Num]:
    out = []
    for m in NUMBER.finditer(text):
        literal = m.group(0).replace(",", "")
        decimals = len(literal.partition(".")[2])
        out.append(_Num(m.start(), m.end(), literal, float(literal), decimals))
    return out


def _rounds_to(value: float, target: _Num) -> bool:
    """Whether `value`, rounded to 2 decimals as the Calculator does, is the number `target` writes."""
    return abs(round(value, 2) - target.value) < 1e-9


_OPS: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}


def calculator_rules(
    text: str, max_distance: int = 300, max_per_position: int = 3, max_candidates: int = 20
) -> list[tuple[int, str]]:
    """(position, expression) pairs: `a op b` over two numbers in `text` whose value, rounded to 2 decimals as the
    Calculator rounds, is a number written later in it.

    Both operands end before the result and start at most `max_distance` characters before it; the position is the
    result's first character. Identities (x + 0, x * 1, x / 1, x - x, x / x) are skipped. Closest operands first:
    at most `max_per_position` expressions per result and `max_candidates` in all, each checked by the real
    Calculator. Returned in text order.
    """
    nums = _numbers(text)
    found: list[tuple[int, int, str]] = []  # (span from first operand to result, position, expression)
    for t, target in enumerate(nums):
        operands = [n for n in nums[:t] if n.end <= target.start and target.start - n.start <= max_distance]
        per_target: list[tuple[int, tuple[str, ...], str]] = []
        for a, b in itertools.permutations(operands, 2):
            for op, fn in _OPS.items():
                if op in "+*" and a.start > b.start:
                    continue  # commutative: written once, in text order
                if op in "+-" and 0 in (a.value, b.value):
                    continue
                if op in "*/" and (1 in (a.value, b.value) or 0 in (a.value, b.value)):
                    continue
                if op in "-/" and a.value == b.value:
                    continue
                if _rounds_to(fn(a.value, b.value), target):
                    key = (op, *sorted((a.literal, b.literal))) if op in "+*" else (op, a.literal, b.literal)
                    span = target.start - min(a.start, b.start)
                    per_target.append((span, key, f"{a.literal} {op} {b.literal}"))
        # The same expression from other occurrences of its numbers, or commuted, counts once (the closest).
        seen: set[tuple[str, ...]] = set()
        closest = []
        for span, key, expr in sorted(per_target):
            if key not in seen:
                seen.add(key)
                closest.append((span, target.start, expr))
        found.extend(closest[:max_per_position])
    found.sort()
    out = []
    for _span, position, expr in found:
        if len(out) >= max_candidates:
            break
        target = next(n for n in nums if n.start == position)
        try:
            value = float(calculate(expr))
        except (ToolError, ValueError):
            continue
        if _rounds_to(value, target):
            out.append((position, expr))
    return sorted(out)


def calendar_rules(text: str, max_candidates: int = 20) -> list[int]:
    """Positions of date words ("today", weekdays, "January 30, 2023", "March 2021", ISO dates): a Calendar()
    call goes just before each."""
    return sorted({m.start() for m in DATE.finditer(text)})[:max_candidates]


# Relation phrase -> (question when the object is a name, question when it is a number), `{s}` = the subject.
# "any": the object may be lower case ("Anarchism is a political philosophy").
RELATIONS: dict[str, tuple[str, str | None, bool]] = {
    "was born in": ("Where was {s} born?", "When was {s} born?", False),
    "born in": ("Where was {s} born?", "When was {s} born?", False),
    "was born on": ("When was {s} born?", "When was {s} born?", False),
    "died in": ("Where did {s} die?", "When did {s} die?", False),
    "died on": ("When did {s} die?", "When did {s} die?", False),
    "is the capital of": ("What is {s} the capital of?", None, False),
    "capital of": ("What is {s} the capital of?", None, False),
    "is located in": ("Where is {s} located?", None, False),
    "located in": ("Where is {s} located?", None, False),
    "is a member of": ("What is {s} a member of?", None, False),
    "member of": ("What is {s} a member of?", None, False),
    "is part of": ("What is {s} part of?", None, False),
    "part of": ("What is {s} part of?", None, False),
    "founded by": ("Who founded {s}?", None, False),
    "founded in": ("When was {s} founded?", "When was {s} founded?", False),
    "directed by": ("Who directed {s}?", None, False),
    "written by": ("Who wrote {s}?", None, False),
    "developed by": ("Who developed {s}?", None, False),
    "invented by": ("Who invented {s}?", None, False),
    "created by": ("Who created {s}?", None, False),
    "produced by": ("Who produced {s}?", None, False),
    "designed by": ("Who designed {s}?", None, False),
    "known as": ("What is {s} known as?", None, False),
    "named after": ("Who is {s} named after?", None, False),
    "based in": ("Where is {s} based?", None, False),
    "headquartered in": ("Where is {s} headquartered?", None, False),
    "played for": ("Which team did {s} play for?", None, False),
    "plays for": ("Which team does {s} play for?", None, False),
    "son of": ("Whose son is {s}?", None, False),
    "daughter of": ("Whose daughter is {s}?", None, False),
    "won the": ("What did {s} win?", None, False),
    "president of": ("What was {s} the president of?", None, False),
    "is a": ("What is {s}?", None, True),
    "is an": ("What is {s}?", None, True),
    "was a": ("What was {s}?", None, True),
    "was an": ("What was {s}?", None, True),
}
_UPPER = "A-ZÀ-ÖØ-Þ"
_CAPWORD = rf"[{_UPPER}][\w'’-]*"
_ENTITY = re.compile(rf"{_CAPWORD}(?:\s+(?:(?:of|the|de|del|la|le|von|van|da|du|di)\s+)*{_CAPWORD})*")
_RELATION = re.compile(
    r"\b(" + "|".join(re.escape(r) for r in sorted(RELATIONS, key=len, reverse=True)) + r")\s+",
    re.IGNORECASE,
)
_NAME_OBJECT = re.compile(rf"(?:the\s+)?[{_UPPER}0-9]")
_LEADING_FUNCTION_WORDS = re.compile(
    r"^(?:(?:The|A|An|In|On|At|By|For|From|During|After|Before|Since|As|It|He|She|They|This|That|His|Her|Its|"
    r"Their|However|Today)\s+)+"
)


@dataclass(frozen=True)
class RelationMatch:
    """A relation found by `relation_rules`: the call goes at `position`, before the object."""

    position: int
    subject: str
    relation: str
    question: str


def _sentence_start(text: str, index: int) -> int:
    cut = max(text.rfind(p, 0, index) for p in (". ", "! ", "? ", "\n"))
    return 0 if cut < 0 else cut + 1


def _subject(text: str, start: int, end: int) -> str | None:
    """The first capitalised entity of text[start:end], without leading function words ("In", "The")."""
    for m in _ENTITY.finditer(text, start, end):
        name = _LEADING_FUNCTION_WORDS.sub("", m.group(0) + " ").strip()
        if name and name[0].isupper():
            return name
    return None


def relation_rules(text: str, max_candidates: int = 20) -> list[RelationMatch]:
    """Relation phrases ("born in", "capital of", "is a", … see RELATIONS) with a capitalised subject before them
    in the same sentence and an object after them (a name or number; any word for "is a"/"was a").

    The subject is the sentence's first capitalised entity, as in encyclopedic text ("Paris, the largest city of
    France, is the capital of France"). The position is the object's first character.
    """
    out: list[RelationMatch] = []
    for m in _RELATION.finditer(text):
        relation = m.group(1).lower()
        where, when, any_object = RELATIONS[relation]
        position = m.end()
        rest = text[position : position + 40]
        if not rest or not (any_object and rest[0].isalpha() or _NAME_OBJECT.match(rest)):
            continue
        subject = _subject(text, _sentence_start(text, m.start()), m.start())
        if subject is None:
            continue
        question = (when if rest[0].isdigit() and when else where).replace("{s}", subject)
        out.append(RelationMatch(position, subject, relation, question))
        if len(out) >= max_candidates:
            break
    return out


def mt_rules(text: str, min_words: int = 3, min_prob: float = 0.7) -> list[tuple[int, str]]:
    """(position, foreign span) pairs: a non-English chunk directly followed (only punctuation between) by an
    English one, its gloss. The position is the gloss's first character, e.g. before `("The Suppressed Man")`."""
    spans = language_spans(text, min_words)
    english = [s for s in spans if s.lang == "en" and s.prob >= 0.5]
    out = []
    for s in foreign_spans(text, min_words, min_prob, require_english_around=False):
        nxt = next((e for e in english if e.start >= s.end), None)
        if nxt is None or any(ch.isalnum() for ch in text[s.end : nxt.start]):
            continue
        gap = text[s.end : nxt.start]
        out.append((s.end + len(gap) - len(gap.lstrip()), text[s.start : s.end]))
    return out


@dataclass
class RuleProposer:
    """Deterministic proposals for models too small to follow P(x) (the paper's sampler needs ~775M+ models).

    - Calculator: `a op b` over two numbers of the text whose value is written later, before that number.
    - Calendar: `Calendar()` before date words ("today", weekdays, month with day or year, ISO dates).
    - WikiSearch / QA: before the object of a relation phrase ("born in", "capital of", "is a", …), querying the
      sentence's subject: `WikiSearch("Joe Biden")`, `QA("Where was Joe Biden born?")`.
    - MT: `MT("span")` before an English gloss that follows a non-English span.
    Other tools get no rule candidates.
    """

    max_candidates: int = field(default=20, metadata={"help": "Candidates per document and tool."})
    max_per_position: int = field(default=3, metadata={"help": "Calculator expressions per result number."})
    max_distance: int = field(
        default=300,
        metadata={"help": "Calculator operands start at most this many characters before the result."},
    )

    def propose(self, doc: Document, tool: str) -> list[Candidate]:
        text = doc.text
        pairs: list[tuple[int, str]]
        if tool == "Calculator":
            pairs = calculator_rules(text, self.max_distance, self.max_per_position, self.max_candidates)
        elif tool == "Calendar":
            pairs = [(p, "") for p in calendar_rules(text, self.max_candidates)]
        elif tool == "WikiSearch":
            pairs = [(r.position, quote(r.subject)) for r in relation_rules(text, self.max_candidates)]
        elif tool == "QA":
            pairs = [(r.position, quote(r.question)) for r in relation_rules(text, self.max_candidates)]
        elif tool == "MT":
            pairs = [(p, quote(span)) for p, span in mt_rules(text)]
        else:
            return []
        cands = [Candidate(doc.id, tool, args, position, "rule") for position, args in pairs]
        return dedupe(cands)[: self.max_candidates]
