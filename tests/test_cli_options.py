"""Options made from config dataclasses: each option's help is its field's (one source), and the generator works."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

import toolformer.cli
from toolformer.cli import app
from toolformer.cli.options import config_command, opt

runner = CliRunner()


def _config_commands() -> list[tuple[list[str], Any]]:
    """(command path, function) for every registered command whose options come from a config dataclass."""
    found = []

    def visit(typer_app: typer.Typer, path: list[str]) -> None:
        for info in typer_app.registered_commands:
            fn = inspect.unwrap(info.callback, stop=lambda f: hasattr(f, "config_fields"))
            if hasattr(fn, "config_fields"):
                found.append(([*path, info.name or info.callback.__name__], fn))
        for group in typer_app.registered_groups:
            visit(group.typer_instance, [*path, group.name])

    visit(app, [])
    return found


def _click_command(path: list[str]) -> Any:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


CONFIG_COMMANDS = _config_commands()


def test_the_config_driven_commands_are_found() -> None:
    names = {" ".join(path) for path, _ in CONFIG_COMMANDS}
    assert names == {"annotate run", "eval", "train", "pretrain", "compress", "adapt", "serve"}


@pytest.mark.parametrize("path,fn", CONFIG_COMMANDS, ids=[" ".join(p) for p, _ in CONFIG_COMMANDS])
def test_every_config_option_shows_its_fields_help_and_default(path: list[str], fn: Any) -> None:
    cls, fields = fn.config_fields
    metadata = {f.name: f for f in dataclasses.fields(cls)}
    params = {p.name: p for p in _click_command(path).params}
    assert fields, path
    for param_name, field_name in fields.items():
        field = metadata[field_name]
        assert params[param_name].help == field.metadata["help"], (path, param_name)
        assert field.metadata["help"].strip(), (path, field_name)


def test_no_field_help_is_copied_into_the_cli() -> None:
    """Every config option's help lives in its dataclass only: no CLI module spells it again, no other option
    of any command shows it."""
    sources = "\n".join(
        p.read_text(encoding="utf-8") for p in Path(toolformer.cli.__file__).parent.glob("*.py")
    )
    helps = {f.metadata["help"] for _, fn in CONFIG_COMMANDS for f in dataclasses.fields(fn.config_fields[0])}
    assert not [h for h in helps if h in sources]
    from_fields = {(" ".join(path), param) for path, fn in CONFIG_COMMANDS for param in fn.config_fields[1]}

    def others(command: Any, path: list[str]) -> list[tuple[str, str, str | None]]:
        found = [(" ".join(path), p.name, p.help) for p in command.params]
        for name, sub in getattr(command, "commands", {}).items():
            found += others(sub, [*path, name])
        return found

    hand_written = [
        (c, p, h) for c, p, h in others(typer.main.get_command(app), []) if (c, p) not in from_fields
    ]
    assert len(hand_written) > 50  # ask, chat, tools, export, ... and the config commands' own options
    assert not [(c, p) for c, p, h in hand_written if h in helps]


# ------------------------------------------------------------------------------------------- the generator


@dataclasses.dataclass
class Toy:
    name: str = dataclasses.field(default="", metadata={"help": "The name."})
    count: int | None = dataclasses.field(default=None, metadata={"help": "How many."})
    loud: bool = dataclasses.field(default=False, metadata={"help": "Shout."})
    color: bool = dataclasses.field(default=True, metadata={"help": "Use colour."})
    ratio: float = dataclasses.field(default=0.5, metadata={"help": "A share."})
    tags: list[str] = dataclasses.field(default_factory=list, metadata={"help": "Tags."})
    hidden: int = dataclasses.field(default=7, metadata={"help": "Not on the command line."})


def _toy_app(**kwargs: Any) -> tuple[typer.Typer, dict[str, Any]]:
    seen: dict[str, Any] = {}
    toy = typer.Typer()

    @toy.command()
    @config_command(
        Toy,
        opt("name", argument=True, required=True),
        opt("ratio", "--share", param="share", type=str, default="0.5", convert=float),
        skip="hidden",
        **kwargs,
    )
    def run(config: Toy, verbose: bool = typer.Option(False, "--verbose", help="More output.")) -> None:
        seen.update(config=config, verbose=verbose)

    @toy.command()
    def other() -> None:  # a second command keeps `run` a subcommand
        pass

    return toy, seen


def test_config_command_builds_the_config_from_the_options() -> None:
    toy, seen = _toy_app()
    result = runner.invoke(
        toy, ["run", "bob", "--count", "3", "--loud", "--no-color", "--share", "0.25", "--verbose"]
    )
    assert result.exit_code == 0, result.output
    assert seen["config"] == Toy(name="bob", count=3, loud=True, color=False, ratio=0.25)
    assert seen["verbose"] is True
    result = runner.invoke(toy, ["run", "ann"])
    assert seen["config"] == Toy(name="ann") and seen["verbose"] is False


def test_config_command_options_follow_the_fields() -> None:
    toy, _ = _toy_app()
    params = {p.name: p for p in typer.main.get_command(toy).commands["run"].params}
    assert list(params) == ["name", "count", "loud", "color", "share", "tags", "verbose"]
    assert params["name"].required and params["name"].help == "The name."
    assert params["loud"].opts == ["--loud"] and not params["loud"].secondary_opts  # off by default: a switch
    assert params["color"].secondary_opts == ["--no-color"] and params["color"].default is True
    assert params["share"].opts == ["--share"] and params["share"].help == "A share."
    assert params["count"].default is None and not params["count"].required
    assert "hidden" not in params


def test_config_command_order_places_own_parameters_between_fields() -> None:
    toy, _ = _toy_app(order="verbose name ratio count loud color tags")
    params = [p.name for p in typer.main.get_command(toy).commands["run"].params]
    assert params == ["verbose", "name", "share", "count", "loud", "color", "tags"]


def test_config_command_shows_fields_an_order_leaves_out_after_it() -> None:
    toy, _ = _toy_app(order="tags name")
    params = [p.name for p in typer.main.get_command(toy).commands["run"].params]
    assert params == ["tags", "name", "count", "loud", "color", "share", "verbose"]


def test_config_command_refuses_a_tweak_for_no_field() -> None:
    with pytest.raises(ValueError, match="nope"):
        config_command(Toy, opt("nope", "--nope"))
