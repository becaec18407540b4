#!/usr/bin/env bash
# Teach the model your own tool, end to end on a CPU: a unit converter (examples/unit_converter.py).
#   corpus     DOCS texts where a conversion belongs, from seeded templates written for this example
#              (`python -m examples.unit_converter corpus`; no evaluation set)
#   annotate   --tools examples.unit_converter:convert (a typed @tool function) --proposer
#              examples.unit_converter:propose (your proposer: a 135M model cannot follow the paper's prompt P(x));
#              the tool runs every proposed call and the paper's loss filter (tau_f) keeps those whose result helps
#              MODEL predict the text
#   train      a LoRA on the kept texts (merged), loss from the call on, starting from MODEL
#   eval       QUESTIONS held-out questions (`python -m examples.unit_converter questions`: none converts what the
#              corpus converts) read as a math suite: the trained model with the tool (tools) and without
#              (disabled), and MODEL before training with the same tool (baseline, --baseline-tools); the report
#              gives accuracy and the share of answers calling Convert per mode, predictions.jsonl every call made.
# Knobs (environment): MODEL, DOCS, QUESTIONS, TAU_F, STEPS, LR, MIX, EVAL_LIMIT, OUT. Rerunning resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
TF=${TF:-.venv/bin/toolformer}
PY=${PY:-.venv/bin/python}
MODEL=${MODEL:-toolformer-135m}
OUT=${OUT:-runs/out/own-tool}
DOCS=${DOCS:-200}
QUESTIONS=${QUESTIONS:-20}
TAU_F=${TAU_F:-0.5}
STEPS=${STEPS:-40}
LR=${LR:-4e-4}
MIX=${MIX:-0.1}
EVAL_LIMIT=${EVAL_LIMIT:-$QUESTIONS}
TOOL=examples.unit_converter:convert
PROPOSER=examples.unit_converter:propose
EVERY=$(( STEPS < 20 ? STEPS : 20 ))
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

mkdir -p "$OUT"
"$PY" -m examples.unit_converter corpus --n "$DOCS" --out "$OUT/corpus.jsonl"
"$PY" -m examples.unit_converter questions --n "$QUESTIONS" --corpus-n "$DOCS" --out "$OUT/questions.jsonl"
"$TF" annotate run "$OUT/corpus.jsonl" --tools "$TOOL" --proposer "$PROPOSER" --model "$MODEL" \
  --tau-f-tool "Convert=$TAU_F" --out "$OUT/augmented" -q
"$TF" train "$OUT/augmented" --model "$MODEL" --out "$OUT/model" --lora --lr "$LR" --max-steps "$STEPS" \
  --mix-ratio "$MIX" --loss after-call --max-dev-texts 16 --eval-steps "$EVERY" --save-steps "$EVERY" --resume
"$TF" eval "$OUT/model" --suite math --data "$OUT/questions.jsonl" --tools "$TOOL" --modes tools,disabled \
  --baseline "$MODEL" --baseline-tools --no-ceiling --limit "$EVAL_LIMIT" --out "$OUT/eval"
echo "report: $OUT/eval/report.md"
