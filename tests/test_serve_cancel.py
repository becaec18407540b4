"""The server sheds dead work: a client that goes away (streamed or not) frees its slot and its rows at once, every
prompt of a completions request counts against the key's limit, a timed-out request leaves nothing queued, a bad
seed is a 400, and an API key guards /metrics and the playground's own calls.

`SlowBackend` writes one token per row every few ms and records how far each row got, so a test can tell a batch
that was cut short from one that ran to its end.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import shutil
import subprocess
import threading
import time
from importlib import resources
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from fakes import PacedLM
from serve_helpers import MODEL, choose, running_server, scripted_backend, wait_for
from toolformer.runtime.decode import DecodeConfig, Event, Generation
from toolformer.runtime.engine import Toolformer
from toolformer.serve.app import create_app
from toolformer.serve.backend import ToolformerBackend
from toolformer.serve.batcher import Batcher, Cancelled
from toolformer.serve.config import ServeConfig
from toolformer.tools import ToolRegistry, load_tools


class SlowBackend:
    """Each row writes "x" every `delay` s for `max_new_tokens` steps; with `drops_rows`, a row flagged by
    `cancelled(row)` stops. `written[b][row]` is how many tokens row `row` of batch `b` wrote (updated live)."""

    name, kind, tokenizer, context_length = MODEL, "fake", None, None

    def __init__(self, delay: float = 0.01, drops_rows: bool = True, max_batch: int = 8) -> None:
        self.delay = delay
        self.drops_rows = drops_rows
        self.max_batch = max_batch
        self.tools = ToolRegistry()
        self.written: list[list[int]] = []
        self.started = threading.Event()

    def generate(self, prompts, config, on_event=None, cancelled=None):
        if cancelled is not None:
            assert self.drops_rows, "the batcher must not pass `cancelled` to a backend that cannot drop rows"
        written = [0] * len(prompts)
        self.written.append(written)
        self.started.set()
        live = list(range(len(prompts)))
        for _ in range(config.max_new_tokens):
            time.sleep(self.delay)
            live = [i for i in live if cancelled is None or not cancelled(i)]
            if not live:
                break
            for i in live:
                written[i] += 1
                if on_event is not None:
                    on_event(Event("text", i, "x"))
        return [Generation(p, "x" * n, [], "length", n, 0, 1, 0.0) for p, n in zip(prompts, written)]


def _post_until_admitted(url: str, body: dict[str, Any], seconds: float = 3.0) -> httpx.Response:
    """Post until the answer is not a 429 (the server may need a moment to notice a client left)."""
    deadline = time.monotonic() + seconds
    while True:
        response = httpx.post(f"{url}/v1/completions", json=body, timeout=30)
        if response.status_code != 429 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------------------------
# A client that goes away


@pytest.mark.parametrize("drops_rows", [True, False], ids=["backend-drops-rows", "batch-stops"])
def test_a_non_streaming_client_that_disconnects_frees_its_slot_and_stops_its_rows(drops_rows):
    slow = SlowBackend(delay=0.01, drops_rows=drops_rows)
    app = create_app(slow, ServeConfig(max_concurrency_per_key=1, batch_wait_ms=0))
    body = {"model": MODEL, "prompt": "go", "max_tokens": 1000}  # 10 s of decoding if nothing stops it
    with running_server(app) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/completions", json=body, timeout=httpx.Timeout(30, read=0.5))
        # The dropped client's slot is free at once (the first request alone would hold it for 10 s).
        second = _post_until_admitted(url, {**body, "max_tokens": 3})
        assert second.status_code == 200, second.text
        assert second.json()["choices"][0]["text"] == "xxx"
    assert slow.written[0][0] < 400  # the first request's row left its batch soon after its client did


def test_a_streaming_client_that_disconnects_frees_its_slot_and_stops_its_rows():
    slow = SlowBackend(delay=0.01)
    app = create_app(slow, ServeConfig(max_concurrency_per_key=1, batch_wait_ms=0))
    body = {"model": MODEL, "prompt": "go", "max_tokens": 1000}
    with running_server(app) as url:
        with httpx.stream("POST", f"{url}/v1/completions", json={**body, "stream": True}, timeout=30) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            assert any(line.startswith("data: {") for line in (next(lines), next(lines)))
        second = _post_until_admitted(url, {**body, "max_tokens": 2})
        assert second.status_code == 200, second.text
    assert slow.written[0][0] < 400


def test_a_started_batch_drops_the_rows_of_a_request_that_went_away():
    slow = SlowBackend(delay=0.005)
    batcher = Batcher(slow, max_batch=4, wait_s=0.2)
    batcher.start()
    try:
        gone = threading.Event()
        config = DecodeConfig(max_new_tokens=300)
        leaving = batcher.submit("leaves", config, cancelled=gone.is_set)
        staying = batcher.submit("stays", config)
        assert slow.started.wait(10)
        time.sleep(0.1)
        gone.set()
        assert staying.result(30).new_tokens == 300  # the other request's row is decoded to its end
        with pytest.raises(Cancelled):
            leaving.result(1)
        assert len(slow.written) == 1 and slow.written[0][0] < 150  # one batch; the leaving row stopped early
    finally:
        batcher.stop()


def test_a_batch_stops_once_every_request_in_it_is_gone_even_if_the_backend_cannot_drop_rows():
    slow = SlowBackend(delay=0.005, drops_rows=False)
    batcher = Batcher(slow, max_batch=4, wait_s=0.2)
    batcher.start()
    try:
        gone = threading.Event()
        config = DecodeConfig(max_new_tokens=1000)
        futures = [batcher.submit(p, config, cancelled=gone.is_set) for p in ("a", "b")]
        assert slow.started.wait(10)
        time.sleep(0.1)
        gone.set()
        for future in futures:
            with pytest.raises(Cancelled):
                future.result(5)
        assert max(slow.written[0]) < 500
        assert batcher.submit("next", DecodeConfig(max_new_tokens=2)).result(5).text == "xx"
    finally:
        batcher.stop()


def test_the_real_decoder_backend_says_whether_it_can_drop_rows(smol_tokenizer):
    backend = scripted_backend(smol_tokenizer, choose, name=MODEL)
    seen: dict[str, Any] = {}

    class Droppable:
        name, model, tokenizer, tools = MODEL, None, None, ToolRegistry()

        def generate(self, prompts, config, on_event=None, cancelled=None):
            seen["cancelled"] = cancelled
            return []

    assert (
        backend.drops_rows is True
    )  # `Toolformer.generate` takes `cancelled=`: the decoder drops single rows
    droppable = ToolformerBackend(Droppable())
    assert droppable.drops_rows is True
    droppable.generate(["p"], DecodeConfig(), None, cancelled=lambda row: True)
    assert seen["cancelled"](0) is True


def test_a_gone_clients_row_leaves_a_batch_of_the_real_decoder_while_the_other_request_completes(
    smol_tokenizer,
):
    stay = " ".join(["ok"] * 200)  # 2 s of decoding: the other client leaves meanwhile
    n_stay = len(smol_tokenizer.encode(stay, add_special_tokens=False))
    model = PacedLM(smol_tokenizer, lambda prompt: stay if "stay" in prompt else " x" * 600, delay=0.01)
    backend = ToolformerBackend(Toolformer(model, smol_tokenizer, load_tools("Calculator"), name=MODEL))
    assert backend.drops_rows
    backend.generate(
        ["warm up"], DecodeConfig(max_new_tokens=1)
    )  # the decoder's per-tokenizer tables, built once
    model.sizes.clear()
    # A static batch starts once both requests are queued (max_batch=2): the staying one is sent first.
    # (Continuous batching: tests/test_serve_continuous.py.)
    app = create_app(backend, ServeConfig(batching="static", max_batch=2, batch_wait_ms=30_000))
    body = {"model": MODEL, "max_tokens": 400}
    with running_server(app) as url, cf.ThreadPoolExecutor(2) as pool:
        staying = pool.submit(
            httpx.post, f"{url}/v1/completions", json={**body, "prompt": "stay"}, timeout=60
        )
        assert wait_for(lambda: app.state.batcher.depth == 1)
        leaving = pool.submit(
            httpx.post,
            f"{url}/v1/completions",
            json={**body, "prompt": "leave"},
            timeout=httpx.Timeout(30, read=1.0),
        )
        with pytest.raises(httpx.ReadTimeout):
            leaving.result()
        reply = staying.result()
    assert reply.status_code == 200, reply.text
    choice = reply.json()["choices"][0]
    assert choice["text"] == stay and choice["finish_reason"] == "stop"
    together = model.sizes.count(2)
    assert model.sizes[0] == 2  # the two requests shared one batch
    assert model.sizes == [2] * together + [1] * (len(model.sizes) - together)  # one row left, for good
    assert together < n_stay  # it left while the staying row was still decoding, which went on alone
    assert len(model.sizes) == n_stay + 1  # to its end (its tokens, then EOS): none of the leaving row's 400


# ---------------------------------------------------------------------------------------------------------------
# Limits count prompts; a timed-out request leaves nothing behind


def test_every_prompt_of_a_completions_request_counts_against_the_key_limit():
    slow = SlowBackend(delay=0.01)
    app = create_app(slow, ServeConfig(max_concurrency_per_key=3, batch_wait_ms=0))
    body = {"model": MODEL, "max_tokens": 2}
    with TestClient(app) as client:
        too_many = client.post("/v1/completions", json={**body, "prompt": ["a", "b", "c", "d"]})
        assert too_many.status_code == 429, too_many.text
        assert (
            too_many.json()["error"]["param"] == "prompt"
            and "4 prompts" in too_many.json()["error"]["message"]
        )
        assert client.post("/v1/completions", json={**body, "prompt": ["a", "b", "c"]}).status_code == 200
    slow = SlowBackend(delay=0.01)
    app = create_app(slow, ServeConfig(max_concurrency_per_key=3, batch_wait_ms=0))
    with running_server(app) as url, cf.ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            httpx.post,
            f"{url}/v1/completions",
            json={**body, "prompt": ["a", "b"], "max_tokens": 300},
            timeout=30,
        )
        assert slow.started.wait(10)  # its 2 prompts are in flight
        over = httpx.post(f"{url}/v1/completions", json={**body, "prompt": ["c", "d"]}, timeout=30)
        assert over.status_code == 429, over.text
        assert (
            httpx.post(f"{url}/v1/completions", json={**body, "prompt": "e"}, timeout=30).status_code == 200
        )
        assert held.result().status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_a_timed_out_completions_request_leaves_no_queued_prompts(stream):
    slow = SlowBackend(delay=0.01, max_batch=2)
    app = create_app(slow, ServeConfig(request_timeout=0.5, max_batch=2, batch_wait_ms=0))
    body = {"model": MODEL, "prompt": [f"p{i}" for i in range(40)], "max_tokens": 500, "stream": stream}
    with TestClient(app) as client:
        response = client.post("/v1/completions", json=body)
        if stream:
            events = [json.loads(x[6:]) for x in response.text.split("\n\n") if x.startswith("data: {")]
            assert events[-1]["error"]["code"] == "timeout"
        else:
            assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
        batcher = app.state.batcher
        assert batcher.depth == 0  # at once: the 38 prompts still queued are gone with their request
        assert wait_for(lambda: batcher.running == 0, 5)  # and the batch it had started stops
        assert sum(map(sum, slow.written)) < 2 * 500


# ---------------------------------------------------------------------------------------------------------------
# Seeds


@pytest.mark.parametrize("seed", [2**64, 2**70, -1, "7", 1.5, True])
def test_a_seed_outside_64_bits_or_not_an_integer_is_a_400(smol_tokenizer, seed):
    backend = scripted_backend(smol_tokenizer, choose, name=MODEL)
    with TestClient(create_app(backend)) as client:
        for route, extra in (
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
            ("/v1/completions", {"prompt": "Hi"}),
        ):
            response = client.post(route, json={"model": MODEL, "seed": seed, "temperature": 0.7, **extra})
            assert response.status_code == 400, response.text
            assert response.json()["error"]["param"] == "seed"


def test_the_largest_seed_still_samples(smol_tokenizer):
    backend = scripted_backend(smol_tokenizer, choose, name=MODEL)
    with TestClient(create_app(backend)) as client:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.7}
        for seed in (0, 2**64 - 1):
            assert client.post("/v1/chat/completions", json={**body, "seed": seed}).status_code == 200


# ---------------------------------------------------------------------------------------------------------------
# API keys: /metrics and the playground


def test_an_api_key_guards_metrics_but_not_health_or_the_playground_page():
    app = create_app(SlowBackend(), ServeConfig(api_keys=["sk-test"]))
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        scraped = client.get("/metrics", headers={"Authorization": "Bearer sk-test"})
        assert scraped.status_code == 200 and "toolformer_requests_total" in scraped.text
        assert client.get("/health").status_code == 200
        assert client.get("/").status_code == 200
        assert client.get("/v1/models").status_code == 401


_PAGE_HARNESS = r"""
// Runs the playground's script against a minimal DOM, then the actions in argv[3]; prints what it stored and sent.
const fs = require("fs"), vm = require("vm");
const script = fs.readFileSync(process.argv[2], "utf8");
const [stored, actions] = JSON.parse(process.argv[3]);
const elements = {};
function node(id) {
  const listeners = {};
  return { id, value: "", checked: false, textContent: "", dataset: {}, children: [],
    addEventListener(type, fn) { (listeners[type] = listeners[type] || []).push(fn); },
    fire(type) { for (const fn of listeners[type] || []) fn({ preventDefault() {} }); },
    append(...c) { this.children.push(...c); }, replaceChildren(...c) { this.children = c; },
    focus() {}, requestSubmit() {} };
}
const document = { getElementById: (id) => elements[id] || (elements[id] = node(id)), createElement: () => node("") };
const store = new Map(stored);
const localStorage = { getItem: (k) => (store.has(k) ? store.get(k) : null),
  setItem: (k, v) => store.set(k, String(v)), removeItem: (k) => store.delete(k) };
const sent = [];
async function fetch(url, opts) {
  sent.push([url, (opts && opts.headers && opts.headers.Authorization) || null]);
  return { ok: true, json: async () => ({ data: [{ id: "m", backend: "fake", tools: [] }] }) };
}
const context = vm.createContext({ document, window: { localStorage }, localStorage, fetch, console, TextDecoder });
vm.runInContext(script, context);
for (const [id, prop, value, event] of actions) { document.getElementById(id)[prop] = value; document.getElementById(id).fire(event); }
setTimeout(() => console.log(JSON.stringify({ stored: [...store], sent,
  key: elements["api-key"].value, remember: elements["remember-key"].checked })), 50);
"""


def _page(tmp_path, stored: list, actions: list) -> dict[str, Any]:
    html = resources.files("toolformer.serve").joinpath("static/playground.html").read_text("utf-8")
    script = html.split("<script>", 1)[1].split("</script>", 1)[0]
    (tmp_path / "page.js").write_text(script, encoding="utf-8")
    (tmp_path / "harness.js").write_text(_PAGE_HARNESS, encoding="utf-8")
    out = subprocess.run(
        ["node", str(tmp_path / "harness.js"), str(tmp_path / "page.js"), json.dumps([stored, actions])],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the playground's script")
def test_the_playground_keeps_the_key_for_the_page_only_unless_remember_is_ticked(tmp_path):
    store = "toolformer-api-key"
    typed = _page(tmp_path, [], [["api-key", "value", "sk-1", "change"]])
    assert typed["stored"] == []  # typed, not remembered: nothing outlives the page
    assert typed["sent"][-1] == ["/v1/models", "Bearer sk-1"]  # the page's own calls carry the key
    remembered = _page(
        tmp_path, [], [["api-key", "value", "sk-1", "change"], ["remember-key", "checked", True, "change"]]
    )
    assert remembered["stored"] == [[store, "sk-1"]]
    reopened = _page(tmp_path, [[store, "sk-2"]], [])
    assert reopened["key"] == "sk-2" and reopened["remember"] is True
    assert reopened["sent"][0] == ["/v1/models", "Bearer sk-2"]
    forgotten = _page(tmp_path, [[store, "sk-2"]], [["remember-key", "checked", False, "change"]])
    assert forgotten["stored"] == []
