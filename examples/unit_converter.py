"""Teach the model your own tool: a unit converter (`Convert("5 km to miles")`), its proposer and a seeded corpus.

Three pieces a user writes for a tool of their own (`runs/own_tool.sh` runs them end to end):

- `convert`: the tool, a typed function made a Tool by `@tool` (`--tools examples.unit_converter:convert`).
- `propose`: where its calls belong (`--proposer examples.unit_converter:propose`): before a quantity that is an
  earlier quantity in other units ("5 km, about 3.11 miles" gets `Convert("5 km to miles")` before "3.11"). Small
  models cannot follow the paper's annotation prompt, so a rule like this proposes and the loss filter decides.
- `corpus` and `questions`: texts where conversions belong and held-out questions, from seeded templates written
  for this example (no evaluation set), the questions' conversions disjoint from the corpus's.

`python -m examples.unit_converter corpus|questions --n N --seed S --out FILE` writes them as JSONL.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from toolformer.calls import quote
from toolformer.errors import ToolError
from toolformer.tools.base import tool


@dataclass(frozen=True)
class Unit:
    """A unit: its dimension, how many base units one of it is, and the name results are written with."""

    dimension: str
    factor: float  # base units per unit (temperatures: see _to_base)
    display: str


_UNITS: dict[str, Unit] = {}


def _add(dimension: str, factor: float, display: str, *aliases: str) -> None:
    for alias in (display, *aliases):
        _UNITS[alias.lower()] = Unit(dimension, factor, display)


_add("length", 1000.0, "kilometers", "km", "kilometer", "kilometre", "kilometres")
_add("length", 1.0, "meters", "m", "meter", "metre", "metres")
_add("length", 0.01, "centimeters", "cm", "centimeter", "centimetre", "centimetres")
_add("length", 0.001, "millimeters", "mm", "millimeter", "millimetre", "millimetres")
_add("length", 1609.344, "miles", "mile", "mi")
_add("length", 0.9144, "yards", "yard", "yd")
_add("length", 0.3048, "feet", "foot", "ft")
_add("length", 0.0254, "inches", "inch")  # not "in": "5 in the morning"
_add("mass", 1.0, "kilograms", "kg", "kilogram", "kilogramme")
_add("mass", 0.001, "grams", "g", "gram")
_add("mass", 0.45359237, "pounds", "pound", "lb", "lbs")
_add("mass", 0.028349523125, "ounces", "ounce", "oz")
_add("volume", 1.0, "liters", "liter", "litre", "litres")  # not "l"
_add("volume", 0.001, "milliliters", "ml", "milliliter", "millilitre", "millilitres")
_add("volume", 3.785411784, "gallons", "gallon", "gal")
_add("volume", 0.2365882365, "cups", "cup")
_add("speed", 1 / 3.6, "km/h", "kph", "kilometers per hour", "kilometres per hour")
_add("speed", 0.44704, "mph", "miles per hour")
_add("speed", 1.0, "m/s", "meters per second", "metres per second")
_add("temperature", 1.0, "°C", "degrees Celsius", "celsius")
_add("temperature", 1.0, "°F", "degrees Fahrenheit", "fahrenheit")
_add("temperature", 1.0, "kelvin")  # not "K": "a 5K run"

_UNIT_RE = "|".join(re.escape(a) for a in sorted(_UNITS, key=len, reverse=True))
_NUMBER_RE = r"-?\d+(?:,\d{3})*(?:\.\d+)?"
_QUERY = re.compile(rf"^\s*({_NUMBER_RE})\s*({_UNIT_RE})\s+(?:to|in|into)\s+({_UNIT_RE})\s*$", re.IGNORECASE)
# A quantity in running text: a number, then a unit that ends at a word boundary ("5 km", "3.11 miles", "20 °C").
_QUANTITY = re.compile(rf"(?<![\w.])({_NUMBER_RE})\s?({_UNIT_RE})(?![\w/])", re.IGNORECASE)


def _unit(name: str) -> Unit:
    found = _UNITS.get(name.strip().lower())
    if found is None:
        raise ToolError(f"unknown unit {name!r}")
    return found


def _to_base(value: float, unit: Unit) -> float:
    if unit.dimension != "temperature":
        return value * unit.factor
    return {"°C": value, "°F": (value - 32) * 5 / 9, "kelvin": value - 273.15}[unit.display]


def _from_base(value: float, unit: Unit) -> float:
    if unit.dimension != "temperature":
        return value / unit.factor
    return {"°C": value, "°F": value * 9 / 5 + 32, "kelvin": value + 273.15}[unit.display]


def format_number(value: float) -> str:
    """`value` rounded to 2 decimals, without trailing zeros: 3.10686 -> "3.11", 1000.0 -> "1000"."""
    text = f"{round(value, 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def convert_value(value: float, source: str, target: str) -> float:
    """`value` in unit `source` expressed in unit `target` (ToolError for unknown units or other dimensions)."""
    a, b = _unit(source), _unit(target)
    if a.dimension != b.dimension:
        raise ToolError(f"cannot convert {a.display} ({a.dimension}) to {b.display} ({b.dimension})")
    return _from_base(_to_base(value, a), b)


@tool(name="Convert", examples=['Convert("5 km to miles")'])
def convert(query: str) -> str:
    """Convert a quantity to other units: length, mass, volume, speed and temperature.

    Args:
        query: "<number> <unit> to <unit>", e.g. "5 km to miles" or "20 °C to °F".
    """
    match = _QUERY.match(query)
    if match is None:
        raise ToolError(f"query {query!r} is not '<number> <unit> to <unit>', e.g. '5 km to miles'")
    number, source, target = match.groups()
    value = convert_value(float(number.replace(",", "")), source, target)
    return f"{format_number(value)} {_unit(target).display}"


def propose(text: str) -> list[tuple[int, str, str]]:
    """`(position, "Convert", args)` before each quantity whose previous quantity in the text (at most 200
    characters before it, not itself a converted one) has the same dimension in other units: the call converts
    that previous quantity into this one's unit, as written, and goes before this one's number."""
    found = [
        (m.start(), m.end(), m.group(1), m.group(2), _UNITS[m.group(2).lower()])
        for m in _QUANTITY.finditer(text)
    ]
    out = []
    converted = set()  # indexes of quantities a call was proposed before: no source for the next one
    for i in range(1, len(found)):
        start, _end, _number, unit_text, unit = found[i]
        _start, prev_end, number, prev_text, prev = found[i - 1]
        if i - 1 in converted or start - prev_end > 200:
            continue
        if prev.dimension == unit.dimension and prev.display != unit.display:
            out.append((start, "Convert", quote(f"{number} {prev_text} to {unit_text}")))
            converted.add(i)
    return out


# Corpus and questions: seeded templates. Each fills {a} {ua} (source quantity), {b} {ub} (the converted value,
# computed by the tool's own arithmetic) and {x}, a scene word.
_PAIRS = [
    ("km", "miles", (3, 120)),
    ("miles", "km", (2, 90)),
    ("kg", "pounds", (1, 150)),
    ("pounds", "kg", (2, 300)),
    ("m", "feet", (2, 400)),
    ("feet", "m", (3, 900)),
    ("cm", "inches", (5, 250)),
    ("inches", "cm", (2, 80)),
    ("liters", "gallons", (2, 200)),
    ("gallons", "liters", (1, 60)),
    ("°C", "°F", (-20, 40)),
    ("°F", "°C", (-5, 105)),
    ("km/h", "mph", (10, 200)),
    ("mph", "km/h", (5, 120)),
    ("grams", "ounces", (20, 900)),
    ("cups", "ml", (1, 8)),
]
_CORPUS_TEMPLATES = [
    "Question: How many {ub} is {a} {ua}?\nAnswer: {b} {ub}.",
    "Question: What is {a} {ua} in {ub}?\nAnswer: {b} {ub}.",
    "Question: Convert {a} {ua} to {ub}.\nAnswer: {a} {ua} is {b} {ub}.",
    "The {x} measured {a} {ua}, which is about {b} {ub}.",
    "On the label the {x} is given as {a} {ua} ({b} {ub}).",
    "The guide lists the {x} at {a} {ua}; in the other units that is {b} {ub}.",
    "We noted {a} {ua} for the {x}. Converted, that comes to {b} {ub}.",
    "Her notes say the {x} was {a} {ua}, or {b} {ub} in the other system.",
]
_SCENES = {
    "length": ["trail", "bridge", "river crossing", "road", "fence", "rope"],
    "mass": ["parcel", "suitcase", "sack of flour", "dog", "bicycle"],
    "volume": ["tank", "barrel", "aquarium", "rain barrel", "soup pot"],
    "speed": ["train", "wind", "car", "cyclist", "ferry"],
    "temperature": ["afternoon high", "oven", "lake water", "night low", "bath"],
}
_QUESTION_TEMPLATES = [
    "How many {ub} is {a} {ua}?",
    "What is {a} {ua} in {ub}?",
    "Convert {a} {ua} to {ub}.",
]


def _quantity(rng: random.Random, low: int, high: int) -> str:
    value = rng.randint(low, high) if rng.random() < 0.7 else round(rng.uniform(low, high), 1)
    return format_number(value)


def _conversions(rng: random.Random, skip: set[tuple[str, str, str]]) -> Iterator[tuple[str, str, str, str]]:
    """Endless (a, ua, b, ub): a random pair and value not in `skip`, b computed by the converter."""
    while True:
        ua, ub, (low, high) = rng.choice(_PAIRS)
        a = _quantity(rng, low, high)
        if (a, ua, ub) in skip:
            continue
        yield a, ua, format_number(convert_value(float(a), ua, ub)), ub


def corpus(n: int = 200, seed: int = 0) -> list[dict[str, str]]:
    """`n` texts (`{"id", "text"}`) where a conversion belongs, from the templates above; deterministic in `seed`."""
    rng = random.Random(seed)
    gen = _conversions(rng, set())
    out = []
    for i in range(n):
        a, ua, b, ub = next(gen)
        scene = rng.choice(_SCENES[_unit(ua).dimension])
        text = rng.choice(_CORPUS_TEMPLATES).format(a=a, ua=ua, b=b, ub=ub, x=scene)
        out.append({"id": f"convert-{i:04d}", "text": text})
    return out


def questions(
    n: int = 20, seed: int = 1, corpus_n: int = 200, corpus_seed: int = 0
) -> list[dict[str, object]]:
    """`n` held-out questions (`{"id", "question", "answer"}`, the math suite's fields, and `conversion`, the query
    that answers it), none converting a value between the units that `corpus(corpus_n, corpus_seed)` converts it
    between."""
    seen = set()
    for row in corpus(corpus_n, corpus_seed):
        for call in propose(row["text"]):
            m = _QUERY.match(json.loads(call[2]))
            if m:
                seen.add((m.group(1), m.group(2), m.group(3)))
    rng = random.Random(seed)
    gen = _conversions(rng, seen)
    out: list[dict[str, object]] = []
    for i in range(n):
        a, ua, b, ub = next(gen)
        question = rng.choice(_QUESTION_TEMPLATES).format(a=a, ua=ua, ub=ub)
        out.append(
            {
                "id": f"convert-q{i:03d}",
                "question": question,
                "answer": float(b),
                "conversion": f"{a} {ua} to {ub}",
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Write the unit-converter corpus or held-out questions as JSONL."
    )
    parser.add_argument("what", choices=["corpus", "questions"])
    parser.add_argument("--n", type=int, default=None, help="How many (default: corpus 200, questions 20).")
    parser.add_argument("--seed", type=int, default=None, help="Seed (default: corpus 0, questions 1).")
    parser.add_argument("--corpus-n", type=int, default=200, help="questions: the corpus size they avoid.")
    parser.add_argument("--out", type=Path, default=None, help="Output file (default: stdout).")
    args = parser.parse_args(argv)
    if args.what == "corpus":
        rows = corpus(args.n or 200, 0 if args.seed is None else args.seed)
    else:
        rows = questions(args.n or 20, 1 if args.seed is None else args.seed, corpus_n=args.corpus_n)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if args.out is None:
        sys.stdout.write(lines)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(lines, encoding="utf-8")


if __name__ == "__main__":
    main()
