"""The command reference, rendered in Markdown from the commands themselves.

``python -m cpsfleet.clidoc > docs/reference.md`` writes it; a test fails when the
committed file differs from what this prints, so the reference cannot drift from
``--help``. Each command gets its usage line, its help, its arguments and its options
with their help and defaults; a group lists its sub-commands. Commands come depth
first, each group's in the order its ``--help`` lists them (``cpsfleet.clihelp``); options
in the order the command declares them, with the placeholders ``--help`` shows.

The usage line is composed here from the parameters, in Click's notation, rather than
asked of Click, whose wording of arguments changes between Typer releases.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import typer
import typer.main
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from cpsfleet.cli import build
from cpsfleet.clihelp import placeholder, usage_name

Command = TyperCommand | TyperGroup

HEADER = """\
# Command reference

Generated from the commands themselves by `python -m cpsfleet.clidoc > docs/reference.md`;
do not edit it by hand. `tests/test_cli_reference.py` fails when this file differs from
what the generator prints. What the commands are for, with examples: the pages listed in
the [README](../README.md).
"""

# Rich markup as Rich reads it: a tag is [style] or [/style] unless its "[" is escaped.
RICH_TAG = re.compile(r"(\\*)\[([a-z#/@][^[]*?)]")
MARKDOWN_SPECIAL = re.compile(r"([\\`*_<>\[\]|#])")


def walk(command: Command, path: str) -> Iterator[tuple[str, Command]]:
    """Every command under ``command``, itself first, depth first, sub-commands in the
    order of ``--help``."""
    if command.hidden:
        return
    yield path, command
    if isinstance(command, TyperGroup):
        for name in subcommands(command):
            yield from walk(as_command(command.commands[name]), f"{path} {name}")


def subcommands(group: TyperGroup) -> list[str]:
    """The names of ``group``'s commands, in the order its ``--help`` lists them."""
    return group.list_commands(typer.Context(group))


def as_command(found: object) -> Command:
    if isinstance(found, TyperCommand | TyperGroup):
        return found
    raise TypeError(f"not a Typer command: {found!r}")


def commands(app: typer.Typer, name: str = "cpsfleet") -> list[tuple[str, Command]]:
    """Each command of ``app`` with its full path (``cpsfleet controller rescan``)."""
    return list(walk(as_command(typer.main.get_command(app)), name))


def plain(text: str | None, markup: bool) -> list[str]:
    """The paragraphs of a help text as the terminal shows them, without Rich markup."""
    if markup:
        text = RICH_TAG.sub(unescape_tag, text or "")
    paragraphs = re.split(r"\n\s*\n", (text or "").strip())
    return [" ".join(paragraph.split()) for paragraph in paragraphs if paragraph.strip()]


def unescape_tag(match: re.Match[str]) -> str:
    backslashes, tag = match.groups()
    if len(backslashes) % 2:
        return f"{backslashes[:-1]}[{tag}]"
    return backslashes


def escape(text: str) -> str:
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def help_paragraphs(command: Command) -> list[str]:
    return [escape(p) for p in plain(command.help, command.rich_markup_mode is not None)]


def arguments(command: Command) -> list[TyperArgument]:
    return [p for p in command.params if isinstance(p, TyperArgument) and not p.hidden]


def options(command: Command) -> list[TyperOption]:
    return [p for p in command.params if isinstance(p, TyperOption) and not p.hidden]


def argument_name(argument: TyperArgument) -> str:
    return usage_name(argument)


def usage(path: str, command: Command) -> str:
    words = [path, "[OPTIONS]"] + [argument_name(a) for a in arguments(command)]
    if isinstance(command, TyperGroup):
        words += ["COMMAND", "[ARGS]..."]
    return " ".join(words)


def option_names(option: TyperOption) -> str:
    value = f" {placeholder(option)}" if placeholder(option) else ""
    names = [f"`{name}{value}`" for name in option.opts]
    return " / ".join(names + [f"`{name}`" for name in option.secondary_opts])


def option_default(option: TyperOption) -> str | None:
    """The default as ``--help`` would show it, or None when it shows none."""
    if isinstance(option.show_default, str):
        return option.show_default
    default = option.default
    if not option.show_default or default is None or callable(default):
        return None
    if option.is_flag:
        if option.secondary_opts:
            return (option.opts if default else option.secondary_opts)[0]
        return "on" if default else None
    if isinstance(default, list | tuple):
        return ", ".join(str(item) for item in default) or None
    return str(default) if default != "" else '""'


def option_notes(option: TyperOption) -> str:
    notes = ["required"] if option.required else []
    notes += ["repeatable"] if option.multiple else []
    default = option_default(option)
    notes += [f"default: `{default}`"] if default is not None else []
    return f" ({'; '.join(notes)})" if notes else ""


def described(head: str, help_text: str | None, markup: bool) -> str:
    text = " ".join(escape(p) for p in plain(help_text, markup))
    return f"- {head}: {text}" if text else f"- {head}"


def option_line(option: TyperOption, markup: bool) -> str:
    return described(f"{option_names(option)}{option_notes(option)}", option.help, markup)


def argument_line(argument: TyperArgument, markup: bool) -> str:
    return described(f"`{argument_name(argument)}`", argument.help, markup)


def anchor(path: str) -> str:
    return path.replace(" ", "-")


def subcommand_lines(path: str, group: TyperGroup) -> list[str]:
    lines = []
    for name in subcommands(group):
        command = as_command(group.commands[name])
        if command.hidden:
            continue
        summary = help_paragraphs(command)[:1]
        link = f"[`{path} {name}`](#{anchor(f'{path} {name}')})"
        lines.append(f"- {link}: {summary[0]}" if summary else f"- {link}")
    return lines


def section(path: str, command: Command) -> str:
    """One command's part of the reference."""
    markup = command.rich_markup_mode is not None
    parts = [f"## `{path}`", f"```\n{usage(path, command)}\n```", *help_paragraphs(command)]
    if isinstance(command, TyperGroup):
        parts.append("Commands:\n\n" + "\n".join(subcommand_lines(path, command)))
    if arguments(command):
        lines = [argument_line(a, markup) for a in arguments(command)]
        parts.append("Arguments:\n\n" + "\n".join(lines))
    if options(command):
        lines = [option_line(o, markup) for o in options(command)]
        parts.append("Options:\n\n" + "\n".join(lines))
    return "\n\n".join(parts) + "\n"


def reference(app: typer.Typer, name: str = "cpsfleet") -> str:
    """The whole reference of ``app``, as Markdown."""
    sections = [section(path, command) for path, command in commands(app, name)]
    return "\n".join([HEADER, *sections])


def main() -> None:
    sys.stdout.buffer.write(reference(build()).encode("utf-8"))


if __name__ == "__main__":
    main()
