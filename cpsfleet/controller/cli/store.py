"""``cpsfleet controller copy-store``: move the fleet from its SQLite database to PostgreSQL.

``register(app)`` adds the command; the copy itself is ``cpsfleet.controller.db.transfer``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import typer

from cpsfleet.controller.cli.common import AS_JSON, CONFIG, emit, fail, settings_or_exit
from cpsfleet.controller.db.connect import StoreError, is_postgres
from cpsfleet.controller.db.transfer import Copied, copy_store, describe
from cpsfleet.i18n import _, decimal

SOURCE = typer.Option(
    None,
    "--from",
    metavar="FILE",
    help="The SQLite database to copy (default: the configuration's database).",
)
TARGET = typer.Option(
    ..., "--to", metavar="URL", help="The PostgreSQL database: postgresql://user@host/name."
)


def register(app: typer.Typer) -> None:
    app.command("copy-store")(copy_store_command)


def copy_store_command(
    target: str = TARGET,
    source: Path | None = SOURCE,
    config: Path | None = CONFIG,
    as_json: bool = AS_JSON,
) -> None:
    """Copy the fleet (hosts, cards, history, findings, alerts, silences, roster, users, audit
    trail) from SQLite to PostgreSQL; run again, it only adds what is new."""
    if source is None:
        configured = settings_or_exit(config).database
        if is_postgres(configured):
            raise fail(_("the configuration's database is PostgreSQL already: give --from FILE"))
        source = Path(configured)
    typer.echo(describe(source, target), err=True)
    try:
        copied = copy_store(source, target, _progress)
    except (StoreError, sqlite3.Error) as error:
        raise fail(str(error)) from None
    rows = [_row(table) for table in copied]
    emit(rows, as_json, _("nothing to copy"))
    if not all(table.complete for table in copied):
        raise fail(_("the target holds fewer rows than the source: see the table above"))


def _progress(table: str, done: int, total: int) -> None:
    if done == total or (done and done % 50000 == 0):
        typer.echo(
            _("{table}: {done} of {total} rows").format(
                table=table, done=decimal(done, 0), total=decimal(total, 0)
            ),
            err=True,
        )


def _row(copied: Copied) -> dict[str, object]:
    return {"table": copied.table, "sqlite": copied.source, "postgresql": copied.target}
