"""Every command has help, and docs/reference.md is what the commands say now."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
import typer

from cpsfleet import cli, clidoc
from cpsfleet.cli import build

REFERENCE = Path(__file__).parent.parent / "docs" / "reference.md"
REGENERATE = ".venv/bin/python -m cpsfleet.clidoc > docs/reference.md"

ALL = clidoc.commands(build())


def test_every_command_has_help() -> None:
    assert len(ALL) >= 8
    for path, command in ALL:
        assert command.help and command.help.strip(), f"{path} has no help"


def test_committed_reference_is_what_the_commands_say() -> None:
    committed = REFERENCE.read_text("utf-8")
    generated = clidoc.reference(build())
    diff = difflib.unified_diff(
        committed.splitlines(), generated.splitlines(), "committed", "generated", lineterm=""
    )
    same = committed == generated
    assert same, (
        f"docs/reference.md differs from the commands' help; regenerate it with `{REGENERATE}`"
        " and commit it:\n" + "\n".join(list(diff)[:40])
    )


def test_reference_has_a_section_for_every_command() -> None:
    committed = REFERENCE.read_text("utf-8")
    for path, _ in ALL:
        assert f"\n## `{path}`\n" in committed, f"docs/reference.md has no section for {path}"


def test_reference_shows_help_as_plain_text() -> None:
    app = typer.Typer(rich_markup_mode="rich")

    @app.command()
    def issue(
        days: int = typer.Option(825, help="Validity in [bold]days[/bold], not \\[days]."),
    ) -> None:
        """Issue DIR/<role>s/NAME.pem, [red]never[/red] overwriting `it`."""

    text = clidoc.reference(app, "tool")
    assert "Issue DIR/\\<role\\>s/NAME.pem, never overwriting \\`it\\`." in text
    assert "- `--days DAYS` (default: `825`): Validity in days, not \\[days\\]." in text
    assert "tool [OPTIONS]" in text


def test_a_group_whose_libraries_are_missing_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on a workstation, where only the agent's libraries are installed."""
    (tmp_path / "controller_without_fastapi.py").write_text("import fastapi_not_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.GROUPS, "controller", "controller_without_fastapi")
    with pytest.raises(cli.NotInstalled) as missing:
        cli.check_installed("controller")
    expected = "needs the fastapi_not_here library, which this installation lacks: "
    assert str(missing.value).endswith(expected + "pip install 'cpsfleet[controller]'")
    listed = typer.main.get_command(cli.build())
    assert "pip install" in (listed.commands["controller"].help or "")  # type: ignore[attr-defined]
