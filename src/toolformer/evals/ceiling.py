"""Tool ceiling: the share of a dataset's examples whose tool output already holds the gold answer (tools only).

What any model can reach through a tool is bounded by what the tool returns. Per suite, one tool on one input
per example, as the paper's setup would call it:
- qa (WebQuestions, NQ, TriviaQA): WikiSearch on the question text (its top-3 snippets);
- facts (LAMA): the QA tool on the cloze prefix the model sees (`suites.cloze_prefix`);
- math: the Calculator on the record's gold expression (ASDiv `formula`, SVAMP/MAWPS `equation`, see
  `suites.gold_expression`); an example without one counts as a miss (it is in n, not in `checked`).
Temporal, ppl and no-tool datasets have no ceiling: no tool output holds their answers (n/a, with the reason).

A hit is judged like the dataset's metric, leniently: the first number of the Calculator's output within the
math tolerance; a SQuAD-normalised gold as whole words anywhere in WikiSearch's or QA's output
(`metrics.mentions`). A tool error is a miss. The share is hits / n, so it compares directly with the tools
mode's accuracy: realised = accuracy / ceiling. The tools are the registry the model runs with (`--tools`,
`--corpus`), so a bigger corpus lifts the ceiling the same way it lifts the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from toolformer.calls import Call, quote
from toolformer.evals import metrics, suites
from toolformer.tools import ToolRegistry

CEILING_TOOL = {"math": "Calculator", "facts": "QA", "qa": "WikiSearch"}  # by suite
INPUT_NOTE = {
    "Calculator": "the gold expression",
    "QA": "the cloze prefix",
    "WikiSearch": "the question (top-3 passages)",
}
_NO_TOOL_REASON = {
    "temporal": "no tool output holds the answer (Calendar gives only today's date)",
    "ppl": "perplexity has no answer",
    "notool": "no-tool prompts have no answer",
}


@dataclass
class CeilingExample:
    """One example: the call made, what the tool said, and whether its output holds the gold answer."""

    dataset: str
    id: str
    tool: str
    input: str | None  # None: the record has nothing to give the tool (no gold expression)
    output: str
    ok: bool
    hit: bool
    gold: list[Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Ceiling:
    """One dataset's ceiling: hits over n (None with a reason when the dataset has no ceiling tool)."""

    dataset: str
    tool: str | None
    n: int = 0
    checked: int = 0  # examples the tool was run on
    hits: int = 0
    errors: int = 0  # runs whose tool returned an error
    reason: str | None = None  # why there is no ceiling
    examples: list[CeilingExample] = field(default_factory=list, repr=False)

    @property
    def share(self) -> float | None:
        return self.hits / self.n if self.n and self.reason is None else None

    def realised(self, accuracy: float | None) -> float | None:
        """`accuracy` as a share of the ceiling (None when either is missing or the ceiling is 0)."""
        if accuracy is None or not self.share:
            return None
        return accuracy / self.share

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "examples"}
        out["input"] = INPUT_NOTE.get(self.tool or "")
        out["ceiling"] = self.share
        return out


def ceiling_tool(spec: suites.DatasetSpec) -> str | None:
    """The tool whose output bounds `spec`'s accuracy, or None."""
    return CEILING_TOOL.get(spec.suite)


def tool_input(tool: str, example: suites.Example) -> str | None:
    """The call's argument text for `example` (None when the record gives the tool nothing to run)."""
    if tool == "Calculator":
        return example.expression
    if tool == "QA":
        return quote(suites.cloze_prefix(example.question))
    return quote(example.question.strip())


def is_hit(tool: str, kind: str, output: str, example: suites.Example) -> bool:
    """Whether a tool's output holds the gold answer, by the dataset's lenient rule."""
    if kind == "math":
        value = metrics.first_number(output)
        return value is not None and metrics.numbers_match(value, float(example.golds[0]))
    return metrics.mentions(output, [str(g) for g in example.golds]).correct


def compute_ceiling(
    dataset: suites.LoadedDataset,
    registry: ToolRegistry,
    on_example: Callable[[int], None] | None = None,
) -> Ceiling:
    """Run the dataset's ceiling tool from `registry` on every example (no model); `on_example(1)` after each."""
    spec = dataset.spec
    tool = ceiling_tool(spec)
    n = len(dataset.examples)
    if tool is None:
        reason = _NO_TOOL_REASON.get(spec.suite, f"suite {spec.suite!r} has no ceiling tool")
        return Ceiling(spec.name, None, n, reason=reason)
    if tool not in registry:
        return Ceiling(spec.name, tool, n, reason=f"{tool} is not among the tools of this dataset (--tools)")
    ceiling = Ceiling(spec.name, tool, n)
    for example in dataset.examples:
        args = tool_input(tool, example)
        if args is None:
            ceiling.examples.append(
                CeilingExample(spec.name, example.id, tool, None, "", False, False, list(example.golds))
            )
        else:
            out = registry.run(Call(tool, args))
            hit = out.ok and is_hit(tool, spec.kind, out.text, example)
            ceiling.checked += 1
            ceiling.hits += int(hit)
            ceiling.errors += int(not out.ok)
            ceiling.examples.append(
                CeilingExample(spec.name, example.id, tool, args, out.text, out.ok, hit, list(example.golds))
            )
        if on_example is not None:
            on_example(1)
    return ceiling
