"""Write JSON function-calling training rows: randomised function schemas, requests that state every argument value,
and the answer as the runtime's `<tool_call>` JSON, or plain text when no offered function fits.

Each row offers 1-5 functions (OpenAI `tools` entries). Functions are built combinatorially from a few dozen
actions (weather, unit and currency conversion, booking, search, math, calendar, messaging, reminders, music,
translation, stocks, timers), each with several verbs, nouns and parameter-name synonyms, written in snake_case or
camelCase, sometimes under a namespace prefix: names vary from row to row, so a model learns to read the schema
rather than to remember names. Kinds of rows:
- call: the request fits one offered function (the others are distractors); the answer is one call whose
  arguments are the values written in the request (optional parameters only when the request states them);
- parallel: two requests in one message (the same function twice, or two functions); two calls, in order;
- no_call: no offered function fits (the request's own function is left out, or it is small talk); the answer is
  plain text that says so, or answers the small talk.

The answer is written exactly as the runtime reads it and as its call grammar writes it
(`runtime.jsoncalls.format_json_call`: `<tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>`, blocks joined
by a newline), and `text` is the chat prompt the runtime renders for a `tools=` request (`Toolformer._render`:
the tokenizer's chat template, the tools in the system prompt when the template takes none) followed by that answer,
so training text and inference prompt are the same bytes; `prompt` and `completion` hold the two parts (TRL's
prompt–completion format: `toolformer train` puts only the completion in the loss). Nothing here comes from BFCL or another benchmark.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from toolformer.calls import Call
from toolformer.datagen.functionspecs import ACTIONS, NO_FIT, POOLS, PREFIXES, SMALL_TALK, Action, value_of
from toolformer.errors import ConfigError

KINDS = ("call", "parallel", "no_call")


# ---------------------------------------------------------------------------------------------------------------
# Functions


@dataclass
class Function:
    """One randomised function: its OpenAI entry, its action, and the parameter name given to each parameter."""

    action: Action
    name: str
    names: dict[str, str]  # the parameter's first synonym -> the name this function gives it
    schema: dict[str, Any]


def _style(words: list[str], camel: bool) -> str:
    parts = [p for w in words for p in w.split("_") if p]
    if camel:
        return parts[0] + "".join(p.capitalize() for p in parts[1:])
    return "_".join(parts)


def make_function(action: Action, rng: random.Random) -> Function:
    """A randomised function for `action`: verb and noun, name style and prefix, parameter names, and (sometimes)
    some optional parameters left out of the schema."""
    camel = rng.random() < 0.35
    words = [rng.choice(action.verbs), rng.choice(action.nouns)]
    if rng.random() < 0.25:
        words.reverse()
    name = rng.choice(PREFIXES) + _style(words, camel)
    names: dict[str, str] = {}
    props: dict[str, Any] = {}
    required = []
    for param in action.params:
        if not param.required and rng.random() < 0.3:
            continue  # this variant of the function has no such option
        pname = _style([rng.choice(param.names)], camel)
        names[param.names[0]] = pname
        entry: dict[str, Any] = {"type": param.kind, "description": param.description}
        if param.pool == "metric":
            entry["enum"] = list(POOLS["metric"])
        props[pname] = entry
        if param.required:
            required.append(pname)
    schema = {
        "type": "function",
        "function": {
            "name": name,
            "description": action.description,
            "parameters": {"type": "object", "properties": props, "required": required},
        },
    }
    return Function(action, name, names, schema)


def _request(fn: Function, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A request for `fn` and the arguments it states (each value written in the request's text)."""
    action = fn.action
    values: dict[str, Any] = {}
    for param in action.params:
        pool = param.pool
        if pool == "unit_from":
            src, dst = rng.choice(POOLS["unit_pair"]).split(":")
            values["from_unit"], values["to_unit"] = src, dst
        elif pool == "currency2":
            values[param.names[0]] = rng.choice(
                [c for c in POOLS["currency"] if c != values.get("from_currency")]
            )
        elif pool != "unit_to":
            values[param.names[0]] = value_of(pool, rng)
    text = rng.choice(action.requests).format(**{k: _say(v) for k, v in values.items()})
    arguments: dict[str, Any] = {}
    for param in action.params:
        key = param.names[0]
        if key not in fn.names:
            continue
        if param.required or rng.random() < 0.5:
            if not param.required:
                text += " " + param.phrase.format(v=_say(values[key]))
            arguments[fn.names[key]] = values[key]
    return text, arguments


def _say(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# ---------------------------------------------------------------------------------------------------------------
# Rows


def answer_text(calls: list[Call]) -> str:
    """The assistant's answer as the runtime reads it: `<tool_call>` blocks joined by a newline."""
    from toolformer.runtime.jsoncalls import format_json_call

    return "\n".join(format_json_call(c) for c in calls)


def _offer(right: list[Function], rng: random.Random, skip: set[int]) -> list[Function]:
    """`right` plus 0-4 distractors of other actions, shuffled."""
    used = {id(f.action) for f in right} | skip
    others = [a for a in ACTIONS if id(a) not in used]
    count = rng.randint(0 if right else 1, min(4, len(others)))
    offered = list(right)
    taken = {f.name for f in right}
    for action in rng.sample(others, count):
        fn = make_function(action, rng)
        if fn.name not in taken:  # names are unique within a request; the right functions stay
            taken.add(fn.name)
            offered.append(fn)
    rng.shuffle(offered)
    return offered


def make_row(kind: str, rng: random.Random) -> dict[str, Any]:
    """One row of `kind` (see KINDS): messages, tools, calls and the answer text."""
    if kind not in KINDS:
        raise ConfigError(f"kind={kind!r} is not one of {', '.join(KINDS)}")
    calls: list[Call] = []
    if kind == "no_call":
        if rng.random() < 0.2:
            request, answer = rng.choice(SMALL_TALK)
            offered = _offer([], rng, set())
        else:
            action = rng.choice(ACTIONS)
            request, _ = _request(make_function(action, rng), rng)
            offered = _offer([], rng, {id(action)})
            answer = rng.choice(NO_FIT).format(task=action.task)
    else:
        if kind == "parallel" and rng.random() < 0.5:
            first = make_function(rng.choice(ACTIONS), rng)
            fns = [first, first]
        else:
            actions = rng.sample(ACTIONS, 2 if kind == "parallel" else 1)
            fns = [make_function(a, rng) for a in actions]
        texts = []
        for fn in fns:
            text, arguments = _request(fn, rng)
            texts.append(text)
            calls.append(Call.from_openai({"name": fn.name, "arguments": arguments}))
        request = (
            texts[0]
            if len(texts) == 1
            else f"{texts[0]} {rng.choice(('Also,', 'And', 'Then'))} " + (texts[1][0].lower() + texts[1][1:])
        )
        offered = _offer(list({id(f): f for f in fns}.values()), rng, set())
        answer = answer_text(calls)
    return {
        "kind": kind,
        "messages": [{"role": "user", "content": request}],
        "tools": [f.schema for f in offered],
        "calls": [{"name": c.name, "arguments": c.arguments} for c in calls],
        "answer": answer,
    }


def generate_rows(
    n: int, seed: int = 0, no_call_share: float = 0.2, parallel_share: float = 0.2, tokenizer: Any = None
) -> Iterator[dict[str, Any]]:
    """`n` rows (`make_row`), kinds drawn with the given shares, each with an `id` and, given a tokenizer, its
    `text`: the runtime's chat prompt for the row's messages and tools followed by the answer."""
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    for name, share in (("no_call_share", no_call_share), ("parallel_share", parallel_share)):
        if not 0 <= share <= 1:
            raise ConfigError(f"{name} must be in [0, 1], got {share}")
    if no_call_share + parallel_share > 1:
        raise ConfigError(
            f"no_call_share + parallel_share must be <= 1, got {no_call_share + parallel_share}"
        )
    rng = random.Random(seed)
    render = _renderer(tokenizer) if tokenizer is not None else None
    for i in range(n):
        draw = rng.random()
        kind = (
            "no_call"
            if draw < no_call_share
            else "parallel"
            if draw < no_call_share + parallel_share
            else "call"
        )
        row = {"id": f"functions-{seed}-{i}", **make_row(kind, rng)}
        if render is not None:
            # TRL's prompt–completion pair (train puts only the answer in the loss) and the text they make.
            row["prompt"], row["completion"] = render(row["messages"], row["tools"]), row["answer"]
            row["text"] = row["prompt"] + row["completion"]
        yield row


def _renderer(tokenizer: Any) -> Any:
    """The runtime's chat prompt for a `tools=` request (`Toolformer._render`), with no server tools."""
    from toolformer.runtime.engine import Toolformer
    from toolformer.tools import ToolRegistry

    engine = Toolformer(None, tokenizer, ToolRegistry(), name="functions", prompt_style="few-shot")
    return engine._render
