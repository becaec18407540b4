"""Evaluate like the paper: math, LAMA facts, QA, temporal and perplexity suites, in modes tools / disabled / baseline.

`toolformer eval MODEL --suite math --out DIR` on the command line; in Python:

    from toolformer.evals import EvalConfig, evaluate, write_outputs
    results = evaluate(EvalConfig(model="smollm2-135m-instruct", suite="math", shots=4, limit=100))
    write_outputs(results, "eval-out")

Importing this package does not import torch.
"""

from toolformer.evals.config import EvalConfig
from toolformer.evals.evaluate import EvalResults, evaluate
from toolformer.evals.report import write_outputs

__all__ = ["EvalConfig", "EvalResults", "evaluate", "write_outputs"]
