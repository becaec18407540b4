"""Tool-executing decoding on llama.cpp (llama-cpp-python): `runtime.decode.generate`'s calls and results, on a GGUF.

The model is evaluated with llama-cpp-python's low-level `Llama.eval`, and the next token is chosen from the last
position's logits by the transformers backend's own rules (`runtime.choose`: greedy/top-p sampling, `disabled` and
`max_calls` masking every token that contains "[", call names held to the loaded tools', the `trigger_top_k`
rule) and taken by the same row logic (`runtime.rows`: `force_arrow`, stop strings, streaming). When a call's `)`
or `→` is written the tool runs, and its result plus "]" is evaluated on the same KV cache as one chunk: the
prefix is never re-encoded. Prompts run one after another on one llama.cpp context; a prompt that shares a
prefix with the one before (a few-shot prompt) reuses that part of the cache. With quantised weights llama.cpp's
arithmetic depends a little on how many tokens go in one batch, so a greedy near-tie can break differently when
part of a prompt comes from the cache (seen once in four benchmark prompts on the Q4_1 SmolLM2).

Differences from the transformers backend, by design: the tokenizer is llama.cpp's (read from the GGUF, so
`toolformer ask --model x.gguf` never imports torch); the end of generation is llama.cpp's `is_eog` set; sampling
draws from numpy's generator, so a seeded sample differs from torch's; text past the context size ends the row
with finish_reason "length".
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolformer.errors import ConfigError, ModelNotFoundError, require
from toolformer.runtime.callnames import VocabTexts
from toolformer.runtime.choose import CallTokens, NumpyLogits, TokenChooser
from toolformer.runtime.results import DecodeConfig, Event, Generation
from toolformer.runtime.rows import Row, RowSetup
from toolformer.tools import ToolRegistry

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "transformers", "llamacpp")
DEFAULT_CTX = 4096


def llamacpp_available() -> bool:
    """Whether llama-cpp-python can be imported (without importing it)."""
    return importlib.util.find_spec("llama_cpp") is not None


class LlamaCppTokenizer:
    """The GGUF's own tokenizer behind the few methods the runtime uses from a transformers tokenizer.

    Token pieces are read once at load (a few thousand ctypes calls per 10k tokens), so `decode` is a join.
    """

    def __init__(self, llm: Any, chat_template: str | None = None) -> None:
        import llama_cpp

        self._llm = llm
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._vocab = vocab
        self.vocab_size = int(llama_cpp.llama_vocab_n_tokens(vocab))
        self.pieces = [self._piece(i, special=False) for i in range(self.vocab_size)]
        self.eog_ids = {i for i in range(self.vocab_size) if llama_cpp.llama_vocab_is_eog(vocab, i)}
        eos = int(llama_cpp.llama_vocab_eos(vocab))
        bos = int(llama_cpp.llama_vocab_bos(vocab))
        self.eos_token_id = eos if eos >= 0 else None
        self.bos_token_id = bos if bos >= 0 else None
        pad = int(llama_cpp.llama_vocab_pad(vocab))
        self.pad_token_id = pad if pad >= 0 else self.eos_token_id
        self.chat_template = chat_template
        self.eos_token = (
            self.convert_ids_to_tokens(self.eos_token_id) if self.eos_token_id is not None else None
        )
        self.bos_token = (
            self.convert_ids_to_tokens(self.bos_token_id) if self.bos_token_id is not None else None
        )

    def _piece(self, token: int, special: bool) -> bytes:
        import llama_cpp

        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`; special-token text such as `<|im_start|>` becomes its one id, as in transformers."""
        if not text:
            return []
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=True))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        if skip_special_tokens:
            data = b"".join(self.pieces[i] for i in ids)
        else:
            data = b"".join(self._piece(int(i), special=True) for i in ids)
        return data.decode("utf-8", errors="replace")

    def convert_ids_to_tokens(self, token: int) -> str:
        return self._piece(int(token), special=True).decode("utf-8", errors="replace")

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        tokenize: bool = False,
        add_generation_prompt: bool = True,
    ) -> str:
        """Render `messages` with the GGUF's chat template (Jinja2 in a sandbox, as transformers renders it)."""
        if not self.chat_template:
            raise ConfigError("this GGUF has no tokenizer.chat_template")
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

        def raise_exception(message: str) -> None:
            raise ConfigError(f"chat template: {message}")

        env.globals["raise_exception"] = raise_exception
        text = env.from_string(self.chat_template).render(
            messages=messages,
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token or "",
            eos_token=self.eos_token or "",
        )
        return self.encode(text) if tokenize else text


class LlamaCppModel:
    """A GGUF model loaded in llama.cpp: one context, evaluated token chunk by token chunk, logits of the last.

    `n_threads` (decoding and prompt evaluation) defaults to $OMP_NUM_THREADS when set, else llama.cpp's own
    defaults; `f32_kv` keeps the KV cache in float32 (llama.cpp's default is f16) for exact comparisons.
    """

    backend = "llamacpp"  # what `Toolformer` dispatches on, without importing this module

    def __init__(
        self,
        path: str | Path,
        n_ctx: int = DEFAULT_CTX,
        n_threads: int | None = None,
        f32_kv: bool = False,
        verbose: bool = False,
    ) -> None:
        require("llama_cpp", "llamacpp")
        import llama_cpp

        path = Path(path)
        if not path.is_file():
            raise ModelNotFoundError(f"model={str(path)!r}: no such GGUF file")
        if n_threads is None and os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
            # The thread budget torch honours: llama.cpp's own default batch threads (every core) crawl when
            # another job holds a core, since its threads wait for each other at every layer.
            n_threads = int(os.environ["OMP_NUM_THREADS"]) or None
        kwargs: dict[str, Any] = {}
        if f32_kv:  # exact comparisons with a float32 model: the default f16 cache rounds keys and values
            kwargs["type_k"] = kwargs["type_v"] = llama_cpp.GGML_TYPE_F32
        self.path = path
        try:
            with _extra_buffer_types(use_extra_buffer_types()):
                self.llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    logits_all=False,
                    verbose=verbose,
                    **kwargs,
                )
        except ValueError as exc:  # llama-cpp-python's "Failed to load model from file": a cut or odd GGUF
            raise ModelNotFoundError(f"model {str(path)!r}: llama.cpp cannot load it ({exc})") from None
        self.n_ctx = int(self.llm.n_ctx())
        self.metadata = dict(self.llm.metadata)
        self.name = str(path)
        self.tokenizer = LlamaCppTokenizer(self.llm, self.metadata.get("tokenizer.chat_template"))
        self.n_vocab = int(self.llm.n_vocab())
        self._call_tokens: CallTokens | None = None
        self._vocab_texts: VocabTexts | None = None
        self._ll_tokenizer: Any = None

    @property
    def call_tokens(self) -> CallTokens:
        """The call tokens ('['-holding, call-opening) of this model's vocabulary, built on first use."""
        if self._call_tokens is None:
            pieces = self.tokenizer.pieces
            self._call_tokens = CallTokens.from_texts(
                {i: p.decode("utf-8", errors="replace") for i, p in enumerate(pieces) if b"[" in p}
            )
        return self._call_tokens

    @property
    def vocab_texts(self) -> VocabTexts:
        """Every token's text (for the call-name constraint), built on first use."""
        if self._vocab_texts is None:
            self._vocab_texts = VocabTexts(
                [p.decode("utf-8", errors="replace") for p in self.tokenizer.pieces]
            )
        return self._vocab_texts

    @property
    def ll_tokenizer(self) -> Any:
        """llguidance's tokenizer of this vocabulary (for constrained JSON tool calls), built on first use."""
        if self._ll_tokenizer is None:
            from toolformer.runtime.grammar import llamacpp_ll_tokenizer

            self._ll_tokenizer = llamacpp_ll_tokenizer(self.tokenizer._vocab, self.tokenizer.eog_ids)
        return self._ll_tokenizer

    @property
    def n_tokens(self) -> int:
        """Tokens the KV cache holds (llama-cpp-python's own count, so its other calls stay in step)."""
        return int(self.llm.n_tokens)

    def start(self, prompt_ids: Sequence[int]) -> None:
        """Evaluate a prompt, keeping the longest prefix it shares with what the cache holds."""
        held = np.asarray(self.llm.input_ids[: self.llm.n_tokens])
        ids = np.asarray(prompt_ids, dtype=held.dtype)
        n = min(len(held), len(ids))
        mismatch = np.flatnonzero(held[:n] != ids[:n])
        keep = int(mismatch[0]) if mismatch.size else n
        keep = min(keep, len(prompt_ids) - 1)  # the last prompt token is evaluated again for its logits
        self.llm.n_tokens = keep  # Llama.eval drops the cache from here on
        self.feed(prompt_ids[keep:])

    def reset(self) -> None:
        """Forget the cache: the next prompt is evaluated whole."""
        self.llm.n_tokens = 0

    def feed(self, ids: Sequence[int]) -> None:
        """Append `ids` to the KV cache (one llama_decode per n_batch tokens)."""
        if ids:
            self.llm.eval(list(ids))

    def logits(self) -> np.ndarray:
        """A float32 copy of the logits after the last evaluated token."""
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def all_logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits at every position of `ids` from a fresh cache, shape (len(ids), n_vocab); for parity checks."""
        import llama_cpp

        self.reset()
        rows = []
        for t in ids:  # one token per step: the default context keeps only the last position's logits
            self.feed([t])
            rows.append(
                np.ctypeslib.as_array(
                    llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,)
                ).copy()
            )
        return np.stack(rows)

    def close(self) -> None:
        self.llm.close()


def resolve_gguf(spec: str) -> Path:
    """The GGUF file behind a model spec: a `.gguf` path, or a built-in alias's file; ConfigError otherwise."""
    from toolformer.models.gguf import _obtain_gguf
    from toolformer.models.resolve import _resolve
    from toolformer.paths import toolformer_home

    source = _resolve(spec)
    if source.kind == "gguf" and source.path is not None:
        return source.path
    if source.kind == "alias" and source.alias is not None:
        if source.path is not None:
            return source.path
        # An alias assembled from chunk wheels is put together once, next to the converted caches.
        target = toolformer_home() / "gguf" / source.alias.gguf_file
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            built = _obtain_gguf(source, target.parent)
            if built != target:
                os.replace(built, target)
        return target
    raise ConfigError(
        f"model={spec!r} is a {source.kind} model; the llama.cpp backend runs GGUF files "
        f"(make one with: toolformer export {spec} --format gguf --out model.gguf)"
    )


def choose_backend(spec: str, backend: str = "auto") -> str:
    """'llamacpp' or 'transformers' for model `spec`: auto picks llama.cpp for a .gguf path when it is installed."""
    backend = (backend or "auto").strip().lower()
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    is_gguf_file = str(spec).lower().endswith(".gguf") and Path(str(spec)).expanduser().is_file()
    return "llamacpp" if is_gguf_file and llamacpp_available() else "transformers"


def load_llamacpp(
    spec: str, n_ctx: int = DEFAULT_CTX, n_threads: int | None = None, f32_kv: bool = False
) -> LlamaCppModel:
    """Load a `.gguf` path or built-in alias into llama.cpp."""
    model = LlamaCppModel(resolve_gguf(spec), n_ctx=n_ctx, n_threads=n_threads, f32_kv=f32_kv)
    model.name = str(spec)
    return model


def _generate_one(
    model: LlamaCppModel,
    row: Row,
    tools: ToolRegistry,
    choose: TokenChooser,
    cancelled: Callable[[int], bool] | None = None,
) -> Generation:
    """Decode one row to its end: the tool runs in this thread, and its result goes in with the call's tokens."""
    started = time.perf_counter()
    if len(row.prompt_ids) >= model.n_ctx:
        raise ConfigError(
            f"prompt has {len(row.prompt_ids)} tokens, more than the context size n_ctx={model.n_ctx}"
        )
    if cancelled is None or not cancelled(row.index):  # a prompt whose client already left is never evaluated
        model.start(row.prompt_ids)
    while row.finish is None:
        if cancelled is not None and cancelled(row.index):  # checked between tokens
            row.end("cancelled")
            break
        feed, call = row.accept(choose(model.logits(), row))
        if row.finish is not None:
            break
        if call is not None:  # the call's tokens and its result go in as one chunk
            feed = feed + row.add_result(*call, tools.run(call[0], choose.config.tool_timeout))
        if model.n_tokens + len(feed) > model.n_ctx:
            row.end("length")
            break
        model.feed(feed)
    return row.generation(time.perf_counter() - started)


def llama_chooser(
    model: LlamaCppModel, tools: ToolRegistry, config: DecodeConfig, rng: np.random.Generator
) -> TokenChooser:
    """The token chooser for rows decoding under `config` with `tools` on `model` (sampling draws from `rng`)."""
    grammar = None
    if config.grammar is not None:  # JSON tool calls held to the request's functions (`runtime.grammar`)
        from toolformer.runtime.grammar import GrammarMask, vocab_rules

        ll = None if config.grammar.mode == "none" else model.ll_tokenizer
        rules = vocab_rules(model.vocab_texts)
        grammar = GrammarMask(config.grammar, ll, rules, model.tokenizer.eog_ids, config.max_new_tokens)
    names = model.vocab_texts.call_names(tools.names())
    return TokenChooser(config, model.call_tokens, names, NumpyLogits(config, rng), grammar)


def generate(
    model: LlamaCppModel,
    prompts: str | Sequence[str],
    tools: ToolRegistry | None = None,
    config: DecodeConfig | None = None,
    on_event: Callable[[Event], None] | None = None,
    cancelled: Callable[[int], bool] | None = None,
) -> list[Generation]:
    """Continue every prompt on llama.cpp, executing tool calls inline; one `Generation` per prompt, in order.

    `cancelled(i)` is asked before each token of prompt i: once true, the prompt stops with finish_reason
    "cancelled" (a prompt cancelled before its turn is not evaluated at all)."""
    config = config or DecodeConfig()
    if isinstance(prompts, str):
        prompts = [prompts]
    tools = tools if tools is not None else ToolRegistry()
    tok = model.tokenizer
    choose = llama_chooser(model, tools, config, np.random.default_rng(config.seed))
    setup = RowSetup(tok, config, tok.eog_ids, on_event)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    return [
        _generate_one(model, Row(setup, i, p, setup.encode(p) or [pad_id]), tools, choose, cancelled)
        for i, p in enumerate(prompts)
    ]


EXTRA_BUFTS_ENV = "TOOLFORMER_LLAMA_EXTRA_BUFTS"


def use_extra_buffer_types() -> bool:
    """Whether llama.cpp may repack weights into its extra buffer types (AMX, AVX512 repacks).

    Off on CPUs that report AMX: in this project's virtual machines (Sapphire Rapids) the AMX buffers crash
    llama.cpp with a segmentation fault on the first prompt of a Q4_1 model. `TOOLFORMER_LLAMA_EXTRA_BUFTS=1` or `0`
    decides instead.
    """
    forced = os.environ.get(EXTRA_BUFTS_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return " amx_tile" not in fh.read()
    except OSError:
        return True


@contextlib.contextmanager
def _extra_buffer_types(enabled: bool) -> Iterator[None]:
    """llama-cpp-python's `Llama` has no argument for `use_extra_bufts`: patch the default model params it reads."""
    import llama_cpp.llama as llama_module

    if enabled:
        yield
        return
    original = llama_module.llama_cpp.llama_model_default_params

    def params() -> Any:
        out = original()
        out.use_extra_bufts = False
        return out

    with _PARAMS_LOCK:
        llama_module.llama_cpp.llama_model_default_params = params
        try:
            yield
        finally:
            llama_module.llama_cpp.llama_model_default_params = original


_PARAMS_LOCK = threading.Lock()
