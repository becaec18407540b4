"""`toolformer doctor`'s checks: what the toolkit needs, each found the way the toolkit finds it, with its fix.

Each check is fast and offline: versions come from installed metadata, only torch and llama-cpp-python are
imported (importing them is what can break), no model is loaded, nothing is built or downloaded. A check returns
a `Check` record: status "ok", "warn" or "fail", a one-line detail and, unless ok, the command or step that fixes
it. Only an essential check (what the default model and its cache need) can fail; a problem elsewhere is a
warning. A check that crashes becomes its own record instead of stopping the others.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from toolformer.errors import require
from toolformer.paths import HOME_ENV, toolformer_home
from toolformer.versions import dist_versions

OK, WARN, FAIL = "ok", "warn", "fail"
DIST = "toolformer-kit"
DISK_WARN_BYTES = 2 << 30  # room for a converted and a merged 135M model plus indexes (~1.2 GB) with slack
DISK_FAIL_BYTES = 200 << 20  # not even one converted model fits
# Where the playground's browser test (tests/test_serve_browser.py) finds Chromium and its driver when set.
CHROMIUM_ENV = "TOOLFORMER_CHROMIUM"
CHROMEDRIVER_ENV = "TOOLFORMER_CHROMEDRIVER"
BROWSER_INSTALL = "sudo apt-get install chromium chromium-driver"

Outcome = tuple[str, str, str]  # (status, detail, fix)


@dataclass(frozen=True)
class Check:
    """One check's result: `status` is ok, warn or fail (fail only when `essential`); `fix` is empty when ok."""

    name: str
    status: str
    detail: str
    fix: str = ""
    essential: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(name: str, essential: bool = False) -> Callable[[Callable[[], Outcome]], Callable[[], Check]]:
    """Make `fn() -> (status, detail, fix)` a check named `name`; a fail of a check not `essential` is a warn."""

    def wrap(fn: Callable[[], Outcome]) -> Callable[[], Check]:
        @functools.wraps(fn)
        def run() -> Check:
            try:
                status, detail, fix = fn()
            except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others' answers
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                status, detail = FAIL, f"the check itself failed ({type(exc).__name__}: {first})"
                fix = "report this with the output of `toolformer doctor --json`"
            if status == FAIL and not essential:
                status = WARN
            return Check(name, status, detail, "" if status == OK else fix, essential)

        return run

    return wrap


def pip_extra(extra: str) -> str:
    """The command that installs toolformer-kit's optional dependencies `extra`."""
    return f"pip install '{DIST}[{extra}]'"


def _import(module: str, extra: str) -> ModuleType:
    """Import `module`, or MissingExtraError naming `extra`; tests replace this to fake a library."""
    require(module, extra)
    return importlib.import_module(module)


def _declared(dist: str) -> Any:
    """The version range toolformer-kit's installed metadata declares for `dist` (a SpecifierSet), or None."""
    try:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.utils import canonicalize_name

        requires = metadata.requires(DIST) or []
    except (ImportError, metadata.PackageNotFoundError):
        return None  # no packaging, or toolformer run from a source tree: no range to hold versions to
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) == canonicalize_name(dist) and str(req.specifier):
            return req.specifier
    return None


def _outside_range(dist: str, version: str) -> str | None:
    """The declared range of `dist` when `version` is outside it (e.g. ">=5.0,<6"), else None."""
    spec = _declared(dist)
    if spec is None or spec.contains(version, prereleases=True):
        return None
    return str(spec)


def _library(dist: str, extra: str, why: str) -> Outcome:
    """An installed library's version, held to toolformer-kit's declared range (read from metadata, not imported)."""
    version = dist_versions([dist]).get(dist)
    if version is None:
        return FAIL, f"not installed ({why})", pip_extra(extra)
    wanted = _outside_range(dist, version)
    if wanted:
        return WARN, f"{version}, but {DIST} is tested with {dist}{wanted}", pip_extra(extra)
    return OK, version, ""


# ----------------------------------------------------------------------------------------------- the checks


@check("python", essential=True)
def check_python() -> Outcome:
    version = ".".join(map(str, sys.version_info[:3]))
    detail = f"{version} ({sys.executable})"
    try:
        wanted = metadata.metadata(DIST).get("Requires-Python")
        from packaging.specifiers import SpecifierSet
    except (ImportError, metadata.PackageNotFoundError):
        wanted = None
    if wanted and not SpecifierSet(wanted).contains(version):
        return FAIL, f"{detail}, but {DIST} needs Python {wanted}", f"use a Python {wanted} environment"
    return OK, detail, ""


@check("torch", essential=True)
def check_torch() -> Outcome:
    try:
        torch = _import("torch", "train")
    except Exception as exc:  # noqa: BLE001 - a broken install raises OSError or others, not only ImportError
        cause = exc.__cause__ or exc
        absent = isinstance(cause, ModuleNotFoundError) and cause.name == "torch"
        why = "not installed" if absent else f"does not import ({type(cause).__name__}: {cause})"
        return FAIL, f"{why}: the default model runs on torch", pip_extra("train")
    version = str(torch.__version__)
    cuda, hip = getattr(torch.version, "cuda", None), getattr(torch.version, "hip", None)
    if cuda or hip:
        build = f"CUDA {cuda} build" if cuda else f"ROCm {hip} build"
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        gpus = (
            f"{count} GPU{'s' if count != 1 else ''}: {torch.cuda.get_device_name(0)}"
            if count
            else "no GPU seen"
        )
        build = f"{build}, {gpus}"
    else:
        mps = getattr(getattr(torch, "backends", None), "mps", None)
        build = "CPU build, Apple MPS" if mps is not None and mps.is_available() else "CPU build"
    wanted = _outside_range("torch", version)
    if wanted:
        return WARN, f"{version} ({build}), but {DIST} is tested with torch{wanted}", pip_extra("train")
    return OK, f"{version} ({build})", ""


@check("transformers", essential=True)
def check_transformers() -> Outcome:
    return _library("transformers", "train", "the default model loads with it")


@check("peft", essential=True)
def check_peft() -> Outcome:
    return _library("peft", "train", "the default model's adapter is merged with it")


@check("llama.cpp")
def check_llamacpp() -> Outcome:
    from toolformer.runtime.llamacpp import llamacpp_available

    if not llamacpp_available():
        return (
            WARN,
            "llama-cpp-python not installed (.gguf files then run on transformers)",
            pip_extra("llamacpp"),
        )
    try:
        llama_cpp = _import("llama_cpp", "llamacpp")
    except Exception as exc:  # noqa: BLE001 - a missing shared library raises OSError or RuntimeError
        cause = exc.__cause__ or exc
        return (
            FAIL,
            f"llama-cpp-python does not import ({cause})",
            f"{pip_extra('llamacpp')} --force-reinstall",
        )
    version = str(getattr(llama_cpp, "__version__", "?"))
    wanted = _outside_range("llama-cpp-python", version)
    if wanted:
        return WARN, f"llama-cpp-python {version}, but {DIST} needs {wanted}", pip_extra("llamacpp")
    return OK, f"llama-cpp-python {version}", ""


def _default_alias() -> Any:
    from toolformer.models.aliases import ALIASES, DEFAULT_MODEL

    return ALIASES[DEFAULT_MODEL]


@check("base model", essential=True)
def check_base_model() -> Outcome:
    from toolformer.errors import ModelNotFoundError
    from toolformer.models.aliases import ALIASES
    from toolformer.models.resolve import _resolve

    default = _default_alias()
    alias = ALIASES[default.base] if default.base else default
    try:
        source = _resolve(alias.name)
    except ModelNotFoundError as exc:
        return FAIL, f"{alias.name}: {exc}", alias.install
    if source.path is None:  # a GGUF assembled from chunk wheels on first use
        return OK, f"{alias.name}: {alias.gguf_file} (assembled from {alias.package} on first use)", ""
    size = source.path.stat().st_size / (1 << 20)
    return OK, f"{alias.name}: {source.path} ({size:.0f} MiB)", ""


@check("adapter", essential=True)
def check_adapter() -> Outcome:
    from toolformer.errors import ModelNotFoundError
    from toolformer.models.aliases import ADAPTER_BUILD, adapter_dir
    from toolformer.models.resolve import _check_adapter

    alias = _default_alias()
    if alias.adapter is None:
        return OK, f"the default model {alias.name} has none", ""
    folder = adapter_dir(alias)
    try:
        _check_adapter(alias, folder)
    except ModelNotFoundError as exc:
        return FAIL, str(exc), f"pip install --force-reinstall {DIST} (or build it: {ADAPTER_BUILD})"
    return OK, f"{alias.name}: {folder}", ""


@check("model cache")
def check_model_cache() -> Outcome:
    from toolformer.errors import ModelNotFoundError
    from toolformer.models.aliases import DEFAULT_MODEL
    from toolformer.models.cache import cache_status

    try:
        cache, problem = cache_status(DEFAULT_MODEL)
    except ModelNotFoundError as exc:
        return WARN, f"{DEFAULT_MODEL} cannot be built here: {exc}", "fix the base model and adapter checks"
    if problem is None:
        return OK, f"{DEFAULT_MODEL} built in {cache}", ""
    state = "not built yet" if problem == "missing" else f"out of date ({problem})"
    return (
        WARN,
        f"{DEFAULT_MODEL} {state}: built once, on first use (tens of seconds on CPU), in {cache}",
        "nothing to do, or build it now: toolformer ask 'What is 2 + 2?'",
    )


def _existing_ancestor(path: Path) -> Path:
    """`path` itself, or its nearest ancestor that exists (where `mkdir -p path` would start)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _probe_write(folder: Path) -> None:
    """Create and remove a file in `folder`; OSError when that cannot be done (the real test, even for root)."""
    with tempfile.TemporaryFile(dir=folder):
        pass


@check("home", essential=True)
def check_home() -> Outcome:
    home = toolformer_home()
    where = _existing_ancestor(home)
    fix = f"make it writable, or point ${HOME_ENV} at a writable folder: export {HOME_ENV}=/path/to/folder"
    if not where.is_dir():
        return FAIL, f"{home}: {where} is not a folder", fix
    try:
        _probe_write(where)
    except OSError as exc:
        return FAIL, f"{home}: cannot write in {where} ({exc.strerror or exc})", fix
    state = "writable" if where == home else f"created on first use; {where} is writable"
    return OK, f"{home} ({state})", ""


def _size(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


@check("disk", essential=True)
def check_disk() -> Outcome:
    home = toolformer_home()
    free = shutil.disk_usage(_existing_ancestor(home)).free
    detail = f"{_size(free)} free for ${HOME_ENV} ({home})"
    fix = f"free some space there, or point ${HOME_ENV} at a larger disk"
    if free < DISK_FAIL_BYTES:
        return FAIL, f"{detail}: too little for one converted model", fix
    if free < DISK_WARN_BYTES:
        return WARN, f"{detail}: below {_size(DISK_WARN_BYTES)}, model caches may not fit", fix
    return OK, detail, ""


@check("WikiSearch")
def check_wikisearch() -> Outcome:
    from toolformer.errors import DataError
    from toolformer.tools.wikisearch.corpus import default_corpus_path
    from toolformer.tools.wikisearch.index import index_info, index_path

    try:
        corpus = default_corpus_path()
    except DataError as exc:
        return FAIL, str(exc), f"pip install --force-reinstall {DIST}"
    target, ready = index_path(corpus)
    if ready:
        passages = index_info(target).get("passages", "?")
        return OK, f"{corpus.name}: index of {passages} passages in {target}", ""
    return (
        WARN,
        f"{corpus.name}: no index yet, built on first search (seconds) in {target.parent}",
        f"nothing to do, or build it now: toolformer index build {corpus}",
    )


@check("MT (NLLB)")
def check_nllb() -> Outcome:
    from toolformer.tools.mt.nllb import NLLB_INSTALL, Translator

    translator = Translator()
    if translator.weights_on_disk():
        return OK, f"{translator.model_id} on disk", ""
    return WARN, f"{translator.model_id} not on disk (MT uses Apertium instead)", NLLB_INSTALL


def apertium_packages() -> list[str]:
    """The Debian packages of Apertium's pairs into English that MT knows (.ci/run installs the same list)."""
    from toolformer.tools.mt.apertium import APERTIUM_PACKAGES

    return list(dict.fromkeys(package for _name, package in APERTIUM_PACKAGES.values()))


@check("MT (Apertium)")
def check_apertium() -> Outcome:
    from toolformer.tools.mt.apertium import APERTIUM_PACKAGES, Apertium

    apertium = Apertium()
    if not apertium.installed():
        return (
            WARN,
            "apertium not installed",
            f"sudo apt-get install apertium {' '.join(apertium_packages())}",
        )
    have = [name for lang, (name, _pkg) in APERTIUM_PACKAGES.items() if apertium.pair(lang)]
    lacking = {lang: entry for lang, entry in APERTIUM_PACKAGES.items() if not apertium.pair(lang)}
    if not lacking:
        return OK, f"pairs into English: {', '.join(have)}", ""
    packages = list(dict.fromkeys(package for _name, package in lacking.values()))
    names = ", ".join(name for name, _pkg in lacking.values())
    have_text = f"has {', '.join(have)}; " if have else ""
    return WARN, f"{have_text}no pair into English for {names}", f"sudo apt-get install {' '.join(packages)}"


@check("browser test")
def check_browser() -> Outcome:
    chromium = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get(CHROMEDRIVER_ENV) or shutil.which("chromedriver")
    missing = [
        name
        for name, path in (("chromium", chromium), ("chromedriver", driver))
        if not (path and Path(path).is_file())
    ]
    if missing:
        return (
            WARN,
            f"{' and '.join(missing)} not found (the playground's browser test skips)",
            BROWSER_INSTALL,
        )
    if importlib.util.find_spec("selenium") is None:
        return WARN, "selenium not installed (the playground's browser test skips)", pip_extra("dev")
    return OK, f"{chromium}, {driver}", ""


CHECKS: tuple[Callable[[], Check], ...] = (
    check_python,
    check_torch,
    check_transformers,
    check_peft,
    check_llamacpp,
    check_base_model,
    check_adapter,
    check_model_cache,
    check_home,
    check_disk,
    check_wikisearch,
    check_nllb,
    check_apertium,
    check_browser,
)


def run_checks(checks: tuple[Callable[[], Check], ...] | None = None) -> list[Check]:
    """The record of each of `checks` (default: CHECKS), in order."""
    return [run() for run in (CHECKS if checks is None else checks)]


def exit_code(results: list[Check]) -> int:
    """1 when an essential check failed, else 0 (warnings do not count)."""
    return int(any(r.status == FAIL and r.essential for r in results))
