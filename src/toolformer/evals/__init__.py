"""Evaluate like the paper: math, LAMA facts, QA, temporal and perplexity suites, in modes tools / disabled / baseline.

Also: a no-tool suite (prompts where any call is wrong), each dataset's tool ceiling (what its tool's output can
give, no model), tool choice per tool (paper Table 10) and perplexity against the baseline (Table 8).
`toolformer eval MODEL --suite math --out DIR` (or `--suite all`) on the command line; in Python:

    from toolformer.evals import EvalConfig, evaluate, write_outputs
    results = evaluate(EvalConfig(model="smollm2-135m-instruct", suite="math", shots=4, limit=100))
    write_outputs(results, "eval-out")

Importing this package does not import torch.
"""

from toolformer.evals.config import EvalConfig
from toolformer.evals.evaluate import evaluate
from toolformer.evals.report import write_outputs
from toolformer.evals.results import EvalResults

__all__ = ["EvalConfig", "EvalResults", "evaluate", "write_outputs"]
