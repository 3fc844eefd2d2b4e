"""``cpsfleet agent``: the workstation side."""

from __future__ import annotations

import json

import typer

from agent.inventory import to_document
from agent.scan import scan
from agent.summary import exit_code, render

app = typer.Typer(
    help="Inventory this workstation's PC/SC readers, Cryptolib CPS and CPS cards.",
    no_args_is_help=True,
)


@app.command("scan")
def scan_command(
    as_json: bool = typer.Option(
        False, "--json", help="Print the status document the agent publishes."
    ),
    site: str | None = typer.Option(
        None, help="Site label reported with the host.", envvar="CPSFLEET_SITE"
    ),
    host_id: str | None = typer.Option(
        None, help="Host id (default: derived from the machine id).", envvar="CPSFLEET_HOST_ID"
    ),
) -> None:
    """Scan once and print what was found.

    Exit codes: 0 ready for CPS cards; 1 problems found (listed);
    2 bad usage; 3 the PC/SC service (pcscd) is unreachable.
    """
    status = scan(site=site, host_id=host_id)
    if as_json:
        typer.echo(json.dumps(to_document(status), indent=2, ensure_ascii=False))
    else:
        typer.echo(render(status))
    raise typer.Exit(exit_code(status))
