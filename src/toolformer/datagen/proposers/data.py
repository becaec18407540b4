"""The data proposer: calls the data already holds (GSM8K's `<<48/2=24>>`, or inline `[Tool(args) → r]` calls).

`DataProposer` takes the calls out of a text and proposes them back where they were; `gsm8k_document` and
`gsm8k_answer_document` turn a GSM8K record into a clean document with its Calculator candidates (the latter as
a short "Question: …\nAnswer: 72" text with one call composed from the whole solution,
`compose_gsm8k_expression`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from toolformer.calls import find_calls
from toolformer.datagen.heuristics import NUMBER
from toolformer.datagen.proposers.base import dedupe
from toolformer.datagen.records import Candidate, Document
from toolformer.errors import ConfigError, DataError, ToolError
from toolformer.tools.calculator import calculate

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
        return dedupe(
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
