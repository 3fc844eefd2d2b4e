"""``cpsfleet controller run``: receive the fleet's documents, store them, evaluate the rules.

paho's network thread only queues what arrives; one writer thread owns the
SQLite connection, stores each message, re-evaluates the host it concerns and,
every ``evaluate_every`` seconds, the whole fleet (hosts that went silent).

Each evaluation updates the alerts and mirrors them on the MQTT alert topic;
only the whole-fleet run notifies, so one run makes one message. Sending goes
through a thread of its own: a slow mail server must not hold up the intake.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controller.alerts import AlertBook, Batch
from controller.metrics import Metrics
from controller.model import Finding
from controller.notify import Notifier
from controller.rules import evaluate_fleet
from controller.settings import ControllerSettings
from controller.store import Store
from controller.web import create_app
from controller.webserver import DashboardServer
from schemas import EVENT_SCHEMA, PRESENCE_SCHEMA, STATUS_SCHEMA, SchemaError, parse
from schemas.broker import TlsContext
from schemas.topics import SUBSCRIPTIONS, TopicError, parse_topic

log = logging.getLogger(__name__)
SESSION_EXPIRY_S = 24 * 3600
PRUNE_EVERY = timedelta(hours=1)


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    received_at: datetime
    mid: int = 0
    qos: int = 0


class Rejected(ValueError):
    """A message the controller will not store; the message says why."""


def host_of(document: dict[str, Any], schema: str) -> str:
    return str(document["host"]["id"] if schema == STATUS_SCHEMA else document["host_id"])


def decode(message: Message) -> tuple[str, str, dict[str, Any]]:
    """(host id, schema, document) of a valid message whose topic and payload agree."""
    try:
        host_id, schema = parse_topic(message.topic)
        document = parse(message.payload, schema)
    except (TopicError, SchemaError) as error:
        raise Rejected(str(error)) from None
    claimed = host_of(document, schema)
    if claimed != host_id:
        raise Rejected(f"the document claims host {claimed!r} on the topic of {host_id!r}")
    return host_id, schema, document


class Controller:
    def __init__(self, settings: ControllerSettings) -> None:
        self.settings = settings
        self.inbox: queue.Queue[Message] = queue.Queue()
        self.outbox: queue.Queue[Batch | None] = queue.Queue()
        self.client = self._client()
        self.notifier = Notifier(settings.alerts, self.client)
        self.last_prune = datetime.min.replace(tzinfo=UTC)
        self.republish = threading.Event()
        self.book: AlertBook | None = None
        self.metrics = Metrics(settings.database)
        self.dashboard: DashboardServer | None = None

    def _client(self) -> mqtt.Client:
        # Acknowledged by the writer thread once stored: a controller killed in between
        # gets the message again from its persistent session.
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="cpsfleet-controller",
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        broker = self.settings.broker_url
        self.tls = TlsContext(self.settings.tls) if broker.tls else None
        if self.tls is not None:
            client.tls_set_context(self.tls.context)
        if broker.username:
            client.username_pw_set(broker.username, broker.password)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, *args: Any) -> None:
        """paho reconnects by itself; a renewed certificate is used from that handshake on."""
        if self.tls is not None and self.tls.reload():
            log.info("renewed client certificate loaded")

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, code: Any, props: Any
    ) -> None:
        if code.is_failure:
            log.warning("broker refused the connection: %s", code)
            return
        log.info("connected to %s", self.settings.broker_url)
        client.subscribe([(topic, 1) for topic in SUBSCRIPTIONS])
        self.republish.set()  # the writer thread rebuilds the retained alert topic

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = datetime.now(UTC)
        self.inbox.put(
            Message(message.topic, bytes(message.payload), received, message.mid, message.qos)
        )

    def run(self, stop: threading.Event) -> None:
        store = Store(self.settings.database)
        self.book = AlertBook(store.database, self.settings.alerts)
        try:
            if self.settings.dashboard.enabled:
                app = create_app(self.settings, self.metrics)
                self.dashboard = DashboardServer(self.settings.dashboard, app)
        except BaseException:
            store.close()
            raise
        sender = threading.Thread(target=self._send, name="alert-sender", daemon=True)
        sender.start()
        try:
            if self.dashboard is not None:
                self.dashboard.start()
            self._connect()
            self.evaluate(store)
            self._serve(store, stop)
        finally:
            if self.dashboard is not None:
                self.dashboard.stop()
            self.outbox.put(None)
            sender.join(timeout=30)
            self.client.disconnect()
            self.client.loop_stop()
            store.close()

    def _send(self) -> None:
        while (batch := self.outbox.get()) is not None:
            self.notifier.notify(batch)

    def _connect(self) -> None:
        broker = self.settings.broker_url
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client.connect_async(
            broker.host, broker.port, keepalive=30, clean_start=False, properties=properties
        )
        self.client.loop_start()

    def _serve(self, store: Store, stop: threading.Event) -> None:
        next_evaluation = time.monotonic() + self.settings.evaluate_every
        while not stop.is_set():
            try:
                self.handle(store, self.inbox.get(timeout=0.5))
            except queue.Empty:
                pass
            if self.republish.is_set() and self.book is not None:
                self.republish.clear()
                self.notifier.publish(self.book.alerts("firing"))
            if time.monotonic() >= next_evaluation:
                self.evaluate(store)
                next_evaluation = time.monotonic() + self.settings.evaluate_every

    def handle(self, store: Store, message: Message) -> None:
        """Store one message (or reject it, or recognise a redelivery), then acknowledge it.

        A message the controller cannot handle is logged, counted and acknowledged: kept
        unacknowledged, it would come back after every restart and stop the intake each time.
        """
        try:
            self._store(store, message)
        except Exception:
            log.exception("failed to handle a message on %.200s", message.topic)
            store.increment("messages_failed")
        if message.qos:
            self.client.ack(message.mid, message.qos)

    def _store(self, store: Store, message: Message) -> None:
        if not message.payload:
            return  # a cleared retained message, not a document
        try:
            host_id, schema, document = decode(message)
        except Rejected as error:
            store.increment("messages_rejected")
            log.warning("rejected a message on %.200s: %.300s", message.topic, error)
            return
        table, seq = SEQUENCED.get(schema), document.get("seq")
        if table and seq is not None and store.seen(table, host_id, seq):
            store.increment("messages_duplicate")
            return
        RECORDERS[schema](store, document, message.received_at)
        store.increment("messages_accepted")
        self.metrics.observe_ingest((datetime.now(UTC) - message.received_at).total_seconds())
        if schema != EVENT_SCHEMA:
            self.evaluate(store, [host_id])

    def evaluate(self, store: Store, host_ids: list[str] | None = None) -> None:
        now = datetime.now(UTC)
        views = (
            store.host_views()
            if host_ids is None
            else [view for host_id in host_ids if (view := store.host_view(host_id))]
        )
        findings = evaluate_fleet(views, now, self.settings.thresholds)
        added, resolved = store.replace_findings(findings, now, host_ids)
        self._alert(findings, now, host_ids)
        for finding in added:
            log.info(
                "finding %s [%s] %s: %s",
                finding.rule,
                finding.severity,
                finding.host_id,
                finding.message,
            )
        for finding in resolved:
            log.info("resolved %s %s %s", finding.rule, finding.host_id, finding.subject)
        if host_ids is None and now - self.last_prune >= PRUNE_EVERY:
            store.prune_history(self.settings.history_days, now)
            self.last_prune = now

    def _alert(self, findings: list[Finding], now: datetime, host_ids: list[str] | None) -> None:
        assert self.book is not None
        batch = self.book.update(findings, now, host_ids)
        self.notifier.publish(batch.changed)
        if host_ids is None and batch.due:
            self.outbox.put(batch)
            self.book.mark_notified(batch, now)


SEQUENCED = {STATUS_SCHEMA: "status_history", EVENT_SCHEMA: "events"}
RECORDERS = {
    STATUS_SCHEMA: Store.record_status,
    EVENT_SCHEMA: Store.record_event,
    PRESENCE_SCHEMA: Store.record_presence,
}
