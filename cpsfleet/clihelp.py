"""How every ``cpsfleet`` command reads in ``--help``: placeholders, and commands in order.

Typer (0.27 and later) prints beside each parameter its Python type, taken from the
annotation: ``--json <bool>``, ``--site <str>``, ``--config <path>``, ``DOCUMENTS
<list[FileText]>``, even ``--help <bool>``. Every group and command of ``cpsfleet`` is made
by ``App`` here instead, whose commands show what a reader types:

- an option taking a value shows a placeholder: its ``metavar`` when it declares one (an
  upper-case word: ``DAYS``, ``FILE``, ``HOST``), else its name in upper case (``--site
  SITE``);
- a flag (``--json``, ``--help``) shows none;
- an argument shows its placeholder only (``HOST...``), in the usage line as Click writes
  it: ``NAME`` if required, ``[NAME]`` if not, with ``...`` when it takes several.

A group lists its commands in the order given to ``App`` (``order``), which follows how
one uses them: set up, run, look, act. Commands left out of ``order`` come after, in the
order they were added. ``tests/test_cli_help.py`` walks every ``--help`` and holds both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


def placeholder(param: TyperOption | TyperArgument) -> str:
    """The word ``--help`` shows for ``param``'s value ("" for a flag)."""
    if isinstance(param, TyperOption) and param.is_flag:
        return ""
    word = param.metavar or _long_name(param).upper()
    if isinstance(param, TyperArgument) and param.nargs == -1 and not word.endswith("..."):
        word += "..."
    return word


def _long_name(param: TyperOption | TyperArgument) -> str:
    """``format`` for ``--format``; an argument's name."""
    long = [name for name in param.opts if name.startswith("--")]
    return long[0].removeprefix("--") if long else param.name or ""


class Argument(TyperArgument):
    """An argument named by its placeholder alone: no Python type beside it."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        return [usage_name(self)]


def usage_name(argument: TyperArgument) -> str:
    """``NAME``, ``[NAME]`` or ``[NAME...]``: the argument in a usage line."""
    name = placeholder(argument)
    return name if argument.required else f"[{name}]"


def with_placeholders(params: list[Any]) -> list[Any]:
    """``params``, each with its placeholder as its metavar (what Typer shows instead of a
    type), the arguments as ``Argument``."""
    for param in params:
        if isinstance(param, TyperArgument) and not isinstance(param, Argument):
            param.__class__ = Argument  # a subclass adding no state, only the two methods
        if isinstance(param, TyperOption | TyperArgument):
            param.metavar = placeholder(param)
    return params


# Typer adds parameters after making a command (--help, and --install-completion on the
# top group), so the placeholders are given as the parameters are asked for.


class Command(TyperCommand):
    """A command whose parameters show placeholders, not Python types."""

    def get_params(self, ctx: Any) -> list[Any]:
        return with_placeholders(super().get_params(ctx))


class Group(TyperGroup):
    """A group whose parameters show placeholders and whose commands come in ``ORDER``."""

    ORDER: tuple[str, ...] = ()

    def get_params(self, ctx: Any) -> list[Any]:
        return with_placeholders(super().get_params(ctx))

    def list_commands(self, ctx: Any) -> list[str]:
        ordered = [name for name in self.ORDER if name in self.commands]
        return ordered + [name for name in self.commands if name not in ordered]


class App(typer.Typer):
    """A Typer app of ``Group`` and ``Command``; ``order`` lists its commands for ``--help``."""

    def __init__(self, *, order: Sequence[str] = (), **kwargs: Any) -> None:
        group = type("Group", (Group,), {"ORDER": tuple(order)})
        super().__init__(cls=group, **kwargs)

    def command(
        self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any
    ) -> Callable[[Any], Any]:
        return super().command(name, cls=cls or Command, **kwargs)
