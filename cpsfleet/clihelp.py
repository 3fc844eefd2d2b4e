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

``--help`` speaks the language of the run (``cpsfleet.i18n``): the help of each command and
parameter is written in English in the code and looked up in the catalog as it is shown
(``cpsfleet.i18n.helptext`` extracts it), with Typer's own words (the panels' titles,
``[default: …]``, ``Usage:``) beside it. The English stays with the command, so one process
can show its help in either language.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from difflib import get_close_matches
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from cpsfleet.i18n import N_, _

try:  # Typer 0.29 and later carry a Click of their own, whose errors they raise
    from typer._click import exceptions as click_errors
except ImportError:
    from click import exceptions as click_errors  # type: ignore[no-redef]


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
    type) and its help in the current language, the arguments as ``Argument``."""
    for param in params:
        speak(param)
        if isinstance(param, TyperArgument) and not isinstance(param, Argument):
            param.__class__ = Argument  # a subclass adding no state, only the two methods
        if isinstance(param, TyperOption | TyperArgument):
            param.metavar = placeholder(param)
    return params


# Typer's words around the help, as its rich_utils names them.
TYPER_WORDS = {
    "ARGUMENTS_PANEL_TITLE": N_("Arguments"),
    "OPTIONS_PANEL_TITLE": N_("Options"),
    "COMMANDS_PANEL_TITLE": N_("Commands"),
    "DEFAULT_STRING": N_("[default: {}]"),
    "REQUIRED_LONG_STRING": N_("[required]"),
    "ENVVAR_STRING": N_("[env var: {}]"),
    "DEPRECATED_STRING": N_("(deprecated) "),
    "ERRORS_PANEL_TITLE": N_("Error"),
    "ABORTED_TEXT": N_("Aborted."),
    "RICH_HELP": N_("Try [blue]'{command_path} {help_option}'[/] for help."),
}
USAGE = N_("Usage:")
# The help Click and Typer give the options they add (--help; --install-completion and
# --show-completion on the top command), which the catalog translates like the code's own.
ADDED_OPTIONS = (
    N_("Show this message and exit."),
    N_("Install completion for the current shell."),
    N_("Show completion for the current shell, to copy it or customize the installation."),
)


def speak(thing: Any) -> None:
    """Give ``thing`` (a command or parameter) its help in the current language; its English
    is kept aside the first time, so every call translates from it."""
    for name in ("help", "short_help"):
        if not hasattr(thing, name):
            continue
        source = f"_english_{name}"
        if source not in vars(thing):
            setattr(thing, source, getattr(thing, name))
        setattr(thing, name, translate(getattr(thing, source)))


def translate(text: str | None) -> str | None:
    """``text`` (a help, as Typer keeps it) in the current language."""
    return _(translate_source(text)) if text else text


def translate_source(text: str) -> str:
    """The catalog's message for a help as Typer keeps it: cleaned as a docstring is."""
    return inspect.cleandoc(text)


def speak_typer() -> None:
    """Typer's own words in the current language (they are module constants of its
    rich_utils, read as each help is printed)."""
    try:
        from typer import rich_utils
    except ImportError:  # Typer without Rich prints Click's plain help
        return
    for name, english in TYPER_WORDS.items():
        setattr(rich_utils, name, _(english))


def speak_help(command: Any, subcommands: Sequence[Any] = ()) -> None:
    """``command``'s help, its sub-commands' (which a group lists) and Typer's words in the
    current language, as the help is about to be printed."""
    for thing in (command, *subcommands):
        speak(thing)
    speak_typer()


def _format_usage(command: Any, ctx: Any, formatter: Any) -> None:
    pieces = command.collect_usage_pieces(ctx)
    formatter.write_usage(ctx.command_path, " ".join(pieces), prefix=f"{_(USAGE)} ")


# Click's errors of a command line it cannot parse, which Click words in English (and each
# release words its own way): told again here from what the error knows, in the run's
# language. One Click words only as text is recognised by its start.
EXTRA_ARGUMENTS = re.compile(r"Got unexpected extra argument(?:s|\(s\))? \((?P<args>.*)\)$")
NEEDS_VALUE = re.compile(r"Option (?P<name>'[^']+') requires")


def speak_error(error: Exception, ctx: Any = None) -> None:
    """Word ``error`` (a Click usage error about to be printed) in the current language."""
    speak_typer()
    if not isinstance(error, click_errors.UsageError):
        return
    text = _said_again(error, ctx)
    if text is not None:
        # What Typer prints; Click's own adds English around the message: this text is whole.
        error.format_message = lambda: text  # type: ignore[method-assign]


def _said_again(error: Any, ctx: Any) -> str | None:
    if isinstance(error, click_errors.NoSuchOption):
        said = _("No such option: {name}").format(name=error.option_name)
        if error.possibilities:
            options = ", ".join(sorted(error.possibilities))
            said += " " + _("(possible options: {options})").format(options=options)
        return said
    if isinstance(error, click_errors.MissingParameter) and error.param is not None:
        name = _hint(error.param)
        if isinstance(error.param, TyperArgument):
            return _("Missing argument {name}.").format(name=name)
        return _("Missing option {name}.").format(name=name)
    if isinstance(error, click_errors.BadParameter) and error.param is not None:
        return _("Invalid value for {name}: {message}").format(
            name=_hint(error.param), message=error.message
        )
    if found := EXTRA_ARGUMENTS.match(error.message):
        return _("Got unexpected extra arguments ({args})").format(args=found["args"])
    if found := NEEDS_VALUE.match(error.message):
        return _("Option {name} requires a value.").format(name=found["name"])
    return None


def _hint(param: Any) -> str:
    """How an error names ``param``: ``'--site'``, ``'HOST'``."""
    if isinstance(param, TyperArgument) or not getattr(param, "opts", None):
        return f"'{placeholder(param) if isinstance(param, TyperArgument) else param.name}'"
    long = [name for name in param.opts if name.startswith("--")]
    return f"'{(long or param.opts)[0]}'"


# Typer adds parameters after making a command (--help, and --install-completion on the
# top group), so the placeholders are given as the parameters are asked for.


class Command(TyperCommand):
    """A command whose parameters show placeholders, not Python types, and whose help
    speaks the run's language."""

    def get_params(self, ctx: Any) -> list[Any]:
        return with_placeholders(super().get_params(ctx))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        speak_help(self)
        super().format_help(ctx, formatter)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return list(super().parse_args(ctx, args))
        except Exception as error:
            speak_error(error, ctx)
            raise

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        _format_usage(self, ctx, formatter)


class Group(TyperGroup):
    """A group whose parameters show placeholders and whose commands come in ``ORDER``."""

    ORDER: tuple[str, ...] = ()

    def get_params(self, ctx: Any) -> list[Any]:
        return with_placeholders(super().get_params(ctx))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        speak_help(self, list(self.commands.values()))
        super().format_help(ctx, formatter)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return list(super().parse_args(ctx, args))
        except Exception as error:
            speak_error(error, ctx)
            raise

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """The command ``args`` name; an unknown one is told in the run's language, with
        the commands it may have meant."""
        name = args[0] if args else ""
        known = name in self.commands or self.get_command(ctx, name) is not None
        if name and not known and not name.startswith("-") and not ctx.resilient_parsing:
            said = _("No such command {name}.").format(name=repr(name))
            if close := get_close_matches(name, list(self.commands)):
                meant = ", ".join(repr(match) for match in close)
                said += " " + _("Did you mean {commands}?").format(commands=meant)
            speak_typer()
            ctx.fail(said)
        return super().resolve_command(ctx, args)

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        _format_usage(self, ctx, formatter)

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
