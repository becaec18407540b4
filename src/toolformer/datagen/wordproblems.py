"""One-step arithmetic word problems written from schemata: synthetic Calculator texts for the loss filter.

GSM8K's problems take two to eight steps; ASDiv, SVAMP and MAWPS are mostly one step, and what the 135M model gets
wrong there is the operation (session 10: 78–88 % of its wrong answers), most often an addition where the question
asks for a difference or a starting amount. These texts cover the one-step schemata of the word-problem literature
(change with the result, the change or the start unknown; compare; combine; equal groups; equal sharing;
multiplicative compare), each worded several ways, some with a number that does not belong to the answer. Nothing
here is taken from an evaluation set: names, objects and numbers are drawn at random and the sentences are ours;
`mixture assemble` still drops any text sharing an 8-gram with an evaluation file.

Each text is "Question: …\\nAnswer: [Calculator(a op b)] r", the form of `candidates.calculator_texts`, so the
paper's filter decides whether the call helps, as for every other candidate.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

NAMES = (
    "Ana", "Ben", "Carla", "Dev", "Elif", "Femi", "Grace", "Hugo", "Ines", "Jonas", "Kemal", "Lena", "Mateo",
    "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Yusuf", "Zoe", "Amir",
    "Bianca", "Chen", "Dalia", "Emeka", "Farah", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lucia", "Milo", "Noor",
)  # fmt: skip
# (plural noun, container or group noun)
ITEMS = (
    ("stickers", "sheet"), ("marbles", "bag"), ("apples", "basket"), ("pencils", "box"), ("cookies", "tray"),
    ("stamps", "album"), ("books", "shelf"), ("shells", "bucket"), ("cards", "pack"), ("eggs", "carton"),
    ("flowers", "vase"), ("coins", "jar"), ("toy cars", "case"), ("beads", "string"), ("crayons", "box"),
    ("oranges", "crate"), ("balloons", "bunch"), ("candles", "pack"), ("muffins", "tray"), ("buttons", "tin"),
    ("tickets", "roll"), ("seashells", "pail"), ("paper cups", "stack"), ("plums", "bowl"), ("bottles", "crate"),
)  # fmt: skip
GAIN = (("bought", "buy"), ("found", "find"), ("was given", "get"), ("picked", "pick"), ("won", "win"))
LOSS = (("gave away", "give away"), ("lost", "lose"), ("sold", "sell"), ("used", "use"), ("ate", "eat"))
DISTRACTORS = (
    "{other} has {x} {items2}.",
    "It took {name} {x} minutes.",
    "{name} is {x} years old.",
    "The shop is {x} meters away.",
)


def _pick(rng: random.Random) -> dict[str, Any]:
    items, group = rng.choice(ITEMS)
    items2, _ = rng.choice([i for i in ITEMS if i[0] != items])
    name, other = rng.sample(NAMES, 2)
    return {"name": name, "other": other, "items": items, "items2": items2, "group": group,
            "gain": rng.choice(GAIN), "loss": rng.choice(LOSS)}  # fmt: skip


def _num(rng: random.Random, lo: int = 2, hi: int = 99) -> int:
    return rng.randint(lo, hi) if rng.random() < 0.8 else rng.randint(hi + 1, 10 * hi)


# Each schema: (name, function of rng and picked words → (question sentences, expression, result)).
def _change_result_gain(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    a, b = _num(rng), _num(rng)
    q = [f"{w['name']} had {a} {w['items']}.", f"Then {w['name']} {w['gain'][0]} {b} more.",
         rng.choice([f"How many {w['items']} does {w['name']} have now?", f"How many {w['items']} does {w['name']} have in all?"])]  # fmt: skip
    return q, f"{a} + {b}", a + b


def _change_result_loss(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    b = _num(rng)
    a = b + _num(rng)
    q = [f"{w['name']} had {a} {w['items']}.", f"{w['name']} {w['loss'][0]} {b} of them.",
         rng.choice([f"How many {w['items']} does {w['name']} have left?", f"How many {w['items']} are left?"])]  # fmt: skip
    return q, f"{a} - {b}", a - b


def _change_start_gain(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    b = _num(rng)
    c = b + _num(rng)
    q = [f"{w['name']} had some {w['items']}.", f"Then {w['name']} {w['gain'][0]} {b} more.",
         f"Now {w['name']} has {c} {w['items']}.",
         rng.choice([f"How many {w['items']} did {w['name']} have at first?", f"How many {w['items']} did {w['name']} have before?"])]  # fmt: skip
    return q, f"{c} - {b}", c - b


def _change_start_loss(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    b, c = _num(rng), _num(rng)
    q = [f"{w['name']} had some {w['items']}.", f"{w['name']} {w['loss'][0]} {b} of them.",
         f"Now {w['name']} has {c} {w['items']} left.", f"How many {w['items']} did {w['name']} have at the start?"]  # fmt: skip
    return q, f"{c} + {b}", b + c


def _change_unknown_gain(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    a = _num(rng)
    c = a + _num(rng)
    q = [f"{w['name']} had {a} {w['items']}.", f"After {w['name']} {w['gain'][0]} some more, {w['name']} has {c}.",
         f"How many {w['items']} did {w['name']} {w['gain'][1]}?"]  # fmt: skip
    return q, f"{c} - {a}", c - a


def _change_unknown_loss(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    c = _num(rng)
    a = c + _num(rng)
    q = [f"{w['name']} had {a} {w['items']}.", f"{w['name']} {w['loss'][0]} some of them and now has {c}.",
         f"How many {w['items']} did {w['name']} {w['loss'][1]}?"]  # fmt: skip
    return q, f"{a} - {c}", a - c


def _compare_difference(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    b = _num(rng)
    a = b + _num(rng)
    more = rng.random() < 0.5
    q = [f"{w['name']} has {a} {w['items']}.", f"{w['other']} has {b} {w['items']}.",
         f"How many more {w['items']} does {w['name']} have than {w['other']}?" if more
         else f"How many fewer {w['items']} does {w['other']} have than {w['name']}?"]  # fmt: skip
    if rng.random() < 0.5:
        q[0], q[1] = q[1], q[0]
    return q, f"{a} - {b}", a - b


def _compare_more(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    b, d = _num(rng), _num(rng)
    q = [f"{w['other']} has {b} {w['items']}.", f"{w['name']} has {d} more {w['items']} than {w['other']}.",
         f"How many {w['items']} does {w['name']} have?"]  # fmt: skip
    return q, f"{b} + {d}", b + d


def _compare_fewer(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    d = _num(rng)
    b = d + _num(rng)
    q = [f"{w['other']} has {b} {w['items']}.", f"{w['name']} has {d} fewer {w['items']} than {w['other']}.",
         f"How many {w['items']} does {w['name']} have?"]  # fmt: skip
    return q, f"{b} - {d}", b - d


def _compare_inverse(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    d = _num(rng)
    a = d + _num(rng)
    q = [f"{w['name']} has {a} {w['items']}.", f"That is {d} more than {w['other']} has.",
         f"How many {w['items']} does {w['other']} have?"]  # fmt: skip
    return q, f"{a} - {d}", a - d


def _combine(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    a, b = _num(rng), _num(rng)
    q = [f"{w['name']} has {a} {w['items']} and {w['other']} has {b} {w['items']}.",
         rng.choice([f"How many {w['items']} do they have altogether?", f"How many {w['items']} do they have in total?"])]  # fmt: skip
    return q, f"{a} + {b}", a + b


def _combine_part(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    a = _num(rng)
    c = a + _num(rng)
    q = [f"{w['name']} and {w['other']} have {c} {w['items']} together.", f"{w['name']} has {a} of them.",
         f"How many {w['items']} does {w['other']} have?"]  # fmt: skip
    return q, f"{c} - {a}", c - a


def _groups(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    a, b = rng.randint(2, 15), rng.randint(2, 30)
    q = [f"{w['name']} has {a} {w['group']}s of {w['items']}.", f"Each {w['group']} holds {b} {w['items']}.",
         f"How many {w['items']} does {w['name']} have?"]  # fmt: skip
    return q, f"{a} * {b}", a * b


def _share(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    a, each = rng.randint(2, 12), rng.randint(2, 30)
    c = a * each
    q = [f"{w['name']} shares {c} {w['items']} equally among {a} friends.", f"How many {w['items']} does each friend get?"]  # fmt: skip
    return q, f"{c} / {a}", each


def _pack(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    b, n = rng.randint(2, 12), rng.randint(2, 30)
    c = b * n
    q = [f"{w['name']} has {c} {w['items']}.", f"{w['name']} puts {b} {w['items']} in each {w['group']}.",
         f"How many {w['group']}s does {w['name']} fill?"]  # fmt: skip
    return q, f"{c} / {b}", n


def _times(rng: random.Random, w: dict[str, Any]) -> tuple[list[str], str, int]:
    b, k = rng.randint(2, 40), rng.randint(2, 9)
    q = [f"{w['other']} has {b} {w['items']}.", f"{w['name']} has {k} times as many {w['items']} as {w['other']}.",
         f"How many {w['items']} does {w['name']} have?"]  # fmt: skip
    return q, f"{k} * {b}", k * b


SCHEMATA: tuple[Callable[[random.Random, dict[str, Any]], tuple[list[str], str, int]], ...] = (
    _change_result_gain, _change_result_loss, _change_start_gain, _change_start_loss, _change_unknown_gain,
    _change_unknown_loss, _compare_difference, _compare_more, _compare_fewer, _compare_inverse, _combine,
    _combine_part, _groups, _share, _pack, _times,
)  # fmt: skip


def one_step_texts(n: int, seed: int = 0, distractor_share: float = 0.3) -> Iterator[dict[str, Any]]:
    """`n` one-step problems, the schemata in turn, each with its call and answer ("calc:wp-I" ids); a share of
    them carry a sentence with a number that the answer does not use, before the question."""
    rng = random.Random(f"wordproblems:{seed}")
    for i in range(n):
        schema = SCHEMATA[i % len(SCHEMATA)]
        words = _pick(rng)
        sentences, expression, result = schema(rng, words)
        if rng.random() < distractor_share:
            extra = rng.choice(DISTRACTORS).format(x=_num(rng), **words)
            sentences.insert(len(sentences) - 1, extra)  # before the question: "them" keeps its referent
        text = f"Question: {' '.join(sentences)}\nAnswer: [Calculator({expression})] {result}"
        yield {
            "id": f"calc:wp-{i:05d}",
            "text": text,
            "meta": {"kind": "calculator", "schema": schema.__name__[1:]},
        }
