"""Imports in src/toolformer flow one way, down the layers of docs/architecture.md, lazy imports included."""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "toolformer"

# The layers, lowest first: a module may import from its own layer or a lower one, never a higher one. Each name is
# a top-level module or package of `toolformer`; everything inside a package sits in the package's layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    # base: the call syntax, the error tree and small helpers that import nothing else of toolformer
    ("errors", "calls", "inputs", "paths", "configs", "heldout", "progress", "versions"),
    ("tools",),
    ("models",),
    # `runlog` stores the runtime's answers and calls for `ask`/`chat` and `serve`; `doctor` checks what the
    # models, tools and runtime need, finding each thing the way they do
    ("runtime", "runlog", "doctor"),
    ("datagen", "train", "pretrain", "evals", "export"),  # the paper's pipeline (+ pretraining from scratch)
    ("compress", "adapt", "augment"),  # the toolchain around it
    ("serve",),
    ("cli", "live"),  # `live` prints answers for `ask`/`chat` with `serve.stream.ReplyStream`
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}

# The package root (`toolformer/__init__.py`) is a facade: `__version__`, and `Toolformer` re-exported lazily
# from the runtime. It is no layer of its own: `import toolformer` reads only the version, so it counts as base,
# and each name taken from it counts in the layer of the module that really defines it.
ROOT_NAMES = {"__version__": "errors", "Toolformer": "runtime"}

# Libraries the base and `tools` layers may import only inside functions (`import toolformer.tools` stays light).
HEAVY = {"torch", "transformers", "peft", "trl", "datasets", "accelerate", "bm25s", "mcp", "vllm", "ray"}
HEAVY |= {"llama_cpp", "onnx", "onnxruntime", "gguf"}


@dataclass(frozen=True)
class Import:
    """One import statement's target inside the package, where it is, and whether it runs at import time."""

    path: Path
    line: int
    target: str  # dotted module, e.g. "toolformer.serve.stream"; the root's names as "toolformer:Toolformer"
    lazy: bool  # inside a function body: runs only when called
    type_only: bool  # under `if TYPE_CHECKING:`: never runs


def module_name(path: Path, root: Path, package: str) -> tuple[str, bool]:
    """The dotted name of `path` under the package folder `root`, and whether it is a package `__init__`."""
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    is_init = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_init else parts), is_init


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, lazy: bool = False, type_only: bool = False):
    """Every import node under `node`, with whether it sits in a function and whether under TYPE_CHECKING."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, lazy, type_only
        yield from _walk(
            child,
            lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)),
            type_only or (isinstance(child, ast.If) and _is_type_checking(child)),
        )


def imports_of(path: Path, root: Path, package: str = "toolformer") -> list[Import]:
    """Every import of `package` in the file `path` (absolute or relative, at any depth), resolved to modules."""
    module, is_init = module_name(path, root, package)
    found: list[Import] = []
    for node, lazy, type_only in _walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:  # relative: from the module's package, one level up per extra dot
                base = module.split(".") if is_init else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                parent = ".".join([*base, node.module] if node.module else base)
            else:
                parent = node.module or ""
            targets = []
            for alias in node.names:
                sub = root.joinpath(*parent.split(".")[1:], alias.name)
                if parent.split(".")[0] == package and (sub.is_dir() or sub.with_suffix(".py").is_file()):
                    targets.append(f"{parent}.{alias.name}")  # `from toolformer import tools`: a submodule
                elif parent == package:
                    targets.append(f"{package}:{alias.name}")  # a name of the root facade
                else:
                    targets.append(parent)
        for target in targets:
            if target == package or target.startswith((f"{package}.", f"{package}:")):
                found.append(Import(path, node.lineno, target, lazy, type_only))
    return found


def layer_of(target: str, package: str = "toolformer") -> str:
    """The layer name (a key of RANK) a resolved import target belongs to."""
    if ":" in target:
        name = target.split(":", 1)[1]
        return ROOT_NAMES.get(name, name)  # an unknown root name fails below as "not in LAYERS"
    parts = target.split(".")
    return parts[1] if len(parts) > 1 else ROOT_NAMES["__version__"]


def all_imports(root: Path = SRC, package: str = "toolformer") -> list[Import]:
    return [imp for path in sorted(root.rglob("*.py")) for imp in imports_of(path, root, package)]


def upward(imports: list[Import], root: Path = SRC, package: str = "toolformer") -> list[str]:
    """'file:line: a (layer i) imports b (layer j)' for every import into a higher layer."""
    bad = []
    for imp in imports:
        rel = imp.path.relative_to(root)
        if rel == Path("__init__.py"):
            continue  # the facade: its lazy `Toolformer` is checked where it is used (ROOT_NAMES)
        src, dst = rel.parts[0].removesuffix(".py"), layer_of(imp.target, package)
        if RANK[dst] > RANK[src]:
            how = " (lazy)" if imp.lazy else " (TYPE_CHECKING)" if imp.type_only else ""
            bad.append(
                f"{rel}:{imp.line}: {src} (layer {RANK[src]}) imports {imp.target}{how} (layer {RANK[dst]})"
            )
    return bad


def cycles(imports: list[Import], root: Path = SRC, package: str = "toolformer") -> list[list[str]]:
    """Cycles between top-level modules/packages (possible only inside one layer), each as a list of names."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        rel = imp.path.relative_to(root)
        if rel == Path("__init__.py"):
            continue
        src, dst = rel.parts[0].removesuffix(".py"), layer_of(imp.target, package)
        if src != dst:
            graph.setdefault(src, set()).add(dst)
    found, done = [], set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            found.append([*stack[stack.index(node) :], node])
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*stack, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


def heavy_at_import_time(root: Path = SRC, up_to: str = "tools") -> list[str]:
    """'file:line: imports lib' for each HEAVY library imported outside functions by the layers up to `up_to`."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel != Path("__init__.py") and RANK[rel.parts[0].removesuffix(".py")] > RANK[up_to]:
            continue
        for node, lazy, type_only in _walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if lazy or type_only or getattr(node, "level", 0):
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            bad += [f"{rel}:{node.lineno}: imports {name}" for name in names if name.split(".")[0] in HEAVY]
    return bad


def top_level_names(root: Path = SRC) -> set[str]:
    """The top-level modules and packages of the package folder `root` (its `__init__` and data folders aside)."""
    names = {p.stem for p in root.glob("*.py") if p.name != "__init__.py"}
    return names | {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}


# ------------------------------------------------------------------------------------------------- the source


def test_every_module_has_a_layer() -> None:
    # A new top-level module must be placed in LAYERS (and docs/architecture.md), not pass unchecked.
    assert top_level_names() - set(RANK) == set()
    assert set(RANK) - top_level_names() == set(), "LAYERS names a module that no longer exists"


def test_no_module_imports_from_a_higher_layer() -> None:
    imports = all_imports()
    # The scan sees the tree: every layer above the base imports something of toolformer, some of it lazily.
    importers = {RANK.get(imp.path.relative_to(SRC).parts[0].removesuffix(".py")) for imp in imports}
    assert importers >= set(range(1, len(LAYERS))) and any(imp.lazy for imp in imports)
    assert upward(imports) == []


def test_no_import_cycles_between_modules_of_one_layer() -> None:
    assert cycles(all_imports()) == []


def test_root_facade_names_are_known() -> None:
    # Each name the root re-exports is mapped to its real layer, so importing it from inside the package is checked.
    tree = ast.parse((SRC / "__init__.py").read_text(encoding="utf-8"))
    exported = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets)
    )
    assert set(exported) <= set(ROOT_NAMES)


def test_base_and_tools_import_no_heavy_library_at_import_time() -> None:
    # Complements the subprocess checks (tests/test_tools_registry.py, test_cli.py), which see only the modules
    # `import toolformer.tools` happens to load: here every module of these layers, e.g. tools.mt.nllb, tools.mcp.
    assert heavy_at_import_time() == []


# ------------------------------------------------------------------------------------------ the checker itself


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "toolformer"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def test_checker_finds_upward_imports_at_any_depth(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "tools/__init__.py": "",
            "tools/mt/__init__.py": "",
            "tools/mt/nllb.py": """\
                from toolformer.errors import ToolError
                from ..base import Tool

                def load():
                    from toolformer.runtime.decode import generate
                    return generate
                """,
            "tools/base.py": "from toolformer import Toolformer\n",
            "serve/__init__.py": "from toolformer.runtime import engine\nfrom .. import cli\n",
            "errors.py": "import toolformer\n",
            "runtime/__init__.py": "",
            "cli/__init__.py": "",
        },
    )
    found = upward(all_imports(root), root)
    assert found == [
        "serve/__init__.py:2: serve (layer 6) imports toolformer.cli (layer 7)",
        "tools/base.py:1: tools (layer 1) imports toolformer:Toolformer (layer 3)",
        "tools/mt/nllb.py:5: tools (layer 1) imports toolformer.runtime.decode (lazy) (layer 3)",
    ]


def test_checker_finds_cycles_inside_a_layer(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "train.py": "from toolformer.datagen import outputs\n",
            "datagen/__init__.py": "",
            "datagen/outputs.py": "def f():\n    from toolformer import train\n",
            "evals.py": "import toolformer.datagen\n",
        },
    )
    assert cycles(all_imports(root), root) == [["datagen", "train", "datagen"]]


def test_checker_resolves_relative_imports_and_root_names(tmp_path: Path) -> None:
    root = _package(
        tmp_path, {"cli/__init__.py": "", "serve/__init__.py": "from .. import cli, Toolformer\n"}
    )
    targets = {imp.target for imp in imports_of(root / "serve" / "__init__.py", root)}
    assert targets == {"toolformer.cli", "toolformer:Toolformer"}


def test_checker_finds_heavy_imports_outside_functions(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "tools/__init__.py": "import json\ntry:\n    import torch.nn\nexcept ImportError:\n    pass\n",
            "tools/qa.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n"
            "def f():\n    from transformers import AutoModel\n",
            "calls.py": "from bm25s import BM25\n",
            "runtime/__init__.py": "import torch\n",  # the runtime may: it is above tools
        },
    )
    assert heavy_at_import_time(root) == [
        "calls.py:1: imports bm25s",
        "tools/__init__.py:3: imports torch.nn",
    ]
