"""The ``cpsfleet`` command: one entry point, a sub-command per side.

Each side's commands are imported only when they run: ``cpsfleet agent run`` on a
workstation does not load the controller (its web server, its database code) nor the
simulators, which keeps the agent small in memory. For the same reason that command, as
the service manager starts it, does not load Typer either (``cpsfleet.agent.service``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

# Sub-command: (module, the Typer app in it)
GROUPS = {
    "agent": "cpsfleet.agent.cli",
    "controller": "cpsfleet.controller.cli.app",
    "sim": "cpsfleet.sim.cli",
    "pki": "cpsfleet.controller.cli.pki",
}
# --help lists them as one sets a fleet up: its CA, the controller, the agents; then the
# simulators, for tests and demos.
ORDER = ("pki", "controller", "agent", "sim")


def build(names: Sequence[str] | None = None) -> typer.Typer:
    """The command with the groups of ``names`` (all of them if None), and ``--version``."""
    import typer

    from cpsfleet.clihelp import App

    app = App(
        order=ORDER,
        help="Fleet monitoring of CPS cards, PC/SC readers and Cryptolib CPS.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )

    def print_version(asked: bool) -> None:
        if asked:
            typer.echo(version_text())
            raise typer.Exit()

    def choose_language(chosen: str | None) -> str | None:
        from cpsfleet import i18n

        try:
            i18n.set_language(i18n.choose(chosen, os.environ))
        except i18n.LanguageError as refused:
            raise typer.BadParameter(_refusal(chosen, refused)) from None
        return chosen

    @app.callback()
    def options(
        version: bool = typer.Option(
            False,
            "--version",
            callback=print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
        lang: str | None = typer.Option(
            None,
            "--lang",
            callback=choose_language,
            is_eager=True,
            help="fr or en: the language of tables and messages (default: CPSFLEET_LANG, "
            "else the locale's, LC_ALL, LC_MESSAGES or LANG, if English; else French).",
        ),
    ) -> None:
        pass  # the options of ``cpsfleet`` itself; --version acts as it is read

    for name in GROUPS if names is None else names:
        app.add_typer(_group(name), name=name)
    return app


def _refusal(chosen: str | None, refused: Exception) -> str:
    """Why ``--lang`` or ``CPSFLEET_LANG`` was refused, in the language the environment
    asks for when it names one cpsfleet speaks (``--lang de`` under ``CPSFLEET_LANG=en``)."""
    from cpsfleet import i18n

    try:
        i18n.set_language(i18n.choose(None, os.environ))
        i18n.check(chosen or "")
    except i18n.LanguageError as error:
        return str(error)
    return str(refused)


def version_text() -> str:
    """``cpsfleet 0.1.0``: the version of the installed package, from its metadata."""
    from importlib.metadata import version

    return f"cpsfleet {version('cpsfleet')}"


# The extra that brings each group's libraries, where the bare package lacks them.
EXTRAS = {"controller": "controller", "pki": "controller"}


class NotInstalled(Exception):
    """A group whose libraries this installation lacks; the message says what to install."""


def _group(name: str) -> typer.Typer:
    """The group's Typer app; on a machine without its libraries (a workstation has the
    agent's only), a group with no command whose help says which extra to install."""

    from cpsfleet.clihelp import App

    try:
        group: typer.Typer = importlib.import_module(GROUPS[name]).app
        return group
    except ModuleNotFoundError as error:
        if name not in EXTRAS or (error.name or "").startswith("cpsfleet"):
            raise
        # Typer's help is Rich markup, where [controller] would be a style.
        help_text = str(_not_installed(name, str(error.name))).replace("[", "\\[")
        return App(help=help_text)


def _not_installed(name: str, library: str) -> NotInstalled:
    return NotInstalled(
        f"cpsfleet {name} needs the {library} library, which this installation lacks: "
        f"pip install 'cpsfleet[{EXTRAS[name]}]'"
    )


def check_installed(name: str) -> None:
    """Raise NotInstalled if the group ``name`` cannot be loaded for want of a library."""
    try:
        importlib.import_module(GROUPS[name])
    except ModuleNotFoundError as error:
        if name not in EXTRAS or (error.name or "").startswith("cpsfleet"):
            raise
        raise _not_installed(name, str(error.name)) from None


def main() -> None:
    args = sys.argv[1:]
    chosen = args[0] if args else None
    if chosen == "agent":
        from cpsfleet.agent import service

        command = service.parse_run(args[1:])
        if command is not None:
            sys.exit(service.run(command.config))
    if chosen in GROUPS:
        try:
            check_installed(chosen)
        except NotInstalled as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
    # --version needs no group: loading none keeps it quick.
    build([chosen] if chosen in GROUPS else [] if chosen == "--version" else None)()
