"""A week of an occupational health service, on a real Mosquitto, a real database (SQLite or
PostgreSQL) and a real webhook: the controller runs as in production, on a clock the test
moves forward.

Three workstations of Annecy. The nurse's card ends in 10 days, the doctor's in 20, and a
third professional's expired before the week began. Every working day the nurse and the
doctor insert their card in the morning and take it home in the evening; the third card is
seen on Monday morning and never again. On Tuesday the doctor works at the third
workstation. On Wednesday the webhook refuses everything for the day. On Thursday the
nurse's card is renewed (same card, new certificates); on Friday the doctor inserts her new
card. The week asserts every message the webhook received: no flapping as cards come and
go, reminders once a day, nothing counted as sent while the webhook refused, what it missed
sent when it is back, and each resolution with its reason; then the cards the controller
lists and the readiness of each professional.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cpsfleet.controller.alerts.book import AlertSettings
from cpsfleet.controller.db.connect import connect
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.filters import Filters
from cpsfleet.controller.intake.roster import Professional, import_roster
from cpsfleet.controller.rules.findings import Thresholds
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.controller.web import data as webdata
from cpsfleet.controller.web.auth import DashboardSettings
from cpsfleet.schemas.topics import topic
from cpsfleet.sim.fleet.documents import status_document
from cpsfleet.sim.fleet.model import Holder, SimHost
from tests.conftest import Broker, Webhook, wait_for
from tests.test_lasting_cards import card, host
from tests.test_supervision import Running, start

pytestmark = pytest.mark.filterwarnings(
    "ignore:'imghdr' is deprecated and slated for removal in Python 3.13:DeprecationWarning"
)

MONDAY = datetime(2026, 12, 7, tzinfo=UTC)  # 09:00 in Annecy is 08:00 UTC in December
DAY = timedelta(days=1)
NURSE = Holder("MARTIN", "CLAIRE", "Infirmier", "10000000011")
DOCTOR = Holder("PETIT", "ANNE", "Médecin", "10000000012")
RETIRED = Holder("ROUX", "JEAN", "Médecin", "10000000013")
NURSE_CARD = card("82000001", MONDAY + 10 * DAY + 12 * timedelta(hours=1), NURSE)
RENEWED = card("82000001", MONDAY + 3 * 365 * DAY, NURSE)
OLD_CARD = card("82000002", MONDAY + 20 * DAY + 12 * timedelta(hours=1), DOCTOR)
NEW_CARD = card("82000003", MONDAY + 3 * 365 * DAY, DOCTOR)
LOST_CARD = card("82000004", MONDAY - 5 * DAY, RETIRED)
# Statuses every 12 hours at most (the agents scan twice a day here): a night's silence is
# not a workstation gone.
INTERVAL_S = 12 * 3600
PATIENCE_S = 90  # what a loaded machine may take for what takes a second


class Week:
    """The controller under test, its clock, and the agents of the three workstations."""

    def __init__(self, database: str, broker: Broker, url: str) -> None:
        self.now = MONDAY
        self.database = database
        self.broker = broker
        self.seq: dict[str, int] = {}
        self.sent = 0
        settings = ControllerSettings(
            broker=broker.url,
            database=database,
            evaluate_every=1,
            thresholds=Thresholds(card_retire_after_days=6),
            alerts=AlertSettings(channels=(url,)),
            # A free port: the twin of this test may run beside it (pytest -n).
            dashboard=DashboardSettings(listen="127.0.0.1:0"),
        )
        self.thresholds = settings.thresholds
        with Store(self.database) as store:  # as `controller roster import` writes it
            import_roster(store.database, ROSTER, self.now)
        self.running: Running = start(settings, clock=lambda: self.now)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        connected = threading.Event()
        self.client.on_connect = lambda *args: connected.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert connected.wait(10), "the test broker did not accept the agents' connection"

    def at(self, moment: datetime, *hosts: SimHost) -> None:
        """Move the clock to ``moment``; the workstations report; wait until the controller
        stored their statuses, evaluated the fleet and heard back from the webhook."""
        self.now = moment
        for reporting in hosts:
            self.seq[reporting.id] = self.seq.get(reporting.id, 0) + 1
            document = status_document(reporting, self.seq[reporting.id], moment, INTERVAL_S)
            info = self.client.publish(
                topic(reporting.id, "status"), json.dumps(document), qos=1, retain=True
            )
            info.wait_for_publish(timeout=10)
        self.sent += len(hosts)
        wait_for(lambda: self.stored() == self.sent, PATIENCE_S, f"the statuses of {moment}")
        mark = time.monotonic()
        controller = self.running.controller
        wait_for(
            lambda: controller.dispatched_at > mark and not controller.in_flight,
            PATIENCE_S,
            f"the evaluation and deliveries of {moment}",
        )

    def stored(self) -> int:
        with closing(connect(self.database, readonly=True)) as db:
            return int(db.execute("select count(*) from status_history").fetchone()[0])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.running.stop.set()
        self.running.thread.join(30)
        assert not self.running.thread.is_alive() and self.running.raised == []


@pytest.fixture
def week(database: str, own_broker: Broker, webhook: tuple[Webhook, str]) -> Iterator[Week]:
    playing = Week(database, own_broker, webhook[1])
    yield playing
    playing.close()


LINE = re.compile(r"^- (?P<where>[^:]+): (?P<message>.*) \[(?P<rule>\w+), (?P<tag>.*)\]$")


def told(post: dict[str, str]) -> list[tuple[str, str, str]]:
    """(rule, card serial, what) of each alert in a message: "new", "firing" (a reminder),
    or "resolved: WHY"."""
    found = []
    for line in post["message"].splitlines():
        if (matched := LINE.match(line)) is None:
            continue
        serial = matched["where"].split(", ")[-1]
        tag = matched["tag"]
        if tag == "new":
            what = "new"
        elif ", resolved " in tag:
            # "..., resolved Dec 9, 2026 10:00: WHY" (the fleet's time)
            what = "resolved: " + tag.partition(", resolved ")[2].partition(": ")[2]
        else:
            what = "firing"
        found.append((matched["rule"], serial, what))
    return sorted(found)


def test_a_week_of_an_occupational_health_service(week: Week, webhook: tuple[Webhook, str]) -> None:
    hook, _ = webhook
    seen: list[tuple[str, list[tuple[str, str, str]]]] = []

    def posts_since(label: str) -> None:
        """What the webhook received since the last call, under ``label``."""
        seen.extend((label, told(post)) for post in hook.posts[len(seen) :])

    nurse, doctor, third = host("ws-01", None), host("ws-02", None), host("ws-03", None)
    week.at(MONDAY + 7 * timedelta(hours=1), nurse, doctor, third)  # the agents start
    for day in range(7):
        morning, evening = MONDAY + day * DAY + 8 * HOUR, MONDAY + day * DAY + 17 * HOUR
        working = day < 5
        nurse_card = RENEWED if day >= 3 else NURSE_CARD
        doctor_card = NEW_CARD if day >= 4 else OLD_CARD
        if day == 2:
            hook.refuse = 1_000_000  # the webhook is down all Wednesday
        if day == 3:
            week.at(MONDAY + day * DAY, nurse, doctor, third)  # midnight: it is back
            posts_since("Thursday 00:00")
        # On Tuesday the doctor works at the third workstation: her card's alert goes along.
        third_card = LOST_CARD if day == 0 else doctor_card if day == 1 else None
        week.at(
            morning,
            host("ws-01", nurse_card if working else None),
            host("ws-02", doctor_card if working and day != 1 else None),
            host("ws-03", third_card),
        )
        posts_since(f"day {day} 08:00")
        week.at(evening, nurse, doctor, third)  # cards taken home
        posts_since(f"day {day} 17:00")
        if day == 1:  # the cards are at home: readiness still knows them
            ready = readiness_now(week)
            assert ready["MARTIN"][:2] == ("renew_soon", "82000001")
            assert "Dec 17, 2026" in ready["MARTIN"][2]  # renew it before it expires, first
            assert ready["PETIT"][:2] == ("ready", "82000002")
            assert ready["ROUX"][:2] == ("renew_card", "82000004")
            assert retained_alerts(week.broker) == {
                "card_expired/ws-03/82000004",
                "card_expiring/ws-01/82000001",
                "card_expiring/ws-03/82000002",  # where the doctor's card was last seen
            }
        if day == 2:
            assert hook.refused >= 2  # its morning reminders, tried again in the evening
            hook.refuse = 0
    week.at(MONDAY + 7 * DAY + 8 * HOUR, host("ws-01", RENEWED), host("ws-02", NEW_CARD))
    posts_since("next Monday 08:00")

    nurse_expiring = ("card_expiring", "82000001")
    old_expiring = ("card_expiring", "82000002")
    lost_expired = ("card_expired", "82000004")
    renewed = "renewed: its certificates are valid until Dec 6, 2029"
    superseded = "superseded by card 82000003 of the same holder (first seen Dec 11, 2026)"
    retired = "not seen for 6 days (last seen Dec 7, 2026): the card is retired"
    all_three = sorted([lost_expired, nurse_expiring, old_expiring])
    assert seen == [
        ("day 0 08:00", [(*alert, "new") for alert in all_three]),
        ("day 1 08:00", [(*alert, "firing") for alert in all_three]),
        # Wednesday: refused, nothing counted as sent; Thursday midnight, what it missed.
        ("Thursday 00:00", [(*alert, "firing") for alert in all_three]),
        ("day 3 08:00", [(*nurse_expiring, f"resolved: {renewed}")]),
        ("day 4 08:00", [(*lost_expired, "firing"), (*old_expiring, f"resolved: {superseded}")]),
        ("day 5 08:00", [(*lost_expired, "firing")]),
        ("day 6 08:00", [(*lost_expired, f"resolved: {retired}")]),
    ]

    with Store.open_readonly(week.database) as store:
        listed = webdata.cards(store, week.now, week.thresholds, Filters())
        ready = webdata.readiness(store, week.now, week.thresholds, None, Filters())
        every = webdata.cards(store, week.now, week.thresholds, Filters(), every=True)
        alerts = list(store.database.query("select rule, subject, state from alerts"))
    assert [(row["serial"], row["in_reader"], row["host"]) for row in listed] == [
        ("82000001", True, "ws-ws-01"),
        ("82000003", True, "ws-ws-02"),
    ]
    assert sorted((row["serial"], row["status"]) for row in every) == [
        ("82000001", "active"),
        ("82000002", "superseded"),
        ("82000003", "active"),
        ("82000004", "retired"),
    ]
    assert all(alert["state"] == "resolved" for alert in alerts), alerts
    assert retained_alerts(week.broker) == set()  # every topic cleared as its alert resolved
    assert hook.refused >= 2 and len(hook.posts) == 7
    assert [(row["surname"], row["state"], row["card_serial"]) for row in ready] == [
        ("MARTIN", "ready", "82000001"),
        ("PETIT", "ready", "82000003"),
        ("ROUX", "no_card", None),  # his expired card retired: he needs a new one
    ]
    assert [row["card_expires"] for row in ready] == ["2029-12-06", "2029-12-06", None]


def retained_alerts(broker: Broker) -> set[str]:
    """The alert topics the broker retains (after the prefix), read by a new subscriber: a
    marker published after subscribing arrives after every retained message."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    topics: set[str] = set()
    marker = threading.Event()
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == "test/marker":
            marker.set()
        elif message.payload:
            topics.add(message.topic.removeprefix(f"{PREFIX}/"))

    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.subscribe([(f"{PREFIX}/#", 1), ("test/marker", 1)])
        assert subscribed.wait(10), "the broker did not acknowledge the subscription"
        client.publish("test/marker", b"x", qos=1).wait_for_publish(timeout=10)
        assert marker.wait(10), "the marker did not come back"
    finally:
        client.disconnect()
        client.loop_stop()
    return topics


PREFIX = "cpsfleet/v1/alerts"


def readiness_now(week: Week) -> dict[str, tuple[str, str | None, str]]:
    """Each professional's (state, card, next step) at the week's time."""
    with Store.open_readonly(week.database) as store:
        rows = webdata.readiness(store, week.now, week.thresholds, None, Filters())
    return {row["surname"]: (row["state"], row["card_serial"], row["next_step"]) for row in rows}


HOUR = timedelta(hours=1)
ROSTER = (
    Professional("MARTIN", "CLAIRE", "nurse", "Annecy", rpps="10000000011"),
    Professional("PETIT", "ANNE", "doctor", "Annecy", rpps="10000000012"),
    Professional("ROUX", "JEAN", "doctor", "Annecy", rpps="10000000013"),
)
