"""The ``cpsfleet`` command: one entry point, a sub-command per side."""

from __future__ import annotations

import typer

from agent.cli import app as agent_app
from controller.cli import app as controller_app
from sim.cli import app as sim_app

app = typer.Typer(
    help="Fleet monitoring of CPS cards, PC/SC readers and Cryptolib CPS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(agent_app, name="agent")
app.add_typer(controller_app, name="controller")
app.add_typer(sim_app, name="sim")


def main() -> None:
    app()
