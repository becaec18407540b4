#!/usr/bin/env bash
# A support bot over your own documents, on a CPU: the project's own docs (README.md, docs/*.md) as the corpus.
#   index      `toolformer index build FOLDER`: one BM25 passage per Markdown section (or text paragraph)
#   eval       the 30 questions of runs/support_questions.jsonl (written for this recipe, gold short answers)
#              answered by MODEL zero-shot with WikiSearch and QA over that folder (tools) and without tools
#              (disabled): `--suite qa --data` reads them, `--blocked none` keeps the QA tool the paper blocks on
#              its QA benchmarks, `--corpus` points both tools at the folder
#   serve      the line that serves the same bot (OpenAI-compatible API and a playground at /)
# Knobs (environment): MODEL, QUESTIONS, LIMIT (e.g. 2 for a smoke run), TOOLS, OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
TF=${TF:-.venv/bin/toolformer}
MODEL=${MODEL:-toolformer-135m}
QUESTIONS=${QUESTIONS:-runs/support_questions.jsonl}
TOOLS=${TOOLS:-Calculator,Calendar,WikiSearch,QA}
LIMIT=${LIMIT:-}
OUT=${OUT:-runs/out/support-bot}
DOCS="$OUT/docs"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

# Your documents: any folder of .md/.txt files. Here a copy of the project's docs (docs/results holds measured
# runs, not documentation).
rm -rf "$DOCS" && mkdir -p "$DOCS"
cp README.md docs/*.md "$DOCS/"
"$TF" index build "$DOCS"
"$TF" eval "$MODEL" --suite qa --data "$QUESTIONS" --corpus "$DOCS" --tools "$TOOLS" --blocked none \
  --modes tools,disabled ${LIMIT:+--limit "$LIMIT"} --out "$OUT/eval"
echo "report: $OUT/eval/report.md"
echo "serve it: $TF serve --model $MODEL --corpus $DOCS --tools $TOOLS   # then http://127.0.0.1:8000/"
