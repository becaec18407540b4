"""Typer options made from a config dataclass: each option's type, default and help are its field's, once."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

import typer

_FIELDS = object()  # an option's default: the field's own


@dataclasses.dataclass(frozen=True)
class Opt:
    """How config field `field` shows on the command line where it is not `--field-name VALUE` (see `opt`)."""

    field: str
    decls: tuple[str, ...] = ()
    param: str | None = None
    argument: bool = False
    required: bool = False
    default: Any = _FIELDS
    type: Any = None
    convert: Callable[[Any], Any] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def opt(field: str, *decls: str, **how: Any) -> Opt:
    """`opt("out", "--out", "-o", required=True)`: field `out` as option `--out`/`-o`, which must be given.

    `how`: param (the parameter's name: an argument's metavar, `lr` for `learning_rate`), argument (positional),
    required, default and type (the option's, when not the field's), convert (option value → field value), and
    typer.Option's own keywords (envvar, min, ...).
    """
    own = {k: how.pop(k) for k in ("param", "argument", "required", "default", "type", "convert") if k in how}
    return Opt(field, decls, **own, extra=how)


def field_parameter(f: dataclasses.Field[Any], annotation: Any, how: Opt) -> inspect.Parameter:
    """The typer parameter of dataclass field `f`: its help always, its type and default unless `how` says."""
    if how.type is not None:
        annotation = how.type
    elif typing.get_origin(annotation) in (typing.Union, types.UnionType):  # `int | None`: an int or nothing
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if how.required:
        default = ...
    elif how.default is not _FIELDS:
        default = how.default
    else:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    help = f.metadata["help"]
    if how.argument:
        info = typer.Argument(default, help=help, **how.extra)
    else:
        decls = how.decls
        if not decls and annotation is bool:  # a switch that is off by default has no --no- form
            name = "--" + f.name.replace("_", "-")
            decls = (name,) if default is False else (f"{name}/--no-{name[2:]}",)
        info = typer.Option(default, *decls, help=help, **how.extra)
    return inspect.Parameter(
        how.param or f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=info, annotation=annotation
    )


def config_command(
    cls: type,
    *options: Opt,
    order: str = "",
    skip: str = "",
    build: Callable[..., Any] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make `fn(config, **own)` a typer command whose options are the fields of dataclass `cls`.

    The command shows every field but those `skip` names (as `options` describe them, else `--field-name`), then
    `fn`'s own parameters; `order` (names separated by spaces) puts the fields and own parameters it names first,
    in its order. `fn` receives `build(**fields)` (default: `cls(**fields)`) and its own parameters.
    """
    hints = typing.get_type_hints(cls)
    tweaks = {o.field: o for o in options}
    shown = {
        f.name: tweaks.pop(f.name, Opt(f.name)) for f in dataclasses.fields(cls) if f.name not in skip.split()
    }
    if tweaks:
        raise ValueError(f"{cls.__name__} has no option field {sorted(tweaks)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = dict(inspect.signature(fn, eval_str=True).parameters)
        own.pop("config")
        names = order.split()
        names += [n for n in [*shown, *own] if n not in names]
        params = [field_parameter(fields[n], hints[n], shown[n]) if n in shown else own[n] for n in names]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            values = {}
            for name, how in shown.items():
                value = kwargs.pop(how.param or name)
                values[name] = how.convert(value) if how.convert else value
            return fn((build or cls)(**values), **kwargs)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        # Which parameter shows which field (the tests check that each option's help is its field's).
        command.config_fields = (cls, {how.param or n: n for n, how in shown.items()})  # type: ignore[attr-defined]
        return command

    return decorate


# How `toolformer train` and `toolformer adapt` spell the fine-tuning fields they share.
FINETUNE_OPTIONS = (
    opt("model", "--model", "-m"),
    opt("lora", "--lora/--full"),
    opt("learning_rate", "--lr", param="lr"),
)
