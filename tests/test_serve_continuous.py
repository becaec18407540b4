"""Continuous batching in the server (`serve.continuous`): a request arriving mid-decode joins at the next step."""

from __future__ import annotations

import concurrent.futures as cf

import httpx
import pytest

from fakes import PacedLM
from serve_helpers import MODEL, running_server, wait_for
from toolformer.errors import ConfigError
from toolformer.runtime.decode import DecodeConfig
from toolformer.runtime.engine import Toolformer
from toolformer.serve.app import create_app
from toolformer.serve.backend import ToolformerBackend
from toolformer.serve.batcher import Batcher
from toolformer.serve.config import ServeConfig
from toolformer.serve.continuous import ContinuousBatcher
from toolformer.tools import load_tools

STAY = " ".join(["ok"] * 150)  # 1.5 s of decoding at 10 ms a step


def _paced(tok, scripts: dict[str, str]) -> tuple[PacedLM, ToolformerBackend]:
    def choose(prompt: str) -> str:
        return next(text for key, text in scripts.items() if key in prompt)

    model = PacedLM(tok, choose, delay=0.01)
    backend = ToolformerBackend(Toolformer(model, tok, load_tools("Calculator"), name=MODEL))
    backend.generate(["warm up stay"], DecodeConfig(max_new_tokens=1))  # per-tokenizer tables, built once
    model.sizes.clear()
    return model, backend


def test_a_request_arriving_mid_decode_joins_and_ends_before_the_running_one(smol_tokenizer):
    model, backend = _paced(smol_tokenizer, {"stay": STAY, "late": " hi there"})
    app = create_app(backend, ServeConfig())
    assert isinstance(app.state.batcher, ContinuousBatcher)
    body = {"model": MODEL, "max_tokens": 300}
    with running_server(app) as url, cf.ThreadPoolExecutor(2) as pool:
        staying = pool.submit(
            httpx.post, f"{url}/v1/completions", json={**body, "prompt": "stay"}, timeout=60
        )
        assert wait_for(lambda: len(model.sizes) >= 10)  # the first request is decoding
        late = httpx.post(f"{url}/v1/completions", json={**body, "prompt": "late"}, timeout=60)
        assert not staying.done()  # a static batch would have made it wait for the running one
        assert late.json()["choices"][0]["text"] == " hi there"
        reply = staying.result()
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert reply.json()["choices"][0]["text"] == STAY
    joined = model.sizes.index(2)
    assert model.sizes[joined - 1] == 1  # the late prompt was prefilled alone, then decoded beside the other
    assert set(model.sizes[joined:]) <= {1, 2} and model.sizes[-1] == 1  # it left; the first went on alone
    series = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#"))
    assert float(series["toolformer_time_to_first_token_seconds_count"]) == 2
    assert float(series["toolformer_generation_tokens_per_second_count"]) == 2
    assert float(series['toolformer_batch_occupancy_bucket{le="2.0"}']) > float(
        series['toolformer_batch_occupancy_bucket{le="1.0"}']
    )  # some steps decoded both rows
    assert float(series["toolformer_slots"]) == 32 and "toolformer_queue_depth" in series


def test_a_gone_clients_row_leaves_the_running_decode(smol_tokenizer):
    model, backend = _paced(smol_tokenizer, {"stay": STAY, "leave": " x" * 600})
    app = create_app(backend, ServeConfig())
    body = {"model": MODEL, "max_tokens": 400}
    with running_server(app) as url, cf.ThreadPoolExecutor(2) as pool:
        staying = pool.submit(
            httpx.post, f"{url}/v1/completions", json={**body, "prompt": "stay"}, timeout=60
        )
        assert wait_for(lambda: len(model.sizes) >= 5)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{url}/v1/completions",
                json={**body, "prompt": "leave"},
                timeout=httpx.Timeout(30, read=0.5),
            )
        reply = staying.result()
    assert reply.json()["choices"][0]["text"] == STAY
    together = model.sizes.count(2)
    assert 0 < together < 100  # it joined, then left long before its 400 tokens
    n_stay = len(smol_tokenizer.encode(STAY, add_special_tokens=False))
    # Stay's prefill and its steps to EOS, plus the leaving row's own prefill: the steps it shared cost no pass.
    assert len(model.sizes) == n_stay + 2


def test_batching_static_and_models_without_a_step_decoder_keep_the_static_batcher(smol_tokenizer):
    _, backend = _paced(smol_tokenizer, {"": " a"})
    assert isinstance(create_app(backend, ServeConfig(batching="static")).state.batcher, Batcher)
    backend.kind = "llamacpp"  # auto: llama.cpp keeps static batches; asked for, it has no step decoder here
    assert isinstance(create_app(backend, ServeConfig()).state.batcher, Batcher)
    assert isinstance(create_app(backend, ServeConfig(batching="continuous")).state.batcher, Batcher)
    with pytest.raises(ConfigError, match="batching"):
        ServeConfig(batching="dynamic")
    with pytest.raises(ConfigError, match="parallel"):
        ServeConfig(parallel=0)


def test_parallel_caps_the_rows_decoding_at_once(smol_tokenizer):
    model, backend = _paced(smol_tokenizer, {"p": " a b c d e f"})
    batcher = ContinuousBatcher(backend, backend.decoder(2), parallel=2, max_batch=8)
    batcher.start()
    try:
        futures = [batcher.submit(f"p{i}", DecodeConfig(max_new_tokens=20)) for i in range(5)]
        assert [f.result(20).text for f in futures] == [" a b c d e f"] * 5
    finally:
        batcher.stop()
    assert max(model.sizes) == 2  # never more than two rows in a pass, prefills included


def test_static_batches_report_time_to_first_token_and_tokens_per_second_too(smol_tokenizer):
    _, backend = _paced(smol_tokenizer, {"": " a b c"})
    app = create_app(backend, ServeConfig(batching="static", batch_wait_ms=0))
    with running_server(app) as url:
        reply = httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "p", "max_tokens": 8})
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert reply.json()["choices"][0]["text"] == " a b c"
    series = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#"))
    assert float(series["toolformer_time_to_first_token_seconds_count"]) == 1
    assert float(series["toolformer_generation_tokens_per_second_count"]) == 1
    assert float(series["toolformer_slots"]) == ServeConfig().max_batch
