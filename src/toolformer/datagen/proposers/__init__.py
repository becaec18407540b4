"""Who proposes candidate calls for the Sample step: rules per tool, calls already in the data, the LM's samples.

`base` holds their shared interface (`Proposer`) and `dedupe`; `rules`, `data` and `lm` the three proposers
(`lm` samples on the transformers KV cache of `kvcache` or with the vLLM engine of `vllm_engine`); `user` loads the
user's own (`--proposer mypkg.mod:propose`).
`datagen.sample` builds the ones `--proposer` names.
"""
