"""Built-in few-shot prompts that make an untrained model write inline tool calls, one block of examples per tool."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from toolformer.calls import CallSyntaxError, parse_call
from toolformer.errors import ConfigError

HEADER = (
    "Answer the question. You can use tools by writing [Tool(input) → result] in your answer; "
    "the result is filled in for you."
)

# Examples in the paper's inline form. The Calculator gets three because small models need them to copy the
# pattern (checked on SmolLM2-135M: with these it writes `[Calculator(23 * 47) →` unaided).
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "Calculator": [
        ("What is 12 times 9?", "12 times 9 is [Calculator(12 * 9) → 108] 108."),
        ("What is 350 divided by 7?", "350 divided by 7 is [Calculator(350 / 7) → 50] 50."),
        (
            "Tom had 120 apples and gave away 35. How many are left?",
            "He has [Calculator(120 - 35) → 85] 85 apples left.",
        ),
    ],
    "Calendar": [
        (
            "What day of the week is it today?",
            "[Calendar() → Today is Monday, January 30, 2023.] It is Monday.",
        ),
    ],
    "WikiSearch": [
        (
            "Who founded the Wikimedia Foundation?",
            '[WikiSearch("Wikimedia Foundation") → Wikimedia Foundation: The Wikimedia Foundation was founded by '
            "Jimmy Wales in 2003.] It was founded by Jimmy Wales.",
        ),
    ],
    "QA": [
        (
            "Where was Joe Biden born?",
            '[QA("Where was Joe Biden born?") → Scranton, Pennsylvania] Joe Biden was born in Scranton, Pennsylvania.',
        ),
    ],
    "MT": [
        ('What does "Je suis fatigué" mean?', '[MT("Je suis fatigué") → I am tired] It means "I am tired".'),
    ],
}

STOP = ["\nQuestion:", "\n\n"]


def build_prompt(question: str, tools: Sequence[str] | None = None, header: str = HEADER) -> str:
    """A few-shot prompt with examples for `tools` (default: all built-ins), ending in `Answer:`."""
    names = list(EXAMPLES) if tools is None else [t for t in tools if t in EXAMPLES]
    if not question.strip():
        raise ConfigError("question is empty")
    blocks = [header, ""]
    for name in names:
        for q, a in EXAMPLES[name]:
            blocks += [f"Question: {q}", f"Answer: {a}", ""]
    blocks += [f"Question: {question.strip()}", "Answer:"]
    return "\n".join(blocks)


# The trained model's prompt (toolformer-135m): zero-shot "Question: …\nAnswer:", the shape of the paper's
# evaluation prompts, optionally under a header that names the loaded tools. Training texts carry the same
# header on a share of examples (`datagen.mixture`), so the model sees it both ways.
TOOLS_HEADER_TITLE = "Tools you can call by writing [Tool(input)]:"
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)\.\s+")  # "e.g. 'Today is …'" does not end the sentence
_EXAMPLE_CLAUSE = re.compile(r",?\s+(?:e\.g\.|for example)")


def tool_line(name: str, description: str, examples: Sequence[str] = ()) -> str:
    """One header line for a tool: its name, the first sentence of its description, and its first example."""
    first = _SENTENCE_END.split(description.strip(), maxsplit=1)[0].rstrip(".")
    first = _EXAMPLE_CLAUSE.split(first, maxsplit=1)[0].rstrip(
        " ."
    )  # a sample output would be copied as a result
    line = f"- {name}: {first}."
    if examples:
        line += f" Example: [{examples[0]}]"
    return line


def tools_header(tools: Sequence[Any]) -> str:
    """The header naming `tools` (objects with name, description and optional examples), ending in a newline."""
    lines = [TOOLS_HEADER_TITLE]
    for t in tools:
        lines.append(tool_line(t.name, t.description, tuple(getattr(t, "examples", ()) or ())))
    return "\n".join(lines) + "\n"


def zero_shot_prompt(question: str, tools: Sequence[Any] | None = None) -> str:
    """The trained model's prompt: optional tools header, then "Question: …\\nAnswer:"."""
    if not question.strip():
        raise ConfigError("question is empty")
    head = tools_header(tools) if tools else ""
    return f"{head}Question: {question.strip()}\nAnswer:"


def few_shot_prompt(question: str, tools: Sequence[Any], header: str = HEADER) -> str:
    """The untrained model's prompt for the loaded `tools` (Tool objects): `build_prompt`'s header, the tools
    header naming every one of them (a user's tool too), the built-in examples of the built-ins, one example
    per example call of any other tool (`Tool.examples`), then the question and `Answer:`.

    An example call may carry a result (`Weather("Paris") → 18 °C`), shown as written; without one the
    example shows the call alone, and the runtime fills in the real result when the model copies it.
    """
    if not question.strip():
        raise ConfigError("question is empty")
    blocks = [header]
    if tools:
        blocks.append(tools_header(tools).rstrip("\n"))
    blocks.append("")
    for t in tools:
        turns = EXAMPLES.get(t.name) or [_example_turn(t, ex) for ex in getattr(t, "examples", ()) or ()]
        for q, a in turns:
            if q and a:
                blocks += [f"Question: {q}", f"Answer: {a}", ""]
    blocks += [f"Question: {question.strip()}", "Answer:"]
    return "\n".join(blocks)


def _example_turn(t: Any, example: str) -> tuple[str, str]:
    """A question and answer showing one of a tool's example calls; ("", "") if it is not one call of `t`."""
    try:
        call = parse_call(f"[{example.strip()}]")
    except CallSyntaxError:
        return "", ""
    if call.name != t.name:
        return "", ""
    task = t.description.strip().split(". ")[0].rstrip(".") or t.name
    return f"{task}: {call.input}", call.text(with_result=call.result is not None)
