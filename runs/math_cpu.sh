#!/usr/bin/env bash
# The arithmetic recipe on a CPU, end to end on the embedded model:
#   GSM8K training solutions -> Calculator calls from their <<48/2=24>> annotations (data proposer) kept by the
#   paper's loss filter (tau_f) -> fine-tune (LoRA, merged) -> evaluate on the ASDiv/SVAMP/MAWPS dev files in the
#   three modes (tools, disabled, baseline = the untrained model).
# No test set is read: GSM8K train is the corpus, the dev files are the only evaluation data.
# Knobs (environment): DOCS, TAU_F, STEPS, EVAL_LIMIT, SHOTS, OUT, DATA. Rerunning resumes the annotation.
set -euo pipefail
cd "$(dirname "$0")/.."
TF=${TF:-.venv/bin/toolformer}
DATA=${DATA:-../shared/data/gsm8k/gsm8k_train.jsonl}
OUT=${OUT:-runs/out/math}
DOCS=${DOCS:-400}
TAU_F=${TAU_F:-0.5}
STEPS=${STEPS:-60}
EVAL_LIMIT=${EVAL_LIMIT:-100}
SHOTS=${SHOTS:-0}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

"$TF" annotate run "$DATA" --format gsm8k --proposer data --tools Calculator --tau-f-tool "Calculator=$TAU_F" \
  --limit "$DOCS" --out "$OUT/augmented"
"$TF" train "$OUT/augmented" --out "$OUT/model" --lora --max-steps "$STEPS" --mix-ratio 0.5 \
  --eval-steps "$(( STEPS < 20 ? STEPS : 20 ))" --save-steps "$(( STEPS < 20 ? STEPS : 20 ))" --resume
"$TF" eval "$OUT/model" --suite math --limit "$EVAL_LIMIT" --shots "$SHOTS" --baseline smollm2-135m-instruct \
  --out "$OUT/eval"
echo "report: $OUT/eval/report.md"
