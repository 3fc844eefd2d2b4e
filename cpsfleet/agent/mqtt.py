"""The agent's MQTT side: presence (birth, goodbye, Last Will), status and events; commands.

Status documents and events go through the on-disk outbox (``cpsfleet.agent.outbox``)
and are delivered in order, each acknowledged by the broker before it leaves
the queue; presence is the connection's own business and is not queued. A status is
logged "published" when the broker acknowledged it (its PUBACK), "queued" when it waits
for the broker.

The Last Will carries no time (``at`` null): the broker holds it from CONNECT on, so
whatever time the agent wrote into it would be the connection's, not the loss's. The
controller stamps it when it receives it.

MQTT 5 with paho-mqtt 2.x. The Last Will is delayed (Will Delay Interval) so a
short network blip does not mark the host offline; for the delay to hold, the
session must outlive the connection by as long (Session Expiry Interval).
Reconnection waits grow exponentially with full jitter, so a fleet that lost
its broker at once does not come back at once.

The agent subscribes to its own command topic and nothing else (the broker's ACL would
deliver nothing else anyway); what arrives there goes to ``on_command`` as it is, for the
daemon to vet (``cpsfleet.schemas.commands``).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cpsfleet.agent.outbox import Entry, Forwarder, Outbox
from cpsfleet.schemas.broker import BrokerUrl, TlsContext, TlsFiles
from cpsfleet.schemas.documents import Presence, PresenceReason, PresenceState
from cpsfleet.schemas.times import format_utc
from cpsfleet.schemas.topics import command_topic, topic

log = logging.getLogger(__name__)
QOS = 1
KEEPALIVE_S = 30
# Under half the keepalive, so a PINGREQ always leaves before the broker's 1.5 x keepalive.
NETWORK_WAIT_S = KEEPALIVE_S / 4
DELIVERY_TIMEOUT_S = 10


def jittered_backoff(attempt: int, base: float, cap: float, rng: Callable[[], float]) -> float:
    """Full jitter: a uniform wait between 0 and min(cap, base * 2**attempt)."""
    return float(rng() * min(cap, base * 2 ** min(attempt, 30)))


def presence_document(
    host_id: str, state: PresenceState, reason: PresenceReason, version: str
) -> dict[str, Any]:
    """The presence document, written now; a Last Will's without a time (see above)."""
    at = None if reason == "connection_lost" else format_utc(datetime.now(UTC))
    return Presence(host_id, state, at, reason, version).document()


def status_summary(document: dict[str, Any]) -> str:
    """What the log says of a status: its readers, its scan time, the commands it answers."""
    answers = document.get("answers") or []
    answering = f", answering {', '.join(answers)}" if answers else ""
    return f"{len(document['readers'])} reader(s), {document['duration_ms']} ms{answering}"


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _properties(packet: int, **values: int) -> Properties:
    properties = Properties(packet)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(properties, name, value)
    return properties


class _Client(mqtt.Client):
    """paho's client, whose network thread sleeps until there is traffic or a keepalive is due.

    ``loop_start()`` runs ``loop_forever()`` with a 1 s select() timeout: an idle agent
    would wake every second for nothing. Incoming packets and publishes from other
    threads (through paho's socket pair) wake the loop anyway; only the keepalive
    check needs a timeout. This overrides paho 2.x's private thread body (the same
    two calls, but the timeout); pyproject keeps paho-mqtt below 3.
    """

    def _thread_main(self) -> None:
        try:
            self.loop_forever(timeout=NETWORK_WAIT_S, retry_first_connection=True)
        finally:
            self._thread = None


class FleetPublisher:
    """One agent's connection to the broker."""

    def __init__(
        self,
        broker: BrokerUrl,
        host_id: str,
        agent_version: str,
        will_delay: int,
        backoff: tuple[float, float] = (1.0, 300.0),
        rng: Callable[[], float] = random.random,
        tls: TlsFiles | None = None,
    ) -> None:
        self.broker, self.host_id, self.version = broker, host_id, agent_version
        self.will_delay, self.backoff, self.rng = will_delay, backoff, rng
        self.attempt = 0
        self.connected = threading.Event()
        self.stopping = False
        # (session_present): whether the broker kept this client's session, and so its state.
        self.on_connected: Callable[[bool], None] = lambda session_present: None
        # (payload, retained): called from paho's network thread, so it must not block.
        self.on_command: Callable[[bytes, bool], None] = lambda payload, retained: None
        self.outbox: Outbox | None = None
        self.tls = TlsContext(tls or TlsFiles()) if broker.tls else None
        self.forwarder: Forwarder | None = None
        # PUBACKs with a failure reason code, by message id, until ``deliver`` reads them:
        # paho marks such a message published all the same.
        self.refused: dict[int, str] = {}
        self.client = self._client()

    def _client(self) -> mqtt.Client:
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"cpsfleet-agent-{self.host_id}",
            protocol=mqtt.MQTTv5,
        )
        if self.tls is not None:
            client.tls_set_context(self.tls.context)
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password)
        will = presence_document(self.host_id, "offline", "connection_lost", self.version)
        client.will_set(
            topic(self.host_id, "presence"),
            _encode(will),
            qos=QOS,
            retain=True,
            properties=_properties(PacketTypes.WILLMESSAGE, WillDelayInterval=self.will_delay),
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def start(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.forwarder = Forwarder(outbox, self.deliver)
        self.forwarder.start()
        self._next_delay()
        self.client.connect_async(
            self.broker.host,
            self.broker.port,
            keepalive=KEEPALIVE_S,
            # The session outlives a blip as long as the Will is delayed: a reconnection
            # within will_delay resumes it, and the broker then drops the pending Will
            # (with a clean start the old session ends, and its Will goes out at once).
            clean_start=False,
            properties=_properties(PacketTypes.CONNECT, SessionExpiryInterval=self.will_delay),
        )
        self.client.loop_start()

    def _before_reconnecting(self) -> None:
        """Wait a jittered while, and take a renewed client certificate for the next handshake."""
        if self.tls is not None and self.tls.reload():
            log.info("renewed client certificate loaded")
        self._next_delay()

    def _next_delay(self) -> None:
        delay = max(0.1, jittered_backoff(self.attempt, *self.backoff, self.rng))
        self.client.reconnect_delay_set(delay, delay)  # type: ignore[arg-type]
        self.attempt += 1

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, code: Any, props: Any
    ) -> None:
        if code.is_failure:
            log.warning("broker %s refused the connection: %s", self.broker, code)
            self._next_delay()
            return
        log.info("connected to %s", self.broker)
        self.attempt = 0
        online = presence_document(self.host_id, "online", "connected", self.version)
        client.publish(topic(self.host_id, "presence"), _encode(online), qos=QOS, retain=True)
        # Again at each connection: a session that expired (offline beyond will_delay) took
        # the subscription with it. Commands queued in a resumed session arrive after this.
        client.subscribe(command_topic(self.host_id), qos=QOS)
        self.connected.set()
        self.on_connected(bool(flags.session_present))

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, code: Any, props: Any
    ) -> None:
        self.connected.clear()
        if self.stopping:
            log.info("disconnected from %s", self.broker)
            return
        log.warning("disconnected from %s (%s); reconnecting", self.broker, code)
        self._before_reconnecting()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        log.warning("cannot reach %s; retrying", self.broker)
        self._before_reconnecting()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == command_topic(self.host_id):
            self.on_command(bytes(message.payload), bool(message.retain))

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, code: Any, props: Any
    ) -> None:
        """Called before paho marks the message published, so ``deliver`` sees the refusal."""
        if code.is_failure:
            self.refused[mid] = str(code)

    def publish_status(self, document: dict[str, Any]) -> None:
        self._queue("status", document)

    def publish_event(self, document: dict[str, Any]) -> None:
        self._queue("events", document)

    def _queue(self, channel: str, document: dict[str, Any]) -> None:
        assert self.outbox is not None, "start() the publisher first"
        offline = not self.connected.is_set()
        seq = self.outbox.put(channel, document, late=offline)
        if channel == "status" and offline:
            summary = status_summary(document)
            log.info("status queued while the broker is down (#%d): %s", seq, summary)

    def deliver(self, entry: Entry) -> bool:
        """Publish one queued document; True once the broker has acknowledged it."""
        if not self.connected.is_set():
            return False
        name = topic(self.host_id, entry.channel)
        info = self.client.publish(name, entry.payload, qos=QOS, retain=entry.channel == "status")
        try:
            info.wait_for_publish(timeout=DELIVERY_TIMEOUT_S)
        except (RuntimeError, ValueError) as error:
            log.info("delivery of #%d postponed: %s", entry.seq, error)
            return False
        if not info.is_published():
            return False
        self._acknowledged(entry, self.refused.pop(info.mid, None))
        return True

    def _acknowledged(self, entry: Entry, refusal: str | None) -> None:
        """Log the broker's answer. A refusal (an ACL, a quota) is not retried: the same
        message would be refused again, and everything queued after it would wait."""
        if refusal is not None:
            log.warning("the broker refused %s #%d: %s", entry.channel, entry.seq, refusal)
        elif entry.channel == "status":
            summary = status_summary(json.loads(entry.payload))
            log.info("status published (#%d): %s", entry.seq, summary)

    def stop(self, timeout: float = 5) -> None:
        """Flush the outbox (within ``timeout``), say "offline" and disconnect cleanly,
        which discards the Last Will. What is still queued is delivered at the next start."""
        self._drain(timeout)
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder.join(timeout)
        if self.connected.is_set():
            goodbye = presence_document(self.host_id, "offline", "shutdown", self.version)
            info = self.client.publish(
                topic(self.host_id, "presence"), _encode(goodbye), qos=QOS, retain=True
            )
            info.wait_for_publish(timeout)
        self.stopping = True  # the disconnection that follows is ours: no reconnecting
        self.client.disconnect()
        self.client.loop_stop()

    def _drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.outbox and self.connected.is_set() and time.monotonic() < deadline:
            if not self.outbox.pending():
                return
            time.sleep(0.05)
