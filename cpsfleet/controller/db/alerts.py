"""The alerts, acknowledgements, silences, channels and deliveries tables: every statement
the alert book runs.

``AlertTables`` reads and writes rows; what they mean (when an alert fires, resolves, is
due on a channel) is ``cpsfleet.controller.alerts.book``'s. An alert's key is (rule,
host_id, subject); a delivery's is a channel and an alert's key.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from cpsfleet.controller.db.connect import Database
from cpsfleet.controller.db.queries import Scope

Row = dict[str, Any]
StoredRow = sqlite3.Row
Key = tuple[str, str, str]

KEY = ("rule", "host_id", "subject")
KEY_WHERE = "rule = ? and host_id = ? and subject = ?"
# What may be due on channel :channel: firing alerts not acknowledged, of a severity that
# notifies, of which the channel was never told in this episode or not lately; resolved ones
# whose firing the channel was told of and whose resolution it was not (see the book's
# module doc). Silences are matched in Python; this keeps the thousands of quiet firing
# alerts of a big fleet out.
PENDING_SQL = """
select a.*, k.by as ack_by, k.reason as ack_reason, k.at as ack_at,
  d.firing_sent_at as channel_sent_at
from alerts a
left join acknowledgements k
  on k.rule = a.rule and k.host_id = a.host_id and k.subject = a.subject
left join deliveries d
  on d.channel = :channel and d.rule = a.rule and d.host_id = a.host_id
  and d.subject = a.subject and d.started_at = a.started_at
where (a.state = 'firing' and k.by is null
    and a.severity in (select value from json_each(:severities))
    and (d.firing_sent_at is null or d.firing_sent_at <= :due_again))
  or (a.state = 'resolved' and a.silent_resolution = 0
    and d.firing_sent_at is not null and d.resolved_sent_at is null)
order by a.state = 'resolved',
  case a.severity when 'critical' then 0 when 'warning' then 1 else 2 end,
  a.host_id, a.rule, a.subject
"""
# A channel told of an episode's firing (again): one more send; a new episode starts at 1.
SENT_FIRING_SQL = """
insert into deliveries (channel, rule, host_id, subject, started_at, firing_sent_at, sends)
values (:channel, :rule, :host_id, :subject, :started_at, :at, 1)
on conflict (channel, rule, host_id, subject) do update set
  sends = case when deliveries.started_at = excluded.started_at
    then deliveries.sends + 1 else 1 end,
  started_at = excluded.started_at, firing_sent_at = excluded.firing_sent_at,
  resolved_sent_at = null
"""
SENT_RESOLUTION_SQL = """
update deliveries set resolved_sent_at = :at
where channel = :channel and rule = :rule and host_id = :host_id and subject = :subject
  and started_at = :started_at
"""
# What a channel first configured beside a database of an older controller (one that had no
# deliveries) was told: what the alerts say was notified. Resolutions still due are those
# notified (notifications > 0) with last_notified_at null.
ADOPT_SQL = """
insert or ignore into deliveries
  (channel, rule, host_id, subject, started_at, firing_sent_at, sends, resolved_sent_at)
select :channel, rule, host_id, subject, started_at,
  coalesce(last_notified_at, started_at), notifications,
  case when state = 'resolved' then last_notified_at end
from alerts where notifications > 0
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

    def delivered(self, channel: str, firing: list[Row], resolved: list[Row], at: str) -> None:
        """Record that ``channel`` accepted, at ``at``, the firing episodes and resolutions of
        these alerts (rows of their key and started_at); each alert counts one more
        notification."""
        for rows, sql in ((firing, SENT_FIRING_SQL), (resolved, SENT_RESOLUTION_SQL)):
            self._db.conn.executemany(sql, [row | {"channel": channel, "at": at} for row in rows])
        self._db.conn.executemany(
            "update alerts set last_notified_at = ?, notifications = notifications + 1 "
            f"where {KEY_WHERE}",
            [(at, row["rule"], row["host_id"], row["subject"]) for row in (*firing, *resolved)],
        )

    def of_keys(self, keys: list[Key]) -> list[Row]:
        """The alerts ``keys``, with their acknowledgements, in the listing's order."""
        return self._select(OF_KEYS_WHERE, {"keys": json.dumps(keys)})

    def pending(self, channel: str, due_again: str, severities: str) -> list[Row]:
        """Alerts that may be due on ``channel``: see PENDING_SQL (``severities`` is a JSON
        list); ``channel_sent_at`` is when the channel was last told of the episode."""
        params = {"channel": channel, "due_again": due_again, "severities": severities}
        return list(self._db.query(PENDING_SQL, params))

    def listed(self, state: str | None, host_id: str | None) -> list[Row]:
        """The alerts (in ``state``, of ``host_id``; None: any), in the listing's order."""
        return self._select(LISTED_WHERE, {"state": state, "host": host_id})

    def firing(self) -> Iterator[Row]:
        """The firing alerts in the listing's order, read one at a time."""
        return iter(self._db.query(ALERTS_SQL.format(where="a.state = 'firing'")))

    def firing_about(self, subject: str, rules: Iterable[str]) -> list[Row]:
        """The firing alerts of ``rules`` about ``subject`` (a card's serial), on any host."""
        where = (
            "a.state = 'firing' and a.subject = :subject "
            "and a.rule in (select value from json_each(:rules))"
        )
        return self._select(where, {"subject": subject, "rules": json.dumps(list(rules))})

    def _select(self, where: str, params: dict[str, Any]) -> list[Row]:
        return list(self._db.query(ALERTS_SQL.format(where=where), params))

    # Channels

    def channels(self) -> list[Row]:
        """Every channel ever configured, by when it first was."""
        return list(self._db.query("select * from channels order by first_seen, id"))

    def channel(self, channel: str) -> Row | None:
        """One channel's row, or None if it was never configured."""
        return next(iter(self._db.query("select * from channels where id = ?", [channel])), None)

    def add_channels(self, rows: list[Row]) -> None:
        """Make ``rows`` (id, name, first_seen) known; a known channel only takes the name."""
        self._db.conn.executemany(
            "insert into channels (id, name, first_seen) values (:id, :name, :first_seen) "
            "on conflict (id) do update set name = excluded.name",
            rows,
        )

    def adopt(self, channel: str) -> None:
        """Record ``channel`` as told of what the alerts say was notified (see ADOPT_SQL)."""
        self._db.execute(ADOPT_SQL, {"channel": channel})

    def channel_succeeded(self, channel: str, at: str) -> None:
        self._db.execute(
            "update channels set last_success_at = ?, failures = 0, next_attempt_at = null "
            "where id = ?",
            [at, channel],
        )

    def channel_failed(self, channel: str, error: str, at: str, retry_at: str) -> None:
        self._db.execute(
            "update channels set failures = failures + 1, last_error = ?, last_error_at = ?, "
            "next_attempt_at = ? where id = ?",
            [error, at, retry_at, channel],
        )

    # Acknowledgements

    def acknowledge(self, ack: Row) -> None:
        """Store an acknowledgement (key, by, reason, at), replacing the alert's previous one."""
        columns = ("rule", "host_id", "subject", "by", "reason", "at")
        with self._db.atomic():
            self._db.execute(
                "insert into acknowledgements ([rule], host_id, subject, [by], reason, [at]) "
                "values (?, ?, ?, ?, ?, ?) on conflict (rule, host_id, subject) do update set "
                "[by] = excluded.[by], reason = excluded.reason, [at] = excluded.[at]",
                [ack[name] for name in columns],
            )

    def clear_acknowledgements(self, keys: list[Key]) -> None:
        self._db.conn.executemany(f"delete from acknowledgements where {KEY_WHERE}", keys)

    # Silences

    def add_silence(self, row: Row) -> int:
        """Store a silence; its id."""
        names = ", ".join(f"[{name}]" for name in row)
        values = ", ".join(f":{name}" for name in row)
        with self._db.atomic():
            found = self._db.execute(
                f"insert into silences ({names}) values ({values}) returning id", row
            ).fetchone()
        return int(found[0])

    def silences(self) -> list[Row]:
        """Every silence, by id."""
        return list(self._db.query("select * from silences order by id"))

    def silence(self, silence_id: int) -> Row | None:
        rows = list(self._db.query("select * from silences where id = ?", [silence_id]))
        return rows[0] if rows else None

    def end_silence(self, silence_id: int, stamp: str) -> None:
        with self._db.atomic():
            self._db.execute("update silences set expired_at = ? where id = ?", [stamp, silence_id])
