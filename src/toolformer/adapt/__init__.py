"""Task adaptation (`toolformer adapt`): classification, NER, extractive QA and seq2seq on a base LM, LoRA or full.

Importing the package is cheap: torch and transformers are imported when a run starts.
"""

from toolformer.adapt.config import AdaptConfig
from toolformer.adapt.trainer import adapt

__all__ = ["AdaptConfig", "adapt"]
