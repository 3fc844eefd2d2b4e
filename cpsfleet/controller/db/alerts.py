"""The alerts, acknowledgements and silences tables: every statement the alert book runs.

``AlertTables`` reads and writes rows; what they mean (when an alert fires, resolves, is
due) is ``cpsfleet.controller.alerts.book``'s. An alert's key is (rule, host_id, subject).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from sqlite_utils import Database

from cpsfleet.controller.db.queries import Scope

Row = dict[str, Any]
StoredRow = sqlite3.Row
Key = tuple[str, str, str]

KEY = ("rule", "host_id", "subject")
KEY_WHERE = "rule = ? and host_id = ? and subject = ?"
# Firing alerts that may be due (not acknowledged, of a severity that notifies, never or not
# lately notified), and resolved ones whose resolution is due (see the book's module doc).
# Silences are matched in Python; this keeps the thousands of quiet firing alerts of a big
# fleet out.
PENDING_WHERE = """
(a.state = 'firing' and k.by is null
  and a.severity in (select value from json_each(:severities))
  and (a.last_notified_at is null or a.last_notified_at <= :due_again))
or (a.notifications > 0 and a.last_notified_at is null)
"""
OF_KEYS_WHERE = (
    "(a.rule, a.host_id, a.subject) in (select json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]'), json_extract(value, '$[2]') from json_each(:keys))"
)
LISTED_WHERE = "(:state is null or a.state = :state) and (:host is null or a.host_id = :host)"
ALERTS_SQL = """
select a.*, k.by as ack_by, k.reason as ack_reason, k.at as ack_at
from alerts a left join acknowledgements k
  on k.rule = a.rule and k.host_id = a.host_id and k.subject = a.subject
where {where}
order by a.state = 'resolved',
  case a.severity when 'critical' then 0 when 'warning' then 1 else 2 end,
  a.host_id, a.rule, a.subject
"""


class AlertTables:
    """The alert tables of an open controller database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def atomic(self) -> AbstractContextManager[Database]:
        """One transaction for the statements run inside it."""
        return self._db.atomic()

    # Alerts

    def rows(self, hosts: set[str] | None) -> list[StoredRow]:
        """The stored alerts of ``hosts`` (all if None) as sqlite3 rows, which cost less
        than dicts: an evaluation of the fleet reads every alert."""
        where, params = Scope.of_hosts(hosts).condition("a.host_id")
        cursor = self._db.conn.cursor()
        cursor.row_factory = sqlite3.Row
        return cursor.execute(f"select * from alerts a where {where}", params).fetchall()

    def upsert(self, rows: list[Row]) -> None:
        """Write alert rows in a few statements (sqlite-utils checks the table at each upsert)."""
        shapes: dict[tuple[str, ...], list[Row]] = {}
        for row in rows:
            shapes.setdefault(tuple(row), []).append(row)
        for columns, same in shapes.items():
            names = ", ".join(columns)
            values = ", ".join(f":{name}" for name in columns)
            updates = ", ".join(f"{name} = excluded.{name}" for name in columns if name not in KEY)
            self._db.conn.executemany(
                f"insert into alerts ({names}) values ({values}) "
                f"on conflict (rule, host_id, subject) do update set {updates}",
                same,
            )

    def state_of(self, key: Key) -> str | None:
        """The state of the alert ``key``, None if there is none."""
        found = self._db.execute(f"select state from alerts where {KEY_WHERE}", key).fetchone()
        return None if found is None else str(found[0])

    def mark_notified(self, keys: list[Key], stamp: str) -> None:
        """Record that the alerts ``keys`` were notified at ``stamp`` (one more notification)."""
        self._db.conn.executemany(
            "update alerts set last_notified_at = ?, notifications = notifications + 1 "
            f"where {KEY_WHERE}",
            [(stamp, *key) for key in keys],
        )

    def of_keys(self, keys: list[Key]) -> list[Row]:
        """The alerts ``keys``, with their acknowledgements, in the listing's order."""
        return self._select(OF_KEYS_WHERE, {"keys": json.dumps(keys)})

    def pending(self, due_again: str, severities: str) -> list[Row]:
        """Alerts that may be due: see PENDING_WHERE (``severities`` is a JSON list)."""
        return self._select(PENDING_WHERE, {"due_again": due_again, "severities": severities})

    def listed(self, state: str | None, host_id: str | None) -> list[Row]:
        """The alerts (in ``state``, of ``host_id``; None: any), in the listing's order."""
        return self._select(LISTED_WHERE, {"state": state, "host": host_id})

    def firing(self) -> Iterator[Row]:
        """The firing alerts in the listing's order, read one at a time."""
        return iter(self._db.query(ALERTS_SQL.format(where="a.state = 'firing'")))

    def _select(self, where: str, params: dict[str, Any]) -> list[Row]:
        return list(self._db.query(ALERTS_SQL.format(where=where), params))

    # Acknowledgements

    def acknowledge(self, ack: Row) -> None:
        """Store an acknowledgement (key, by, reason, at), replacing the alert's previous one."""
        self._db.table("acknowledgements").upsert(ack, pk=KEY)

    def clear_acknowledgements(self, keys: list[Key]) -> None:
        self._db.conn.executemany(f"delete from acknowledgements where {KEY_WHERE}", keys)

    # Silences

    def add_silence(self, row: Row) -> int:
        """Store a silence; its id."""
        silence_id = self._db.table("silences").insert(row).last_pk
        assert silence_id is not None  # an insert into a table with an integer id
        return int(silence_id)

    def silences(self) -> list[Row]:
        """Every silence, by id."""
        return list(self._db.query("select * from silences order by id"))

    def silence(self, silence_id: int) -> Row | None:
        rows = list(self._db.query("select * from silences where id = ?", [silence_id]))
        return rows[0] if rows else None

    def end_silence(self, silence_id: int, stamp: str) -> None:
        self._db.table("silences").update(silence_id, {"expired_at": stamp})
