"""``cpsfleet controller rescan``: parse, call ``cpsfleet.controller.commands.rescan``, print.

Progress goes to stderr as the answers come; what changed goes to stdout at the end. The
JSON form gives each host's command id, which the agent's log and its answering status
(``answers``) name too.
Like the other controller commands, errors are one ``error: ...`` line and exit code 2.
The commands sent go into the audit trail: ``site.rescan`` (target the site) with
``--site``, else ``host.rescan`` (target the hosts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from cpsfleet.controller.cli.common import (
    CONFIG,
    DATABASE,
    JSON_HELP,
    audited,
    fail,
    open_store,
    settings_or_exit,
)
from cpsfleet.controller.commands.rescan import DEFAULT_TIMEOUT_S, Outcome, RescanError, rescan
from cpsfleet.controller.commands.send import CommandError
from cpsfleet.controller.db.store import StoreError
from cpsfleet.i18n import _, ngettext

EXIT_UNANSWERED = 1


def register(app: typer.Typer) -> None:
    app.command("rescan")(rescan_command)


def rescan_command(
    hosts: list[str] = typer.Argument(
        None, metavar="HOST", help="Host ids to rescan.", show_default=False
    ),
    site: str | None = typer.Option(None, help="Rescan every host of this site as well."),
    timeout: int = typer.Option(
        DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="Seconds to wait for the answers; the commands expire then.",
    ),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Ask agents for a full inventory now; print what changed once the controller has it.

    Needs the controller running (it stores the answers). Exit codes: 0 every host
    answered; 1 some did not within the timeout; 2 bad usage, unknown host, or the
    broker refused the commands.
    """
    settings = settings_or_exit(config)
    path = database or Path(settings.database)
    try:
        outcomes = rescan(
            settings, path, hosts or [], site, timeout, lambda line: typer.echo(line, err=True)
        )
    except (RescanError, CommandError, StoreError) as error:
        raise fail(str(error)) from None
    _record(path, site, outcomes)
    if as_json:
        typer.echo(json.dumps([_row(outcome) for outcome in outcomes], indent=2))
    else:
        typer.echo("\n".join(_lines(outcome, timeout) for outcome in outcomes))
    raise typer.Exit(0 if all(outcome.answered for outcome in outcomes) else EXIT_UNANSWERED)


def _record(path: Path, site: str | None, outcomes: list[Outcome]) -> None:
    """The commands sent, in the audit trail: which hosts had no agent to take theirs, and
    which did not answer in time."""
    detail = {
        "sent": [outcome.host_id for outcome in outcomes],
        "no_agent": [outcome.host_id for outcome in outcomes if not outcome.subscribed],
        "unanswered": [outcome.host_id for outcome in outcomes if not outcome.answered],
    }
    action, target = ("site.rescan", site) if site else ("host.rescan", ", ".join(detail["sent"]))
    with open_store(path, readonly=False) as store:
        audited(store.database, action, target, detail)


def _lines(outcome: Outcome, timeout: int) -> str:
    if not outcome.answered:
        why = "" if outcome.subscribed else _(" (no agent connected)")
        return _("{host}: no answer within {timeout} s{why}").format(
            host=outcome.host_id, timeout=timeout, why=why
        )
    count = len(outcome.changes)
    changes = (
        ngettext("{count} change", "{count} changes", count).format(count=count)
        if count
        else _("no change")
    )
    head = f"{outcome.host_id}: {changes}"
    return "\n".join([head, *(f"  {change}" for change in outcome.changes)])


def _row(outcome: Outcome) -> dict[str, Any]:
    return {
        "host_id": outcome.host_id,
        "answered": outcome.answered,
        "agent_connected": outcome.subscribed,
        "command_id": outcome.command_id,
        "seconds": None if outcome.seconds is None else round(outcome.seconds, 2),
        "changes": outcome.changes,
    }
