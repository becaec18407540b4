"""How close is a checkpoint to writing the call? For each dev text with a Calculator call (calc.jsonl, split dev),
cut just before the token holding the call's "[" and score that token: its rank among the 49,152 next tokens and
its probability, next to the rank of " the" (the model's favourite token). Also the mean loss of the call's own
tokens ("[Calculator(... ) → r]") given the text before it. Usage: python probe.py MODEL_DIR [MODEL_DIR ...]"""

import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from toolformer.calls import find_calls

CORPUS = "runs/out/pretrain-study/corpus/calc.jsonl"
with open(CORPUS, encoding="utf-8") as fh:
    rows = [json.loads(line) for line in fh]
dev = [r["text"] for r in rows if r["split"] == "dev"]
for folder in sys.argv[1:]:
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    the = tok(" the", add_special_tokens=False)["input_ids"][0]
    ranks, probs, the_ranks, call_losses = [], [], [], []
    for text in dev:
        span = next(s for s in find_calls(text, include_incomplete=False) if s.call.name == "Calculator")
        enc = tok(text[: span.end], add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        first = next(i for i, (a, b) in enumerate(offsets) if b > span.start)  # the token holding "["
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        logp = logits.log_softmax(-1)
        at = logp[first - 1]
        ranks.append(int((at > at[ids[first]]).sum()) + 1)
        probs.append(float(at[ids[first]].exp()))
        the_ranks.append(int((at > at[the]).sum()) + 1)
        targets = torch.tensor(ids[first:])
        call_losses.append(float(-logp[first - 1 : len(ids) - 1].gather(1, targets[:, None]).mean()))
    ranks.sort()
    print(
        json.dumps(
            {
                "model": folder,
                "texts": len(dev),
                "call_token_median_rank": ranks[len(ranks) // 2],
                "call_token_top10_share": sum(r <= 10 for r in ranks) / len(ranks),
                "call_token_mean_prob": sum(probs) / len(probs),
                "the_median_rank": sorted(the_ranks)[len(the_ranks) // 2],
                "call_tokens_mean_loss": sum(call_losses) / len(call_losses),
            }
        )
    )
