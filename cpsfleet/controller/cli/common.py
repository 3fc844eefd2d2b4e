"""What every ``cpsfleet controller`` command shares: options, errors, output, opening the store.

The feature modules (``readiness``, ``alerts``, ``exports``, ``rescan``) and ``app``
import from here, so none of them has to import another. The listings take the same
filters (``SITE``, ``SEVERITY``, ``HOST``, ``AS_JSON``), turned into one
``cpsfleet.controller.filters.Filters`` by ``filters``: a site in any case, accents and
spacing, a host by its id or hostname. A command that changes something records it in the
audit trail with ``audited``, as ``cli:`` and the system user who ran it.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from tabulate import tabulate

from cpsfleet.controller.cli import labels
from cpsfleet.controller.db.connect import Database
from cpsfleet.controller.db.people import People
from cpsfleet.controller.db.store import Store, StoreError
from cpsfleet.controller.filters import Filters, host_id
from cpsfleet.controller.model import SEVERITIES
from cpsfleet.controller.settings import (
    ControllerSettings,
    SettingsError,
    load_settings,
)
from cpsfleet.i18n import N_, _
from cpsfleet.schemas.times import format_utc

EXIT_USAGE = 2
MIN_PASSWORD_LENGTH = 12
# The audit trail's source of a change made from the command line.
CLI_SOURCE = "cli"
CONFIG_HELP = N_("Configuration file (TOML; default /etc/cpsfleet/controller.toml if it exists).")
DATABASE_HELP = N_(
    "The database: a SQLite file or a postgresql:// URL (default: from the configuration)."
)
JSON_HELP = N_("Print JSON instead of a table.")

CONFIG = typer.Option(None, "--config", metavar="FILE", help=CONFIG_HELP)
DATABASE = typer.Option(None, "--database", metavar="DATABASE", help=DATABASE_HELP)
AS_JSON = typer.Option(False, "--json", help=JSON_HELP)


# Each listing says which of its rows a filter keeps, in a sentence of its own marked N_:
# the catalog translates whole sentences.
SITE_OF_HOSTS = N_("Only the hosts of this site (any case, accents and spacing).")
SEVERITY_OF_HOSTS = N_(
    "Only the hosts with an open finding of this severity: critical, warning or info."
)
ONE_HOST = N_("Only this host (its id or hostname).")
SITE_OF_CARDS = N_(
    "Only the cards last seen at a host of this site (any case, accents and spacing)."
)
SEVERITY_OF_CARDS = N_("Only the cards whose expiry or PIN is critical or warning.")
HOST_OF_CARDS = N_("Only the cards last seen in a reader of this host (its id or hostname).")
SITE_OF_PROFESSIONALS = N_("Only the professionals of this site (any case, accents and spacing).")
SEVERITY_OF_PROFESSIONALS = N_(
    "Only the professionals who cannot log in (critical) or have a step left (warning)."
)
SITE_OF_FINDINGS = N_("Only the findings of hosts of this site (any case, accents and spacing).")
SEVERITY_OF_FINDINGS = N_("Only the findings of this severity: critical, warning or info.")
HOST_OF_FINDINGS = N_("Only the findings of this host (its id or hostname).")
SITE_OF_ALERTS = N_("Only the alerts of hosts of this site (any case, accents and spacing).")
SEVERITY_OF_ALERTS = N_("Only the alerts of this severity: critical, warning or info.")
HOST_OF_ALERTS = N_("Only the alerts of this host (its id or hostname).")


def site_option(help_text: str) -> Any:
    """``--site``: the rows of a site, named in any case, accents and spacing."""
    return typer.Option(None, "--site", help=help_text)


def severity_option(help_text: str) -> Any:
    """``--severity``: the rows of a severity (critical, warning, info)."""
    return typer.Option(None, "--severity", help=help_text)


def host_option(help_text: str) -> Any:
    """``--host``: the rows of one host, by id or hostname."""
    return typer.Option(None, "--host", help=help_text)


def fail(message: str) -> typer.Exit:
    """A one-line error on stderr; raise what this returns (exit code 2)."""
    typer.echo(_("error: {message}").format(message=message), err=True)
    return typer.Exit(EXIT_USAGE)


def settings_or_exit(config: Path | None) -> ControllerSettings:
    try:
        settings = load_settings(config)
    except SettingsError as error:
        raise fail(str(error)) from None
    labels.show_times_in(settings.thresholds.zone)
    return settings


def database_path(config: Path | None, database: Path | None) -> Path:
    return database or Path(settings_or_exit(config).database)


def open_store(path: Path, readonly: bool = True) -> Store:
    try:
        return Store.open_readonly(path) if readonly else Store(path)
    except StoreError as error:
        raise fail(str(error)) from None


def cli_actor() -> str:
    """Who the audit trail says made a change from the command line: ``cli:`` and the
    system user running the command (their uid when the system has no name for it)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = str(os.getuid())
    return f"cli:{user}"


def audited(
    db: Database,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
    outcome: str = "ok",
) -> None:
    """Record a change made from the command line in the database's audit trail."""
    People(db).record(datetime.now(UTC), cli_actor(), CLI_SOURCE, action, target, outcome, detail)


@contextmanager
def people_of(config: Path | None, database: Path | None, write: bool = False) -> Iterator[People]:
    """The people tables of the controller database (users, tokens, the audit trail);
    written, it is created and migrated as the controller would (users may be added before
    its first start)."""
    path = database or Path(settings_or_exit(config).database)
    with open_store(path, readonly=not write) as store:
        yield People(store.database)


def check_severity(severity: str | None) -> None:
    if severity is not None and severity not in SEVERITIES:
        raise fail(
            _("--severity must be one of {choices}, not {given!r}").format(
                choices=", ".join(SEVERITIES), given=severity
            )
        )


def filters(
    store: Store, site: str | None, severity: str | None = None, host: str | None = None
) -> Filters:
    """The filters of a listing's options; an unknown severity or host ends the command."""
    check_severity(severity)
    if host is None:
        return Filters(site, severity)
    found = host_id(host, store.hosts())
    if found is None:
        raise fail(
            _("unknown host {host!r}: `cpsfleet controller hosts` lists the fleet").format(
                host=host
            )
        )
    return Filters(site, severity, host=found)


def emit(
    rows: list[dict[str, Any]],
    as_json: bool,
    empty: str,
    columns: tuple[str, ...] | None = None,
    wrap: Mapping[str, int] | None = None,
) -> None:
    """JSON (every key, times as ISO 8601 UTC), or a table of ``columns`` (all by default)
    with the given columns wrapped."""
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=_json_value))
    elif rows:
        keys = list(columns or rows[0])
        shown = [[labels.value(key, row[key]) for key in keys] for row in rows]
        widths = [(wrap or {}).get(key) for key in keys]
        headers = [labels.header(key) for key in keys]
        typer.echo(tabulate(shown, headers=headers, maxcolwidths=widths))
    else:
        typer.echo(empty)


def _json_value(value: Any) -> str:
    if isinstance(value, datetime):
        return format_utc(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
