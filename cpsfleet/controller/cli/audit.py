"""``cpsfleet controller audit list | export``: the audit trail from the command line.

``register(app)`` adds the ``audit`` group to the controller's app. The filters are the
dashboard's audit page's (``cpsfleet.controller.web.audit``): who (exactly), the action (or
those it begins), from and to a day in the dashboard's time zone (or a date and time), the
outcome; the exports are its downloads, written by the same code.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import typer

from cpsfleet.clihelp import App
from cpsfleet.controller.cli.common import (
    AS_JSON,
    CONFIG,
    DATABASE,
    emit,
    fail,
    people_of,
    settings_or_exit,
)
from cpsfleet.controller.db.people import AUDIT_OUTCOMES, AUDIT_PAGE, AuditEntry, People
from cpsfleet.controller.web import exports
from cpsfleet.controller.web.audit import COLUMNS, export_row
from cpsfleet.controller.web.exports import BINARY_FORMATS, FORMATS, ExportError, Format
from cpsfleet.i18n import N_, _

DEFAULT_LIMIT = 100
# An entry's outcome in a table, as the dashboard's audit page words it.
OUTCOME_WORDS = {"ok": N_("done"), "refused": N_("refused"), "failed": N_("failed")}


def register(app: typer.Typer) -> None:
    """Add ``audit list`` and ``audit export`` to ``app``."""
    audit = App(
        order=("list", "export"),
        help="The audit trail: who did what, on the dashboard or the command line.",
        no_args_is_help=True,
    )
    audit.command("list")(audit_list)
    audit.command("export")(audit_export)
    app.add_typer(audit, name="audit")


SINCE = typer.Option(
    None,
    "--since",
    metavar="WHEN",
    help="From this day (2026-12-01) or date and time (2026-12-01T18:00), in the dashboard's "
    "time zone unless it has an offset.",
)
UNTIL = typer.Option(
    None,
    "--until",
    metavar="WHEN",
    help="To this day, included, or up to this date and time.",
)
ACTOR = typer.Option(
    None,
    "--actor",
    metavar="WHO",
    help="Only this user's entries (cli:LOGIN from the command line).",
)
ACTION = typer.Option(
    None,
    "--action",
    help="Only this action, or those it begins: alert keeps alert.acknowledge and alert.silence.",
)
OUTCOME = typer.Option(
    None, "--outcome", help="Only the entries of this outcome: ok, refused or failed."
)


class AuditQuery:
    """The audit filters of ``audit list`` and ``audit export``, checked."""

    def __init__(
        self,
        since: str | None,
        until: str | None,
        actor: str | None,
        action: str | None,
        outcome: str | None,
        zone: tzinfo,
    ) -> None:
        if outcome is not None and outcome not in AUDIT_OUTCOMES:
            raise fail(
                _("--outcome must be one of {choices}, not {given!r}").format(
                    choices=", ".join(AUDIT_OUTCOMES), given=outcome
                )
            )
        self.since = None if since is None else _moment("--since", since, zone, end=False)
        self.until = None if until is None else _moment("--until", until, zone, end=True)
        self.actor, self.action, self.outcome = actor or None, action or None, outcome

    def entries(self, people: People, limit: int = AUDIT_PAGE) -> list[AuditEntry]:
        """The newest ``limit`` entries the filters keep, newest first."""
        found = people.audit(self.actor, self.action, self.since, self.until, AUDIT_PAGE)
        return [entry for entry in found if self.outcome in (None, entry.outcome)][:limit]


def _moment(option: str, text: str, zone: tzinfo, end: bool) -> datetime:
    """A day's midnight (the next one for an end, so the day is included), or a date and
    time, in ``zone`` unless it says its offset; as UTC."""
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        midnight = datetime.combine(day + timedelta(days=1 if end else 0), time(), zone)
        return midnight.astimezone(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise fail(
            _(
                "{option} {given!r} is neither a day (2026-12-01) nor a date and time "
                "(2026-12-01T18:00)"
            ).format(option=option, given=text[:80])
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)


def _query(
    config: Path | None,
    since: str | None,
    until: str | None,
    actor: str | None,
    action: str | None,
    outcome: str | None,
) -> AuditQuery:
    zone = ZoneInfo(settings_or_exit(config).dashboard.timezone)
    return AuditQuery(since, until, actor, action, outcome, zone)


def audit_list(
    since: str | None = SINCE,
    until: str | None = UNTIL,
    actor: str | None = ACTOR,
    action: str | None = ACTION,
    outcome: str | None = OUTCOME,
    limit: int = typer.Option(
        DEFAULT_LIMIT,
        "--limit",
        metavar="COUNT",
        help="At most this many entries, the newest (1 to 10000).",
    ),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
    as_json: bool = AS_JSON,
) -> None:
    """The audit trail, newest first: when, who, from where, what, on what, how it went."""
    if not 1 <= limit <= AUDIT_PAGE:
        raise fail(_("--limit must be from 1 to {most}").format(most=AUDIT_PAGE))
    query = _query(config, since, until, actor, action, outcome)
    with people_of(config, database) as people:
        entries = query.entries(people, limit)
    if as_json:
        emit([entry.as_json() for entry in entries], True, "")
        return
    rows = [
        {
            "at": entry.at,
            "actor": entry.actor,
            "source": entry.source,
            "action": entry.action,
            "target": entry.target,
            "outcome": _(OUTCOME_WORDS.get(entry.outcome, entry.outcome)),
            "details": json.dumps(entry.detail, ensure_ascii=False, sort_keys=True),
        }
        for entry in entries
    ]
    emit(rows, False, _("no entry in the audit trail"), wrap={"details": 50, "target": 30})


def audit_export(
    output_format: str = typer.Option(
        "csv",
        "--format",
        help="csv, csv-excel (; separators and a byte order mark, for Excel in French), xlsx "
        "(needs --output) or json, as the dashboard's audit downloads.",
    ),
    output: Path | None = typer.Option(
        None, "--output", metavar="FILE", help="Write to this file instead of stdout."
    ),
    since: str | None = SINCE,
    until: str | None = UNTIL,
    actor: str | None = ACTOR,
    action: str | None = ACTION,
    outcome: str | None = OUTCOME,
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """The audit trail as a file, newest first, the detail as JSON text (the newest 10000
    entries the filters keep)."""
    form = _format(output_format, output)
    query = _query(config, since, until, actor, action, outcome)
    with people_of(config, database) as people:
        rows = [export_row(entry) for entry in query.entries(people)]
    if output is not None:
        try:
            exports.save(rows, COLUMNS, form, output, UTC, "audit")
        except ExportError as error:
            raise fail(str(error)) from None
        return
    stdout = typer.get_binary_stream("stdout")
    stdout.write(exports.render(rows, COLUMNS, form, UTC, "audit"))
    stdout.flush()


def _format(name: str, output: Path | None) -> Format:
    form = next((known for known in FORMATS if known == name.lower()), None)
    if form is None:
        raise fail(
            _("--format must be one of {choices}, not {given!r}").format(
                choices=", ".join(FORMATS), given=name
            )
        )
    if form in BINARY_FORMATS and output is None:
        raise fail(_("--format {form} writes a binary file: give it --output").format(form=form))
    return form
