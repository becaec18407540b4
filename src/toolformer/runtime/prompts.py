"""Built-in few-shot prompts that make an untrained model write inline tool calls, one block of examples per tool."""

from __future__ import annotations

from collections.abc import Sequence

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
