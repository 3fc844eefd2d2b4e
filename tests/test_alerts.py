"""The alert lifecycle on a real database (an SQLite file, a PostgreSQL database): fire,
dedupe, repeat, resolve, silence, ack."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cpsfleet.controller.alerts.book import (
    Alert,
    AlertBook,
    AlertError,
    AlertSettings,
    Batch,
    ChannelRef,
    open_database,
)
from cpsfleet.controller.db import migrations
from cpsfleet.controller.db.connect import Database, connect
from cpsfleet.controller.model import Finding, Severity
from cpsfleet.schemas.times import format_utc

NOW = datetime(2026, 11, 27, 21, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
KEY = ("card_expiring", "ws-lyon-07", "8001234567")
UNTIL = NOW + 3 * DAY


def finding(
    host_id: str = "ws-lyon-07",
    subject: str = "8001234567",
    rule: str = "card_expiring",
    severity: Severity = "warning",
    message: str = "CPS card 8001234567 expires on 2027-01-10 (44 days left): renew it",
    since: datetime | None = None,
) -> Finding:
    return Finding(rule, severity, host_id, subject, message, since, site="Lyon Part-Dieu")


def keys(alerts: Sequence[Alert]) -> list[tuple[str, str, str]]:
    return [alert.key for alert in alerts]


@pytest.fixture
def db(database: str) -> Iterator[Database]:
    """A controller database that has seen ws-lyon-07 and ws-grenoble-01, with the open
    finding of the expiring card of ws-lyon-07: what silences and acknowledgements may name."""
    store = connect(database)
    migrations.upgrade(store)
    seen = format_utc(NOW - DAY)
    store["hosts"].insert_all(
        {"id": host_id, "first_seen": seen, "last_seen": seen}
        for host_id in ("ws-lyon-07", "ws-grenoble-01")
    )
    expiring = finding()
    store["findings"].insert_all(
        [
            {"rule": expiring.rule, "host_id": expiring.host_id, "subject": expiring.subject}
            | {"severity": expiring.severity, "message": expiring.message, "since": seen}
            | {"first_seen": seen, "last_seen": seen}
        ]
    )
    yield store
    store.close()


@pytest.fixture
def book(db: Database) -> AlertBook:
    return AlertBook(db)


CHANNEL = "c1"


def run(
    book: AlertBook, findings: list[Finding], now: datetime, scope: list[str] | None = None
) -> Batch:
    """One evaluation: the book updated, then what is due on the channel and what changed."""
    changed = book.update(findings, now, scope).changed
    return replace(book.pending(now, CHANNEL), changed=changed)


def notified(book: AlertBook, findings: list[Finding], now: datetime) -> Batch:
    """One controller run whose message the channel accepted."""
    batch = run(book, findings, now)
    book.delivered(CHANNEL, batch, now)
    return batch


# Firing and deduplication


def test_a_new_finding_fires_an_alert_due_once(book: AlertBook) -> None:
    batch = notified(book, [finding()], NOW)
    assert keys(batch.fired) == [("card_expiring", "ws-lyon-07", "8001234567")]
    assert batch.repeated == batch.resolved == ()
    assert keys(batch.changed) == keys(batch.fired)
    (alert,) = book.alerts("firing")
    assert (alert.started_at, alert.notifications, alert.last_notified_at) == (NOW, 1, NOW)
    assert alert.site == "Lyon Part-Dieu"


def test_an_alert_starts_when_its_finding_says_it_did(book: AlertBook) -> None:
    expired = NOW - 3 * DAY
    run(book, [finding(rule="card_expired", severity="critical", since=expired)], NOW)
    assert book.alerts()[0].started_at == expired


def test_the_same_finding_run_after_run_is_one_alert_notified_once(book: AlertBook) -> None:
    notified(book, [finding()], NOW)
    for minutes in (1, 2, 60):
        batch = notified(book, [finding()], NOW + timedelta(minutes=minutes))
        assert batch.due == () and batch.changed == ()
    assert len(book.alerts()) == 1


def test_a_firing_alert_follows_its_findings_severity_and_message(book: AlertBook) -> None:
    notified(book, [finding()], NOW)
    worse = finding(severity="critical", message="expires in 13 days")
    batch = notified(book, [worse], NOW + HOUR)
    (alert,) = batch.changed
    assert (alert.severity, alert.message, alert.started_at) == ("critical", worse.message, NOW)
    assert batch.due == ()


def test_forty_cards_are_forty_alerts_in_one_batch(book: AlertBook) -> None:
    cards = [finding(f"ws-{n:02d}", f"80012345{n:02d}") for n in range(40)]
    batch = run(book, cards, NOW)
    assert len(batch.fired) == 40 and len(set(keys(batch.fired))) == 40


def test_the_firing_alerts_are_read_one_at_a_time_in_the_listing_order(book: AlertBook) -> None:
    cards = [finding(f"ws-{n:02d}", f"80012345{n:02d}") for n in range(40)]
    run(book, cards, NOW)
    run(book, cards[5:], NOW + timedelta(hours=1))  # five resolved
    firing = book.firing()
    assert not isinstance(firing, list)
    assert list(firing) == book.alerts("firing") and len(book.alerts("firing")) == 35


# Repeats


def test_a_firing_alert_repeats_exactly_at_the_interval_not_a_second_before(db: Database) -> None:
    book = AlertBook(db, AlertSettings(repeat_interval_s=6 * 3600))
    notified(book, [finding()], NOW)
    just_before = NOW + 6 * HOUR - timedelta(seconds=1)
    assert run(book, [finding()], just_before).repeated == ()
    batch = notified(book, [finding()], NOW + 6 * HOUR)
    assert keys(batch.repeated) == [("card_expiring", "ws-lyon-07", "8001234567")]
    assert batch.fired == ()
    assert run(book, [finding()], NOW + 7 * HOUR).repeated == ()
    assert book.alerts()[0].notifications == 2


def test_the_default_repeat_interval_is_a_day(book: AlertBook) -> None:
    notified(book, [finding()], NOW)
    assert run(book, [finding()], NOW + DAY - timedelta(seconds=1)).repeated == ()
    assert len(run(book, [finding()], NOW + DAY).repeated) == 1


def test_an_unsent_batch_is_due_again_on_the_next_run(book: AlertBook) -> None:
    run(book, [finding()], NOW)  # the channel was down: nothing delivered
    assert len(run(book, [finding()], NOW + timedelta(minutes=1)).fired) == 1


# Resolution


def test_a_finding_gone_resolves_its_alert_and_the_resolution_is_due_once(
    book: AlertBook,
) -> None:
    notified(book, [finding()], NOW)
    batch = notified(book, [], NOW + HOUR)
    (alert,) = batch.resolved
    assert (alert.state, alert.resolved_at) == ("resolved", NOW + HOUR)
    assert keys(batch.changed) == keys(batch.resolved)
    again = notified(book, [], NOW + 2 * HOUR)
    assert again.due == () and again.changed == ()
    assert book.alerts("firing") == [] and book.alerts("resolved")[0].notifications == 2


def test_a_resolution_waits_for_the_run_that_sends_it(book: AlertBook) -> None:
    notified(book, [finding()], NOW)
    run(book, [], NOW + HOUR)  # resolved, but nothing sent
    assert len(book.pending(NOW + 2 * HOUR, CHANNEL).resolved) == 1


def test_an_alert_never_notified_resolves_silently(db: Database) -> None:
    book = AlertBook(db, AlertSettings(min_severity="critical"))
    notified(book, [finding()], NOW)
    batch = notified(book, [], NOW + HOUR)
    assert batch.due == () and [a.state for a in batch.changed] == ["resolved"]


def test_a_resolved_alert_that_fires_again_is_a_new_episode(book: AlertBook) -> None:
    notified(book, [finding()], NOW)
    book.acknowledge(*KEY, by="alice", reason="card ordered", now=NOW)
    notified(book, [], NOW + HOUR)
    later = NOW + 2 * DAY
    batch = run(book, [finding(since=NOW - DAY)], later)
    (alert,) = batch.fired
    assert (alert.state, alert.started_at, alert.resolved_at) == ("firing", later, None)
    assert (alert.notifications, alert.acknowledgement) == (0, None)


# Scope


def test_a_scoped_update_resolves_only_the_hosts_in_scope(book: AlertBook) -> None:
    notified(book, [finding("ws-a"), finding("ws-b")], NOW)
    batch = run(book, [], NOW + HOUR, scope=["ws-a"])
    assert [alert.host_id for alert in batch.resolved] == ["ws-a"]
    assert [alert.host_id for alert in book.alerts("firing")] == ["ws-b"]


def test_a_scoped_update_returns_what_is_due_elsewhere_too(book: AlertBook) -> None:
    run(book, [finding("ws-a")], NOW, scope=["ws-a"])
    batch = run(book, [finding("ws-b")], NOW, scope=["ws-b"])
    assert sorted(alert.host_id for alert in batch.fired) == ["ws-a", "ws-b"]
    assert [alert.host_id for alert in batch.changed] == ["ws-b"]


def test_findings_outside_the_scope_are_refused(book: AlertBook) -> None:
    with pytest.raises(ValueError, match="outside the scope"):
        book.update([finding("ws-b")], NOW, scope=["ws-a"])


# Severity


def test_info_alerts_are_tracked_but_not_notified(book: AlertBook) -> None:
    vitale = finding(rule="non_cps_card", severity="info", subject="Reader 0")
    batch = notified(book, [vitale], NOW)
    assert batch.due == () and keys(batch.changed) == [("non_cps_card", "ws-lyon-07", "Reader 0")]
    assert book.alerts("firing")[0].notifications == 0


def test_an_alert_that_reaches_min_severity_fires_then(db: Database) -> None:
    book = AlertBook(db, AlertSettings(min_severity="critical"))
    assert notified(book, [finding()], NOW).due == ()
    assert len(notified(book, [finding(severity="critical")], NOW + DAY).fired) == 1


# Silences


@pytest.mark.parametrize(
    ("rule", "host_id", "subject"),
    [
        ("card_expiring", None, None),
        (None, "ws-lyon-07", None),
        (None, None, "8001234567"),
        ("card_expiring", "ws-lyon-07", "8001234567"),
    ],
)
def test_a_matching_silence_keeps_the_alert_out_of_the_notifications(
    book: AlertBook, rule: str | None, host_id: str | None, subject: str | None
) -> None:
    book.add_silence(rule, host_id, subject, UNTIL, "card renewal under way", "alice", NOW)
    batch = notified(book, [finding()], NOW)
    assert batch.due == () and keys(batch.changed) == [KEY]
    assert book.alerts("firing")[0].notifications == 0


@pytest.mark.parametrize(
    ("rule", "host_id", "subject"),
    [("card_expired", None, None), (None, "ws-grenoble-01", None), (None, "ws-lyon-07", "")],
)
def test_a_silence_that_does_not_match_lets_the_alert_through(
    book: AlertBook, rule: str | None, host_id: str | None, subject: str | None
) -> None:
    book.add_silence(rule, host_id, subject, UNTIL, "maintenance", "alice", NOW)
    assert keys(run(book, [finding()], NOW).fired) == [KEY]


def test_an_expired_silence_no_longer_applies(book: AlertBook) -> None:
    silence_id = book.add_silence("card_expiring", None, None, UNTIL, "renewal", "alice", NOW)
    assert notified(book, [finding()], NOW).due == ()
    expired = book.expire_silence(silence_id, NOW + HOUR)
    assert expired.expired_at == NOW + HOUR
    assert keys(notified(book, [finding()], NOW + 2 * HOUR).fired) == [KEY]


def test_a_silence_whose_until_has_passed_no_longer_applies(book: AlertBook) -> None:
    book.add_silence(None, "ws-lyon-07", None, NOW + HOUR, "moving desks", "alice", NOW)
    assert run(book, [finding()], NOW + HOUR - timedelta(seconds=1)).due == ()
    assert keys(run(book, [finding()], NOW + HOUR).fired) == [KEY]


def test_a_resolution_under_a_silence_is_never_notified(book: AlertBook) -> None:
    notified(book, [finding()], NOW)
    silence_id = book.add_silence(None, "ws-lyon-07", None, UNTIL, "reinstall", "alice", NOW)
    assert notified(book, [], NOW + HOUR).due == ()
    book.expire_silence(silence_id, NOW + 2 * HOUR)
    assert notified(book, [], NOW + 3 * HOUR).due == ()


def test_silences_lists_the_active_ones_unless_asked_for_all(book: AlertBook) -> None:
    ended = book.add_silence("no_reader", None, None, NOW + HOUR, "lab", "bob", NOW)
    active = book.add_silence(None, "ws-lyon-07", None, UNTIL, "repair", "alice", NOW)
    assert [s.id for s in book.silences(NOW + 2 * HOUR)] == [active]
    assert [s.id for s in book.silences(NOW + 2 * HOUR, include_expired=True)] == [ended, active]
    silence = book.silences(NOW)[1]
    assert (silence.reason, silence.created_by, silence.created_at) == ("repair", "alice", NOW)


@pytest.mark.parametrize(
    ("rule", "host_id", "until", "reason", "error"),
    [
        (None, None, UNTIL, "why", "needs a rule, a host or a subject"),
        ("card_expirng", None, UNTIL, "why", "unknown rule 'card_expirng'"),
        (None, "ws lyon", UNTIL, "why", "host id 'ws lyon'"),
        ("no_reader", None, NOW, "why", "already passed"),
        ("no_reader", None, UNTIL, "  ", "reason is empty"),
    ],
)
def test_a_silence_that_makes_no_sense_is_refused(
    book: AlertBook,
    rule: str | None,
    host_id: str | None,
    until: datetime,
    reason: str,
    error: str,
) -> None:
    with pytest.raises(AlertError, match=error):
        book.add_silence(rule, host_id, None, until, reason, "alice", NOW)


def test_expiring_an_unknown_or_ended_silence_says_so(book: AlertBook) -> None:
    with pytest.raises(AlertError, match="no silence 7"):
        book.expire_silence(7, NOW)
    silence_id = book.add_silence("no_reader", None, None, UNTIL, "lab", "bob", NOW)
    book.expire_silence(silence_id, NOW)
    with pytest.raises(AlertError, match=f"silence {silence_id} already ended"):
        book.expire_silence(silence_id, NOW + HOUR)


# Acknowledgements


def test_an_acknowledged_alert_stops_repeating_but_its_resolution_is_notified(
    book: AlertBook,
) -> None:
    notified(book, [finding()], NOW)
    book.acknowledge(*KEY, by="alice", reason="new card ordered", now=NOW + HOUR)
    assert notified(book, [finding()], NOW + 3 * DAY).due == ()
    assert keys(notified(book, [], NOW + 4 * DAY).resolved) == [KEY]
    (alert,) = book.alerts()
    assert alert.acknowledgement is not None
    assert (alert.acknowledgement.by, alert.acknowledgement.reason) == ("alice", "new card ordered")


def test_only_a_firing_alert_can_be_acknowledged(book: AlertBook) -> None:
    with pytest.raises(AlertError, match="no firing alert card_expiring on ws-lyon-07"):
        book.acknowledge(*KEY, by="alice", reason="ordered", now=NOW)
    notified(book, [finding()], NOW)
    notified(book, [], NOW + HOUR)
    with pytest.raises(AlertError, match="no firing alert"):
        book.acknowledge(*KEY, by="alice", reason="ordered", now=NOW + 2 * HOUR)


@pytest.mark.parametrize(
    ("rule", "host_id", "subject", "error"),
    [
        (None, "ws-nowhere-01", None, "unknown host 'ws-nowhere-01': the controller has never"),
        (None, None, "8009999999", "no alert nor finding is about '8009999999'"),
        ("no_reader", "ws-lyon-07", "8001234567", "no alert nor finding of rule no_reader on"),
        (None, "ws-grenoble-01", "8001234567", "no alert nor finding on ws-grenoble-01 is about"),
    ],
)
def test_a_silence_naming_what_the_controller_never_saw_is_refused(
    book: AlertBook, rule: str | None, host_id: str | None, subject: str | None, error: str
) -> None:
    with pytest.raises(AlertError, match=re.escape(error)):
        book.add_silence(rule, host_id, subject, UNTIL, "typo", "alice", NOW)
    assert book.silences(NOW, include_expired=True) == []


def test_a_silence_may_name_a_card_of_a_resolved_alert(book: AlertBook) -> None:
    notified(book, [finding(subject="8002222222")], NOW)
    notified(book, [], NOW + HOUR)
    book.add_silence(None, None, "8002222222", UNTIL, "back next week", "alice", NOW + HOUR)
    assert [s.subject for s in book.silences(NOW + HOUR)] == ["8002222222"]


@pytest.mark.parametrize(
    ("rule", "host_id", "error"),
    [
        ("card_expird", "ws-lyon-07", "unknown rule 'card_expird'"),
        ("card_expiring", "ws-nowhere-01", "unknown host 'ws-nowhere-01'"),
    ],
)
def test_an_acknowledgement_of_an_unknown_rule_or_host_is_refused(
    book: AlertBook, rule: str, host_id: str, error: str
) -> None:
    notified(book, [finding()], NOW)
    with pytest.raises(AlertError, match=re.escape(error)):
        book.acknowledge(rule, host_id, "8001234567", by="alice", reason="x", now=NOW)


def test_an_acknowledgement_needs_a_reason(book: AlertBook) -> None:
    notified(book, [finding()], NOW)
    with pytest.raises(AlertError, match="reason is empty"):
        book.acknowledge(*KEY, by="alice", reason="", now=NOW)


# Listing


def test_alerts_lists_firing_first_then_by_severity(book: AlertBook) -> None:
    expired = finding("ws-b", rule="card_expired", severity="critical")
    notified(book, [finding("ws-a"), expired], NOW)
    notified(book, [expired], NOW + HOUR)
    run(book, [finding("ws-c", rule="no_reader", subject="")], NOW + HOUR, scope=["ws-c"])
    listed = [(a.state, a.severity, a.host_id) for a in book.alerts()]
    assert listed == [
        ("firing", "critical", "ws-b"),
        ("firing", "warning", "ws-c"),
        ("resolved", "warning", "ws-a"),
    ]
    with pytest.raises(AlertError, match="unknown alert state 'open'"):
        book.alerts("open")


# Settings and database


def test_settings_from_toml_take_a_list_of_channels() -> None:
    settings = AlertSettings(channels=["json://127.0.0.1:8080/hook"])  # type: ignore[arg-type]
    assert settings.channels == ("json://127.0.0.1:8080/hook",)


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ({"repeat_interval_s": 0}, "repeat_interval_s must be a positive whole number"),
        ({"repeat_interval_s": True}, "repeat_interval_s must be a positive whole number"),
        ({"channels": "mailto://x"}, "channels must be a list"),
        ({"channels": ["teams"]}, "channel 1 is not a URL"),
        ({"min_severity": "error"}, "min_severity must be one of critical, warning, info"),
        ({"mqtt_topic_prefix": "cpsfleet/#"}, "without wildcards"),
        ({"mqtt_topic_prefix": "/cpsfleet"}, "empty levels"),
    ],
)
def test_settings_that_cannot_work_are_refused(table: dict[str, object], error: str) -> None:
    with pytest.raises(AlertError, match=error):
        AlertSettings(**table)  # type: ignore[arg-type]


def test_open_database_refuses_a_missing_sqlite_file(tmp_path: Path) -> None:
    with pytest.raises(AlertError, match="no controller database at"):
        open_database(tmp_path / "missing.db")


def test_open_database_refuses_an_old_database(database: str) -> None:
    old = connect(database)
    migrations.upgrade(old, migrations.MIGRATIONS[:3])
    old.close()
    with pytest.raises(AlertError, match="version 3 has no alert tables"):
        open_database(Path(database))


def test_open_database_gives_a_writable_book(db: Database, database: str) -> None:
    other = open_database(Path(database))
    try:
        AlertBook(other).add_silence("no_reader", None, None, UNTIL, "lab", "bob", NOW)
    finally:
        other.close()
    assert len(AlertBook(db).silences(NOW)) == 1


# Deliveries, channel by channel


def two_channels(book: AlertBook) -> None:
    book.register_channels([ChannelRef("c1", "channel 1"), ChannelRef("c2", "channel 2")], NOW)


def test_an_alert_is_notified_on_a_channel_only_once_it_accepted_it(book: AlertBook) -> None:
    two_channels(book)
    book.update([finding()], NOW)
    book.delivered("c1", book.pending(NOW, "c1"), NOW)
    retry_at = book.failed("c2", "451 try again later", NOW)
    later = NOW + timedelta(minutes=5)
    assert book.pending(later, "c1").due == ()
    assert keys(book.pending(later, "c2").fired) == [KEY]  # still due where it was refused
    (alert,) = book.alerts()
    assert (alert.notifications, alert.last_notified_at) == (1, NOW)
    c1, c2 = book.channels()
    assert (c1.failures, c1.last_success_at, c1.last_error) == (0, NOW, None)
    assert (c2.failures, c2.last_error, c2.last_error_at) == (1, "451 try again later", NOW)
    assert c2.next_attempt_at == retry_at == NOW + timedelta(seconds=60)
    assert not c2.ready(retry_at - timedelta(seconds=1)) and c2.ready(retry_at)


def test_a_channel_that_keeps_failing_waits_twice_as_long_each_time_up_to_the_maximum(
    db: Database,
) -> None:
    book = AlertBook(db, AlertSettings(retry_after_s=60, retry_max_s=600))
    two_channels(book)
    delays = [(book.failed("c2", "refused", NOW) - NOW).total_seconds() for _ in range(6)]
    assert delays == [60, 120, 240, 480, 600, 600]
    book.delivered("c2", Batch(), NOW + HOUR)
    (_, c2) = book.channels()
    assert (c2.failures, c2.next_attempt_at, c2.last_error) == (0, None, "refused")


def test_a_channel_back_gets_everything_it_missed_in_one_batch(book: AlertBook) -> None:
    two_channels(book)
    book.update([finding(), finding("ws-b")], NOW)
    for channel in ("c1", "c2"):
        book.delivered(channel, book.pending(NOW, channel), NOW)
    book.update([finding("ws-b"), finding("ws-c")], NOW + HOUR)  # ws-lyon-07 resolved, ws-c new
    book.delivered("c1", book.pending(NOW + HOUR, "c1"), NOW + HOUR)
    book.failed("c2", "connection refused", NOW + HOUR)
    missed = book.pending(NOW + 2 * HOUR, "c2")
    assert [a.host_id for a in missed.fired] == ["ws-c"]
    assert keys(missed.resolved) == [KEY]
    assert book.pending(NOW + 2 * HOUR, "c1").due == ()


def test_a_channel_added_later_hears_of_every_alert_firing(book: AlertBook) -> None:
    book.register_channels([ChannelRef("c1", "channel 1")], NOW)
    book.update([finding(), finding("ws-b")], NOW)
    book.delivered("c1", book.pending(NOW, "c1"), NOW)
    book.update([finding("ws-b")], NOW + HOUR)  # ws-lyon-07 resolved
    book.delivered("c1", book.pending(NOW + HOUR, "c1"), NOW + HOUR)
    two_channels(book)  # the configuration now has a second channel
    batch = book.pending(NOW + 2 * HOUR, "c2")
    assert [a.host_id for a in batch.fired] == ["ws-b"] and batch.resolved == ()


def test_an_upgraded_database_keeps_what_its_alerts_say_was_notified(book: AlertBook) -> None:
    # An older controller notified without recording deliveries: it marked the alerts.
    book.update([finding(), finding("ws-b")], NOW)
    book.update([finding("ws-b")], NOW + HOUR)  # ws-lyon-07 resolved after it was notified
    with book._tables.atomic():
        book._tables._db.execute(
            "update alerts set notifications = 1, last_notified_at = case "
            "when state = 'firing' then ? end",
            [format_utc(NOW)],
        )
    two_channels(book)
    for channel in ("c1", "c2"):
        batch = book.pending(NOW + 2 * HOUR, channel)
        assert batch.fired == batch.repeated == () and keys(batch.resolved) == [KEY]
    assert [a.host_id for a in book.pending(NOW + DAY, "c1").repeated] == ["ws-b"]
