"""``cpsfleet controller``: the fleet side."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from cpsfleet import logs
from cpsfleet.controller.cli import alerts as alerts_cli
from cpsfleet.controller.cli import exports as exports_cli
from cpsfleet.controller.cli import readiness as readiness_cli
from cpsfleet.controller.cli import rescan as rescan_cli
from cpsfleet.controller.cli.common import (
    CONFIG_HELP,
    DATABASE_HELP,
    database_path,
    emit,
    fail,
    open_store,
    settings_or_exit,
)
from cpsfleet.controller.db.store import StoreError
from cpsfleet.controller.intake.receiver import ReceiverError
from cpsfleet.controller.model import SEVERITIES
from cpsfleet.controller.service import Controller, WorkerError
from cpsfleet.controller.web.auth import hash_secret, new_token
from cpsfleet.controller.web.server import DashboardError
from cpsfleet.schemas import SchemaError, validate
from cpsfleet.schemas.times import format_utc
from cpsfleet.signals import stop_on_signals

MIN_PASSWORD_LENGTH = 12

app = typer.Typer(
    help="Receive, store and check the fleet's status documents.", no_args_is_help=True
)

readiness_cli.register(app)
alerts_cli.register(app)
exports_cli.register(app)
rescan_cli.register(app)


@app.command()
def run(config: Path | None = typer.Option(None, help=CONFIG_HELP)) -> None:
    """Run the controller: subscribe to the fleet, store, evaluate the rules, until stopped."""
    settings = settings_or_exit(config)
    logs.configure()
    try:
        Controller(settings).run(stop_on_signals())
    except (StoreError, DashboardError, ReceiverError, WorkerError) as error:
        raise fail(str(error)) from None


@app.command()
def hosts(
    config: Path | None = typer.Option(None, help=CONFIG_HELP),
    database: Path | None = typer.Option(None, help=DATABASE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """The fleet's hosts: presence, last report, readers, cards, Cryptolib, open findings."""
    store = open_store(database_path(config, database))
    emit(store.hosts(), as_json, "no host has reported yet")


@app.command()
def cards(
    expiring_within: int | None = typer.Option(
        None, help="Only cards whose certificates expire within this many days (or expired)."
    ),
    config: Path | None = typer.Option(None, help=CONFIG_HELP),
    database: Path | None = typer.Option(None, help=DATABASE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """The cards seen in the fleet's readers, soonest expiry first."""
    store = open_store(database_path(config, database))
    emit(store.cards(expiring_within, datetime.now(UTC)), as_json, "no card found")


@app.command()
def findings(
    severity: str | None = typer.Option(None, help="critical, warning or info."),
    site: str | None = typer.Option(None, help="Only hosts of this site."),
    config: Path | None = typer.Option(None, help=CONFIG_HELP),
    database: Path | None = typer.Option(None, help=DATABASE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """What is wrong across the fleet, most severe first."""
    if severity is not None and severity not in SEVERITIES:
        raise fail(f"--severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
    store = open_store(database_path(config, database))
    rows = [_finding_row(asdict(f)) for f in store.findings(severity, site)]
    emit(rows, as_json, "no finding")


def _finding_row(row: dict[str, Any]) -> dict[str, Any]:
    since = row.get("since")
    if isinstance(since, datetime):
        row["since"] = format_utc(since)
    return row


@app.command("dashboard-secret")
def dashboard_secret(
    token: bool = typer.Option(
        False, "--token", help="Make a random token (for scripts, Prometheus) instead."
    ),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of stdin."
    ),
) -> None:
    """Hash a dashboard password (asked twice, not shown) or a new token for the configuration."""
    if token:
        secret = new_token()
        typer.echo(f"# the token, shown once: send it as 'Authorization: Bearer {secret}'")
        typer.echo(f'token_hash = "{hash_secret(secret)}"')
        return
    if password_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    else:
        secret = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(secret) < MIN_PASSWORD_LENGTH:
        raise fail(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    typer.echo("# in the [dashboard] table of the controller configuration:")
    typer.echo(f'password_hash = "{hash_secret(secret)}"')


@app.command("validate")
def validate_command(
    documents: list[typer.FileText] = typer.Argument(..., help="Documents (JSON) to check."),
) -> None:
    """Check status, event or presence documents against the contract; exit 1 if any is invalid."""
    invalid = 0
    for document in documents:
        try:
            validate(json.load(document))
            typer.echo(f"{document.name}: valid")
        except (SchemaError, json.JSONDecodeError) as error:
            invalid += 1
            typer.echo(f"{document.name}: INVALID: {error}", err=True)
    raise typer.Exit(1 if invalid else 0)
