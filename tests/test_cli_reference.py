"""Every command has help, and the README's command reference matches ``--help``."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main
from typer.core import TyperGroup

from cpsfleet.cli import build

README = (Path(__file__).parent.parent / "README.md").read_text("utf-8")


def commands(group: TyperGroup, prefix: str = "cpsfleet") -> list[tuple[str, object]]:
    found = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        found.append((path, command))
        if isinstance(command, TyperGroup):
            found += commands(command, path)
    return found


ALL = commands(typer.main.get_command(build()))  # type: ignore[arg-type]


def test_every_command_has_help() -> None:
    assert len(ALL) >= 8
    for path, command in ALL:
        assert command.help and command.help.strip(), f"{path} has no help"


def readme_section(path: str) -> str:
    match = re.search(rf"^### `{re.escape(path)}`\n(.*?)(?=^#)", README, re.S | re.M)
    assert match, f"README.md has no '### `{path}`' section"
    return match.group(1)


def test_readme_reference_lists_exactly_each_commands_options() -> None:
    for path, command in ALL:
        if isinstance(command, TyperGroup):
            continue
        options = {
            opt
            for param in command.params
            for opt in getattr(param, "opts", [])
            if opt.startswith("--")
        }
        documented = set(re.findall(r"`(--[a-z0-9-]+)", readme_section(path)))
        assert documented == options, f"{path}: README lists {documented}, --help has {options}"
