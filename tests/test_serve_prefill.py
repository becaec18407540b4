"""Shared-prefix prefill (runtime.decode): a batch whose prompts open alike, as every chat request to the server does
(system prompt and example turns), encodes that prefix once; the tokens it then writes are the ones it writes alone."""

from __future__ import annotations

from toolformer.runtime.decode import MIN_SHARED_PREFIX, DecodeConfig, _shared_prefix_len, generate


def test_a_shared_prefix_is_encoded_once_and_changes_no_token(tiny_lm):
    model, tok = tiny_lm
    prefix = "You are a careful assistant who answers briefly and uses tools when they help. " * 2
    prompts = [prefix + "Q: one", prefix + "Q: a much longer second question here", prefix + "Q: 3?"]
    config = DecodeConfig(max_new_tokens=8)
    alone = [generate(model, tok, [p], None, config)[0] for p in prompts]
    shapes = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        together = generate(model, tok, prompts, None, config)
    finally:
        hook.remove()
    assert [g.token_ids for g in together] == [g.token_ids for g in alone]
    assert [g.prompt_tokens for g in together] == [g.prompt_tokens for g in alone]
    shared = len(tok.encode(prefix + "Q:", add_special_tokens=False)) - 1
    assert shapes[0] == (1, shapes[0][1]) and shapes[0][1] >= shared - 1  # the prefix, once
    assert shapes[1][0] == 3 and shapes[1][1] < 12  # then only what differs


def test_prefixes_too_short_to_share_are_not_split_off():
    assert _shared_prefix_len([[1, 2, 3], [1, 2, 4]]) == 0
    long = list(range(MIN_SHARED_PREFIX + 5))
    assert _shared_prefix_len([long + [7], long + [8, 9]]) == len(long)
    assert _shared_prefix_len([long, long]) == len(long) - 1  # each row keeps a token to feed
