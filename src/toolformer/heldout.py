"""Records held out of training by rule: the GSM8K dev slice carved out of GSM8K train.

GSM8K has no dev split of its own and its test set is not here, so the math suite's `gsm8k` dev set is a slice
of GSM8K *train*: a problem is in it when the SHA-256 of its id, read as an integer, is divisible by
`GSM8K_DEV_MODULUS` (about 1 in 20). Every training-data builder skips it (`is_gsm8k_dev`), and the training
mixture drops any row made from it, so the slice is never trained on.
"""

from __future__ import annotations

import hashlib

GSM8K_DEV_MODULUS = 20


def is_gsm8k_dev(record_id: str) -> bool:
    """Whether the GSM8K train problem `record_id` (e.g. "gsm8k-train-00020") is in the dev slice."""
    return int(hashlib.sha256(record_id.encode("utf-8")).hexdigest(), 16) % GSM8K_DEV_MODULUS == 0
