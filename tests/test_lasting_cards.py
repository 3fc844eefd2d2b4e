"""A card is watched, not the reader: its findings and alerts hold while it is out of the
reader, follow it from workstation to workstation, and end when the fact behind them
changes (renewed, superseded by the holder's new card, retired after
``card_retire_after_days`` unseen). A real store (an SQLite file, a PostgreSQL database), the
controller's own intake and evaluation, and a clock of the test's."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cpsfleet.controller.alerts.book import Alert, AlertBook
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.rules.due import hosts_due
from cpsfleet.controller.rules.findings import Thresholds
from cpsfleet.controller.service import Controller, Message
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.controller.web.app import create_app
from cpsfleet.controller.web.auth import DashboardSettings
from cpsfleet.controller.web.server import DashboardServer
from cpsfleet.schemas.topics import topic
from cpsfleet.sim.fleet.documents import status_document
from cpsfleet.sim.fleet.model import (
    CARD_KINDS,
    CERTIFICATE_LABELS,
    OS_PROFILES,
    Holder,
    SimCard,
    SimCertificate,
    SimHost,
    SimReader,
)
from tests.conftest import run_cli
from tests.test_dashboard import TOKEN_HASH, fetch

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)
NURSE = Holder("MARTIN", "CLAIRE", "Infirmier", "10000000001")


def card(serial: str, expires: datetime, holder: Holder = NURSE, tries: int = 3) -> SimCard:
    certificates = tuple(
        SimCertificate(role, f"{serial}{number}", f"{number:064x}")
        for number, role in enumerate(CERTIFICATE_LABELS)
    )
    return SimCard(
        CARD_KINDS["cps3"], serial, holder, expires - 3 * 365 * DAY, expires, certificates, tries
    )


def host(host_id: str, inserted: SimCard | None, site: str = "Annecy") -> SimHost:
    return SimHost(
        host_id,
        f"ws-{host_id}",
        site,
        OS_PROFILES[2],
        (SimReader("Reader 00 00", inserted),),
        "5.2.4",
    )


class Fleet:
    """The controller with a store and a clock of the test's; statuses sent as the agents
    would, numbered per host."""

    def __init__(self, database: str) -> None:
        self.now = START
        self.controller = Controller(ControllerSettings(database=database), clock=self.clock)
        self.store = Store(database)
        self.book = AlertBook(self.store.database, self.controller.settings.alerts)
        self.controller.book = self.book
        self.seq: dict[str, int] = {}

    def clock(self) -> datetime:
        return self.now

    def report(self, *hosts: SimHost) -> None:
        messages = []
        for reporting in hosts:
            self.seq[reporting.id] = self.seq.get(reporting.id, 0) + 1
            document = status_document(reporting, self.seq[reporting.id], self.now)
            payload = json.dumps(document).encode()
            messages.append(Message(topic(reporting.id, "status"), payload, self.now))
        self.controller.handle_batch(self.store, messages)

    def evaluate(self) -> None:
        self.controller.evaluate(self.store)

    def alerts(self, rule: str | None = None) -> list[Alert]:
        return [alert for alert in self.book.alerts() if rule is None or alert.rule == rule]

    def firing(self, rule: str) -> list[Alert]:
        return [alert for alert in self.alerts(rule) if alert.state == "firing"]


@pytest.fixture
def fleet(database: str) -> Iterator[Fleet]:
    playing = Fleet(database)
    yield playing
    playing.store.close()


def test_an_expiring_card_taken_home_keeps_its_alert_and_acknowledgement(fleet: Fleet) -> None:
    expiring = card("80000001", START + 10 * DAY)
    fleet.report(host("a1", expiring))
    (alert,) = fleet.firing("card_expiring")
    assert (alert.host_id, alert.subject, alert.severity) == ("a1", "80000001", "critical")
    fleet.book.acknowledge("card_expiring", "a1", "80000001", "it", "renewal ordered", fleet.now)
    for day in range(1, 4):  # out at night, in every morning
        fleet.now = START + day * DAY - 12 * timedelta(hours=1)
        fleet.report(host("a1", None))
        fleet.now = START + day * DAY
        fleet.report(host("a1", expiring))
    fleet.now += timedelta(hours=10)
    fleet.report(host("a1", None))
    fleet.evaluate()
    (still,) = fleet.alerts("card_expiring")
    assert still.state == "firing" and still.started_at == alert.started_at
    assert still.acknowledgement is not None
    assert "7 days left" in still.message  # 2026-12-11 from 2026-12-04, Paris time


def test_an_expired_card_never_seen_again_stays_expired_until_it_retires(fleet: Fleet) -> None:
    fleet.report(host("a1", card("80000002", START - DAY)))
    fleet.report(host("a1", None))
    fleet.now = START + 89 * DAY
    fleet.evaluate()
    (alert,) = fleet.firing("card_expired")
    assert alert.subject == "80000002"
    assert fleet.firing("card_not_updated") == []  # one alert per card problem
    fleet.now = START + 90 * DAY
    fleet.evaluate()
    (resolved,) = fleet.alerts("card_expired")
    assert resolved.state == "resolved"
    assert resolved.resolution == (
        "not seen for 90 days (last seen Dec 1, 2026): the card is retired"
    )


def test_a_card_moving_to_another_workstation_takes_its_alert_along(fleet: Fleet) -> None:
    expiring = card("80000003", START + 30 * DAY)
    fleet.report(host("a1", expiring, site="Annecy"))
    (alert,) = fleet.firing("card_expiring")
    fleet.book.acknowledge("card_expiring", "a1", "80000003", "it", "known", fleet.now)
    fleet.now += DAY
    fleet.report(host("a1", None, site="Annecy"), host("b2", expiring, site="Chambéry"))
    (moved,) = fleet.alerts("card_expiring")
    assert (moved.host_id, moved.state, moved.started_at) == ("b2", "firing", alert.started_at)
    assert moved.site == "Chambéry" and moved.acknowledgement is not None
    findings = [f for f in fleet.store.findings() if f.rule == "card_expiring"]
    assert [(f.host_id, f.subject) for f in findings] == [("b2", "80000003")]
    # The workstation it left, still listing it (switched off before its next status), does
    # not speak for it any more.
    fleet.report(host("a1", expiring, site="Annecy"))
    fleet.report(host("b2", expiring, site="Chambéry"))
    fleet.evaluate()
    assert [(a.host_id, a.state) for a in fleet.alerts("card_expiring")] == [("b2", "firing")]


def test_a_renewed_card_resolves_its_alert_saying_so(fleet: Fleet) -> None:
    fleet.report(host("a1", card("80000004", START + 20 * DAY)))
    assert fleet.firing("card_expiring")
    fleet.now += DAY
    fleet.report(host("a1", card("80000004", START + 3 * 365 * DAY)))
    (alert,) = fleet.alerts("card_expiring")
    assert alert.state == "resolved"
    assert alert.resolution == "renewed: its certificates are valid until Nov 30, 2029"


def test_a_new_card_of_the_holder_supersedes_the_old_one(fleet: Fleet) -> None:
    fleet.report(host("a1", card("80000005", START + 5 * DAY)))
    fleet.report(host("a1", None))
    fleet.now += DAY
    fleet.report(host("c3", card("80000006", START + 3 * 365 * DAY)))
    (alert,) = fleet.alerts("card_expiring")
    assert (alert.subject, alert.state) == ("80000005", "resolved")
    assert alert.resolution == (
        "superseded by card 80000006 of the same holder (first seen Dec 2, 2026)"
    )
    fleet.now += 10 * DAY  # the old card's expiry passes: it is not watched any more
    fleet.evaluate()
    assert fleet.firing("card_expired") == [] and fleet.firing("card_expiring") == []


def test_a_pin_blocked_card_out_of_the_reader_stays_blocked(fleet: Fleet) -> None:
    blocked = card("80000007", START + 400 * DAY, tries=0)
    fleet.report(host("a1", blocked))
    fleet.report(host("a1", None))
    (alert,) = fleet.firing("pin_blocked")
    fleet.now += DAY
    fleet.report(host("a1", replace(blocked, pin_tries_left=3)))
    (resolved,) = fleet.alerts("pin_blocked")
    assert resolved.state == "resolved" and resolved.started_at == alert.started_at
    assert resolved.resolution == "the PIN has 3 tries left again"


def test_the_periodic_evaluation_finds_the_card_that_retires(fleet: Fleet) -> None:
    fleet.report(host("a1", card("80000008", START - DAY)))
    fleet.report(host("a1", None))
    thresholds = Thresholds()
    before = START + 90 * DAY - timedelta(minutes=1)
    after = START + 90 * DAY + timedelta(minutes=1)
    due = hosts_due(fleet.store, before, after, thresholds)
    assert due is not None and "a1" in due
    earlier = hosts_due(fleet.store, before - timedelta(minutes=30), before, thresholds)
    assert earlier is not None and "a1" not in earlier


def test_retirement_is_configurable_within_bounds(fleet: Fleet) -> None:
    with pytest.raises(ValueError, match="card_retire_after_days"):
        Thresholds(card_retire_after_days=0)
    with pytest.raises(ValueError, match=r"card_retire_after_days must be at most 3650"):
        Thresholds(card_retire_after_days=10**7)  # the dates it makes would overflow
    assert Thresholds(card_retire_after_days=30).card_retire_after_days == 30
    # The longest, from a card last seen in year 9999: no date overflows.
    longest = Thresholds(card_retire_after_days=3650)
    fleet.now = datetime(9999, 12, 1, tzinfo=UTC)
    fleet.report(host("a1", card("80000013", datetime(9999, 12, 31, tzinfo=UTC))))
    fleet.report(host("a1", None))
    later = fleet.now + timedelta(days=20)
    assert hosts_due(fleet.store, fleet.now, later, longest) is None  # a whole day: everyone
    due = hosts_due(fleet.store, fleet.now, fleet.now + timedelta(minutes=5), longest)
    assert due is not None
    fleet.now = later  # the card, out of its reader, ends on the last day of 9999
    fleet.evaluate()
    firing = sorted(a.rule for a in fleet.alerts() if a.state == "firing")
    assert firing == ["agent_offline", "card_expiring"]  # and no evaluation_failed


def test_the_cards_command_lists_every_watched_card_present_or_not(database: str) -> None:
    fleet = Fleet(database)
    fleet.now = datetime.now(UTC).replace(microsecond=0)  # the command's clock is the system's
    doctor = DOCTOR
    fleet.report(
        host("a1", card("81000001", fleet.now + 10 * DAY)),  # the nurse's, soon taken home
        host("b2", card("81000002", fleet.now + 2 * 365 * DAY, holder=doctor)),
        host("c3", card("81000003", fleet.now + 100 * DAY, holder=Holder(*ELDER))),
    )
    fleet.report(host("a1", None))
    fleet.now += timedelta(seconds=1)
    fleet.report(host("c3", card("81000004", fleet.now + 3 * 365 * DAY, holder=Holder(*ELDER))))
    fleet.store.close()

    def listed(*options: str) -> dict[str, dict[str, Any]]:
        done = run_cli("controller", "cards", "--database", database, "--json", *options)
        assert done.returncode == 0, done.stderr
        return {row["serial"]: row for row in json.loads(done.stdout)}

    watched = listed()
    assert set(watched) == {"81000001", "81000002", "81000004"}  # not the superseded one
    assert watched["81000001"]["in_reader"] is False
    assert watched["81000001"]["surname"] == "MARTIN"  # remembered with its holder
    assert set(listed("--present")) == {"81000002", "81000004"}
    assert set(listed("--expiring-within", "30")) == {"81000001"}  # out of its reader
    every = listed("--all")
    assert every["81000003"]["status"] == "superseded"
    assert every["81000003"]["superseded_by"] == "81000004"
    table = run_cli("controller", "cards", "--database", database, "--host", "a1").stdout
    taken_home = fleet.now - timedelta(seconds=1)  # the a1 status without the card
    assert "81000001" in table
    assert f"last seen on ws-a1 at {taken_home.astimezone(PARIS):%Y-%m-%d %H:%M}" in table
    table = run_cli("controller", "cards", "--database", database, "--present").stdout
    assert "present on ws-b2 (Reader 00 00)" in table and "last seen" not in table


PARIS = ZoneInfo("Europe/Paris")
ELDER = ("ROUX", "JEAN", "Médecin", "10000000003")


def test_a_card_remembered_before_the_upgrade_keeps_its_alert(fleet: Fleet) -> None:
    """A controller older than version 13 kept a remembered card's dates, not its
    certificates: its alert must not resolve at the first evaluation after the upgrade."""
    fleet.report(host("a1", card("80000009", START + 10 * DAY)))
    fleet.report(host("a1", None))
    (alert,) = fleet.firing("card_expiring")
    fleet.store.database.execute(
        "update card_sightings set certificates_json = null, surname = null, given_name = null"
    )
    fleet.now += DAY
    fleet.evaluate()
    (still,) = fleet.firing("card_expiring")
    assert still.started_at == alert.started_at and "(9 days left)" in still.message


def test_the_dashboard_shows_where_each_card_is_and_why_an_alert_ended(fleet: Fleet) -> None:
    fleet.report(
        host("a1", card("83000001", START + 20 * DAY)),
        host("b2", card("83000002", START + 400 * DAY, DOCTOR)),
    )
    fleet.now += DAY
    renewed = card("83000001", START + 3 * 365 * DAY)
    fleet.report(host("a1", renewed), host("b2", None))  # the doctor's card went home
    settings = ControllerSettings(
        database=fleet.controller.settings.database,
        dashboard=DashboardSettings(listen="127.0.0.1:0", token_hash=TOKEN_HASH),
    )
    server = DashboardServer(settings.dashboard, create_app(settings, clock=fleet.clock))
    server.start()
    try:
        base = server.url.replace("0.0.0.0", "127.0.0.1")
        cards, alerts = (fetch(base, path).text for path in ("/cards", "/alerts"))
        present = [row["serial"] for row in fetch(base, "/api/v1/cards?present=true").json()]
        every = [row["serial"] for row in fetch(base, "/api/v1/cards?all=true").json()]
    finally:
        server.stop()
    assert re.search(r'data-present="true">present in Reader 00 00 on <a [^>]*>ws-a1</a>', cards)
    assert re.search(r'data-present="false">last seen on <a [^>]*>ws-b2</a>', cards)
    assert "resolved: renewed: its certificates are valid until Nov 30, 2029" in alerts
    assert present == ["83000001"] and sorted(every) == ["83000001", "83000002"]


DOCTOR = Holder("PETIT", "ANNE", "Médecin", "10000000002")


class Retained:
    """What the notifier retains on the broker, as a dict of topic to payload (a stand-in
    for the MQTT session: the real broker's side is tests/test_week.py's)."""

    def __init__(self) -> None:
        self.topics: dict[str, bytes] = {}

    def publish(self, topic: str, payload: bytes) -> None:
        if payload:
            self.topics[topic] = payload
        else:
            self.topics.pop(topic, None)


def test_a_card_moving_moves_its_retained_alert_topic(fleet: Fleet) -> None:
    retained = Retained()
    fleet.controller.notifier.publisher = retained
    expiring = card("80000010", START + 30 * DAY)
    fleet.report(host("a1", expiring))
    assert list(retained.topics) == ["cpsfleet/v1/alerts/card_expiring/a1/80000010"]
    fleet.now += DAY
    fleet.report(host("a1", None), host("b2", expiring))
    assert list(retained.topics) == ["cpsfleet/v1/alerts/card_expiring/b2/80000010"]
    assert (
        json.loads(retained.topics["cpsfleet/v1/alerts/card_expiring/b2/80000010"])["host_id"]
        == "b2"
    )


def test_an_older_status_replayed_leaves_the_card_where_it_was_last_seen(fleet: Fleet) -> None:
    """At a restart the broker replays each host's retained status, in any order: the
    workstation the card left, scanned before, does not take it back."""
    expiring = card("80000011", START + 30 * DAY)
    fleet.now = START + DAY
    fleet.report(host("b2", expiring))
    fleet.now = START  # a1's retained status, scanned the day before
    fleet.report(host("a1", expiring))
    fleet.now = START + DAY + timedelta(minutes=1)
    fleet.evaluate()
    assert [(a.host_id, a.state) for a in fleet.alerts("card_expiring")] == [("b2", "firing")]
    (row,) = fleet.store.card_sightings()
    assert row["host_id"] == "b2"


def test_a_card_with_alerts_left_on_two_hosts_by_an_older_controller_still_moves(
    fleet: Fleet,
) -> None:
    """Before version 13 a card's alert was its reader's: the same card could have alerts on
    two workstations. Moving it must not trip over the second (a unique key), and that
    workstation's next evaluation ends its stale one."""
    expiring = card("80000012", START + 30 * DAY)
    fleet.report(host("c3", None), host("a1", expiring))
    fleet.store.database.execute(
        "insert into alerts (rule, host_id, subject, severity, message, site, state, "
        "started_at, notifications) values ('card_expiring', 'c3', '80000012', 'warning', "
        "'old', 'Annecy', 'firing', '2026-11-01T08:00:00Z', 1)"
    )
    fleet.now += DAY
    fleet.report(host("a1", None), host("b2", expiring))
    fleet.evaluate()
    assert sorted((a.host_id, a.state) for a in fleet.alerts("card_expiring")) == [
        ("b2", "firing"),
        ("c3", "resolved"),
    ]
