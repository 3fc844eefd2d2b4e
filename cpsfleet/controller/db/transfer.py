"""Moving a fleet from its SQLite database to PostgreSQL (``cpsfleet controller copy-store``).

Every table the migrations made is copied row for row, the ids included, into a PostgreSQL
database brought to the same schema version: hosts and their inventory, the status
history and events, findings, alerts, silences, acknowledgements, deliveries, the
remembered cards, the roster, the users, their tokens and sessions, and the audit trail.

Running it again changes nothing that is already there: a row whose key the target holds
is updated to the source's values, and the append-only tables (history, events, audit
trail) skip the rows they hold. So a copy interrupted half-way is finished by running it
again, and one made while the controller was still writing to SQLite is brought up to
date by a second run after the controller has stopped. Rows deleted from SQLite after a
copy (resolved findings, a host's replaced readers) are not deleted from the target: copy
the last time with the controller stopped, then point it at PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from cpsfleet.controller.db import migrations
from cpsfleet.controller.db.connect import StoreError, connect, is_postgres, named
from cpsfleet.controller.db.postgres import PgDatabase
from cpsfleet.controller.db.store import Store
from cpsfleet.i18n import _

# Rows read and written at a time.
CHUNK = 5000
# Tables other tables refer to: copied first.
REFERENCED = ("hosts", "users")
# Append-only: a row is never changed once written (the audit trail refuses it).
APPEND_ONLY = frozenset({"status_history", "events", "audit"})

# What a copy reports as it goes: table, rows copied so far, rows in the table.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Copied:
    table: str
    source: int  # rows in SQLite
    target: int  # rows in PostgreSQL after the copy

    @property
    def complete(self) -> bool:
        """Whether the target holds at least every row of the source."""
        return self.target >= self.source


def copy_store(source: Path, target: str, progress: Progress | None = None) -> list[Copied]:
    """Copy the SQLite database at ``source`` into the PostgreSQL database ``target``
    (created and migrated if new); what each table holds on both sides after it."""
    if not is_postgres(target):
        raise StoreError(
            _("the target must be a postgresql:// URL, not {target}").format(target=target)
        )
    if is_postgres(source):
        raise StoreError(_("the source must be a SQLite database file"))
    Store.open_readonly(source).close()  # a controller database, at this version
    Store(target).close()  # created or brought to this version
    reader = connect(source, readonly=True)
    writer = connect(target)
    assert isinstance(reader, sqlite_utils.Database) and isinstance(writer, PgDatabase)
    try:
        return [
            _copy_table(reader, writer, table, progress or (lambda *_: None))
            for table in _tables(reader)
        ]
    finally:
        reader.close()
        writer.close()


def _tables(db: sqlite_utils.Database) -> list[str]:
    names = [name for name in db.table_names() if not name.startswith("sqlite_")]
    return [*REFERENCED, *sorted(set(names) - set(REFERENCED))]


def _copy_table(
    reader: sqlite_utils.Database, writer: PgDatabase, table: str, progress: Progress
) -> Copied:
    info = reader.execute(f"select name, pk, type from pragma_table_info('{table}')").fetchall()
    columns = [name for name, _, _ in info]
    key = [name for name, position, _ in sorted(info, key=lambda c: c[1]) if position]
    # An integer id of its own is an identity in PostgreSQL: its sequence follows the copy.
    identity = key == ["id"] and any(n == "id" and t.upper() == "INTEGER" for n, _, t in info)
    total = reader.execute(f"select count(*) from [{table}]").fetchone()[0]
    sql = _insert_sql(table, columns, key)
    done = 0
    progress(table, done, total)
    for rows in _chunks(reader, table, columns):
        with writer.atomic():
            writer.conn.executemany(sql, rows)
        done += len(rows)
        progress(table, done, total)
    if identity:
        writer.execute(
            f"select setval(pg_get_serial_sequence('{table}', 'id'), "
            f"coalesce(max(id), 1), max(id) is not null) from [{table}]"
        )
    stored = writer.execute(f"select count(*) from [{table}]").fetchone()[0]
    return Copied(table, int(total), int(stored))


def _insert_sql(table: str, columns: list[str], key: list[str]) -> str:
    names = ", ".join(f"[{name}]" for name in columns)
    values = ", ".join("?" for _ in columns)
    rest = [name for name in columns if name not in key]
    if table in APPEND_ONLY or not key or not rest:
        conflict = "on conflict do nothing"
    else:
        updates = ", ".join(f"[{name}] = excluded.[{name}]" for name in rest)
        conflict = f"on conflict ({', '.join(f'[{k}]' for k in key)}) do update set {updates}"
    return f"insert into [{table}] ({names}) values ({values}) {conflict}"


def _chunks(db: sqlite_utils.Database, table: str, columns: list[str]) -> Iterator[list[Any]]:
    names = ", ".join(f"[{name}]" for name in columns)
    cursor = db.execute(f"select {names} from [{table}] order by rowid")
    while rows := cursor.fetchmany(CHUNK):
        yield rows


def describe(source: Path, target: str) -> str:
    """The copy in words, for its first line."""
    return _("copying {source} (schema version {version}) to {target}").format(
        source=source, version=migrations.LATEST, target=named(target)
    )
