"""``cpsfleet controller silence | alerts | ack``: the administrators' side of the alerts.

``register(app)`` adds these commands to the controller's app. They open the
controller database read-write (the silences and acknowledgements are theirs
to write) beside a running controller: SQLite serialises the two writers. Each
acknowledgement, silence and end of a silence goes into the audit trail, its target
spelled as the dashboard's: ``rule/host/subject`` (``*``: any).
"""

from __future__ import annotations

import getpass
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from cpsfleet.clihelp import App
from cpsfleet.controller.alerts.book import (
    ALERT_STATES,
    AlertBook,
    AlertError,
    Channel,
    Silence,
    open_database,
)
from cpsfleet.controller.cli.common import (
    CONFIG,
    DATABASE,
    HOST_OF_ALERTS,
    JSON_HELP,
    SEVERITY_OF_ALERTS,
    SITE_OF_ALERTS,
    audited,
    check_severity,
    database_path,
    emit,
    fail,
    filters,
    host_option,
    open_store,
    severity_option,
    site_option,
)
from cpsfleet.controller.db.connect import Database
from cpsfleet.controller.settings import SettingsError, load_settings
from cpsfleet.controller.web import data as webdata
from cpsfleet.i18n import N_, _
from cpsfleet.schemas.times import FIRST, LAST, format_utc, shifted

BY_HELP = N_("Who does it (default: your login name).")
UNTIL_HELP = N_(
    "End of the silence: an ISO date (midnight) or date and time, local time unless it "
    "has an offset, or a duration from now: 30m, 2h, 3d, 1w."
)
DURATION = re.compile(r"([0-9]+)\s*([mhdw])")
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def register(app: typer.Typer) -> None:
    """Add ``silence`` (add, list, expire), ``alerts`` and ``ack`` to the controller's app."""
    silence = App(
        order=("add", "list", "expire"),
        help="Silences: alerts still tracked, but not notified, until a date.",
        no_args_is_help=True,
    )
    silence.command("add")(silence_add)
    silence.command("list")(silence_list)
    silence.command("expire")(silence_expire)
    app.add_typer(silence, name="silence")
    app.command("alerts")(list_alerts)
    app.command("channels")(list_channels)
    app.command("ack")(acknowledge)


def parse_until(text: str, now: datetime) -> datetime:
    """An aware UTC datetime from an ISO date or datetime, or a duration after ``now``."""
    if match := DURATION.fullmatch(text.strip()):
        seconds = int(match[1]) * UNIT_SECONDS[match[2]]
        try:
            return shifted(now, timedelta(seconds=seconds))
        except OverflowError:  # beyond what timedelta holds: until the end of year 9999
            return LAST
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--until {text!r} is neither an ISO date or datetime (2026-12-01, "
            "2026-12-01T18:00) nor a duration (30m, 2h, 3d, 1w)"
        ) from None
    # A naive time is the administrator's local time, as they typed it.
    try:
        return (moment if moment.tzinfo else moment.astimezone()).astimezone(UTC)
    except (OverflowError, ValueError):  # e.g. 9999-12-31T23:59 east of Greenwich
        return LAST if moment.year > 1 else FIRST


@contextmanager
def alert_database(config: Path | None, database: Path | None) -> Iterator[Database]:
    """The controller database, read-write, closed after use; its errors and the alert
    book's end the command."""
    try:
        path = database or Path(load_settings(config).database)
        with closing(open_database(path)) as db:
            yield db
    except (SettingsError, AlertError, sqlite3.Error) as error:
        raise fail(str(error)) from None


@contextmanager
def alert_book(config: Path | None, database: Path | None) -> Iterator[AlertBook]:
    """The alert book of the database, closed after use; its errors end the command."""
    with alert_database(config, database) as db:
        yield AlertBook(db)


def alert_key(rule: str | None, host: str | None, subject: str | None) -> str:
    """An alert's or a silence's key as the audit trail spells it: ``rule/host/subject``."""
    return "/".join("*" if part is None else part for part in (rule, host, subject))


def who(by: str | None) -> str:
    if by is not None:
        return by
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        raise fail(_("cannot tell your login name: say who you are with --by")) from None


def silence_add(
    rule: str | None = typer.Option(None, help="Only alerts of this rule (default: any)."),
    host: str | None = typer.Option(None, help="Only alerts of this host id (default: any)."),
    subject: str | None = typer.Option(
        None, help='Only alerts of this card or reader ("" for the host itself; default: any).'
    ),
    until: str = typer.Option(..., metavar="WHEN", help=UNTIL_HELP),
    reason: str = typer.Option(..., help="Why: shown to whoever looks at the silence."),
    by: str | None = typer.Option(None, metavar="NAME", help=BY_HELP),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """Silence the alerts matching a rule, a host and a subject until a date."""
    now = datetime.now(UTC)
    try:
        end = parse_until(until, now)
    except ValueError as error:
        raise fail(str(error)) from None
    author = who(by)
    with alert_database(config, database) as db:
        silence_id = AlertBook(db).add_silence(rule, host, subject, end, reason, author, now)
        detail = {"silence": silence_id, "until": format_utc(end), "reason": reason}
        audited(db, "alert.silence", alert_key(rule, host, subject), detail | {"by": author})
    until = f"{end:%Y-%m-%d %H:%M} UTC"
    typer.echo(_("silence {id} added, until {until}").format(id=silence_id, until=until))


def silence_list(
    include_all: bool = typer.Option(False, "--all", help="Also the expired and ended ones."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """The active silences (all of them with --all), oldest first."""
    with alert_book(config, database) as book:
        silences = book.silences(datetime.now(UTC), include_expired=include_all)
    rows = [_silence_row(silence, as_json) for silence in silences]
    if not include_all:
        rows = [{k: v for k, v in row.items() if k != "expired_at"} for row in rows]
    emit(rows, as_json, _("no active silence"))


def silence_expire(
    silence_id: int = typer.Argument(..., metavar="ID", help="The silence's id (see list)."),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """End a silence now: the alerts it matched notify again from the next evaluation."""
    with alert_database(config, database) as db:
        ended = AlertBook(db).expire_silence(silence_id, datetime.now(UTC))
        key = alert_key(ended.rule, ended.host_id, ended.subject)
        audited(db, "silence.expire", f"silence/{silence_id}", {"key": key})
    typer.echo(_("silence {id} expired").format(id=silence_id))


def list_alerts(
    state: str | None = typer.Option(None, help="firing or resolved (default: both)."),
    site: str | None = site_option(SITE_OF_ALERTS),
    severity: str | None = severity_option(SEVERITY_OF_ALERTS),
    host: str | None = host_option(HOST_OF_ALERTS),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """The alerts, firing first, most severe first, with who acknowledged them."""
    if state is not None and state not in ALERT_STATES:
        raise fail(
            _("--state must be one of {choices}, not {given!r}").format(
                choices=", ".join(ALERT_STATES), given=state
            )
        )
    check_severity(severity)
    with open_store(database_path(config, database)) as store:
        rows = webdata.alerts(store, filters(store, site, severity, host), state)
        failing = [channel for channel in AlertBook(store.database).channels() if channel.failures]
    emit([_alert_row(row, as_json) for row in rows], as_json, _("no alert"))
    if not as_json:
        for channel in failing:
            typer.echo(f"\n{_delivery_problem(channel)}")


def list_channels(
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """The alert channels and how their deliveries went: last success, failures in a row,
    the last error and when the next try is."""
    with open_store(database_path(config, database)) as store:
        found = AlertBook(store.database).channels()
    rows = [_plain_row(asdict(channel)) for channel in found]
    if not as_json:
        rows = [{k: v for k, v in row.items() if k not in ("id", "first_seen")} for row in rows]
    emit(rows, as_json, _("no alert channel has been configured"), wrap={"last_error": 50})


def acknowledge(
    rule: str = typer.Option(..., help="The alert's rule."),
    host: str = typer.Option(..., help="The alert's host id."),
    subject: str = typer.Option("", help="The alert's card or reader (default: the host itself)."),
    reason: str = typer.Option(..., help="Why: what is being done about it."),
    by: str | None = typer.Option(None, metavar="NAME", help=BY_HELP),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """Acknowledge a firing alert: no more reminders; its resolution is still notified."""
    author = who(by)
    with alert_database(config, database) as db:
        AlertBook(db).acknowledge(rule, host, subject, author, reason, datetime.now(UTC))
        detail = {"note": reason, "by": author}
        audited(db, "alert.acknowledge", alert_key(rule, host, subject), detail)
    typer.echo(f"alert {rule} on {host}{f' ({subject})' if subject else ''} acknowledged")


def _delivery_problem(channel: Channel) -> str:
    """What an administrator needs to know of a channel that refuses the alerts."""
    last = f"{channel.last_error_at:%Y-%m-%d %H:%M} UTC" if channel.last_error_at else "?"
    retry = f"{channel.next_attempt_at:%Y-%m-%d %H:%M} UTC" if channel.next_attempt_at else "?"
    return (
        f"Delivery failing: {channel.name} refused the last {channel.failures} message(s), "
        f"the last at {last}: {channel.last_error}\n"
        f"Its alerts stay due; next try at {retry} (cpsfleet controller channels)."
    )


def _silence_row(silence: Silence, as_json: bool) -> dict[str, Any]:
    row = _plain_row(asdict(silence))
    if not as_json:
        # In a table, "*" tells "any" apart from the empty subject of a host's own alerts.
        row |= {name: "*" for name in ("rule", "host_id", "subject") if row[name] is None}
    return row


def _alert_row(alert: dict[str, Any], as_json: bool) -> dict[str, Any]:
    row = _plain_row(alert)
    ack = row.pop("acknowledgement")
    if as_json:
        return row | {"acknowledgement": ack}
    message = row.pop("message")
    return row | {"acknowledged_by": ack and ack["by"], "message": message}


def _plain_row(row: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready: datetimes as ISO 8601 UTC strings, in nested objects too."""
    return {key: _plain(value) for key, value in row.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return _plain_row(value)
    if isinstance(value, datetime):
        return format_utc(value)
    return value
