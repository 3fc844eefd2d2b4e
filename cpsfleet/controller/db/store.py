"""The controller's SQLite database: each host's latest inventory, its history and findings.

One ``Store`` owns the write connection (the controller's writer thread);
the CLI reads through ``Store.open_readonly`` from other processes, which WAL
lets run beside the writer. Every write method is one transaction. Times go in
and come out as aware UTC datetimes; the tables hold them as ISO 8601 strings
(the schema is in ``cpsfleet.controller.db.migrations``). Documents are expected to have
been validated against ``schemas`` already.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import orjson

from cpsfleet.controller.db import migrations, queries, sightings
from cpsfleet.controller.db.connect import (
    Database,
    connect,
    is_postgres,
    location,
    named,
    on_sqlite,
)
from cpsfleet.controller.db.connect import StoreError as StoreError
from cpsfleet.controller.model import (
    SEVERITIES,
    CardView,
    CertificateView,
    Finding,
    HostView,
    ReaderView,
)
from cpsfleet.i18n import _
from cpsfleet.schemas import EVENT_SCHEMA, PRESENCE_SCHEMA, STATUS_SCHEMA
from cpsfleet.schemas.privacy import pseudonym
from cpsfleet.schemas.times import format_utc

Row = dict[str, Any]
Key = tuple[str, str, str]

CERTIFICATE_FIELDS = (
    *("role", "label", "subject", "id_nat", "id_type", "surname", "given_name", "profession"),
    *("issuer_cn", "serial_number", "not_before", "not_after", "sha256", "error"),
)


# What storing a document did: stored as the host's current state ("accepted"), already
# stored ("duplicate"), or older than the current state and kept in the history ("stale").
Outcome = Literal["accepted", "duplicate", "stale"]


@dataclass(frozen=True)
class Recorded:
    host_id: str
    outcome: Outcome
    # Whether the host's findings may have changed (its inventory or presence did).
    changed: bool
    # Other hosts whose findings changed: where the cards a new card superseded were seen.
    others: tuple[str, ...] = ()
    # The cards seen on another host before, and that host: their alerts moved here.
    moved: tuple[tuple[str, str], ...] = ()


class Store:
    """The controller database at ``path``, created and migrated on open.

    ``Store(path)`` is the writer: use it from one thread. ``open_readonly``
    never creates or changes the file.
    """

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        # A path (SQLite) or a postgresql:// URL (see cpsfleet.controller.db.postgres).
        self.path = location(path)
        self.readonly = readonly
        # The fleet's pseudonym key when agents pseudonymise (the controller's setting): the
        # rules then match the roster's idNats with the cards' pseudonyms.
        self.pseudonym_key: bytes | None = None
        self._pseudonyms: tuple[bytes | None, frozenset[str], frozenset[str]] = (
            None,
            frozenset(),
            frozenset(),
        )
        self._db = connect(self.path, readonly)
        try:
            self._prepare()
        except sqlite3.DatabaseError as error:
            self._db.close()
            message = (
                _("{path}: not a usable PostgreSQL database: {error}")
                if is_postgres(self.path)
                else _("{path}: not a usable SQLite database: {error}")
            )
            raise StoreError(message.format(path=named(self.path), error=error)) from error
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open_readonly(cls, path: Path | str) -> Store:
        return cls(path, readonly=True)

    @property
    def database(self) -> Database:
        """The sqlite-utils database, for the feature modules (alerts, roster) that own tables."""
        return self._db

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _prepare(self) -> None:
        found, latest = migrations.version(self._db), migrations.LATEST
        if found > latest:
            raise StoreError(
                _(
                    "database version {found} is newer than this controller ({latest}): "
                    "upgrade cpsfleet"
                ).format(found=found, latest=latest)
            )
        if self.readonly:
            if found < latest:
                raise StoreError(
                    _(
                        "{path}: database version {found} is older than this cpsfleet "
                        "({latest}): start the controller once to upgrade it"
                    ).format(path=named(self.path), found=found, latest=latest)
                )
            return
        if on_sqlite(self._db):
            self._db.enable_wal()
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
        migrations.upgrade(self._db)

    # Writes

    def record_status(
        self, document: Row, received_at: datetime, raw: str | None = None
    ) -> Recorded:
        """Store a status document: the host's latest inventory, plus one history row.

        ``raw`` is the document's JSON as received, kept in the history as it is. A status
        older than the host's current one (a lower ``seq`` of the same run) goes to the
        history only; one stored already (its ``seq``, or for an agent without ``seq`` the
        same document again, as a retained status is replayed) is a duplicate.
        """
        _expect(document, STATUS_SCHEMA)
        host_id: str = document["host"]["id"]
        received = _iso(received_at)
        digest = _digest(document)
        with self._atomic():
            if self.seen("status_history", host_id, document):
                return Recorded(host_id, "duplicate", False)
            current = self._db.conn.execute(CURRENT_STATUS_SQL, [host_id]).fetchone()
            if current is not None and _repeated(document, digest, current):
                return Recorded(host_id, "duplicate", False)
            outcome: Outcome = "accepted"
            changed = current is None or current[0] != digest
            if current is not None and _older(document, current):
                outcome, changed = "stale", False
            elif changed:
                self._replace_inventory(host_id, document, received, digest)
            else:  # the same inventory again: only the times move
                times = {"last_seen": received, "last_status_at": received}
                self._update_host(host_id, times | _status_order(document))
            history = {
                "host_id": host_id,
                "received_at": received,
                "document": raw if raw is not None else _json(document),
                **_delivery(document),
            }
            _insert(self._db, "status_history", [history])
            remembered = sightings.Remembered()
            if outcome == "accepted":
                remembered = sightings.remember_cards(self._db, document, received)
        others = tuple(sorted(remembered.superseded))
        return Recorded(host_id, outcome, changed, others, remembered.moved)

    def _replace_inventory(self, host_id: str, document: Row, received: str, digest: str) -> None:
        self._touch_host(host_id, received)
        columns = _host_status_columns(document, received) | _status_order(document)
        self._update_host(host_id, columns | {"inventory_hash": digest})
        for name, rows in _inventory_rows(host_id, document["readers"]).items():
            self._db.conn.execute(f"delete from {name} where host_id = ?", [host_id])
            _insert(self._db, name, rows)

    def record_event(
        self, document: Row, received_at: datetime, raw: str | None = None
    ) -> Recorded:
        _expect(document, EVENT_SCHEMA)
        host_id: str = document["host_id"]
        received = _iso(received_at)
        card = document["card"]
        with self._atomic():
            if self.seen("events", host_id, document):
                return Recorded(host_id, "duplicate", False)
            self._touch_host(host_id, received)
            event = (
                {"host_id": host_id, "received_at": received}
                | queries.pick(document, ("at", "type", "reader"))
                | {"card_json": None if card is None else _json(card)}
                | _delivery(document)
            )
            _insert(self._db, "events", [event])
        return Recorded(host_id, "accepted", False)

    def record_presence(
        self, document: Row, received_at: datetime, raw: str | None = None
    ) -> Recorded:
        """Store the host's presence (online or offline, and its reason) stamped with the
        time the controller received it, ``received_at``; the ``at`` the agent wrote is kept
        beside it, as sent (null in a Last Will, which the broker holds from the agent's
        connection on and so cannot say when the connection was lost). The same presence
        again (same state, reason and ``at``: a retained one, replayed when the controller
        reconnects) is a duplicate and keeps the time it was first received."""
        _expect(document, PRESENCE_SCHEMA)
        host_id: str = document["host_id"]
        received = _iso(received_at)
        sent = (document["state"], document["reason"], document["at"])
        presence = {
            "presence": document["state"],
            "presence_at": received,
            "presence_reason": document["reason"],
            "presence_sent_at": document["at"],
            "agent_version": document["agent_version"],
        }
        with self._atomic():
            stored = self._db.conn.execute(STORED_PRESENCE_SQL, [host_id]).fetchone()
            if stored is not None and tuple(stored) == sent:
                return Recorded(host_id, "duplicate", False)
            self._touch_host(host_id, received)
            self._update_host(host_id, presence)
        return Recorded(host_id, "accepted", True)

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        """A transaction of its own, or nothing inside the caller's (which rolls back)."""
        if self._db.conn.in_transaction:
            yield
            return
        with self._db.atomic():
            yield

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a transaction: what the block writes is rolled back alone if it raises."""
        conn = self._db.conn
        conn.execute("savepoint message")
        try:
            yield
        except BaseException:
            conn.execute("rollback to message")
            conn.execute("release message")
            raise
        conn.execute("release message")

    def _update_host(self, host_id: str, columns: Row) -> None:
        assignments = ", ".join(f"{name} = ?" for name in columns)
        self._db.conn.execute(
            f"update hosts set {assignments} where id = ?", [*columns.values(), host_id]
        )

    def seen(self, table: str, host_id: str, document: Row) -> bool:
        """Whether ``document`` (its run and seq) is already in ``table``: a redelivery."""
        seq = document.get("seq")
        if seq is None:
            return False
        rows = self._db.conn.execute(
            f"select 1 from {table} where host_id = ? and coalesce(run, '') = ? and seq = ? "
            "limit 1",
            [host_id, document.get("run") or "", seq],
        ).fetchall()
        return bool(rows)

    def _touch_host(self, host_id: str, received: str) -> None:
        """Create the host on its first message; every message moves its last_seen."""
        self._db.conn.execute(
            "insert into hosts (id, first_seen, last_seen) values (:id, :at, :at) "
            "on conflict (id) do update set last_seen = excluded.last_seen",
            {"id": host_id, "at": received},
        )

    def increment(self, counter: str, by: int = 1) -> None:
        with self._atomic():
            self._db.conn.execute(
                "insert into counters (name, value) values (?, ?) "
                "on conflict (name) do update set value = counters.value + excluded.value",
                [counter, by],
            )

    def counter(self, name: str) -> int:
        row = self._db.execute("select value from counters where name = ?", [name]).fetchone()
        return 0 if row is None else int(row[0])

    def prune_history(self, keep_days: int, now: datetime) -> int:
        """Delete status history and events received before ``now - keep_days``."""
        cutoff = [_iso(now - timedelta(days=keep_days))]
        with self._db.atomic():
            deleted = self._db.execute("delete from status_history where received_at < ?", cutoff)
            count = deleted.rowcount
            count += self._db.execute("delete from events where received_at < ?", cutoff).rowcount
        return count

    def replace_findings(
        self, findings: list[Finding], now: datetime, host_ids: Iterable[str] | None = None
    ) -> tuple[list[Finding], list[Finding]]:
        """Make ``findings`` the complete set for ``host_ids`` (all hosts if None).

        A finding that persists keeps its first_seen, and its since unless the
        rule gives one. Returns (added, resolved). Hosts must exist in the store.
        """
        scope = None if host_ids is None else set(host_ids)
        current = {_key(finding): finding for finding in findings}
        if scope is not None and (outside := {key[1] for key in current} - scope):
            raise ValueError(f"findings for hosts outside host_ids: {sorted(outside)}")
        stamp = _iso(now)
        with self._atomic():
            existing = self._stored_findings(scope)
            gone = sorted(existing.keys() - current.keys())
            self._db.conn.executemany(
                "delete from findings where rule = ? and host_id = ? and subject = ?", gone
            )
            # Only what changed is written: a finding's last_seen is when it was last found
            # new or different (no reader needs more; refreshing it would rewrite every
            # finding of the fleet at every evaluation).
            changed = [
                row
                for key, finding in current.items()
                if (row := _finding_row(finding, existing.get(key), stamp)) is not None
            ]
            self._db.conn.executemany(INSERT_FINDING, changed)
        added = [finding for key, finding in current.items() if key not in existing]
        resolved = [
            queries.finding(dict(zip(STORED_FINDING, existing[key], strict=True))) for key in gone
        ]
        return added, resolved

    def has_finding(self, host_id: str, rule: str) -> bool:
        found = self._db.conn.execute(
            "select 1 from findings where host_id = ? and rule = ? limit 1", [host_id, rule]
        ).fetchone()
        return found is not None

    def _stored_findings(self, scope: set[str] | None) -> dict[Key, tuple[Any, ...]]:
        """The findings stored for ``scope``, as STORED_FINDING tuples by key: a fleet's
        findings are many rows, and tuples are what SQLite gives cheapest."""
        where, params = queries.Scope.of_hosts(scope).condition("host_id")
        columns = ", ".join(STORED_FINDING)
        rows = self._db.conn.execute(f"select {columns} from findings where {where}", params)
        return {row[:3]: row for row in rows}

    # Reads

    def host_view(self, host_id: str) -> HostView | None:
        views = self._views(queries.Scope([host_id]))
        return views[0] if views else None

    def host_ids(self) -> list[str]:
        return [row[0] for row in self._db.conn.execute("select id from hosts order by id")]

    def host_views(self, host_ids: Iterable[str] | None = None) -> list[HostView]:
        """Every host (or those of ``host_ids`` that exist) as last reported, by id."""
        return self._views(queries.Scope(None if host_ids is None else list(host_ids)))

    def host_views_between(self, first: str, last: str) -> list[HostView]:
        """The hosts whose ids lie between ``first`` and ``last`` (both included), by id."""
        return self._views(queries.Scope(first=first, last=last))

    def _views(self, scope: queries.Scope) -> list[HostView]:
        def rows(sql: str, column: str = "host_id") -> Iterable[Any]:
            return self._db.conn.execute(*scope.query(sql, column))

        certificates: dict[tuple[str, str], list[CertificateView]] = defaultdict(list)
        unreadable: dict[str, list[str]] = defaultdict(list)
        for host_id, reader, *fields in rows(queries.CERTIFICATES_SQL):
            try:
                certificates[host_id, reader].append(queries.certificate_view(fields))
            except ValueError as error:  # stored by an older controller, which took any date
                unreadable[host_id].append(f"a certificate of the card in {reader}: {error}")
        cards: dict[str, list[CardView]] = defaultdict(list)
        for host_id, reader, *fields in rows(queries.CARDS_SQL, "cards.host_id"):
            of_card = tuple(certificates.get((host_id, reader), ()))
            cards[host_id].append(queries.card_view(reader, fields, of_card))
        readers: dict[str, list[ReaderView]] = defaultdict(list)
        for host_id, *fields in rows(queries.READERS_SQL):
            readers[host_id].append(queries.reader_view(fields))
        remembered: dict[str, list[CardView]] = defaultdict(list)
        for host_id, *fields in rows(queries.REMEMBERED_CARDS_SQL, "s.host_id"):
            try:
                remembered[host_id].append(queries.remembered_card_view(fields))
            except ValueError as error:  # stored by an older controller, which took any date
                unreadable[host_id].append(f"the remembered card {fields[2]}: {error}")
        elsewhere: dict[str, set[str]] = defaultdict(set)
        for host_id, serial in rows(queries.ELSEWHERE_SQL, "cards.host_id"):
            elsewhere[host_id].add(serial)
        roster = self.roster_ids()
        return [
            queries.host_view(
                row,
                tuple(readers.get(row[0], ())),
                tuple(cards.get(row[0], ())),
                tuple(unreadable.get(row[0], ())),
                tuple(remembered.get(row[0], ())),
                frozenset(elsewhere.get(row[0], ())),
                roster,
                self.pseudonym_key is not None and roster is not None,
            )
            for row in rows(queries.VIEW_HOSTS_SQL, "id")
        ]

    def roster_ids(self) -> frozenset[str] | None:
        """The roster's idNats, and their pseudonyms with ``pseudonym_key`` (the cards of a
        fleet whose agents pseudonymise carry those); None when no roster was imported (or an
        empty one)."""
        ids = frozenset(row[0] for row in self._db.conn.execute(queries.ROSTER_IDS_SQL))
        if ids and self.pseudonym_key is not None:
            key, plain = self.pseudonym_key, ids
            if self._pseudonyms[:2] != (key, plain):  # each chunk of an evaluation asks
                both = plain | {pseudonym(key, id_nat) for id_nat in plain}
                self._pseudonyms = (key, plain, both)
            ids = self._pseudonyms[2]
        return ids or None

    def hosts(self) -> list[Row]:
        """One row per host for listing: counts of readers, cards and findings by severity."""
        rows = self._rows(queries.HOSTS_SQL)
        return [
            row | {"pcsc_available": queries.optional_bool(row["pcsc_available"])} for row in rows
        ]

    def findings(self, severity: str | None = None, host_id: str | None = None) -> list[Finding]:
        """Open findings (with their host's site), most severe first, then by host and rule.

        Sites are matched as people name them, by ``cpsfleet.controller.filters``."""
        if severity is not None and severity not in queries.SEVERITY_NAMES:
            raise StoreError(
                _("unknown severity {severity}: use one of {severities}").format(
                    severity=repr(severity), severities=", ".join(SEVERITIES)
                )
            )
        where = {"severity": severity, "host_id": host_id}
        rows = self._rows(queries.FINDINGS_SQL, where)
        return [queries.finding(row) for row in rows]

    def events(self, host_id: str | None = None, limit: int = 100) -> list[Row]:
        """The latest events, newest first; ``card`` is the event's card object or None."""
        rows = self._rows(queries.EVENTS_SQL, {"host_id": host_id, "limit": limit})
        return [queries.event_listing(row) for row in rows]

    def card_sightings(self) -> list[Row]:
        """Every CPS card ever seen, where and when last (see cpsfleet.controller.db.sightings)."""
        return sightings.load_sightings(self._db)

    def status_history_count(self, host_id: str) -> int:
        found = self._db.execute(
            "select count(*) from status_history where host_id = ?", [host_id]
        ).fetchone()
        return int(found[0])

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        return list(self._db.query(sql, params))


# The parts of a status document that only say when, which one it is, or which commands
# it answers.
TIMES = frozenset({"scanned_at", "duration_ms", "seq", "late", "answers"})


def _digest(document: Row) -> str:
    """What the host reported, times aside: equal digests, same inventory. (Certificates'
    days_left change daily, so an unchanged host is stored in full once a day.)"""
    facts = [(name, value) for name, value in document.items() if name not in TIMES]
    return hashlib.blake2b(orjson.dumps(facts), digest_size=16).hexdigest()


def _insert(db: Database, table: str, rows: list[Row], upsert: str = "") -> None:
    """Insert rows that all have the same keys, in one statement run for each.

    ``upsert`` is an ``on conflict ...`` clause. Plain SQL rather than sqlite-utils'
    ``insert_all``, which checks the table's columns on every call: storing a status took
    milliseconds, now well under one.
    """
    if rows:
        columns = tuple(rows[0])
        db.conn.executemany(
            _insert_sql(table, columns, upsert),
            [tuple(row[name] for name in columns) for row in rows],
        )


@cache
def _insert_sql(table: str, columns: tuple[str, ...], upsert: str) -> str:
    names = ", ".join(f"[{name}]" for name in columns)
    values = ", ".join("?" for _ in columns)
    return f"insert into [{table}] ({names}) values ({values}) {upsert}"


# The columns of a stored finding, key first.
STORED_FINDING = ("rule", "host_id", "subject", "severity", "message", "since", "first_seen")
INSERT_FINDING = f"""
insert into findings ({", ".join(STORED_FINDING)}, last_seen) values (?, ?, ?, ?, ?, ?, ?, ?)
on conflict (rule, host_id, subject) do update set severity = excluded.severity,
  message = excluded.message, since = excluded.since, last_seen = excluded.last_seen
"""


def _expect(document: Row, schema: str) -> None:
    if document.get("schema") != schema:
        raise StoreError(f"expected a {schema} document, got {document.get('schema')!r}")


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone: the store takes aware datetimes")
    return format_utc(moment)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# Documents to rows


def _host_status_columns(document: Row, received: str) -> Row:
    host, pcsc, cryptolib = document["host"], document["pcsc"], document["cryptolib"]
    return {
        **queries.pick(host, ("hostname", "site", "os", "os_version", "agent_version")),
        "last_status_at": received,
        "scanned_at": document["scanned_at"],
        "scan_interval_s": document["scan_interval_s"],
        "pcsc_available": pcsc["available"],
        "pcsc_error": pcsc["error"],
        "cryptolib_installed": cryptolib["installed"],
        "cryptolib_version": cryptolib["version"],
        "cryptolib_json": _json(cryptolib),
        "problems_json": _json(document["problems"]),
    }


def _inventory_rows(host_id: str, readers: list[Row]) -> dict[str, list[Row]]:
    """Rows for the readers, cards and certificates tables, in the agent's order."""
    inventory: dict[str, list[Row]] = {"readers": [], "cards": [], "certificates": []}
    for position, reader in enumerate(readers):
        name, card = reader["name"], reader["card"]
        model = reader.get("model") or {}
        inventory["readers"].append(
            {"host_id": host_id, "name": name, "position": position, "state": reader["state"]}
            | {"problems_json": _json(reader["problems"])}
            | {column: model.get(column) for column in migrations.READER_MODEL_COLUMNS}
        )
        if card is not None:
            inventory["cards"].append(_card_row(host_id, name, card))
            inventory["certificates"] += _certificate_rows(host_id, name, card)
    return inventory


def _delivery(document: Row) -> Row:
    return {
        "seq": document.get("seq"),
        "run": document.get("run"),
        "late": document.get("late", False),
    }


# The host's current status as far as ordering goes: (inventory digest, seq, run, scanned_at).
CURRENT_STATUS_SQL = (
    "select inventory_hash, status_seq, status_run, scanned_at from hosts where id = ?"
)
STORED_PRESENCE_SQL = "select presence, presence_reason, presence_sent_at from hosts where id = ?"


def _status_order(document: Row) -> Row:
    return {
        "scanned_at": document["scanned_at"],
        "status_seq": document.get("seq"),
        "status_run": document.get("run"),
    }


def _older(document: Row, current: Sequence[Any]) -> bool:
    """Whether ``document`` comes before the host's current status in its agent's run.

    Within one run (the agent's outbox) seq only grows, so a lower one is a replay or a
    late copy. Agents without a run id (older ones) are told apart by their scan time: a
    reset counter comes with a newer scan, a replay with an older one.
    """
    _, seq, run, scanned_at = current
    new_seq, new_run = document.get("seq"), document.get("run")
    if new_seq is None or seq is None or new_seq >= seq or new_run != run:
        return False
    return run is not None or document["scanned_at"] <= scanned_at


def _repeated(document: Row, digest: str, current: Sequence[Any]) -> bool:
    """Whether a status without seq is the current one again (a retained status replayed
    to a reconnecting controller): same inventory, same scan. One that answers a command
    is news, whatever else it repeats."""
    if document.get("seq") is not None or document.get("answers"):
        return False
    hash_, _, _, scanned_at = current
    return (hash_, scanned_at) == (digest, document["scanned_at"])


def _card_row(host_id: str, reader: str, card: Row) -> Row:
    fields = queries.pick(card, ("atr", "kind", "kind_label", "is_cps", "serial"))
    return {
        "host_id": host_id,
        "reader": reader,
        **fields,
        "problems_json": _json(card["problems"]),
        **queries.pin_columns(card),
    }


def _certificate_rows(host_id: str, reader: str, card: Row) -> list[Row]:
    return [
        {"host_id": host_id, "reader": reader, "card_serial": card["serial"], "position": position}
        | queries.pick(certificate, CERTIFICATE_FIELDS)
        for position, certificate in enumerate(card["certificates"])
    ]


def _key(finding: Finding) -> Key:
    return finding.rule, finding.host_id, finding.subject


def _finding_row(
    finding: Finding, previous: tuple[Any, ...] | None, now: str
) -> tuple[Any, ...] | None:
    """The INSERT_FINDING row for a finding, or None if it is stored as it is: ``since``
    from the rule, else kept, else now."""
    if finding.since is not None:
        since = _iso(finding.since)
    else:
        since = now if previous is None else previous[5]
    found = (finding.rule, finding.host_id, finding.subject, finding.severity, finding.message)
    if previous is not None and found + (since,) == previous[:6]:
        return None
    return (*found, since, now if previous is None else previous[6], now)


# Rows to views
