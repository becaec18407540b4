"""The evaluation suites: which dev files, how each record is read and checked, its prompt, and how it is scored.

Suites and their shipped files (`toolformer/data/evals/`, see the README there):
- math: asdiv, svamp, mawps, gsm8k (a dev slice of GSM8K train, `toolformer.heldout`; first number; all tools).
- facts: lama_squad, lama_google_re, lama_trex (gold word in the first 5 words; WikiSearch blocked, as in the
  paper).
- qa: webquestions, nq, triviaqa (gold in the first 20 words; the QA tool blocked, as in the paper).
- temporal: situatedqa_temporal (as qa), date_understanding (multiple choice).
- ppl: wiki_ppl (perplexity with tools disabled; no prompt).
- notool: notool_passages (the wiki_ppl passages cut at about half their length, continued by the model) and
  notool_chat (conversational prompts written for this project); no tool helps, so any call is wrong: the
  metric is the share of answers without a call.
- bfcl: BFCL v4 function calling (simple, multiple, parallel, parallel_multiple, irrelevance), asked through the
  chat API with each case's functions as `tools` and scored by BFCL's AST checker (`evals.bfcl`); not in `all`.
- all: every suite above but bfcl, in that order, into one report.

Prompts are zero-shot by default, as in the paper: "Question: …\\nAnswer:" for math, QA and temporal, and the
LAMA cloze cut just before its [MASK] for facts (the model continues the text). `shots=N` puts the first N
examples of the kind's pool in front, under the runtime's tool-use header: the math pool is the runtime's
built-in Calculator examples (`toolformer.runtime.prompts.EXAMPLES`) plus one more word problem, the QA pool its
WikiSearch example plus three more; cloze and choice have their own pools; chat uses the runtime's examples, one
per tool first. A continuation (notool_passages) is always the bare passage: examples would turn it into a task.
With `--suite all` a kind whose pool is smaller than `shots` gets its whole pool. Every mode sees the same prompt.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from toolformer.errors import ConfigError, DataError
from toolformer.evals import metrics
from toolformer.evals.bfcl_data import CATEGORIES as BFCL_CATEGORIES
from toolformer.evals.bfcl_data import BfclCase, load_cases
from toolformer.inputs import input_file, iter_lines
from toolformer.runtime.prompts import EXAMPLES, HEADER

KINDS = ("math", "cloze", "qa", "choice", "ppl", "continuation", "chat", "function")
NO_TOOL_KINDS = ("continuation", "chat")  # any call is wrong; the metric is the share of answers without one
API_KINDS = ("function",)  # asked through the chat API with the case's functions (`evals.bfcl`), not in `all`
ALL = "all"  # the pseudo-suite running every suite of SUITES but those of API_KINDS


@dataclass(frozen=True)
class DatasetSpec:
    """One dev set: its name, suite, shipped file, kind (how it is read, prompted and scored) and blocked tools."""

    name: str
    suite: str
    kind: str
    file: str | None = None  # file name under toolformer/data/evals; None for a user's --data file
    blocked: tuple[str, ...] = ()
    description: str = ""
    path: Path | None = None  # a user's file

    def location(self) -> Path:
        """The JSONL file to read."""
        if self.path is not None:
            return self.path
        assert self.file is not None
        return Path(str(resources.files("toolformer").joinpath("data", "evals", self.file)))


@dataclass
class Example:
    """One scorable record: the text the prompt is built from and the gold answer(s)."""

    id: str
    dataset: str
    question: str  # the question, the cloze, or (ppl) the passage
    golds: list[Any]  # [number] for math, gold strings for cloze/QA, [letter] for choice, [] for ppl/no-tool
    options: dict[str, str] = field(default_factory=dict)  # choice: letter -> option text
    line: int = 0
    expression: str | None = None  # math: the gold arithmetic expression, when the record has one


@dataclass
class LoadedDataset:
    """A dataset's examples and the records that cannot be scored by its metric (skipped, with reasons)."""

    spec: DatasetSpec
    examples: list[Example]
    skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)


# Paper: WikiSearch is blocked on LAMA, the QA tool on the QA datasets.
_FACTS_BLOCKED = ("WikiSearch",)
_QA_BLOCKED = ("QA",)

SUITES: dict[str, list[DatasetSpec]] = {
    "math": [
        DatasetSpec("asdiv", "math", "math", "asdiv.jsonl", (), "ASDiv dev (CC BY-NC 4.0)"),
        DatasetSpec("svamp", "math", "math", "svamp.jsonl", (), "SVAMP dev (MIT)"),
        DatasetSpec("mawps", "math", "math", "mawps.jsonl", (), "MAWPS dev (MWPToolkit, MIT)"),
        DatasetSpec(
            "gsm8k", "math", "math", "gsm8k.jsonl", (), "GSM8K dev slice of train (toolformer.heldout; MIT)"
        ),
    ],
    "facts": [
        DatasetSpec(
            "lama_squad", "facts", "cloze", "lama_squad.jsonl", _FACTS_BLOCKED, "LAMA SQuAD (CC BY-NC 4.0)"
        ),
        DatasetSpec(
            "lama_google_re", "facts", "cloze", "lama_google_re.jsonl", _FACTS_BLOCKED, "LAMA Google-RE"
        ),
        DatasetSpec("lama_trex", "facts", "cloze", "lama_trex.jsonl", _FACTS_BLOCKED, "LAMA T-REx"),
    ],
    "qa": [
        DatasetSpec(
            "webquestions", "qa", "qa", "webquestions.jsonl", _QA_BLOCKED, "WebQuestions (train split)"
        ),
        DatasetSpec("nq", "qa", "qa", "nq.jsonl", _QA_BLOCKED, "NQ-open EfficientQA dev"),
        DatasetSpec("triviaqa", "qa", "qa", "triviaqa.jsonl", _QA_BLOCKED, "TriviaQA 3k-subset dev"),
    ],
    "temporal": [
        DatasetSpec(
            "situatedqa_temporal", "temporal", "qa", "situatedqa_temporal.jsonl", (), "SituatedQA temporal"
        ),
        DatasetSpec("date_understanding", "temporal", "choice", "date_understanding.jsonl", (), "BBH dates"),
    ],
    "ppl": [
        DatasetSpec(
            "wiki_ppl", "ppl", "ppl", "wiki_ppl.jsonl", (), "Wikipedia paragraphs (gensim enwiki excerpt)"
        ),
    ],
    "notool": [
        DatasetSpec(
            "notool_passages",
            "notool",
            "continuation",
            "wiki_ppl.jsonl",
            (),
            "the wiki_ppl passages cut at about half, continued by the model",
        ),
        DatasetSpec(
            "notool_chat", "notool", "chat", "notool_chat.jsonl", (), "conversational prompts (written here)"
        ),
    ],
    "bfcl": [
        DatasetSpec(
            name, "bfcl", "function", f"bfcl/BFCL_v4_{cat}.json.gz", (), f"BFCL v4 {cat} (Apache-2.0)"
        )
        for name, cat in BFCL_CATEGORIES.items()
    ],
}

# Tokens the model may write per answer (a call's own tokens count, its result does not). `--max-new-tokens`
# overrides. A call plus a short answer is ~25 tokens; QA answers are judged on 20 words.
MAX_NEW_TOKENS = {"math": 40, "cloze": 32, "qa": 48, "choice": 40, "ppl": 1, "continuation": 40, "chat": 48}
MAX_NEW_TOKENS["function"] = 256  # room for two or three JSON calls
STOP = {
    "math": ["\nQuestion:", "\n\n"],
    "qa": ["\nQuestion:", "\n\n"],
    "choice": ["\nQuestion:", "\n\n"],
    "cloze": ["\n"],
    "ppl": [],
    "continuation": ["\n\n"],
    "chat": ["\nQuestion:", "\n\n"],
}
# Where a record carries its solution as arithmetic (ASDiv `formula` "6+9=15", SVAMP `equation` "( 76.0 - 25.0 )",
# MAWPS `equation` "X=(27.0*16.0)"), the Calculator ceiling runs it.
EXPRESSION_FIELDS = ("expression", "formula", "equation")

CLOZE_HEADER = (
    "Complete the sentence. You can use tools by writing [Tool(input) → result] in the text; "
    "the result is filled in for you."
)

# Few-shot pools, one per kind. The runtime's built-in examples come first, so `--shots 3` on math shows exactly
# the three Calculator examples `toolformer ask` shows, in its format and under its header. Added examples answer first, because the metrics read the
# first number / first words. None of them is taken from a dev or test set.
SHOTS: dict[str, list[tuple[str, str]]] = {
    "math": [
        *EXAMPLES["Calculator"],
        (
            "A baker puts 12 muffins in each box. She fills 7 boxes. How many muffins are in the boxes?",
            "There are [Calculator(12 * 7) → 84] 84 muffins in the boxes.",
        ),
    ],
    "qa": [
        *EXAMPLES["WikiSearch"],
        (
            "Who wrote the novel Moby-Dick?",
            '[WikiSearch("Moby-Dick") → Moby-Dick: Moby-Dick is an 1851 novel by American writer Herman '
            "Melville.] Herman Melville wrote it.",
        ),
        (
            "What is the capital of Australia?",
            '[WikiSearch("capital of Australia") → Canberra: Canberra is the capital city of Australia.] '
            "Canberra.",
        ),
        (
            "Which planet is known as the Red Planet?",
            '[WikiSearch("Red Planet") → Mars: Mars is the fourth planet from the Sun, often called the Red '
            "Planet.] Mars.",
        ),
    ],
    "cloze": [
        ("", 'Joe Biden was born in [QA("Where was Joe Biden born?") → Scranton, Pennsylvania] Scranton.'),
        (
            "",
            'The Wikimedia Foundation was founded by [QA("Who founded the Wikimedia Foundation?") → Jimmy Wales] '
            "Jimmy Wales.",
        ),
        (
            "",
            'The official language of Brazil is [QA("What is the official language of Brazil?") → Portuguese] '
            "Portuguese.",
        ),
        (
            "",
            'Marie Curie worked in the field of [QA("What field did Marie Curie work in?") → physics] physics.',
        ),
    ],
    "choice": [
        (
            "Today is March 3, 2021. What is the date tomorrow in MM/DD/YYYY?\nOptions:\n(A) 03/02/2021\n"
            "(B) 03/04/2021\n(C) 04/03/2021",
            "(B) 03/04/2021",
        ),
        (
            "Yesterday was 12/31/1999. What is the date today in MM/DD/YYYY?\nOptions:\n(A) 01/01/2000\n"
            "(B) 12/30/1999\n(C) 01/01/1999",
            "(A) 01/01/2000",
        ),
        (
            "The meeting is on June 10, 2015, one week from today. What is the date today in MM/DD/YYYY?\n"
            "Options:\n(A) 06/17/2015\n(B) 06/09/2015\n(C) 06/03/2015",
            "(C) 06/03/2015",
        ),
    ],
    # One example per tool first (so 5 shots show every tool), then the other Calculator examples.
    "chat": [
        *(examples[0] for examples in EXAMPLES.values()),
        *(pair for examples in EXAMPLES.values() for pair in examples[1:]),
    ],
}
_MASK = "[MASK]"
_MASK_AT_END = re.compile(r"\[MASK\]\s*[.!?]?\s*$")


def suite_names() -> list[str]:
    """The suites `--suite` accepts: every suite of SUITES, then 'all'."""
    return [*SUITES, ALL]


def suite_specs(suite: str, datasets: str | list[str] | None = None) -> list[DatasetSpec]:
    """The dataset specs of `suite` ('all': every suite's), optionally only those named in `datasets`
    (comma-separated or a list)."""
    if suite not in suite_names():
        raise ConfigError(f"suite={suite!r} is not one of {', '.join(suite_names())}")
    every = [s for specs in SUITES.values() for s in specs if s.kind not in API_KINDS]
    specs = every if suite == ALL else SUITES[suite]
    if not datasets:
        return list(specs)
    wanted = [d.strip() for d in datasets.split(",")] if isinstance(datasets, str) else list(datasets)
    known = {s.name: s for s in specs}
    for name in wanted:
        if name and name not in known:
            raise ConfigError(f"datasets={name!r} is not in suite {suite!r} ({', '.join(known)})")
    return [known[n] for n in wanted if n]


def data_spec(suite: str, path: str | Path) -> DatasetSpec:
    """A spec for a user's JSONL file read as the suite's kind (temporal: choice if records have `options`;
    notool: chat prompts in `question`, or passages to continue in `text`)."""
    if suite not in SUITES:
        raise ConfigError(
            f"suite={suite!r} is not one of {', '.join(SUITES)} (--data reads one suite's kind)"
        )
    file = input_file(path, "data")
    kinds = {s.kind for s in SUITES[suite]}
    if len(kinds) == 1:
        kind = kinds.pop()
    elif suite == "notool":
        kind = "continuation" if _first_has(file, "text") else "chat"
    else:
        kind = "choice" if _first_has(file, "options") else "qa"
    blocked = SUITES[suite][0].blocked
    return DatasetSpec(file.stem, suite, kind, path=file, blocked=blocked, description=str(file))


def load_dataset(spec: DatasetSpec, limit: int | None = None) -> LoadedDataset:
    """Read and check a dev file; the first `limit` scorable records (all if None).

    A malformed record raises DataError naming the file, line and field. Records that are well formed but cannot
    be scored by the metric are skipped and counted: math golds that are not one number (`answer: null`, as in
    68 ASDiv dev records) and LAMA clozes whose [MASK] is not at the end (the paper evaluates only those).
    A BFCL dataset (kind function) is read by `bfcl_data`: its questions and possible answers.
    """
    if spec.kind in API_KINDS:
        cases = load_cases(spec.name, spec.path, limit)
        return LoadedDataset(spec, function_examples(spec.name, cases))
    path = spec.location()
    examples: list[Example] = []
    skipped: dict[str, int] = {}
    for lineno, line in iter_lines(path):
        if limit is not None and len(examples) >= limit:
            break
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
        result = _read_record(record, spec, where, lineno)
        if isinstance(result, str):
            skipped[result] = skipped.get(result, 0) + 1
        else:
            examples.append(result)
    if not examples:
        raise DataError(f"{path}: no scorable records for a {spec.kind} dataset")
    return LoadedDataset(spec, examples, sum(skipped.values()), skipped)


def function_examples(dataset: str, cases: list[BfclCase]) -> list[Example]:
    """BFCL cases as Examples: the last user message and the possible answers."""
    return [Example(c.id, dataset, c.question, list(c.ground_truth), line=n) for n, c in enumerate(cases, 1)]


def _read_record(record: dict[str, Any], spec: DatasetSpec, where: str, lineno: int) -> Example | str:
    """An Example, or the reason (a short string) the record is skipped; DataError if it is malformed."""
    rid = str(record.get("id", f"{spec.name}-{lineno}"))
    kind = spec.kind
    if kind == "ppl":
        text = _require_str(record, "text", where)
        return Example(rid, spec.name, text, [], line=lineno)
    if kind == "continuation":
        text = _require_str(record, "text", where)
        return Example(rid, spec.name, half_passage(text), [], line=lineno)
    question = _require_str(record, "question", where)
    if kind == "chat":
        return Example(rid, spec.name, question, [], line=lineno)
    if kind == "math":
        if "answer" not in record:
            raise DataError(f"{where}: field 'answer' is missing")
        gold = record["answer"]
        if gold is None:
            return "answer is not a number (null)"
        value = _number(gold)
        if value is None:
            raise DataError(f"{where}: field 'answer' must be a number, got {gold!r}")
        return Example(rid, spec.name, question, [value], line=lineno, expression=gold_expression(record))
    if kind == "cloze":
        if _MASK not in question:
            raise DataError(f"{where}: field 'question' has no {_MASK}")
        answer = _require_str(record, "answer", where)
        if not _MASK_AT_END.search(question):
            return "[MASK] is not at the end"
        return Example(rid, spec.name, question, [answer], line=lineno)
    if kind == "qa":
        golds = record.get("answers")
        if golds is None:
            golds = [record["answer"]] if "answer" in record else None
        if not isinstance(golds, list) or not golds or not all(isinstance(g, str) for g in golds):
            raise DataError(f"{where}: field 'answers' (or 'answer') must be a non-empty list of strings")
        if isinstance(record.get("answer"), str) and record["answer"] not in golds:
            golds = [record["answer"], *golds]
        return Example(rid, spec.name, question, list(golds), line=lineno)
    if kind == "choice":
        options = record.get("options")
        if (
            not isinstance(options, dict)
            or not options
            or not all(isinstance(v, str) for v in options.values())
        ):
            raise DataError(f"{where}: field 'options' must be an object of letter -> option text")
        answer = _require_str(record, "answer", where)
        letter = answer.strip().strip("()").upper()
        if letter not in {k.upper() for k in options}:
            raise DataError(f"{where}: field 'answer' {answer!r} is not one of the options {sorted(options)}")
        return Example(rid, spec.name, question, [letter], {k.upper(): v for k, v in options.items()}, lineno)
    raise ConfigError(f"kind={kind!r} is not one of {', '.join(KINDS)}")


def gold_expression(record: dict[str, Any]) -> str | None:
    """The record's solution as one arithmetic expression for the Calculator, or None.

    Reads `expression`, `formula` or `equation`: "6+9=15" gives "6+9" (the left side), "X=(27.0*16.0)" gives
    "(27.0*16.0)" (the side that is not the unknown), ASDiv's unit notes "6 (penny)*1 (cent/penny)" are dropped.
    An equation in an unknown ("(7.0*x)+4.0=(3.0*x)-20.0") has no expression to run: None.
    """
    for name in EXPRESSION_FIELDS:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            break
    else:
        return None
    text = _UNIT_NOTE.sub("", value)
    sides = [s.strip() for s in text.split("=")]
    if len(sides) == 2 and _UNKNOWN.fullmatch(sides[0]):
        expr = sides[1]
    elif len(sides) == 2 and _UNKNOWN.fullmatch(sides[1]):
        expr = sides[0]
    elif len(sides) <= 2:
        expr = sides[0]  # "expr = result" (ASDiv) or a bare expression (SVAMP)
    else:
        return None
    return expr if expr and _ARITHMETIC.fullmatch(expr) else None


_UNIT_NOTE = re.compile(r"(?<=\d)\s+\([A-Za-z][^()]*\)")  # "6 (penny)": a unit note after a number
_UNKNOWN = re.compile(r"[A-Za-z]")
_ARITHMETIC = re.compile(r"[\d\s.+\-*/()]+")


def half_passage(text: str) -> str:
    """The first half of a passage, cut at the last space at or before the middle (the model writes the rest)."""
    text = " ".join(text.split())
    middle = len(text) // 2
    cut = text.rfind(" ", 0, middle + 1)
    return text[: cut if cut > 0 else middle].rstrip()


def _require_str(record: dict[str, Any], name: str, where: str) -> str:
    value = record.get(name)
    if name not in record:
        raise DataError(f"{where}: field {name!r} is missing")
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field {name!r} must be a non-empty string, got {value!r}")
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            out = float(value.replace(",", "").strip())
        except ValueError:
            return None
        return out if math.isfinite(out) else None
    return None


def _first_has(path: Path, name: str) -> bool:
    for _, line in iter_lines(path):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                return False  # load_dataset reports the bad line
            return isinstance(record, dict) and name in record
    return False


# --------------------------------------------------------------------------------------------- prompts


def cloze_prefix(question: str) -> str:
    """The LAMA cloze up to its [MASK], which the model is to continue."""
    return question.split(_MASK, 1)[0].rstrip()


def max_shots(kind: str) -> int:
    """How many few-shot examples the kind's pool holds."""
    return len(SHOTS.get(kind, []))


def shots_for(kind: str, shots: int, suite: str) -> int:
    """The shots a dataset of `kind` gets: 0 for a continuation (always the bare passage); with suite 'all' at
    most the kind's pool; otherwise `shots` (build_prompt refuses more than the pool)."""
    if kind in ("continuation", "ppl"):
        return 0
    return min(shots, max_shots(kind)) if suite == ALL else shots


def build_prompt(example: Example, kind: str, shots: int = 0) -> str:
    """The prompt for `example`: zero-shot task prompt, or `shots` pool examples under the tool-use header first."""
    if shots < 0 or shots > max_shots(kind):
        raise ConfigError(f"shots={shots} must be between 0 and {max_shots(kind)} for {kind} datasets")
    pool = SHOTS.get(kind, [])[:shots]
    if kind == "cloze":
        target = cloze_prefix(example.question)
        if not pool:
            return target
        return "\n".join([CLOZE_HEADER, "", *(a for _, a in pool), target])
    if kind == "ppl":
        raise ConfigError("ppl datasets have no prompt")
    if kind == "continuation":
        return example.question
    target = f"Question: {example.question.strip()}\nAnswer:"
    if not pool:
        return target
    blocks = [HEADER, ""]
    for q, a in pool:
        blocks += [f"Question: {q}", f"Answer: {a}", ""]
    return "\n".join(blocks) + "\n" + target


def score(example: Example, kind: str, text: str) -> metrics.Score:
    """Score generated `text` for `example` with the kind's lenient metric."""
    if kind == "math":
        return metrics.score_math(text, example.golds[0])
    if kind == "cloze":
        return metrics.score_cloze(text, example.golds[0])
    if kind == "qa":
        return metrics.score_qa(text, example.golds)
    if kind == "choice":
        return metrics.score_choice(text, example.options, example.golds[0])
    if kind in NO_TOOL_KINDS:
        return metrics.score_no_call(text)
    raise ConfigError(f"kind={kind!r} has no answer metric")
