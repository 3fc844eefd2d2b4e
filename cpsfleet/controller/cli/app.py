"""``cpsfleet controller``: the fleet side."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import typer

from cpsfleet import logs
from cpsfleet.clihelp import App
from cpsfleet.controller.cli import alerts as alerts_cli
from cpsfleet.controller.cli import audit as audit_cli
from cpsfleet.controller.cli import exports as exports_cli
from cpsfleet.controller.cli import people as people_cli
from cpsfleet.controller.cli import readiness as readiness_cli
from cpsfleet.controller.cli import rescan as rescan_cli
from cpsfleet.controller.cli import store as store_cli
from cpsfleet.controller.cli.common import (
    AS_JSON,
    CONFIG,
    DATABASE,
    HOST_OF_CARDS,
    HOST_OF_FINDINGS,
    MIN_PASSWORD_LENGTH,
    ONE_HOST,
    SEVERITY_OF_CARDS,
    SEVERITY_OF_FINDINGS,
    SEVERITY_OF_HOSTS,
    SITE_OF_CARDS,
    SITE_OF_FINDINGS,
    SITE_OF_HOSTS,
    check_severity,
    database_path,
    emit,
    fail,
    filters,
    host_option,
    open_store,
    settings_or_exit,
    severity_option,
    site_option,
)
from cpsfleet.controller.db.store import StoreError
from cpsfleet.controller.intake.receiver import ReceiverError
from cpsfleet.controller.service import Controller, WorkerError
from cpsfleet.controller.web import data as webdata
from cpsfleet.controller.web.auth import hash_secret, new_token
from cpsfleet.controller.web.server import DashboardError
from cpsfleet.i18n import _
from cpsfleet.schemas import SchemaError, validate
from cpsfleet.signals import stop_on_signals

# Set up, run, look, act: --help lists the commands in this order.
ORDER = (
    "run",
    "roster",
    "user",
    "token",
    "dashboard-secret",
    "validate",
    "hosts",
    "cards",
    "findings",
    "alerts",
    "channels",
    "readiness",
    "forecast",
    "audit",
    "rescan",
    "ack",
    "silence",
    "export",
    "copy-store",
)

app = App(
    order=ORDER,
    help="Receive, store and check the fleet's status documents.",
    no_args_is_help=True,
)

readiness_cli.register(app)
alerts_cli.register(app)
exports_cli.register(app)
rescan_cli.register(app)
people_cli.register(app)
audit_cli.register(app)
store_cli.register(app)


@app.command()
def run(config: Path | None = CONFIG) -> None:
    """Run the controller: subscribe to the fleet, store, evaluate the rules, until stopped."""
    settings = settings_or_exit(config)
    logs.configure()
    try:
        Controller(settings).run(stop_on_signals())
    except (StoreError, DashboardError, ReceiverError, WorkerError) as error:
        raise fail(str(error)) from None


@app.command()
def hosts(
    site: str | None = site_option(SITE_OF_HOSTS),
    severity: str | None = severity_option(SEVERITY_OF_HOSTS),
    host: str | None = host_option(ONE_HOST),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
    as_json: bool = AS_JSON,
) -> None:
    """The fleet's hosts: state, last report, readers, cards, Cryptolib, open findings."""
    check_severity(severity)
    with open_store(database_path(config, database)) as store:
        rows = webdata.hosts(store, filters(store, site, severity, host))
    empty = _("no host") if site or severity or host else _("no host has reported yet")
    emit(rows, as_json, empty)


@app.command()
def cards(
    expiring_within: int | None = typer.Option(
        None,
        metavar="DAYS",
        help="Only cards whose certificates expire within this many days (or expired).",
    ),
    site: str | None = site_option(SITE_OF_CARDS),
    severity: str | None = severity_option(SEVERITY_OF_CARDS),
    host: str | None = host_option(HOST_OF_CARDS),
    present: bool = typer.Option(False, "--present", help="Only the cards in a reader now."),
    every: bool = typer.Option(
        False, "--all", help="The superseded and retired cards too (see the status column)."
    ),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
    as_json: bool = AS_JSON,
) -> None:
    """The cards the fleet watches, in a reader now or not, soonest expiry first: where each
    is (present in a reader, or last seen on a host and when)."""
    check_severity(severity)
    settings = settings_or_exit(config)
    now = datetime.now(UTC)
    with open_store(database or Path(settings.database)) as store:
        chosen = filters(store, site, severity, host)
        rows = webdata.cards(store, now, settings.thresholds, chosen, every, present)
    if expiring_within is not None:
        rows = [row for row in rows if _expires_within(row, expiring_within)]
    if not as_json:
        zone = settings.thresholds.zone
        rows = [row | {"where": _where(row, zone)} for row in rows]
    emit(rows, as_json, _("no card found"), columns=None if as_json else CARD_COLUMNS)


CARD_COLUMNS = (
    *("serial", "kind", "surname", "given_name", "id_nat", "expires", "days_left", "severity"),
    *("where", "site", "status"),
)


def _where(row: dict[str, Any], zone: tzinfo) -> str:
    """Present on HOST (READER), or last seen on HOST at TIME in the fleet's time zone."""
    if row["in_reader"]:
        return _("present on {host} ({reader})").format(host=row["host"], reader=row["reader"])
    seen: datetime | None = row["last_seen"]
    if seen is None:
        return _("last seen on {host}").format(host=row["host"])
    at = f"{seen.astimezone(zone):%Y-%m-%d %H:%M}"
    return _("last seen on {host} at {time}").format(host=row["host"], time=at)


def _expires_within(row: dict[str, Any], days: int) -> bool:
    return row["days_left"] is not None and row["days_left"] <= days


@app.command()
def findings(
    site: str | None = site_option(SITE_OF_FINDINGS),
    severity: str | None = severity_option(SEVERITY_OF_FINDINGS),
    host: str | None = host_option(HOST_OF_FINDINGS),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
    as_json: bool = AS_JSON,
) -> None:
    """What is wrong across the fleet, most severe first."""
    check_severity(severity)
    with open_store(database_path(config, database)) as store:
        rows = webdata.findings(store, filters(store, site, severity, host))
    emit(rows, as_json, _("no finding"))


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
        raise fail(
            _("the password must have at least {count} characters").format(
                count=MIN_PASSWORD_LENGTH
            )
        )
    typer.echo("# in the [dashboard] table of the controller configuration:")
    typer.echo(f'password_hash = "{hash_secret(secret)}"')


@app.command("validate")
def validate_command(
    documents: list[typer.FileText] = typer.Argument(
        ..., metavar="FILE", help="Documents (JSON) to check."
    ),
) -> None:
    """Check status, event or presence documents against the contract; exit 1 if any is invalid."""
    invalid = 0
    for document in documents:
        try:
            validate(json.load(document))
            typer.echo(_("{file}: valid").format(file=document.name))
        except (SchemaError, json.JSONDecodeError) as error:
            invalid += 1
            typer.echo(
                _("{file}: INVALID: {error}").format(file=document.name, error=error), err=True
            )
    raise typer.Exit(1 if invalid else 0)
