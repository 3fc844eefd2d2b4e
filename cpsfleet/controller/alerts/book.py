"""Alerts administrators act on: one per finding key, with a lifecycle, silences, acknowledgements.

An alert has its finding's key (rule, host_id, subject). ``AlertBook.update`` compares an
evaluation's findings with the stored alerts:

    new key                      firing; started_at is the finding's since, else now
    firing, still found          firing; severity, message and site follow the finding
    firing, no longer found      resolved; resolved_at is now
    resolved, found again        firing anew: a new episode (started_at now, notifications 0,
                                 its acknowledgement cleared)

and returns the alerts it changed (``Batch.changed``, what the MQTT alert topic mirrors).

What is due is reckoned per channel (an apprise URL, named in the database by a digest of
it), from what that channel accepted (the ``deliveries`` table): ``pending(now, channel)``
is the ``Batch`` of

    fired      firing, the channel not told of this episode yet (also when a silence over it
               ends, or the channel is new: it hears of every alert firing)
    repeated   firing, told, not acknowledged, told repeat_interval_s ago or more
    resolved   resolved after the channel was told of its firing, the resolution not yet

An alert counts as notified on a channel only once the channel accepted the message
(``delivered``); a channel that refused it (``failed``) is tried again after
``retry_after_s``, doubled at each failure in a row up to ``retry_max_s``, and then gets
everything it missed, as one message. Only alerts of ``min_severity`` or above notify (by
default the info findings are tracked, and published on MQTT, but never sent). An active
silence (not expired, ``until`` still ahead, and each of its rule / host / subject equal to
the alert's or NULL) keeps an alert out of the notifications without changing its
lifecycle; a resolution that happens under a silence is never sent (``silent_resolution``).

Because what is due is read from the database, the controller may update the book host by
host and notify from its periodic run only, which sends one message per channel for all of
them. ``alerts.last_notified_at`` and ``notifications`` sum up every channel: the last time
one accepted a message about the alert, and how many did. Times are ISO 8601 UTC strings to
the second, as everywhere in the controller database.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cpsfleet.controller.db import fleet, migrations
from cpsfleet.controller.db.alerts import KEY, AlertTables, StoredRow
from cpsfleet.controller.db.connect import Database, StoreError, connect
from cpsfleet.controller.model import SEVERITIES, Finding, Severity
from cpsfleet.controller.rules.findings import RULES
from cpsfleet.i18n import _
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
# The longest wait before a channel that refused a message is tried again (retry_after_s and
# retry_max_s): a week. Past it a channel is as good as dropped, and a wait of many years
# overflows the date of the next attempt at its first failure.
MAX_RETRY_S = 7 * 86400
MAX_REPEAT_S = 366 * 86400


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
    # A channel that refused a message is tried again after retry_after_s, then twice as long
    # after each failure in a row, up to retry_max_s; each at most MAX_RETRY_S (a week).
    retry_after_s: int = 60
    retry_max_s: int = 3600
    min_severity: str = "warning"
    mqtt_topic_prefix: str = "cpsfleet/v1/alerts"

    def __post_init__(self) -> None:
        if isinstance(self.channels, list):
            object.__setattr__(self, "channels", tuple(self.channels))
        for name in ("repeat_interval_s", "retry_after_s", "retry_max_s"):
            _check_interval(name, getattr(self, name))
        for name in ("retry_after_s", "retry_max_s"):
            if getattr(self, name) > MAX_RETRY_S:
                raise AlertError(
                    _("alerts {name} must be at most {most} (7 days), not {value}").format(
                        name=name, most=MAX_RETRY_S, value=getattr(self, name)
                    )
                )
        if self.repeat_interval_s > MAX_REPEAT_S:  # beyond, "now - interval" overflows
            raise AlertError(
                _("alerts repeat_interval_s must be at most {most} (a year), not {value}").format(
                    most=MAX_REPEAT_S, value=self.repeat_interval_s
                )
            )
        _check_channels(self.channels)
        if self.min_severity not in SEVERITIES:
            raise AlertError(
                _("alerts min_severity must be one of {severities}, not {value}").format(
                    severities=", ".join(SEVERITIES), value=repr(self.min_severity)
                )
            )
        if not isinstance(self.mqtt_topic_prefix, str) or not TOPIC_PREFIX.fullmatch(
            self.mqtt_topic_prefix
        ):
            raise AlertError(
                _(
                    "alerts mqtt_topic_prefix {value} must be an MQTT topic without wildcards "
                    "(+, #) or empty levels, like cpsfleet/v1/alerts"
                ).format(value=repr(self.mqtt_topic_prefix))
            )


def _check_interval(name: str, value: object) -> None:
    # bool is an int in Python, but "repeat_interval_s = true" is a configuration mistake.
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise AlertError(
            _("alerts {name} must be a positive whole number, not {value}").format(
                name=name, value=repr(value)
            )
        )


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
    resolution: str | None = None  # why it resolved, when the controller can tell

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


@dataclass(frozen=True)
class ChannelRef:
    """A configured channel: the digest naming it in the database, and a name a person can
    read that gives away no secret of its URL ("channel 2 (mailto://...)")."""

    id: str
    name: str


@dataclass(frozen=True)
class Channel:
    """A channel's delivery state."""

    id: str
    name: str
    first_seen: datetime
    last_success_at: datetime | None
    failures: int  # in a row, since its last success
    last_error: str | None
    last_error_at: datetime | None
    next_attempt_at: datetime | None

    def ready(self, now: datetime) -> bool:
        """Whether the channel may be tried at ``now`` (not waiting after a failure)."""
        return self.next_attempt_at is None or self.next_attempt_at <= now


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
        reasons: Callable[[Key], str | None] | None = None,
    ) -> Batch:
        """Make ``findings`` the complete set for the hosts in ``scope`` (all hosts if None);
        the batch of the alerts it changed (only ``changed`` is filled: what is due is each
        channel's, see ``pending``). ``reasons`` tells why the alert of a key resolves, where
        the rules can (``rules.findings.card_resolution``); it is asked of those only."""
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
            resolved = [
                self._resolution(row, stamp, silences, reasons(_row_key(row)) if reasons else None)
                for row in gone
            ]
            self._tables.upsert([*fired, *resolved])
        keys = sorted({_row_key(row) for row in (*fired, *resolved)})
        return Batch(changed=self._of_keys(keys))

    def _of_keys(self, keys: list[Key]) -> tuple[Alert, ...]:
        return tuple(_alert(row) for row in self._tables.of_keys(keys)) if keys else ()

    def _resolution(
        self, row: StoredRow, stamp: str, silences: list[Silence], reason: str | None
    ) -> Row:
        resolved = dict(row) | {"state": "resolved", "resolved_at": stamp, "resolution": reason}
        resolved["silent_resolution"] = int(_silenced(_alert(resolved), silences))
        return resolved

    def pending(self, now: datetime, channel: str) -> Batch:
        """The notifications due on ``channel`` at ``now`` (see the module doc)."""
        silences = self.silences(now)
        due_again = now - timedelta(seconds=self.settings.repeat_interval_s)
        severities = json.dumps(SEVERITIES[: SEVERITY_RANK[self.settings.min_severity] + 1])
        rows = self._tables.pending(channel, _iso(due_again), severities)
        fired: list[Alert] = []
        repeated: list[Alert] = []
        resolved: list[Alert] = []
        for row in rows:
            alert = _alert(row)
            if alert.state == "resolved":
                resolved.append(alert)
            elif not _silenced(alert, silences) and self._notifies(alert):
                (fired if row["channel_sent_at"] is None else repeated).append(alert)
        return Batch(fired=tuple(fired), repeated=tuple(repeated), resolved=tuple(resolved))

    def _notifies(self, alert: Alert) -> bool:
        return SEVERITY_RANK[alert.severity] <= SEVERITY_RANK[self.settings.min_severity]

    def delivered(self, channel: str, batch: Batch, now: datetime) -> None:
        """Record that ``channel`` accepted ``batch.due`` at ``now``."""
        firing = [_episode(alert) for alert in batch.fired + batch.repeated]
        resolved = [_episode(alert) for alert in batch.resolved]
        with self._tables.atomic():
            self._tables.delivered(channel, firing, resolved, _iso(now))
            self._tables.channel_succeeded(channel, _iso(now))

    def failed(self, channel: str, error: str, now: datetime) -> datetime:
        """Record that ``channel`` refused a message at ``now``; when to try it again."""
        with self._tables.atomic():
            found = self._tables.channel(channel)
            failures = 1 if found is None else found["failures"] + 1
            delay = min(
                self.settings.retry_after_s * 2 ** min(failures - 1, 30),
                self.settings.retry_max_s,
            )
            retry_at = now + timedelta(seconds=delay)
            self._tables.channel_failed(channel, error, _iso(now), _iso(retry_at))
        return _time(_iso(retry_at))

    # Channels

    def register_channels(self, refs: Iterable[ChannelRef], now: datetime) -> None:
        """Make the configured channels known. A channel new beside alerts notified by a
        controller that kept no deliveries (an upgrade) takes what they say it was told;
        any other new channel hears of every alert firing."""
        refs = list(refs)
        with self._tables.atomic():
            known = {row["id"] for row in self._tables.channels()}
            upgraded = not known
            stamp = _iso(now)
            self._tables.add_channels(
                [{"id": ref.id, "name": ref.name, "first_seen": stamp} for ref in refs]
            )
            if upgraded:
                for ref in refs:
                    if ref.id not in known:
                        self._tables.adopt(ref.id)

    def channels(self) -> list[Channel]:
        """Every channel ever configured, with its delivery state, oldest first."""
        return [_channel(row) for row in self._tables.channels()]

    def alerts(self, state: str | None = None, host_id: str | None = None) -> list[Alert]:
        """The alerts (of one host), firing first, then by severity, host, rule and subject."""
        if state is not None and state not in ALERT_STATES:
            raise AlertError(f"unknown alert state {state!r}: use firing or resolved")
        return [_alert(row) for row in self._tables.listed(state, host_id)]

    def firing(self) -> Iterator[Alert]:
        """The firing alerts, as ``alerts("firing")`` orders them, read one at a time: a big
        fleet can have tens of thousands."""
        return (_alert(row) for row in self._tables.firing())

    def firing_about(self, subject: str, rules: Iterable[str]) -> list[Alert]:
        """The firing alerts of ``rules`` about ``subject`` (a card's serial), on any host."""
        return [_alert(row) for row in self._tables.firing_about(subject, rules)]

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
                _(
                    "no firing alert {rule} on {host}{where}: "
                    "`cpsfleet controller alerts --state firing` lists them"
                ).format(rule=rule, host=host_id, where=where)
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
                _(
                    "unknown host {host!r}: the controller has never seen it; "
                    "`cpsfleet controller hosts` lists the fleet"
                ).format(host=host_id)
            )
        if subject and not fleet.subject_named(self._db, subject, rule, host_id):
            of_rule = _(" of rule {rule}").format(rule=rule) if rule else ""
            on_host = _(" on {host}").format(host=host_id) if host_id else ""
            raise AlertError(
                _(
                    "no alert nor finding{of} is about {subject!r}: "
                    "`cpsfleet controller alerts` and `findings` list them"
                ).format(of=of_rule + on_host, subject=subject)
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
                _("no silence {id}: `cpsfleet controller silence list --all` lists them").format(
                    id=silence_id
                )
            )
        silence = _silence(row)
        if not silence.active(now):
            ended = silence.expired_at or silence.until
            raise AlertError(
                _("silence {id} already ended on {when}").format(id=silence_id, when=_iso(ended))
            )
        self._tables.end_silence(silence_id, _iso(now))
        return replace(silence, expired_at=_time(_iso(now)))


def _check_silence(
    rule: str | None, host_id: str | None, subject: str | None, until: datetime, now: datetime
) -> None:
    if rule is None and host_id is None and subject is None:
        raise AlertError(
            _("a silence needs a rule, a host or a subject: it would hide every alert")
        )
    if rule is not None:
        _check_rule(rule)
    if host_id is not None:
        try:
            check_host_id(host_id)
        except TopicError as error:
            raise AlertError(str(error)) from None
    if until <= now:
        raise AlertError(
            _("the silence would end on {when}, which has already passed").format(when=_iso(until))
        )


def _check_rule(rule: str) -> None:
    if rule not in RULE_NAMES:
        raise AlertError(
            _("unknown rule {rule!r}: use one of {choices}").format(
                rule=rule, choices=", ".join(sorted(RULE_NAMES))
            )
        )


def _require_text(**texts: str) -> None:
    for name, text in texts.items():
        if not text.strip():
            raise AlertError(
                _("{name} is empty: say who and why, for the next administrator").format(name=name)
            )


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
    fresh = {"resolved_at": None, "last_notified_at": None, "notifications": 0, "resolution": None}
    return row | episode | fresh | {"silent_resolution": 0}


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
        resolution=row.get("resolution"),
        acknowledgement=None
        if ack is None
        else Acknowledgement(ack, row["ack_reason"], _time(row["ack_at"])),
    )


def _episode(alert: Alert) -> Row:
    """An alert's key and episode, as a delivery names them."""
    return dict(zip(KEY, alert.key, strict=True)) | {"started_at": _iso(alert.started_at)}


def _channel(row: Row) -> Channel:
    return Channel(
        id=row["id"],
        name=row["name"],
        first_seen=_time(row["first_seen"]),
        last_success_at=_optional_time(row["last_success_at"]),
        failures=row["failures"],
        last_error=row["last_error"],
        last_error_at=_optional_time(row["last_error_at"]),
        next_attempt_at=_optional_time(row["next_attempt_at"]),
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
