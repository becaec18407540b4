#!/usr/bin/env bash
# The arithmetic recipe on a CPU, end to end on the embedded model:
#   GSM8K training problems as short "Question: …\nAnswer: 72" texts, each with one Calculator call composed from
#   its solution's <<48/2=24>> steps (data proposer, --format gsm8k-answer) kept by the paper's loss filter (tau_f)
#   -> fine-tune (LoRA, merged; loss from the call on) -> evaluate zero-shot on the ASDiv/SVAMP/MAWPS dev files in
#   the three modes (tools, disabled, baseline = the untrained model).
# No test set is read: GSM8K train is the corpus, the dev files are the only evaluation data.
# Knobs (environment): DOCS, FORMAT, TAU_F, MIX, LOSS, STEPS, LR, BASELINE (e.g. smollm2-135m-instruct), EVAL_LIMIT, SHOTS, OUT, DATA. Rerunning resumes the annotation.
set -euo pipefail
cd "$(dirname "$0")/.."
TF=${TF:-.venv/bin/toolformer}
DATA=${DATA:-../shared/data/gsm8k/gsm8k_train.jsonl}
OUT=${OUT:-runs/out/math}
DOCS=${DOCS:-2000}
FORMAT=${FORMAT:-gsm8k-answer}
MIX=${MIX:-0.1}
LOSS=${LOSS:-after-call}
TAU_F=${TAU_F:-0.5}
STEPS=${STEPS:-100}
LR=${LR:-4e-4}
BASELINE=${BASELINE:-}
EVAL_LIMIT=${EVAL_LIMIT:-300}
SHOTS=${SHOTS:-0}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

"$TF" annotate run "$DATA" --format "$FORMAT" --proposer data --tools Calculator --tau-f-tool "Calculator=$TAU_F" \
  --limit "$DOCS" --out "$OUT/augmented"
"$TF" train "$OUT/augmented" --out "$OUT/model" --lora --lr "$LR" --max-steps "$STEPS" --max-dev-texts 64 --mix-ratio "$MIX" --loss "$LOSS" \
  --eval-steps "$(( STEPS < 25 ? STEPS : 25 ))" --save-steps "$(( STEPS < 25 ? STEPS : 25 ))" --resume
"$TF" eval "$OUT/model" --suite math --limit "$EVAL_LIMIT" --shots "$SHOTS" --datasets asdiv,svamp,mawps \
  ${BASELINE:+--baseline "$BASELINE"} --out "$OUT/eval"
echo "report: $OUT/eval/report.md"
