"""Alerts administrators act on: one per finding key, with a lifecycle, silences, acknowledgements.

An alert has its finding's key (rule, host_id, subject). ``AlertBook.update`` compares an
evaluation's findings with the stored alerts:

    new key                      firing; started_at is the finding's since, else now
    firing, still found          firing; severity, message and site follow the finding
    firing, no longer found      resolved; resolved_at is now
    resolved, found again        firing anew: a new episode (started_at now, notifications 0,
                                 its acknowledgement cleared)

and returns the ``Batch`` of notifications due now, across the whole book:

    fired      firing, not notified yet in this episode (also when a silence over it ends)
    repeated   firing, notified, not acknowledged, last notified repeat_interval_s ago or more
    resolved   resolved after its firing was notified, the resolution not notified yet

Only alerts of ``min_severity`` or above notify (by default the info findings are tracked,
and published on MQTT, but never sent). An active silence (not expired, ``until`` still
ahead, and each of its rule / host / subject equal to the alert's or NULL) keeps an alert
out of the notifications without changing its lifecycle; a resolution that happens under a
silence is never sent. ``mark_notified`` records a sent batch.

Because ``update`` returns everything due, the controller may update the book host by host
and notify from its whole-fleet run only, which sends one message for all of them. A
resolved alert whose resolution is yet to be sent is kept as ``notifications > 0`` with
``last_notified_at`` NULL (migration 4 has no column of its own for it). Times are ISO 8601
UTC strings to the second, as everywhere in the controller database.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlite_utils import Database

from cpsfleet.controller.db import fleet, migrations
from cpsfleet.controller.db.alerts import KEY, AlertTables, StoredRow
from cpsfleet.controller.db.connect import StoreError, connect
from cpsfleet.controller.model import SEVERITIES, Finding, Severity
from cpsfleet.controller.rules.findings import RULES
from cpsfleet.schemas.times import format_utc
from cpsfleet.schemas.topics import TopicError, check_host_id

Row = dict[str, Any]
Key = tuple[str, str, str]
AlertState = Literal["firing", "resolved"]

ALERT_STATES: tuple[AlertState, ...] = ("firing", "resolved")
RULE_NAMES = frozenset(name for name, _ in RULES)
SEVERITY_RANK: dict[str, int] = {severity: rank for rank, severity in enumerate(SEVERITIES)}
SEVERITY_NAMES: dict[str, Severity] = {severity: severity for severity in SEVERITIES}
STATE_NAMES: dict[str, AlertState] = {state: state for state in ALERT_STATES}
ALERTS_VERSION = migrations.MIGRATIONS.index(migrations.add_alerts) + 1
# MQTT wildcards and the level separator cannot appear inside a topic level.
TOPIC_PREFIX = re.compile(r"[^/+#\x00]+(/[^/+#\x00]+)*")


class AlertError(Exception):
    """An alert setting or operation that cannot be carried out; the message says what to do."""


@dataclass(frozen=True)
class AlertSettings:
    """The ``[alerts]`` table of the controller configuration.

    ``channels`` are apprise URLs (``mailto://``, ``msteams://``, ``slack://``,
    ``json://``...); a TOML array is accepted and kept as a tuple.
    """

    repeat_interval_s: int = 86400
    channels: tuple[str, ...] = ()
    min_severity: str = "warning"
    mqtt_topic_prefix: str = "cpsfleet/v1/alerts"

    def __post_init__(self) -> None:
        if isinstance(self.channels, list):
            object.__setattr__(self, "channels", tuple(self.channels))
        _check_interval(self.repeat_interval_s)
        _check_channels(self.channels)
        if self.min_severity not in SEVERITIES:
            raise AlertError(
                f"alerts min_severity must be one of {', '.join(SEVERITIES)}, "
                f"not {self.min_severity!r}"
            )
        if not isinstance(self.mqtt_topic_prefix, str) or not TOPIC_PREFIX.fullmatch(
            self.mqtt_topic_prefix
        ):
            raise AlertError(
                f"alerts mqtt_topic_prefix {self.mqtt_topic_prefix!r} must be an MQTT topic "
                "without wildcards (+, #) or empty levels, like cpsfleet/v1/alerts"
            )


def _check_interval(value: object) -> None:
    # bool is an int in Python, but "repeat_interval_s = true" is a configuration mistake.
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise AlertError(f"alerts repeat_interval_s must be a positive whole number, not {value!r}")


def _check_channels(channels: object) -> None:
    if not isinstance(channels, tuple):
        raise AlertError("alerts channels must be a list of apprise URLs")
    for number, channel in enumerate(channels, 1):
        if not isinstance(channel, str) or "://" not in channel:
            raise AlertError(
                f"alerts channel {number} is not a URL like mailto://... or msteams://..."
            )


@dataclass(frozen=True)
class Acknowledgement:
    by: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class Alert:
    rule: str
    host_id: str
    subject: str
    severity: Severity
    message: str
    site: str | None
    state: AlertState
    started_at: datetime
    resolved_at: datetime | None = None
    last_notified_at: datetime | None = None
    notifications: int = 0
    acknowledgement: Acknowledgement | None = None

    @property
    def key(self) -> Key:
        return self.rule, self.host_id, self.subject


@dataclass(frozen=True)
class Silence:
    """Keeps the alerts it matches out of the notifications; None matches anything."""

    id: int
    rule: str | None
    host_id: str | None
    subject: str | None
    until: datetime
    reason: str
    created_by: str
    created_at: datetime
    expired_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.expired_at is None and self.until > now

    def matches(self, alert: Alert) -> bool:
        wanted = (self.rule, self.host_id, self.subject)
        return all(
            field is None or field == value for field, value in zip(wanted, alert.key, strict=True)
        )


@dataclass(frozen=True)
class Batch:
    """One run's news: the notifications due, and the alerts whose state changed.

    ``changed`` lists every alert this update fired, altered (severity, message,
    site) or resolved, notified or not: what the MQTT alert topic mirrors.
    """

    fired: tuple[Alert, ...] = ()
    repeated: tuple[Alert, ...] = ()
    resolved: tuple[Alert, ...] = ()
    changed: tuple[Alert, ...] = ()

    @property
    def due(self) -> tuple[Alert, ...]:
        """The alerts to notify: fired, then repeated, then resolved."""
        return self.fired + self.repeated + self.resolved


def open_database(path: Path) -> Database:
    """The controller database at ``path``, read-write, for the alert commands."""
    try:
        db = connect(path, must_exist=True)
    except StoreError as error:
        raise AlertError(str(error)) from error
    try:
        _check_version(path, migrations.version(db))
    except sqlite3.DatabaseError as error:
        db.close()
        raise AlertError(f"{path}: not a usable SQLite database: {error}") from error
    except AlertError:
        db.close()
        raise
    return db


def _check_version(path: Path, found: int) -> None:
    if found > migrations.LATEST:
        raise AlertError(f"{path}: database version {found} is newer than this cpsfleet")
    if found < ALERTS_VERSION:
        raise AlertError(
            f"{path}: database version {found} has no alert tables: "
            "start the controller once to upgrade it"
        )


class AlertBook:
    """The alerts, silences and acknowledgements tables of a controller database."""

    def __init__(self, db: Database, settings: AlertSettings | None = None) -> None:
        self._db = db
        self._tables = AlertTables(db)
        self.settings = settings or AlertSettings()

    # The lifecycle

    def update(
        self,
        findings: list[Finding],
        now: datetime,
        scope: Iterable[str] | None = None,
        due: bool = True,
    ) -> Batch:
        """Make ``findings`` the complete set for the hosts in ``scope`` (all hosts if None).

        With ``due`` false, only ``changed`` is filled: the notifications due are the whole
        book's, too costly to gather after every message when only the periodic run sends.
        """
        hosts = None if scope is None else set(scope)
        current = {_key(finding): finding for finding in findings}
        if hosts is not None and (outside := {key[1] for key in current} - hosts):
            raise ValueError(f"findings for hosts outside the scope: {sorted(outside)}")
        stamp, silences = _iso(now), self.silences(now)
        with self._tables.atomic():
            stored = {_row_key(row): row for row in self._tables.rows(hosts)}
            fired = [
                _firing_row(finding, stored.get(key), stamp)
                for key, finding in current.items()
                if not _still_firing(finding, stored.get(key))
            ]
            # A new episode of a resolved alert starts unacknowledged.
            again = [key for row in fired if (key := _row_key(row)) in stored]
            again = [key for key in again if not _firing(stored[key])]
            self._tables.clear_acknowledgements(again)
            gone = [row for key, row in stored.items() if key not in current and _firing(row)]
            resolved = [self._resolution(row, stamp, silences) for row in gone]
            self._tables.upsert([*fired, *resolved])
        keys = sorted({_row_key(row) for row in (*fired, *resolved)})
        return replace(self.pending(now) if due else Batch(), changed=self._of_keys(keys))

    def _of_keys(self, keys: list[Key]) -> tuple[Alert, ...]:
        return tuple(_alert(row) for row in self._tables.of_keys(keys)) if keys else ()

    def _resolution(self, row: StoredRow, stamp: str, silences: list[Silence]) -> Row:
        resolved = dict(row) | {"state": "resolved", "resolved_at": stamp}
        if row["notifications"] > 0 and not _silenced(_alert(resolved), silences):
            resolved["last_notified_at"] = None  # the resolution is due: see the module doc
        return resolved

    def pending(self, now: datetime) -> Batch:
        """The notifications due at ``now``; ``changed`` is empty."""
        silences = self.silences(now)
        due_again = now - timedelta(seconds=self.settings.repeat_interval_s)
        severities = json.dumps(SEVERITIES[: SEVERITY_RANK[self.settings.min_severity] + 1])
        rows = self._tables.pending(_iso(due_again), severities)
        candidates = [_alert(row) for row in rows]
        firing = [a for a in candidates if a.state == "firing" and not _silenced(a, silences)]
        firing = [a for a in firing if a.acknowledgement is None and self._notifies(a)]
        return Batch(
            fired=tuple(a for a in firing if a.last_notified_at is None),
            repeated=tuple(
                a for a in firing if a.last_notified_at and a.last_notified_at <= due_again
            ),
            resolved=tuple(a for a in candidates if a.state == "resolved"),
        )

    def _notifies(self, alert: Alert) -> bool:
        return SEVERITY_RANK[alert.severity] <= SEVERITY_RANK[self.settings.min_severity]

    def mark_notified(self, batch: Batch, now: datetime) -> None:
        """Record that ``batch.due`` was sent at ``now``."""
        with self._tables.atomic():
            self._tables.mark_notified([alert.key for alert in batch.due], _iso(now))

    def alerts(self, state: str | None = None, host_id: str | None = None) -> list[Alert]:
        """The alerts (of one host), firing first, then by severity, host, rule and subject."""
        if state is not None and state not in ALERT_STATES:
            raise AlertError(f"unknown alert state {state!r}: use firing or resolved")
        return [_alert(row) for row in self._tables.listed(state, host_id)]

    def firing(self) -> Iterator[Alert]:
        """The firing alerts, as ``alerts("firing")`` orders them, read one at a time: a big
        fleet can have tens of thousands."""
        return (_alert(row) for row in self._tables.firing())

    # Acknowledgements

    def acknowledge(
        self, rule: str, host_id: str, subject: str, by: str, reason: str, now: datetime
    ) -> None:
        """Stop the repeats of a firing alert; its resolution is still notified."""
        _require_text(by=by, reason=reason)
        _check_rule(rule)
        self._check_names(host_id, rule, subject)
        if self._tables.state_of((rule, host_id, subject)) != "firing":
            where = f" ({subject})" if subject else ""
            raise AlertError(
                f"no firing alert {rule} on {host_id}{where}: "
                "`cpsfleet controller alerts --state firing` lists them"
            )
        ack = {"rule": rule, "host_id": host_id, "subject": subject}
        ack |= {"by": by, "reason": reason, "at": _iso(now)}
        self._tables.acknowledge(ack)

    def _check_names(self, host_id: str | None, rule: str | None, subject: str | None) -> None:
        """Refuse a host the controller has never seen, and a card or reader (subject) that no
        alert nor finding of ``rule`` and ``host_id`` (None: any) names: a mistyped name would
        silence or acknowledge nothing, and say so only by the alert still notifying."""
        if host_id is not None and not fleet.known_host(self._db, host_id):
            raise AlertError(
                f"unknown host {host_id!r}: the controller has never seen it; "
                "`cpsfleet controller hosts` lists the fleet"
            )
        if subject and not fleet.subject_named(self._db, subject, rule, host_id):
            of = "".join((f" of rule {rule}" if rule else "", f" on {host_id}" if host_id else ""))
            raise AlertError(
                f"no alert nor finding{of} is about {subject!r}: "
                "`cpsfleet controller alerts` and `findings` list them"
            )

    # Silences

    def add_silence(
        self,
        rule: str | None,
        host_id: str | None,
        subject: str | None,
        until: datetime,
        reason: str,
        by: str,
        now: datetime,
    ) -> int:
        """Silence the alerts matching rule, host and subject (None: any) until ``until``."""
        _check_silence(rule, host_id, subject, until, now)
        _require_text(by=by, reason=reason)
        self._check_names(host_id, rule, subject)
        row = {"rule": rule, "host_id": host_id, "subject": subject, "until": _iso(until)}
        row |= {"reason": reason, "created_by": by, "created_at": _iso(now), "expired_at": None}
        return self._tables.add_silence(row)

    def silences(self, now: datetime, include_expired: bool = False) -> list[Silence]:
        """The silences active at ``now`` (all of them with ``include_expired``), by id."""
        found = [_silence(row) for row in self._tables.silences()]
        return found if include_expired else [s for s in found if s.active(now)]

    def expire_silence(self, silence_id: int, now: datetime) -> Silence:
        """End a silence now: the alerts it matched notify again from the next run."""
        row = self._tables.silence(silence_id)
        if row is None:
            raise AlertError(
                f"no silence {silence_id}: `cpsfleet controller silence list --all` lists them"
            )
        silence = _silence(row)
        if not silence.active(now):
            ended = silence.expired_at or silence.until
            raise AlertError(f"silence {silence_id} already ended on {_iso(ended)}")
        self._tables.end_silence(silence_id, _iso(now))
        return replace(silence, expired_at=_time(_iso(now)))


def _check_silence(
    rule: str | None, host_id: str | None, subject: str | None, until: datetime, now: datetime
) -> None:
    if rule is None and host_id is None and subject is None:
        raise AlertError("a silence needs a rule, a host or a subject: it would hide every alert")
    if rule is not None:
        _check_rule(rule)
    if host_id is not None:
        try:
            check_host_id(host_id)
        except TopicError as error:
            raise AlertError(str(error)) from None
    if until <= now:
        raise AlertError(f"the silence would end on {_iso(until)}, which has already passed")


def _check_rule(rule: str) -> None:
    if rule not in RULE_NAMES:
        raise AlertError(f"unknown rule {rule!r}: use one of {', '.join(sorted(RULE_NAMES))}")


def _require_text(**texts: str) -> None:
    for name, text in texts.items():
        if not text.strip():
            raise AlertError(f"{name} is empty: say who and why, for the next administrator")


def _still_firing(finding: Finding, stored: StoredRow | None) -> bool:
    """The alert is stored firing as the finding says: nothing to write."""
    return (
        stored is not None
        and _firing(stored)
        and (stored["severity"], stored["message"], stored["site"])
        == (finding.severity, finding.message, finding.site)
    )


def _firing_row(finding: Finding, previous: StoredRow | None, stamp: str) -> Row:
    """The stored row of a found alert: kept if firing, else a new episode."""
    row = {name: getattr(finding, name) for name in (*KEY, "severity", "message", "site")}
    if previous is not None and _firing(previous):
        return dict(previous) | row
    since = finding.since if previous is None else None  # a new episode starts now
    episode = {"state": "firing", "started_at": _iso(since) if since else stamp}
    return row | episode | {"resolved_at": None, "last_notified_at": None, "notifications": 0}


def _firing(row: Row | StoredRow) -> bool:
    return bool(row["state"] == "firing")


def _silenced(alert: Alert, silences: list[Silence]) -> bool:
    return any(silence.matches(alert) for silence in silences)


def _key(finding: Finding) -> Key:
    return finding.rule, finding.host_id, finding.subject


def _row_key(row: Row | StoredRow) -> Key:
    return row["rule"], row["host_id"], row["subject"]


def _alert(row: Row) -> Alert:
    ack = row.get("ack_by")
    return Alert(
        **{name: row[name] for name in (*KEY, "message", "site", "notifications")},
        severity=SEVERITY_NAMES[row["severity"]],
        state=STATE_NAMES[row["state"]],
        started_at=_time(row["started_at"]),
        resolved_at=_optional_time(row["resolved_at"]),
        last_notified_at=_optional_time(row["last_notified_at"]),
        acknowledgement=None
        if ack is None
        else Acknowledgement(ack, row["ack_reason"], _time(row["ack_at"])),
    )


def _silence(row: Row) -> Silence:
    return Silence(
        **{name: row[name] for name in ("id", *KEY, "reason", "created_by")},
        until=_time(row["until"]),
        created_at=_time(row["created_at"]),
        expired_at=_optional_time(row["expired_at"]),
    )


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone: alerts take aware datetimes")
    return format_utc(moment)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _optional_time(text: str | None) -> datetime | None:
    return None if text is None else _time(text)
