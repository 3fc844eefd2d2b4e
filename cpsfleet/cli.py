"""The ``cpsfleet`` command: one entry point, a sub-command per side."""

from __future__ import annotations

import typer

from agent.cli import app as agent_app
from controller.cli import app as controller_app
from controller.pki_cli import app as pki_app
from sim.cli import app as sim_app

app = typer.Typer(
    help="Fleet monitoring of CPS cards, PC/SC readers and Cryptolib CPS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(agent_app, name="agent")
app.add_typer(controller_app, name="controller")
app.add_typer(sim_app, name="sim")
app.add_typer(pki_app, name="pki")


def main() -> None:
    app()
