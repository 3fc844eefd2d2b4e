"""``cpsfleet agent``: the workstation side."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cpsfleet.agent import service
from cpsfleet.agent.config import ConfigError, load_config
from cpsfleet.agent.scan import scan
from cpsfleet.agent.summary import EXIT_USAGE, exit_code, render
from cpsfleet.clihelp import App
from cpsfleet.i18n import N_, _

CONFIG_HELP = N_(
    "Configuration file (TOML; default: the system's, /etc/cpsfleet/agent.toml on Linux, "
    "if it exists)."
)


app = App(
    order=("run", "scan"),
    help="Inventory this workstation's PC/SC readers, Cryptolib CPS and CPS cards.",
    no_args_is_help=True,
)


@app.command("scan")
def scan_command(
    as_json: bool = typer.Option(
        False, "--json", help="Print the status document the agent publishes."
    ),
    config: Path | None = typer.Option(
        None,
        metavar="FILE",
        help=CONFIG_HELP,
    ),
    site: str | None = typer.Option(None, help="Site label reported with the host."),
    host_id: str | None = typer.Option(
        None, metavar="ID", help="Host id (default: derived from the machine id)."
    ),
) -> None:
    """Scan once and print what was found.

    Exit codes: 0 ready for CPS cards; 1 problems found (listed);
    2 bad usage or configuration; 3 the PC/SC service (pcscd) is unreachable.
    """
    try:
        settings = load_config(config)
    except ConfigError as error:
        typer.echo(_("error: {message}").format(message=error), err=True)
        raise typer.Exit(EXIT_USAGE) from None
    status = scan(site=site or settings.site, host_id=host_id or settings.host_id)
    if as_json:
        typer.echo(json.dumps(status.document(), indent=2, ensure_ascii=False))
    else:
        typer.echo(render(status))
    raise typer.Exit(exit_code(status))


@app.command("run")
def run_command(
    config: Path | None = typer.Option(
        None,
        metavar="FILE",
        help=CONFIG_HELP,
    ),
) -> None:
    """Run the agent: inventory on schedule and on card changes, published over MQTT.

    Stops cleanly on SIGTERM or Ctrl-C, saying "offline" to the broker first.
    """
    # As the service manager starts it, this command does not come here (cpsfleet.agent.service).
    raise typer.Exit(service.run(config))
