"""Alert delivery to real local receivers: an SMTP server, an HTTP webhook, Mosquitto."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from aiosmtpd.controller import Controller as SmtpController
from aiosmtpd.smtp import SMTP, Envelope, Session
from paho.mqtt.enums import CallbackAPIVersion

from cpsfleet.controller.alerts.book import Alert, AlertBook, AlertError, AlertSettings, Batch
from cpsfleet.controller.alerts.notify import Notifier, alert_topic, notify_type, render
from cpsfleet.controller.db import migrations
from cpsfleet.controller.db.connect import connect
from cpsfleet.controller.intake.receiver import publish_retained
from cpsfleet.controller.model import Finding, Severity
from tests.conftest import Broker, Webhook, free_port

# apprise's e-mail plugin imports the standard imghdr module, deprecated since Python 3.11.
pytestmark = pytest.mark.filterwarnings(
    "ignore:'imghdr' is deprecated and slated for removal in Python 3.13:DeprecationWarning"
)

NOW = datetime(2026, 11, 27, 21, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def expiring(number: int, host_id: str | None = None, severity: Severity = "warning") -> Finding:
    serial = f"80012345{number:02d}"
    message = f"CPS card {serial} in Reader {number % 4} expires on 2027-01-10: renew it"
    host = host_id or f"ws-lyon-{number:02d}"
    return Finding("card_expiring", severity, host, serial, message, site="Lyon Part-Dieu")


def alert(subject: str = "8001234567", state: str = "firing", **fields: Any) -> Alert:
    values: dict[str, Any] = {
        "rule": "card_expiring",
        "host_id": "ws-lyon-07",
        "subject": subject,
        "severity": "warning",
        "message": "expires soon",
        "site": "Lyon",
        "state": state,
        "started_at": NOW,
    }
    return Alert(**(values | fields))


@pytest.fixture
def book(database: str) -> Iterator[AlertBook]:
    db = connect(database)
    migrations.upgrade(db)
    yield AlertBook(db)
    db.close()


# Receivers


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        self.messages.append(message_from_bytes(content, policy=policy.default))
        return "250 OK"

    def texts(self) -> list[str]:
        return [self._text(message) for message in self.messages]

    @staticmethod
    def _text(message: EmailMessage) -> str:
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        return f"{message['Subject']}\n{body.get_content()}"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, str]]:
    """A local SMTP server (no TLS, no authentication) and the apprise URL that reaches it."""
    inbox, port = Inbox(), free_port()
    server = SmtpController(inbox, hostname="127.0.0.1", port=port)
    server.start()
    url = f"mailto://127.0.0.1:{port}?mode=insecure&from=alerts@cpsfleet.test&to=ssti@cpsfleet.test"
    yield inbox, url
    server.stop()


@pytest.fixture
def notifier(smtp: tuple[Inbox, str], webhook: tuple[Webhook, str]) -> Notifier:
    return Notifier(AlertSettings(channels=(smtp[1], webhook[1])))


def run(
    book: AlertBook, notifier: Notifier, findings: list[Finding], now: datetime
) -> dict[str, str | None]:
    """One controller run: update the book, deliver what is due on each channel, record what
    each channel said; by channel name, None where it accepted, else its error."""
    book.register_channels(notifier.channels, now)
    notifier.publish(book.update(findings, now).changed)
    said: dict[str, str | None] = {}
    for channel in notifier.channels:
        batch = book.pending(now, channel.id)
        said[channel.name] = error = notifier.deliver(channel.id, batch)
        if error is None:
            book.delivered(channel.id, batch, now)
        else:
            book.failed(channel.id, error, now)
    return said


# E-mail and webhook


def test_forty_expiring_cards_make_one_email_and_one_post_listing_them_all(
    book: AlertBook,
    notifier: Notifier,
    smtp: tuple[Inbox, str],
    webhook: tuple[Webhook, str],
) -> None:
    cards = [expiring(number) for number in range(40)]
    run(book, notifier, cards, NOW)
    inbox, hook = smtp[0], webhook[0]
    assert len(inbox.messages) == 1 and len(hook.posts) == 1
    mail, post = inbox.texts()[0], hook.posts[0]
    assert inbox.messages[0]["To"] == "ssti@cpsfleet.test"
    assert post["path"] == "/hook" and post["type"] == "warning"
    assert post["title"] == inbox.messages[0]["Subject"] == "cpsfleet alerts: 40 new"
    for card in cards:
        assert card.subject in mail and card.subject in post["message"]
        assert card.host_id in mail and card.host_id in post["message"]


def test_nothing_new_sends_nothing(
    book: AlertBook, notifier: Notifier, smtp: tuple[Inbox, str], webhook: tuple[Webhook, str]
) -> None:
    run(book, notifier, [expiring(1)], NOW)
    run(book, notifier, [expiring(1)], NOW + HOUR)
    assert len(smtp[0].messages) == len(webhook[0].posts) == 1


def test_a_silenced_alert_sends_nothing(
    book: AlertBook, notifier: Notifier, smtp: tuple[Inbox, str], webhook: tuple[Webhook, str]
) -> None:
    book.add_silence("card_expiring", None, None, NOW + 3 * HOUR, "renewal", "alice", NOW)
    run(book, notifier, [expiring(1), expiring(2)], NOW)
    run(book, notifier, [], NOW + HOUR)
    assert smtp[0].messages == [] and webhook[0].posts == []


def test_a_resolution_is_sent_once(
    book: AlertBook, smtp: tuple[Inbox, str], webhook: tuple[Webhook, str]
) -> None:
    settings = AlertSettings(channels=(smtp[1], webhook[1]))
    # A notifier per run: apprise waits 5.5 s between two e-mails through one channel object.
    run(book, Notifier(settings), [expiring(1), expiring(2)], NOW)
    run(book, Notifier(settings), [expiring(2)], NOW + HOUR)
    run(book, Notifier(settings), [expiring(2)], NOW + 2 * HOUR)
    inbox, hook = smtp[0], webhook[0]
    assert len(inbox.messages) == len(hook.posts) == 2
    resolution = inbox.texts()[1]
    assert resolution.startswith("cpsfleet alerts: 1 resolved")
    assert "8001234501" in resolution and "8001234502" not in resolution
    assert hook.posts[1]["type"] == "success"


def test_a_failed_channel_is_logged_and_the_others_still_get_the_message(
    book: AlertBook, smtp: tuple[Inbox, str], caplog: pytest.LogCaptureFixture
) -> None:
    closed = f"json://127.0.0.1:{free_port()}/hook"
    notifier = Notifier(AlertSettings(channels=(closed, smtp[1])))
    with caplog.at_level(logging.ERROR, logger="cpsfleet.controller.alerts.notify"):
        said = run(book, notifier, [expiring(1)], NOW)
    assert said["channel 2 (mailto://...)"] is None and len(smtp[0].messages) == 1
    error = said["channel 1 (json://...)"]
    assert error and "127.0.0.1" in error  # apprise's own words: who could not be reached
    assert any("channel 1 (json://...)" in record.getMessage() for record in caplog.records)
    (alert,) = book.alerts()
    assert alert.notifications == 1  # the mail server took it; the webhook did not


def test_a_webhook_that_refuses_then_accepts_gets_what_it_missed_once(
    book: AlertBook, webhook: tuple[Webhook, str]
) -> None:
    hook, url = webhook
    hook.refuse = 1
    notifier = Notifier(AlertSettings(channels=(url,)))
    (error,) = run(book, notifier, [expiring(1)], NOW).values()
    assert error and "503" in error and hook.refused == 1 and hook.posts == []
    (channel,) = book.channels()
    assert (channel.failures, channel.last_error) == (1, error)
    assert book.alerts()[0].notifications == 0  # refused: not notified
    run(book, notifier, [expiring(1), expiring(2)], NOW + HOUR)
    (post,) = hook.posts
    assert "8001234501" in post["message"] and "8001234502" in post["message"]
    assert post["title"] == "cpsfleet alerts: 2 new"
    run(book, notifier, [expiring(1), expiring(2)], NOW + 2 * HOUR)
    assert len(hook.posts) == 1 and book.channels()[0].failures == 0


def test_a_channel_plugin_that_raises_is_a_failed_delivery(
    book: AlertBook, webhook: tuple[Webhook, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    notifier = Notifier(AlertSettings(channels=(webhook[1],)))
    (channel,) = notifier.channels
    book.update([expiring(1)], NOW)

    def broken(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("a plugin's bug")

    monkeypatch.setattr(notifier._channels[channel.id][1], "notify", broken)
    error = notifier.deliver(channel.id, book.pending(NOW, channel.id))
    assert error == "RuntimeError: a plugin's bug" and webhook[0].posts == []


def test_a_channel_apprise_cannot_use_is_refused_without_showing_its_secret() -> None:
    with pytest.raises(AlertError, match=r"channel 2 \(nosuchservice://\.\.\.\)") as error:
        Notifier(AlertSettings(channels=("json://127.0.0.1/hook", "nosuchservice://me:s3cret@x")))
    assert "s3cret" not in str(error.value)


# The message


def test_the_message_groups_alerts_by_severity_then_resolutions() -> None:
    batch = Batch(
        fired=(alert("A1"), alert("A2", severity="critical", rule="card_expired")),
        repeated=(alert("A3", last_notified_at=NOW, notifications=1),),
        resolved=(alert("A4", state="resolved", resolved_at=NOW + HOUR),),
    )
    title, body = render(batch)
    assert title == "cpsfleet alerts: 2 new, 1 still firing, 1 resolved"
    sections = [part.splitlines()[0] for part in body.split("\n\n")]
    assert sections[1:4] == ["CRITICAL (1)", "WARNING (2)", "RESOLVED (1)"]
    assert "- ws-lyon-07, Lyon, A2: expires soon [card_expired, new]" in body
    assert "A3: expires soon [card_expiring, firing since Nov 27, 2026]" in body
    assert "resolved Nov 27, 2026 22:00" in body
    assert notify_type(batch) == "failure"


def test_only_resolutions_make_a_success_message() -> None:
    assert notify_type(Batch(resolved=(alert(state="resolved"),))) == "success"
    assert notify_type(Batch(fired=(alert(),))) == "warning"


@pytest.mark.parametrize(
    ("subject", "level"),
    [
        ("8001234567", "8001234567"),
        ("", "_"),
        ("_", "%5F"),
        ("card:80/01+2#3 #2", "card:80%2F01%2B2%233 %232"),
        ("50%", "50%25"),
    ],
)
def test_the_alert_topic_makes_the_subject_one_safe_level(subject: str, level: str) -> None:
    topic = alert_topic("cpsfleet/v1/alerts", alert(subject))
    assert topic == f"cpsfleet/v1/alerts/card_expiring/ws-lyon-07/{level}"


# The MQTT alert topic


def client(broker: Broker) -> mqtt.Client:
    connection = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    connected = threading.Event()
    connection.on_connect = lambda *args: connected.set()
    connection.connect("127.0.0.1", broker.port)
    connection.loop_start()
    assert connected.wait(5), "the test broker did not accept the connection"
    return connection


def close(connection: mqtt.Client) -> None:
    connection.disconnect()
    connection.loop_stop()


@pytest.fixture
def publisher(broker: Broker) -> Iterator[mqtt.Client]:
    connection = client(broker)
    yield connection
    close(connection)


class Direct:
    """Publishes on the test's own paho connection, as the receiving process does on its."""

    def __init__(self, connection: mqtt.Client) -> None:
        self.connection = connection

    def publish(self, topic: str, payload: bytes) -> None:
        publish_retained(self.connection, topic, payload)


def retained(broker: Broker, prefix: str) -> dict[str, bytes]:
    """The retained messages under ``prefix``, as a fresh subscriber receives them."""
    got: dict[str, bytes] = {}
    marker, done = f"cpsfleet-test/marker/{uuid.uuid4().hex}", threading.Event()
    subscriber = client(broker)

    def on_message(_: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == marker:
            done.set()
        elif message.retain:
            got[message.topic] = bytes(message.payload)

    def on_subscribe(*args: Any) -> None:
        # The broker sends a subscription's retained messages before it handles the next
        # packet, so the marker published after the SUBACK arrives after all of them.
        subscriber.publish(marker, b"end")

    subscriber.on_message = on_message
    subscriber.on_subscribe = on_subscribe
    subscriber.subscribe([(f"{prefix}/#", 0), (marker, 0)])
    assert done.wait(5), "the marker never came back"
    close(subscriber)
    return got


def flush(publisher: mqtt.Client) -> None:
    """Wait until the broker has handled everything published before (one ordered session)."""
    info = publisher.publish(f"cpsfleet-test/flush/{uuid.uuid4().hex}", b"", qos=1)
    info.wait_for_publish(timeout=5)


def test_the_alert_topic_retains_each_firing_alert_and_clears_resolved_ones(
    book: AlertBook, broker: Broker, publisher: mqtt.Client
) -> None:
    prefix = f"cpsfleet-test/{uuid.uuid4().hex}/alerts"
    notifier = Notifier(AlertSettings(mqtt_topic_prefix=prefix), Direct(publisher))
    host_wide = Finding("no_reader", "warning", "ws-lyon-01", "", "no reader", site=None)
    findings = [expiring(1), expiring(2), host_wide]
    notifier.publish(book.update(findings, NOW).changed)  # a silence names a known host
    book.add_silence(None, "ws-lyon-01", None, NOW + HOUR, "new desk", "alice", NOW)
    run(book, notifier, findings, NOW)
    flush(publisher)
    firing = retained(broker, prefix)
    assert sorted(firing) == [
        f"{prefix}/card_expiring/ws-lyon-01/8001234501",
        f"{prefix}/card_expiring/ws-lyon-02/8001234502",
        f"{prefix}/no_reader/ws-lyon-01/_",
    ]
    document = json.loads(firing[f"{prefix}/card_expiring/ws-lyon-02/8001234502"])
    assert document == {
        "schema": "cpsfleet.alert",
        "version": 1,
        "state": "firing",
        "rule": "card_expiring",
        "severity": "warning",
        "host_id": "ws-lyon-02",
        "site": "Lyon Part-Dieu",
        "subject": "8001234502",
        "message": expiring(2).message,
        "started_at": "2026-11-27T21:00:00Z",
    }
    run(book, notifier, [expiring(2)], NOW + HOUR)
    flush(publisher)
    assert sorted(retained(broker, prefix)) == [f"{prefix}/card_expiring/ws-lyon-02/8001234502"]


def test_the_retained_alert_document_follows_the_contract() -> None:
    from cpsfleet.controller.alerts.notify import alert_document
    from cpsfleet.schemas import validate

    document = validate(alert_document(alert()))
    assert (document["schema"], document["state"]) == ("cpsfleet.alert", "firing")
