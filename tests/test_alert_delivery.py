"""Alert delivery end to end: a controller on a real Mosquitto and a real database (an
SQLite file, a PostgreSQL database) sends to real local webhooks. An alert counts as notified
only once a channel accepted it; a channel that refuses is retried, counted, shown, and gets
what it missed when it accepts again; a channel added to the configuration later hears of
every alert firing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cpsfleet.controller.alerts.book import AlertSettings
from cpsfleet.controller.db.connect import connect
from cpsfleet.controller.rules.findings import Thresholds
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.controller.web.auth import DashboardSettings
from cpsfleet.schemas.times import format_utc
from cpsfleet.schemas.topics import topic
from tests.conftest import Broker, Webhook, run_cli, serve_webhook, wait_for
from tests.test_dashboard import TOKEN_HASH, fetch
from tests.test_supervision import Running, start

# apprise's e-mail plugin imports the standard imghdr module, deprecated since Python 3.11.
pytestmark = pytest.mark.filterwarnings(
    "ignore:'imghdr' is deprecated and slated for removal in Python 3.13:DeprecationWarning"
)

HOST = "ws-delivery-01"
SERIAL = "99213845"
# A loaded machine may take this long for what normally takes a second or two.
PATIENCE_S = 90


def expiring_status(now: datetime) -> bytes:
    """A status of one reader holding a CPS card whose certificates end in 10 days."""
    example = resources.files("cpsfleet.schemas").joinpath("examples/status-four-readers.json")
    document: dict[str, Any] = json.loads(example.read_text("utf-8"))
    document["host"] |= {"id": HOST, "hostname": HOST}
    document["scanned_at"] = format_utc(now)
    reader = document["readers"][0]
    for certificate in reader["card"]["certificates"]:
        certificate |= {"not_after": format_utc(now + timedelta(days=10)), "days_left": 10}
    document["readers"] = [reader]
    return json.dumps(document).encode()


def publish(broker: Broker, subject: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert connected.wait(10), "the test broker did not accept the connection"
        client.publish(subject, payload, qos=1, retain=True).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def channels(database: str) -> list[dict[str, Any]]:
    db = connect(database, readonly=True)
    try:
        return list(db.query("select * from channels order by first_seen"))
    finally:
        db.close()


def notifications(database: str) -> int:
    db = connect(database, readonly=True)
    try:
        found = db.execute(
            "select notifications from alerts where rule = 'card_expiring' and subject = ?",
            [SERIAL],
        ).fetchone()
    finally:
        db.close()
    return -1 if found is None else int(found[0])


def metric(running: Running, name: str) -> float:
    assert running.controller.dashboard is not None
    reply = fetch(running.controller.dashboard.url, "/metrics")
    assert reply.status == 200, reply.text
    body = reply.text
    (line,) = [line for line in body.splitlines() if line.startswith(f"{name} ")]
    return float(line.split()[1])


@pytest.fixture
def second_webhook() -> Iterator[tuple[Webhook, str]]:
    with serve_webhook() as served:
        yield served


def settings(database: str, broker: Broker, *urls: str) -> ControllerSettings:
    return ControllerSettings(
        broker=broker.url,
        database=database,
        evaluate_every=1,
        # Working hours all week: the card in its reader is left there at no hour of the run
        # (out of hours it would be one more alert, card_left_in_reader).
        thresholds=Thresholds(working_hours="00:00-24:00", working_days="mon-sun"),
        dashboard=DashboardSettings(listen="127.0.0.1:0", token_hash=TOKEN_HASH),
        alerts=AlertSettings(channels=urls, retry_after_s=1, retry_max_s=2),
    )


def stop(running: Running) -> None:
    running.stop.set()
    running.thread.join(30)
    assert not running.thread.is_alive() and running.raised == []


def test_a_refusing_channel_is_retried_and_nothing_counts_as_sent_until_it_accepts(
    database: str,
    own_broker: Broker,
    webhook: tuple[Webhook, str],
    second_webhook: tuple[Webhook, str],
) -> None:
    hook, url = webhook
    hook.refuse = 1_000_000  # down until the test says otherwise
    running = start(settings(database, own_broker, url))
    try:
        publish(own_broker, topic(HOST, "status"), expiring_status(datetime.now(UTC)))
        wait_for(
            lambda: bool(channels(database)) and channels(database)[0]["failures"] >= 2,
            PATIENCE_S,
            "two refused deliveries",
        )
        (channel,) = channels(database)
        assert "503" in channel["last_error"] and channel["next_attempt_at"]
        assert notifications(database) == 0 and hook.posts == []  # refused: not notified
        assert metric(running, "cpsfleet_notification_failures_total") >= 2
        assert metric(running, "cpsfleet_alert_channels_failing") == 1
        shown = run_cli("controller", "alerts", "--database", database)
        assert shown.returncode == 0, shown.stderr
        assert "Delivery failing: channel 1 (json://...) refused the last" in shown.stdout
        assert "error=503" in shown.stdout and url not in shown.stdout
        listed = run_cli("controller", "channels", "--json", "--database", database)
        (state,) = json.loads(listed.stdout)
        assert state["name"] == "channel 1 (json://...)" and state["failures"] >= 2
        assert state["last_success_at"] is None and "error=503" in state["last_error"]

        hook.refuse = 0  # the webhook is back
        wait_for(lambda: notifications(database) == 1, PATIENCE_S, "the accepted delivery")
        (post,) = hook.posts
        assert SERIAL in post["message"] and post["title"] == "cpsfleet alerts: 1 new"
        assert channels(database)[0]["failures"] == 0
        assert metric(running, "cpsfleet_alert_channels_failing") == 0
        shown = run_cli("controller", "alerts", "--database", database)
        assert "Delivery failing" not in shown.stdout and SERIAL in shown.stdout
    finally:
        stop(running)

    # A second channel in the configuration: it hears of the alert firing; the first, told
    # already, hears nothing more.
    other, other_url = second_webhook
    running = start(settings(database, own_broker, url, other_url))
    try:
        wait_for(lambda: notifications(database) == 2, PATIENCE_S, "the new channel's delivery")
        (post,) = other.posts
        assert SERIAL in post["message"] and post["title"] == "cpsfleet alerts: 1 new"
        assert len(hook.posts) == 1
    finally:
        stop(running)
