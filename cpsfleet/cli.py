"""The ``cpsfleet`` command: one entry point, a sub-command per side.

Each side's commands are imported only when they run: ``cpsfleet agent run`` on a
workstation does not load the controller (its web server, its database code) nor the
simulators, which keeps the agent small in memory. For the same reason that command, as
the service manager starts it, does not load Typer either (``agent.service``).
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

# Sub-command: (module, the Typer app in it)
GROUPS = {
    "agent": "agent.cli",
    "controller": "controller.cli",
    "sim": "sim.cli",
    "pki": "controller.pki_cli",
}


def build(names: list[str] | None = None) -> typer.Typer:
    """The command with the groups of ``names`` (all of them by default)."""
    import typer

    app = typer.Typer(
        help="Fleet monitoring of CPS cards, PC/SC readers and Cryptolib CPS.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )
    for name in names or list(GROUPS):
        app.add_typer(importlib.import_module(GROUPS[name]).app, name=name)
    return app


def main() -> None:
    args = sys.argv[1:]
    chosen = args[0] if args else None
    if chosen == "agent":
        from agent import service

        command = service.parse_run(args[1:])
        if command is not None:
            sys.exit(service.run(command.config))
    build([chosen] if chosen in GROUPS else None)()
