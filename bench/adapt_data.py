"""Turn the labelled sets in ../shared/data into `toolformer adapt` / `augment` input files (one JSONL per task).

    python bench/adapt_data.py --data ../shared/data --out /tmp/adapt-data

Writes, when the source file is there (each row keeps its upstream `id`):
- svamp_type.jsonl (classification): SVAMP problem `question` → its operation `type` (Addition / Subtraction /
  Multiplication / Common-Division; the one row spelled "Common-Divison" upstream is mapped to Common-Division).
- lama_relation.jsonl (classification): a T-REx evidence sentence (the masked object put back) → its Wikidata
  relation label (28 relations).
- lama_qa.jsonl (extractive QA): question = the LAMA cloze query (`[MASK]` kept: it marks what is asked), context =
  the Wikipedia evidence sentence with the masked object put back, answer = that object at the mask's offset.
  T-REx and Google-RE rows whose first evidence sentence holds exactly one `[MASK]`.
- gsm8k_answer.jsonl (seq2seq): GSM8K `question` → `solution` (calculator annotations `<<…>>` removed) and
  `answer` (the final number).
- vital_description.jsonl (seq2seq, summarisation-like): a Vital Article's lead section → its Wikidata short
  description ("1968 film by Stanley Kubrick").
Nothing here is NER, sentiment or translation data: ../shared/data has none (wiki_vital's en/es/fr leads are not
sentence-aligned translations).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CALC = re.compile(r"<<[^>]*>>")


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def svamp_type(data: Path) -> Iterator[dict[str, Any]]:
    for r in _rows(data / "svamp" / "svamp_dev.jsonl"):
        label = "Common-Division" if r["type"] == "Common-Divison" else r["type"]
        yield {"id": r["id"], "text": r["question"], "label": label}


def _filled(sentence: str, answer: str) -> tuple[str, int] | None:
    if sentence.count("[MASK]") != 1:
        return None
    start = sentence.index("[MASK]")
    return sentence.replace("[MASK]", answer), start


def lama_relation(data: Path) -> Iterator[dict[str, Any]]:
    for r in _rows(data / "lama" / "lama_trex_dev.jsonl"):
        filled = _filled((r.get("masked_sentences") or [""])[0], r["answer"])
        if filled is not None:
            yield {"id": r["id"], "text": filled[0], "label": r["relation_label"]}


def lama_qa(data: Path) -> Iterator[dict[str, Any]]:
    for name in ("lama_trex_dev.jsonl", "lama_google_re_dev.jsonl"):
        for r in _rows(data / "lama" / name):
            filled = _filled((r.get("masked_sentences") or [""])[0], r["answer"])
            if filled is None:
                continue
            context, start = filled
            yield {
                "id": r["id"],
                "relation": r["relation"],
                "question": r["question"],
                "context": context,
                "answers": {"text": [r["answer"]], "answer_start": [start]},
            }


def gsm8k_answer(data: Path) -> Iterator[dict[str, Any]]:
    for r in _rows(data / "gsm8k" / "gsm8k_train.jsonl"):
        solution = _CALC.sub("", r["solution"]).strip()
        yield {"id": r["id"], "question": r["question"], "solution": solution, "answer": str(r["answer"])}


def vital_description(data: Path) -> Iterator[dict[str, Any]]:
    for r in _rows(data / "wiki_vital" / "vital_en.jsonl"):
        if r.get("description"):
            yield {"id": r["id"], "text": r["text"], "description": r["description"]}


BUILDERS = {
    "svamp_type": svamp_type,
    "lama_relation": lama_relation,
    "lama_qa": lama_qa,
    "gsm8k_answer": gsm8k_answer,
    "vital_description": vital_description,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="the shared data folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSONL files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        try:
            rows = list(build(args.data))
        except FileNotFoundError as exc:
            print(f"{name}: skipped ({exc.filename} is missing)")
            continue
        path = args.out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"{name}: {len(rows)} rows → {path}")


if __name__ == "__main__":
    main()
