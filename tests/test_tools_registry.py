"""ToolRegistry, builtin_tools and load_tools: lookups, running, subsets, schemas, specs, bad items, time limits."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
import threading

import pytest

import toolformer.tools as tools_pkg
from toolformer.calls import Call
from toolformer.errors import ConfigError, ToolNotFoundError
from toolformer.paths import HOME_ENV
from toolformer.tools import BUILTIN_NAMES, Tool, ToolOutput, ToolRegistry, builtin_tools, load_tools, tool


def double_it(x: int) -> int:
    """Double a number.

    Args:
        x: the number to double.
    """
    return 2 * x


@tool(name="Greet")
def greeter(name: str) -> str:
    """Say hello."""
    return f"Hello, {name}!"


SEVERAL = [tool(lambda: "a", name="AlphaTool"), tool(lambda: "b", name="BetaTool")]
NOT_A_TOOL = 42
EMPTY_LIST: list = []


def _registry() -> ToolRegistry:
    return ToolRegistry([greeter, tool(double_it)])


def test_mapping_basics() -> None:
    reg = _registry()
    assert reg.names() == ["Greet", "double_it"] and list(reg) == reg.names() and len(reg) == 2
    assert "Greet" in reg and "greet" not in reg  # names are case-sensitive
    assert reg["Greet"] is greeter and reg.get("Greet") is greeter


def test_get_raises_for_unknown_names_too() -> None:
    with pytest.raises(ToolNotFoundError, match="known: Greet, double_it"):
        _registry().get("nope")


def test_unknown_lookup_lists_known_names() -> None:
    with pytest.raises(ToolNotFoundError) as info:
        _registry()["Search"]
    assert "Search" in str(info.value) and "Greet" in str(info.value) and "double_it" in str(info.value)
    assert isinstance(info.value, KeyError)


def test_add_rejects_duplicates_and_non_tools() -> None:
    reg = _registry()
    other = tool(lambda name: name, name="Greet")
    with pytest.raises(ConfigError, match="Greet"):
        reg.add(other)
    reg.add(other, replace=True)
    assert reg["Greet"] is other
    reg.add(other)  # the same object again is fine
    with pytest.raises(ConfigError):
        reg.add(double_it)  # type: ignore[arg-type]


def test_run_never_raises() -> None:
    reg = _registry()
    assert reg.run(Call("Greet", '"Ada"')).text == "Hello, Ada!"
    assert reg.run(Call("double_it", "21")).text == "42"
    unknown = reg.run(Call("Search", '"x"'))
    assert unknown == ToolOutput(text="error: unknown tool Search", ok=False, seconds=0.0)
    reg.add(tool(lambda: 1 / 0, name="Broken"))
    bad = reg.run(Call("Broken"))
    assert not bad.ok and bad.text == "error: division by zero"


def test_subset_keeps_objects_and_order() -> None:
    reg = _registry()
    sub = reg.subset(["double_it", "Greet"])
    assert sub.names() == ["double_it", "Greet"] and sub["Greet"] is greeter
    assert reg.subset("Greet").names() == ["Greet"]
    with pytest.raises(ToolNotFoundError, match="Nope"):
        reg.subset(["Greet", "Nope"])


def test_openai_schemas_and_describe() -> None:
    schemas = _registry().openai_schemas()
    assert [s["function"]["name"] for s in schemas] == ["Greet", "double_it"]
    params = schemas[1]["function"]["parameters"]
    assert params["properties"]["x"] == {"type": "integer", "description": "the number to double."}
    assert all(s["type"] == "function" for s in schemas)
    json.dumps(schemas)  # must be JSON-serialisable as is
    assert _registry().describe() == [("Greet", "Say hello."), ("double_it", "Double a number.")]


def test_builtin_tools_are_the_paper_five(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    reg = builtin_tools()  # cheap: bench/tools.py times it
    assert tuple(reg.names()) == BUILTIN_NAMES == ("Calculator", "Calendar", "WikiSearch", "QA", "MT")
    assert not (tmp_path / "home").exists()  # no index built at construction
    assert reg["MT"].fn.__self__.loaded is False  # no model loaded at construction


def test_importing_and_building_builtins_loads_no_heavy_library() -> None:
    code = (
        "import sys, toolformer.tools as t; t.builtin_tools(); t.load_tools('Calculator,MT'); "
        "print([m for m in ('torch', 'transformers', 'bm25s', 'mcp') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_builtin_options_are_passed_through(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        json.dumps({"title": "Zanzibar", "text": "Zanzibar is an archipelago."}) + "\n", encoding="utf-8"
    )
    reg = builtin_tools(
        clock=lambda: dt.date(2023, 1, 30), corpus=corpus, qa_reader=lambda q, p: f"read {len(p)}"
    )
    assert reg.run(Call("Calendar")).text == "Today is Monday, January 30, 2023."
    assert reg.run(Call("WikiSearch", "Zanzibar")).text == "Zanzibar: Zanzibar is an archipelago."
    assert reg.run(Call("QA", "What is Zanzibar?")).text == "read 1"
    assert reg["WikiSearch"].fn.__closure__ is not None


def test_load_tools_none_is_all_builtins() -> None:
    assert load_tools(None).names() == list(BUILTIN_NAMES)
    assert load_tools("").names() == []


def test_load_tools_builtin_names() -> None:
    reg = load_tools("Calculator, calendar ,Calculator", clock=lambda: dt.date(2023, 1, 30))
    assert reg.names() == ["Calculator", "Calendar"]
    assert reg.run(Call("Calendar")).text == "Today is Monday, January 30, 2023."
    assert load_tools(["QA", "WikiSearch"]).names() == ["QA", "WikiSearch"]


def test_load_tools_module_items() -> None:
    reg = load_tools(f"{__name__}:double_it,{__name__}:greeter,{__name__}:SEVERAL,Calculator")
    assert reg.names() == ["double_it", "Greet", "AlphaTool", "BetaTool", "Calculator"]
    # A Tool keeps its name, description and schema; its calls go to a worker process that imports the same item.
    assert dataclasses.replace(reg["Greet"], fn=greeter.fn) == greeter
    assert reg["Greet"].fn is not greeter.fn
    assert reg["double_it"].parameters["properties"]["x"]["type"] == "integer"
    assert reg.run(Call("double_it", "21")).text == "42"


def test_load_tools_from_a_module_on_sys_path(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_custom_tools.py").write_text(
        "def shout(text: str) -> str:\n    '''Upper-case text.'''\n    return text.upper()\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = load_tools(["my_custom_tools:shout"])
    assert reg.run(Call("shout", '"hi"')).text == "HI"


def test_load_tools_finds_a_module_in_the_working_directory(tmp_path, monkeypatch) -> None:
    (tmp_path / "cwd_only_tools.py").write_text("def ping() -> str:\n    return 'pong'\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert load_tools("cwd_only_tools:ping").run(Call("ping")).text == "pong"


@pytest.mark.parametrize(
    "item",
    [
        "Nope",
        "no_such_module_xyz:f",
        f"{__name__}:missing_attr",
        f"{__name__}:NOT_A_TOOL",
        f"{__name__}:EMPTY_LIST",
        ":f",
        "json:",
        "mcp:",
    ],
)
def test_bad_items_are_config_errors_naming_the_item(item: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_tools(f"Calculator,{item}")
    assert repr(item) in str(info.value)


def test_module_that_fails_on_import(tmp_path, monkeypatch) -> None:
    (tmp_path / "broken_tools_mod.py").write_text("raise RuntimeError('kaput')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="kaput"):
        load_tools("broken_tools_mod:f")


def test_duplicate_names_from_modules_are_errors() -> None:
    with pytest.raises(ConfigError, match="Greet"):
        load_tools([f"{__name__}:greeter", f"{__name__}:greeter_clone"])


greeter_clone = Tool(name="Greet", description="Another greeter.", fn=lambda name: name)


def test_a_hanging_tool_times_out_and_the_process_goes_on() -> None:
    release = threading.Event()

    @tool(timeout=30)
    def hang(seconds: float) -> str:
        """Sleep."""
        release.wait(seconds)
        return "woke"

    reg = ToolRegistry([hang, tool(double_it)])
    try:
        out = reg.run(Call("hang", "10"), timeout=0.5)  # "woke" only after 10 s: the limit cut it short
        assert not out.ok and out.text.startswith("error: ") and "timed out" in out.text
        assert reg.run(Call("double_it", "4")).text == "8"
    finally:
        release.set()


def test_package_reexports() -> None:
    for name in (
        "Tool",
        "ToolOutput",
        "tool",
        "ToolRegistry",
        "builtin_tools",
        "load_tools",
        "BUILTIN_NAMES",
    ):
        assert hasattr(tools_pkg, name)
