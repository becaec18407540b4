"""The "Sample" step of data generation (paper §2): propose candidate calls c at character positions i of a text x.

Three proposers share one interface, `propose(doc, tool) -> list[Candidate]`:

- `RuleProposer`: deterministic rules, for models too small to follow the annotation prompt P(x).
- `DataProposer`: calls already in the data (GSM8K's `<<48/2=24>>`, or inline `[Tool(args) → r]` calls).
- `LMProposer`: the paper's method. One forward pass over P(x) + x gives p_i = p("[" | P(x), x_<i) at every
  position; the top k positions with p_i > τ_s each get m sampled calls from [P(x), x_<i, "["].

A candidate's `position` is the character offset in the document's text where e(c, r) goes: the call precedes
x[position:], which is what its result should help predict.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol, runtime_checkable

from toolformer.calls import find_calls, quote
from toolformer.datagen.heuristics import DATE, NUMBER, foreign_spans, language_spans
from toolformer.datagen.prompts import annotation_prompt
from toolformer.datagen.records import Candidate, Document
from toolformer.errors import ConfigError, DataError, ToolError, require
from toolformer.tools.calculator import calculate


@runtime_checkable
class Proposer(Protocol):
    """Anything that proposes calls of one tool for one document."""

    def propose(self, doc: Document, tool: str) -> list[Candidate]: ...


def _dedupe(cands: list[Candidate]) -> list[Candidate]:
    """Candidates in (position, first seen) order, one per (position, args)."""
    seen: set[tuple[int, str]] = set()
    out = []
    for c in sorted(cands, key=lambda c: c.position):
        key = (c.position, c.args.strip())
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------------------------


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
        return _dedupe(cands)[: self.max_candidates]


# ---------------------------------------------------------------------------------------------------------------
# Calls already in the data
# ---------------------------------------------------------------------------------------------------------------

_PLAIN_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)")
_BINARY_OP = re.compile(r"[\d.)]\s*[-+*/]")
GSM8K_PATTERN = re.compile(r"<<(?P<args>[^<>=]*)=(?P<result>[^<>]*)>>")
_ANSWER_LINE = re.compile(r"\n?####[^\n]*\s*$")
_EXPR_TOKEN = re.compile(r"\d*\.?\d+(?:[eE][-+]?\d+)?%?|\*\*|//|[-+*/()^%]|\S")
DATA_CALLS = "data_calls"  # Document.meta key holding the calls that `DataProposer.extract` took out


def _gsm8k_accept(args: str, result: str | None) -> bool:
    """A GSM8K annotation worth a call: a numeric result of an expression with at least one operator."""
    return bool(result and _PLAIN_NUMBER.fullmatch(result.strip()) and _BINARY_OP.search(args))


def spaced_expression(expression: str) -> str:
    """`48/2` -> `48 / 2`, `-3+4*(2-1)` -> `-3 + 4 * (2 - 1)`: binary operators spaced, as the paper writes them."""
    out: list[str] = []
    prev = ""
    for tok in _EXPR_TOKEN.findall(expression):
        binary = tok in ("+", "-", "*", "/", "**", "//", "^", "%") and prev not in ("", "(", "op")
        if binary:
            out.append(f" {tok} ")
            prev = "op"
        else:
            out.append(tok)
            prev = "op" if tok in ("+", "-", "*", "/", "**", "//", "^") else tok
    return "".join(out).strip()


def _join_removed(left: str, right: str) -> tuple[str, str]:
    """`calls.strip_calls`' tidying where a call was removed, returning both sides so the cut can be located."""
    if (not left or left.endswith((" ", "\n", "("))) and right.startswith(" "):
        right = right.lstrip(" ")
    if not right or right.startswith(("\n", ",", ".", ";", ":", "!", "?", ")")):
        left = left.rstrip(" ")
    return left, right


class DataProposer:
    """Calls that the data already holds, taken out of the text and proposed back at the place they were.

    With a `pattern` (a regex with a named group `args`, and optionally `tool` and `result`), each match is removed
    from the text and becomes a call of `tool` (or the `tool` group) at the match's place, unless
    `accept(args, result)` says no. Without one, inline
    calls `[Tool(args) → r]` are taken out (and the spacing tidied as `calls.strip_calls` does), which lets
    already annotated text be filtered again.

    Use `extract(doc)` first: it returns the clean document, with the calls kept in `meta["data_calls"]`, and the
    candidates. `propose(clean_doc, tool)` then returns that tool's candidates; given a document that still holds
    annotations it raises DataError, because the positions would not fit its text.
    """

    def __init__(
        self,
        pattern: str | re.Pattern[str] | None = None,
        tool: str = "Calculator",
        format_args: Callable[[str], str] | None = None,
        source: str = "data",
        accept: Callable[[str, str | None], bool] | None = None,
    ) -> None:
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        if self.pattern is not None and "args" not in self.pattern.groupindex:
            raise ConfigError(f"pattern {self.pattern.pattern!r} has no named group (?P<args>...)")
        self.tool = tool
        self.format_args = format_args or (lambda args: args.strip())
        self.source = source
        self.accept = accept  # (args, result) -> keep the call? Rejected annotations are still removed.

    @classmethod
    def gsm8k(cls) -> DataProposer:
        """GSM8K's calculator annotations: `48/2 = <<48/2=24>>24` gives `48/2 = 24` and `Calculator(48 / 2)`.

        Annotations that are no calculation (algebra such as `<<4*S=4S>>`, a bare `<<4=4>>`) are removed but not
        proposed.
        """
        return cls(
            GSM8K_PATTERN,
            tool="Calculator",
            format_args=spaced_expression,
            accept=_gsm8k_accept,
        )

    def _take_out(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        if self.pattern is None:
            return self._take_out_inline(text)
        out, calls, pos = [], [], 0
        length = 0
        for m in self.pattern.finditer(text):
            piece = text[pos : m.start()]
            out.append(piece)
            length += len(piece)
            groups = m.groupdict()
            pos = m.end()
            if self.accept is not None and not self.accept(groups["args"], groups.get("result")):
                continue
            calls.append(
                {
                    "tool": groups.get("tool") or self.tool,
                    "args": self.format_args(groups["args"]),
                    "position": length,
                    "result": groups.get("result"),
                }
            )
        out.append(text[pos:])
        return "".join(out), calls

    def _take_out_inline(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        spans = find_calls(text, include_incomplete=False)
        if not spans:
            return text, []
        out = text[: spans[0].start]
        calls: list[dict[str, Any]] = []
        for span, nxt in zip(spans, [*spans[1:], None]):
            piece = text[span.end : nxt.start if nxt is not None else len(text)]
            left, right = _join_removed(out, piece)
            for call in calls:  # tidying may trim spaces an earlier call sat after
                call["position"] = min(call["position"], len(left))
            calls.append(
                {
                    "tool": span.call.name,
                    "args": self.format_args(span.call.args),
                    "position": len(left),
                    "result": span.call.result,
                }
            )
            out = left + right
        return out, calls

    def extract(self, doc: Document) -> tuple[Document, list[Candidate]]:
        """The clean document (annotations removed, calls in `meta["data_calls"]`) and all its candidates."""
        text, calls = self._take_out(doc.text)
        clean = Document(doc.id, text, {**doc.meta, DATA_CALLS: calls})
        return clean, self._candidates(clean, calls, None)

    def propose(self, doc: Document, tool: str) -> list[Candidate]:
        """`tool`'s candidates of a document returned by `extract` (or of a text without annotations: none)."""
        calls = doc.meta.get(DATA_CALLS)
        if calls is None:
            text, calls = self._take_out(doc.text)
            if text != doc.text:
                raise DataError(
                    f"document {doc.id!r} still holds annotations: propose on DataProposer.extract(doc)[0]"
                )
        return self._candidates(doc, calls, tool)

    def _candidates(self, doc: Document, calls: list[dict[str, Any]], tool: str | None) -> list[Candidate]:
        return _dedupe(
            [
                Candidate(doc.id, c["tool"], c["args"], int(c["position"]), self.source)
                for c in calls
                if tool is None or c["tool"] == tool
            ]
        )


def gsm8k_document(
    record: Mapping[str, Any], with_question: bool = True, answer_line: bool = False
) -> tuple[Document, list[Candidate]]:
    """A GSM8K record as a clean Document and its Calculator candidates (one per `<<…=…>>` annotation).

    The text is the question, a newline and the solution with its annotations removed (`with_question=False`:
    the solution alone); GSM8K's final `#### 72` line is dropped unless `answer_line`. Each candidate sits just
    before the result number the annotation preceded.
    """
    try:
        solution = str(record["solution"])
        doc_id = str(record["id"])
    except KeyError as exc:
        raise DataError(f"GSM8K record has no {exc.args[0]!r} field: {str(record)[:80]}") from None
    if not answer_line:
        solution = _ANSWER_LINE.sub("", solution)
    question = str(record.get("question", "")).strip()
    raw = f"{question}\n{solution}" if with_question and question else solution
    meta = {"source": "gsm8k", "answer": record.get("answer")}
    return DataProposer.gsm8k().extract(Document(doc_id, raw, meta))


_NUM_TOKEN = re.compile(r"\d*\.?\d+")
MAX_COMPOSED_CHARS = 80  # a longer single expression is more than a short answer's call should carry


def _number_key(text: str) -> str | None:
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        return None
    return f"{round(value, 6):g}"


def compose_gsm8k_expression(question: str, solution: str, answer: Any) -> str | None:
    """One Calculator expression for GSM8K's final answer, built from the solution's `<<…>>` steps, or None.

    Each step's numbers that are earlier results and not numbers of the question are replaced by the expressions
    that made them (`48+24` after `48/2=24` becomes `48 + 48 / 2`), so the whole solution becomes one call a
    short answer can carry. None when no step gives `answer`, the expression fails the calculator's check against
    `answer`, or it is longer than MAX_COMPOSED_CHARS. Parsing uses `ast` (no evaluation); checking uses the
    project's calculator.
    """
    import ast

    try:
        gold = float(str(answer).replace(",", ""))
    except ValueError:
        return None
    asked = {_number_key(m.group()) for m in NUMBER.finditer(question)}
    known: dict[str, str] = {}
    final: str | None = None
    for m in GSM8K_PATTERN.finditer(solution):
        args, result = m.group("args"), m.group("result").strip()
        if not _gsm8k_accept(args, result):
            continue

        def substitute(tok: re.Match[str]) -> str:
            key = _number_key(tok.group())
            if key is not None and key in known and key not in asked:
                return f"({known[key]})"
            return tok.group()

        expression = _NUM_TOKEN.sub(substitute, re.sub(r"(?<=\d),(?=\d{3})", "", args))
        try:
            expression = ast.unparse(ast.parse(expression.replace("^", "**"), mode="eval"))
        except (SyntaxError, ValueError):
            return None
        key = _number_key(result)
        if key is None:
            continue
        known.setdefault(key, expression)
        if abs(float(key) - gold) <= 0.01:
            final = expression
    if final is None or len(final) > MAX_COMPOSED_CHARS:
        return None
    try:
        value = float(calculate(final))
    except (ToolError, ValueError):
        return None
    return final if abs(value - gold) <= 0.01 else None


def gsm8k_answer_document(record: Mapping[str, Any]) -> tuple[Document, list[Candidate]]:
    """A GSM8K record as a short question-answer Document, with one composed Calculator candidate before the answer.

    The text is "Question: {question}\nAnswer: {answer}", the shape of the zero-shot math prompt; the candidate is
    `compose_gsm8k_expression` of the solution, placed just before the answer number (none when the solution
    cannot be composed into one checked expression). The loss filter then decides, as for any candidate.
    """
    try:
        doc_id = str(record["id"])
        question = str(record["question"]).strip()
        solution = str(record["solution"])
        answer = record["answer"]
    except KeyError as exc:
        raise DataError(f"GSM8K record has no {exc.args[0]!r} field: {str(record)[:80]}") from None
    shown = f"{answer:g}" if isinstance(answer, float) else str(answer)
    prefix = f"Question: {question}\nAnswer: "
    expression = compose_gsm8k_expression(question, solution, answer)
    calls = (
        []
        if expression is None
        else [{"tool": "Calculator", "args": expression, "position": len(prefix), "result": shown}]
    )
    meta = {"source": "gsm8k", "answer": answer, DATA_CALLS: calls}
    doc = Document(doc_id, prefix + shown, meta)
    return doc, [Candidate(doc_id, "Calculator", c["args"], c["position"], "data") for c in calls]


# ---------------------------------------------------------------------------------------------------------------
# The paper's sampler
# ---------------------------------------------------------------------------------------------------------------


SAMPLE_BACKENDS = ("transformers", "vllm")
VLLM_STOP = ["]", "\n"]  # a call ends at its "]"; a newline ends a sample without one (a call is one line)
VLLM_GPU_MEMORY = 0.5  # share of GPU memory vLLM may take: the transformers model scoring p_i lives there too


def _vllm() -> Any:
    """The `vllm` module, or MissingExtraError naming the `gpu` extra (tests replace this function)."""
    require("vllm", "gpu")
    import vllm

    return vllm


@dataclass
class SampleConfig:
    """How LMProposer samples calls for one tool (paper §2 and App. A)."""

    tau_s: float = field(
        default=0.05,
        metadata={"help": "Keep positions whose p_i = p('[' | P(x), x_<i) is above this (paper: 0.05; 0 for "
                  "Calculator and MT)."},
    )  # fmt: skip
    k: int = field(
        default=5,
        metadata={"help": "At most this many positions per text, the likeliest first (paper: 5; 20 for Calculator "
                  "and MT)."},
    )  # fmt: skip
    m: int = field(
        default=5,
        metadata={"help": "Calls sampled at each kept position (paper: 5; 10 for Calculator and MT)."},
    )
    max_new_tokens: int = field(
        default=30, metadata={"help": "Tokens sampled per call; a sample without ']' by then is dropped."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (1 = plain sampling)."})
    do_sample: bool = field(
        default=True,
        metadata={"help": "Sample (the paper). False: greedy, one call per position (debugging)."},
    )
    word_boundaries: bool = field(
        default=True,
        metadata={
            "help": "Only positions between words or next to punctuation, never inside a word or number."
        },
    )
    max_text_tokens: int = field(
        default=512, metadata={"help": "Only the first this-many tokens of a text are scored and sampled at."}
    )
    batch_size: int = field(
        default=32,
        metadata={
            "help": "Sequences sampled together in one generate call (memory grows with it x prompt length)."
        },
    )
    share_prefix: bool = field(
        default=True,
        metadata={"help": "Sample on copies of the scoring pass's KV cache instead of re-encoding every prefix "
                  "(models with a plain DynamicCache; others fall back)."},
    )  # fmt: skip
    seed: int | None = field(
        default=0, metadata={"help": "Sampling seed, mixed with the document id and tool; None: not seeded."}
    )
    backend: str = field(
        default="transformers",
        metadata={"help": "Engine of the sampling step: transformers (model.generate) or vllm (vllm.LLM over the "
                  "model's path, GPU; pip install 'toolformer-kit[gpu]'). Scoring p_i always uses transformers."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if not 0 <= self.tau_s < 1:
            raise ConfigError(f"tau_s must be in [0, 1), got {self.tau_s}")
        for name in ("k", "m", "max_new_tokens", "max_text_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.backend not in SAMPLE_BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(SAMPLE_BACKENDS)}, got {self.backend!r}")

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


PAPER_DEFAULTS: dict[str, SampleConfig] = {
    "Calculator": SampleConfig(tau_s=0.0, k=20, m=10),
    "MT": SampleConfig(tau_s=0.0, k=20, m=10),
    "QA": SampleConfig(),
    "WikiSearch": SampleConfig(),
    "Calendar": SampleConfig(),
}


def paper_config(tool: str) -> SampleConfig:
    """The paper's sampling settings for `tool` (τ_s = 0.05, k = 5, m = 5 unless it is Calculator or MT)."""
    return replace(PAPER_DEFAULTS.get(tool, SampleConfig()))


@dataclass(frozen=True)
class Position:
    """A position of x the model may open a call at: character offset `char`, token index `token`, p_i = `p`."""

    char: int
    token: int
    p: float
    bracket: int  # the call-opening token ("[" or " [") the model prefers here; sampling continues after it


@dataclass
class Sample:
    """What the model wrote after "[" at one position: `texts` (up to m), each cut after its first "]" or
    newline."""

    position: Position
    texts: list[str]


def select_positions(positions: Sequence[Position], tau_s: float, k: int) -> list[Position]:
    """The k likeliest positions with p > tau_s (ties: earlier first), returned in text order."""
    kept = sorted((p for p in positions if p.p > tau_s), key=lambda p: (-p.p, p.char))[:k]
    return sorted(kept, key=lambda p: p.char)


class _Vocab:
    """Per-tokenizer ids: tokens that open a call ("[", " ["), tokens that contain "]" and tokens that end a
    sample without one (a newline: a call is one line)."""

    _cache: dict[tuple[int, int], _Vocab] = {}

    def __init__(self, tokenizer: Any, size: int) -> None:
        pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
        self.open: list[int] = []
        self.close: set[int] = set()
        self.stop: set[int] = set()
        for i, piece in enumerate(pieces):
            if piece is None:
                continue
            text = tokenizer.convert_tokens_to_string([piece])
            if text.strip() == "[":
                self.open.append(i)
            if "]" in text:
                self.close.add(i)
            if "]" in text or "\n" in text:
                self.stop.add(i)
        if not self.open:
            raise ConfigError("the tokenizer has no token for '[': the model cannot open a call")

    @classmethod
    def of(cls, tokenizer: Any, size: int) -> _Vocab:
        key = (id(tokenizer), size)
        if key not in cls._cache:
            cls._cache[key] = cls(tokenizer, size)
        return cls._cache[key]


def _char_starts(tokenizer: Any, text: str) -> tuple[list[int], list[int]]:
    """Token ids of " " + text (the form x takes after "Output:") and each token's first character in `text`."""
    spaced = " " + text
    try:
        enc = tokenizer(spaced, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [int(a) for a, _b in enc["offset_mapping"]]
    except (NotImplementedError, TypeError, ValueError, KeyError):  # a slow tokenizer has no offsets
        ids = tokenizer.encode(spaced, add_special_tokens=False)
        offsets = [len(tokenizer.decode(ids[:j])) for j in range(len(ids))]
    return ids, [min(max(0, o - 1), len(text)) for o in offsets]


def _accepts(model: Any, name: str) -> bool:
    """Whether the model's forward takes `name`, looking through subclasses whose forward only has **kwargs."""
    for cls in type(model).__mro__:
        forward = cls.__dict__.get("forward")
        if forward is None:
            continue
        try:
            params = inspect.signature(forward).parameters
        except (TypeError, ValueError):
            return False
        if name in params:
            return True
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return False
    return False


class _StopAt:
    """A generate() stopping criterion: a row is done once it has sampled one of `ids` (e.g. "]" or a newline)."""

    def __init__(self, ids: set[int]) -> None:
        import torch

        self.ids = torch.tensor(sorted(ids), dtype=torch.long)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.isin(input_ids[:, -1], self.ids.to(input_ids.device))


class LMProposer:
    """The paper's sampler over any HF causal LM (and its tokenizer).

    For a text x and a tool: P(x) is the tool's annotation prompt (`datagen.prompts`). One forward pass over
    P(x) + " " + x gives, at every token position i of x, p_i = the summed probability of the tokens that open a
    call ("[" and " [": their text stripped is "["). Positions inside a word or number are skipped (config
    `word_boundaries`); the top k with p_i > τ_s are kept. At each, m calls are sampled from [P(x), x_<i, b_i],
    b_i the likelier opening token there, with `model.generate` (sampling, stop at a token holding "]" or a
    newline, at most `max_new_tokens`). Samples that read as one complete call of the tool, `[Tool(args)]` (a
    result the model wrote itself is ignored), become candidates, one per (position, args).

    Sampling reuses the scoring pass's KV cache when the model has a plain DynamicCache: every kept prefix is cut
    from it and left-padded into one batch, so no prefix is encoded twice (m copies are made by hand, so
    `num_return_sequences` is 1 there). Otherwise every prefix is re-encoded and `num_return_sequences=m`.
    With config `backend="vllm"` the sampling step (not the scoring pass) runs in a `vllm.LLM` over the model's
    path instead, from the same token prompts, with `SamplingParams(n=m, stop=["]", "\\n"])`.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: SampleConfig | Mapping[str, SampleConfig] | None = None,
        prompts: Mapping[str, str] | None = None,
        descriptions: Mapping[str, str] | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.prompts = dict(prompts or {})
        self.descriptions = dict(descriptions or {})
        size = min(len(tokenizer), int(model.config.vocab_size))
        self.vocab = _Vocab.of(tokenizer, size)
        eos = getattr(tokenizer, "eos_token_id", None)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)
        # transformers 5 renamed generate's `past_key_values` to `cache`.
        self._cache_kw = "cache" if _accepts(model, "cache") else "past_key_values"
        self._vllm_llm: Any = None  # the vllm.LLM of config backend="vllm", made on first use

    def config_for(self, tool: str) -> SampleConfig:
        """The settings for `tool`: the one config given, or the tool's entry, else the paper's defaults."""
        if isinstance(self.config, SampleConfig):
            return self.config
        if self.config is not None and tool in self.config:
            return self.config[tool]
        return paper_config(tool)

    # -- scoring -------------------------------------------------------------------------------------------------

    def _encode(self, tool: str, text: str, cfg: SampleConfig) -> tuple[list[int], list[int], list[int]]:
        prompt = annotation_prompt(tool, text, self.prompts, self.descriptions.get(tool, ""))
        prompt_ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        text_ids, starts = _char_starts(self.tokenizer, text)
        return prompt_ids, text_ids[: cfg.max_text_tokens], starts[: cfg.max_text_tokens]

    def _score(self, prompt_ids: list[int], text_ids: list[int], keep_cache: bool) -> tuple[Any, Any, Any]:
        """(p_i per text token, the likelier opening token per text token, the KV cache or None)."""
        import torch

        ids = torch.tensor([prompt_ids + text_ids], device=self.model.device)
        n = len(text_ids)
        kwargs: dict[str, Any] = {"use_cache": keep_cache}
        if _accepts(self.model, "logits_to_keep"):
            kwargs["logits_to_keep"] = n + 1  # logits at P-1 … P+n-1: the last one is not needed
        with torch.inference_mode():
            out = self.model(input_ids=ids, **kwargs)
        logits = out.logits[0, -(n + 1) : -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        opening = torch.tensor(self.vocab.open, device=logits.device)
        open_p = logprobs[:, opening].exp()
        cache = (getattr(out, "cache", None) or getattr(out, "past_key_values", None)) if keep_cache else None
        return open_p.sum(-1).cpu(), opening[open_p.argmax(-1)].cpu(), cache

    def _positions(
        self, text: str, starts: list[int], p: Any, best: Any, cfg: SampleConfig
    ) -> list[Position]:
        out: list[Position] = []
        last = -1
        for j, c in enumerate(starts):
            if c == last or c >= len(text):
                continue
            if cfg.word_boundaries and c > 0 and text[c - 1].isalnum() and text[c].isalnum():
                continue
            last = c
            out.append(Position(c, j, float(p[j]), int(best[j])))
        return out

    def positions(self, text: str, tool: str) -> list[Position]:
        """Every eligible position of `text` with its p_i, in text order (no τ_s or k applied)."""
        cfg = self.config_for(tool)
        prompt_ids, text_ids, starts = self._encode(tool, text, cfg)
        if not text_ids:
            return []
        p, best, _ = self._score(prompt_ids, text_ids, keep_cache=False)
        return self._positions(text, starts, p, best, cfg)

    # -- sampling ------------------------------------------------------------------------------------------------

    def samples(self, doc: Document, tool: str) -> list[Sample]:
        """The raw samples at the kept positions of `doc.text` (what `propose` parses)."""
        cfg = self.config_for(tool)
        prompt_ids, text_ids, starts = self._encode(tool, doc.text, cfg)
        if not text_ids:
            return []
        on_cache = cfg.share_prefix and cfg.backend == "transformers"
        p, best, cache = self._score(prompt_ids, text_ids, keep_cache=on_cache)
        kept = select_positions(self._positions(doc.text, starts, p, best, cfg), cfg.tau_s, cfg.k)
        if not kept:
            return []
        full = prompt_ids + text_ids
        prefixes = [full[: len(prompt_ids) + pos.token] for pos in kept]
        seed = None if cfg.seed is None else zlib.crc32(f"{cfg.seed}\0{doc.id}\0{tool}".encode())
        if cfg.backend == "vllm":
            return [Sample(pos, t) for pos, t in zip(kept, self._sample_vllm(kept, prefixes, cfg, seed))]
        with self._seeded(seed):
            if cfg.share_prefix and _plain_dynamic_cache(cache):
                texts = self._sample_on_cache(kept, prefixes, cache, cfg)
            else:
                texts = self._sample_fresh(kept, prefixes, cfg)
        return [Sample(pos, t) for pos, t in zip(kept, texts)]

    @contextlib.contextmanager
    def _seeded(self, seed: int | None) -> Iterator[None]:
        import torch

        if seed is None:
            yield
            return
        device = self.model.device
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def _generate(self, input_ids: Any, mask: Any, cfg: SampleConfig, **kwargs: Any) -> Any:
        import torch
        from transformers import StoppingCriteriaList

        sampling = (
            {"do_sample": True, "temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": 0}
            if cfg.do_sample
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=cfg.max_new_tokens,
                stopping_criteria=StoppingCriteriaList([_StopAt(self.vocab.stop)]),
                pad_token_id=self.pad_id,
                **sampling,
                **kwargs,
            )
        return out[:, input_ids.shape[1] :].cpu()

    def _left_pad(self, rows: list[list[int]]) -> tuple[Any, Any]:
        import torch

        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[r, width - len(row) :] = 1
        return ids.to(self.model.device), mask.to(self.model.device)

    def _decode(self, generated: Any) -> list[str]:
        texts = []
        for row in generated.tolist():
            cut = next((j + 1 for j, t in enumerate(row) if t in self.vocab.stop), len(row))
            texts.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True))
        return texts

    def _sample_on_cache(
        self, kept: list[Position], prefixes: list[list[int]], cache: Any, cfg: SampleConfig
    ) -> list[list[str]]:
        """m samples per position, rows cut from the scoring cache, left-padded, batch_size rows per call."""

        copies = cfg.m if cfg.do_sample else 1
        rows = [(i, prefix) for i, prefix in enumerate(prefixes) for _ in range(copies)]
        texts: list[list[str]] = [[] for _ in kept]
        for start in range(0, len(rows), cfg.batch_size):
            chunk = rows[start : start + cfg.batch_size]
            ids, mask = self._left_pad([[*prefix, kept[i].bracket] for i, prefix in chunk])
            batch_cache = cut_cache(cache, [len(prefix) for _i, prefix in chunk])
            generated = self._generate(ids, mask, cfg, **{self._cache_kw: batch_cache})
            for (i, _prefix), text in zip(chunk, self._decode(generated)):
                texts[i].append(text)
        return texts

    def _sample_fresh(
        self, kept: list[Position], prefixes: list[list[int]], cfg: SampleConfig
    ) -> list[list[str]]:
        """m samples per position with `num_return_sequences=m`, every prefix encoded again."""
        copies = cfg.m if cfg.do_sample else 1
        per_call = max(1, cfg.batch_size // copies)
        texts: list[list[str]] = []
        for start in range(0, len(kept), per_call):
            idx = range(start, min(start + per_call, len(kept)))
            ids, mask = self._left_pad([[*prefixes[i], kept[i].bracket] for i in idx])
            generated = self._decode(self._generate(ids, mask, cfg, num_return_sequences=copies))
            texts.extend(generated[j * copies : (j + 1) * copies] for j in range(len(idx)))
        return texts

    def _vllm_engine(self) -> Any:
        """The vllm.LLM over the same weights as `self.model`, created on first use and kept."""
        engine = self._vllm_llm
        if engine is None:
            vllm = _vllm()
            path = getattr(self.model, "name_or_path", None) or getattr(
                self.model.config, "_name_or_path", None
            )
            if not path:
                raise ConfigError("backend='vllm' needs the model's path (model.name_or_path is empty)")
            engine = vllm.LLM(model=str(path), gpu_memory_utilization=VLLM_GPU_MEMORY)
            self._vllm_llm = engine
        return engine

    def _sample_vllm(
        self, kept: list[Position], prefixes: list[list[int]], cfg: SampleConfig, seed: int | None
    ) -> list[list[str]]:
        """m samples per position with vLLM: the same token prompts as `_sample_fresh` (prefix + "[" token),
        cut at the first "]" or newline, which is kept as the transformers path keeps its stop token."""
        vllm = _vllm()
        engine = self._vllm_engine()
        params = vllm.SamplingParams(
            n=cfg.m if cfg.do_sample else 1,
            temperature=cfg.temperature if cfg.do_sample else 0.0,
            top_p=cfg.top_p if cfg.do_sample else 1.0,
            max_tokens=cfg.max_new_tokens,
            stop=VLLM_STOP,
            include_stop_str_in_output=True,
            seed=seed,
        )
        prompts = [{"prompt_token_ids": [*prefix, pos.bracket]} for pos, prefix in zip(kept, prefixes)]
        outputs = engine.generate(prompts, params, use_tqdm=False)
        return [[_cut_at_stop(o.text) for o in out.outputs] for out in outputs]

    # -- proposing -----------------------------------------------------------------------------------------------

    def propose(self, doc: Document, tool: str) -> list[Candidate]:
        """Candidates of `tool` for `doc`: the samples that are one complete call of that tool."""
        return self.candidates(doc, tool, self.samples(doc, tool))

    def candidates(self, doc: Document, tool: str, samples: Sequence[Sample]) -> list[Candidate]:
        """The candidates in `samples` (from `samples(doc, tool)`): each complete call of `tool`, deduplicated."""
        cands = []
        for sample in samples:
            for text in sample.texts:
                spans = find_calls("[" + text, include_incomplete=False)
                if not spans or spans[0].start != 0 or spans[0].call.name != tool:
                    continue
                args = spans[0].call.args.strip()
                cands.append(
                    Candidate(doc.id, tool, args, sample.position.char, "lm", p_start=sample.position.p)
                )
        return _dedupe(cands)


def _cut_at_stop(text: str) -> str:
    """`text` up to and including its first "]" or newline (vLLM may stop after a token holding more)."""
    ends = [i for i in (text.find("]"), text.find("\n")) if i >= 0]
    return text[: min(ends) + 1] if ends else text


def cut_cache(cache: Any, lengths: Sequence[int]) -> Any:
    """A batch DynamicCache whose row r holds the first `lengths[r]` positions of the one-row `cache`, left-padded
    with zeros to the longest (the pads are masked out by the attention mask that goes with them)."""
    import torch
    from transformers import DynamicCache

    width = max(lengths)
    data = []
    with torch.inference_mode():
        for layer in cache.layers:
            pair = []
            for full in (layer.keys, layer.values):
                cut = full.new_zeros((len(lengths), full.shape[1], width, full.shape[3]))
                for r, n in enumerate(lengths):
                    cut[r, :, width - n :] = full[0, :, :n]
                pair.append(cut)
            data.append(tuple(pair))
        return DynamicCache(data)


def _plain_dynamic_cache(cache: Any) -> bool:
    """Whether `cache` is a DynamicCache of full-attention layers whose tensors can be cut and re-batched."""
    if cache is None:
        return False
    try:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer
    except ImportError:
        return False
    return (
        isinstance(cache, DynamicCache)
        and bool(cache.layers)
        and all(type(layer) is DynamicLayer and layer.keys is not None for layer in cache.layers)
    )
