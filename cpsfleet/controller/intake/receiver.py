"""The controller's MQTT session, held by a process of its own.

Receiving a message in paho costs about as much CPU as storing it; in one interpreter
the two take turns on one core. So a child process holds the session: paho receives,
each message is stamped with its arrival time and passed to the controller through a
pipe, in batches of what has arrived. The controller sends back what it has stored (the
acknowledgements: a message stored but not acknowledged comes again, never the reverse)
and the alerts to publish.

The child ignores SIGINT and SIGTERM, which a terminal or systemd also sends it: it stops
when the controller asks, or when the pipe closes because the controller has gone.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cpsfleet import logs
from cpsfleet.schemas.broker import BrokerUrl, TlsContext, TlsFiles

log = logging.getLogger(__name__)
# A message not yet sent (the broker is away) is queued by paho and sent on reconnection.
PUBLISHED = (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)
STOP_TIMEOUT_S = 10
# At most this many alerts published and not yet acknowledged by the broker: rebuilding the
# alert topic of a big fleet (tens of thousands of alerts) would otherwise pile up in paho's
# queue, in memory. Waiting for room never takes longer than PUBLISH_WAIT_S.
PUBLISH_WINDOW = 500
PUBLISH_WAIT_S = 10


class ReceiverError(RuntimeError):
    """The receiving process has stopped: the controller cannot go on."""


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    received_at: datetime
    mid: int = 0
    qos: int = 0


# What goes through the pipe: plain frozen dataclasses, pickled.
Arrival = tuple[str, bytes, float, int, int]  # topic, payload, arrival time, mid, qos


@dataclass(frozen=True)
class Arrived:
    """Child to controller: messages received, in their order."""

    messages: list[Arrival]


@dataclass(frozen=True)
class Connected:
    """Child to controller: subscribed after a connection; whether the broker kept our
    session (if not, the retained alert topic must be rebuilt)."""

    session_present: bool


@dataclass(frozen=True)
class Ack:
    """Controller to child: these messages (mid, qos) are stored."""

    acks: list[tuple[int, int]]


@dataclass(frozen=True)
class Publish:
    """Controller to child: retain ``payload`` on ``topic``."""

    topic: str
    payload: bytes


@dataclass(frozen=True)
class Stop:
    """Controller to child: disconnect and end."""


News = Arrived | Connected
Order = Ack | Publish | Stop


@dataclass(frozen=True)
class Session:
    """What the child needs to open the session (sent to it pickled)."""

    broker: BrokerUrl
    tls: TlsFiles | None  # None: plain MQTT
    client_id: str
    subscriptions: Sequence[str]
    session_expiry_s: int
    receive_maximum: int
    batch_max: int
    log_level: int
    publish_window: int = PUBLISH_WINDOW


class Receiver:
    """The controller's side: batches in, acknowledgements and alerts out."""

    def __init__(self, session: Session) -> None:
        self.session = session
        # Set once subscribed, at each (re)connection to a broker that had no session of
        # ours: it has restarted without persistence (or the session expired), and the
        # retained messages the controller published may have gone too. Cleared by who
        # republishes them. A broker that kept the session kept them as well.
        self.fresh_session = threading.Event()
        self._send_lock = threading.Lock()  # the writer and the alert sender both send
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe(duplex=True)
        self._process = context.Process(
            target=serve, args=(session, child), name="cpsfleet-mqtt", daemon=True
        )
        self._process.start()
        child.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def next_batch(self, timeout: float) -> list[Message]:
        """What has arrived: waits up to ``timeout`` seconds for something, then takes what
        else is waiting, until ``batch_max`` messages (a send may take it a little over).

        The receiving process passes messages on as soon as it has them: while the writer is
        storing a batch, many small sends pile up in the pipe; taken together here, they make
        the next batch one transaction instead of many."""
        received: list[Arrival] = []
        wait = timeout
        try:
            while len(received) < self.session.batch_max and self._conn.poll(wait):
                news: News = self._conn.recv()
                if isinstance(news, Connected):
                    if not news.session_present:
                        self.fresh_session.set()
                else:
                    received += news.messages
                wait = 0
        except (EOFError, OSError):
            raise ReceiverError(self._gone()) from None
        return [
            Message(topic, payload, datetime.fromtimestamp(at, UTC), mid, qos)
            for topic, payload, at, mid, qos in received
        ]

    def ack(self, messages: Sequence[Message]) -> None:
        acks = [(message.mid, message.qos) for message in messages if message.qos]
        if acks:
            self._send(Ack(acks))

    def publish(self, topic: str, payload: bytes) -> None:
        """Retain ``payload`` on ``topic`` (QoS 1); an empty payload clears the topic."""
        self._send(Publish(topic, payload))

    def stop(self) -> None:
        """Disconnect and end the child; whatever was not acknowledged stays with the broker."""
        try:
            self._send(Stop())
        except ReceiverError:
            pass
        self._process.join(STOP_TIMEOUT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()

    def _send(self, order: Order) -> None:
        try:
            with self._send_lock:
                self._conn.send(order)
        except OSError:
            raise ReceiverError(self._gone()) from None

    def _gone(self) -> str:
        self._process.join(1)
        return f"the MQTT receiving process stopped (exit code {self._process.exitcode})"


def publish_retained(client: mqtt.Client, topic: str, payload: bytes) -> bool:
    """Publish a retained QoS 1 message, logging (not raising) what prevents it; whether
    it was published (or queued until the broker is back)."""
    try:
        info = client.publish(topic, payload, qos=1, retain=True)
    except ValueError as error:  # a topic MQTT cannot carry
        log.warning("cannot publish on %.80s: %s", topic, error)
        return False
    if info.rc not in PUBLISHED:
        log.warning("publishing on %.80s failed: %s", topic, mqtt.error_string(info.rc))
        return False
    return True


# --- the child ---------------------------------------------------------------------------------


def serve(session: Session, conn: Connection) -> None:
    """The child's main: run the session until told to stop or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logs.configure(session.log_level)
    _Session(session, conn).run()


class _Session:
    def __init__(self, session: Session, conn: Connection) -> None:
        self.session = session
        self.conn = conn
        self.arrived: list[Arrival] = []
        self.news: list[News] = []  # for the controller, before what has arrived
        self.ready = threading.Condition()
        self.stopping = False
        self.session_present = False
        self.unacknowledged = 0  # alerts published that the broker has not acknowledged
        self.window = session.publish_window  # at most the broker's Receive Maximum
        self.room = threading.Condition()
        self.client = self._client()

    def _client(self) -> mqtt.Client:
        # Acknowledged once the controller has stored the message: a controller killed in
        # between gets it again from its persistent session.
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.session.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        tls = self.session.tls
        self.tls = TlsContext(tls) if tls is not None else None
        if self.tls is not None:
            client.tls_set_context(self.tls.context)
        broker = self.session.broker
        if broker.username:
            client.username_pw_set(broker.username, broker.password)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        client.max_inflight_messages_set(self.session.publish_window)
        return client

    def run(self) -> None:
        forwarder = threading.Thread(target=self._forward, name="forwarder", daemon=True)
        forwarder.start()
        self._connect()
        try:
            self._obey()
        finally:
            with self.ready:
                self.stopping = True
                self.ready.notify()
            self.client.disconnect()
            self.client.loop_stop()

    def _connect(self) -> None:
        broker = self.session.broker
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.session.session_expiry_s
        # How many unacknowledged messages the broker may send ahead (Mosquitto also caps
        # it with its max_inflight_messages, which must then be as high or 0).
        properties.ReceiveMaximum = self.session.receive_maximum
        self.client.connect_async(
            broker.host, broker.port, keepalive=30, clean_start=False, properties=properties
        )
        self.client.loop_start()

    def _obey(self) -> None:
        """Run the controller's commands until ``stop`` or the pipe closes."""
        while True:
            try:
                order: Order = self.conn.recv()
            except (EOFError, OSError):
                return
            match order:
                case Stop():
                    return
                case Ack(acks):
                    for mid, qos in acks:
                        self.client.ack(mid, qos)
                case Publish(topic, payload):
                    self._publish(topic, payload)

    def _forward(self) -> None:
        """Pass the news and what has arrived to the controller, at most ``batch_max``
        messages at a time. Only this thread writes to the pipe: paho's thread hands over
        and never waits on it, since it must go on reading the broker's acknowledgements
        while the controller is busy sending alerts (``_publish``)."""
        while True:
            with self.ready:
                while not self.arrived and not self.news and not self.stopping:
                    self.ready.wait()
                if self.stopping:
                    return
                news, self.news = self.news, []
                batch = self.arrived[: self.session.batch_max]
                del self.arrived[: self.session.batch_max]
            for item in [*news, Arrived(batch)] if batch else news:
                if not self._send(item):
                    return

    def _send(self, message: News) -> bool:
        try:
            self.conn.send(message)
        except (OSError, ValueError):  # the controller has gone: _obey sees the pipe close
            return False
        return True

    def _tell(self, news: News) -> None:
        with self.ready:
            self.news.append(news)
            self.ready.notify()

    def _publish(self, topic: str, payload: bytes) -> None:
        """Publish once fewer than ``publish_window`` alerts await the broker's acknowledgement
        (or PUBLISH_WAIT_S have passed, or the broker is away: paho then queues it). The
        controller's further sends wait in the pipe meanwhile."""
        deadline = time.monotonic() + PUBLISH_WAIT_S
        with self.room:
            while self.unacknowledged >= self.window and self.client.is_connected():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.room.wait(left)
            self.unacknowledged += 1
        if not publish_retained(self.client, topic, payload):
            self._on_publish()

    def _on_publish(self, *args: Any) -> None:
        with self.room:
            self.unacknowledged = max(0, self.unacknowledged - 1)
            self.room.notify()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = (message.topic, bytes(message.payload), time.time(), message.mid, message.qos)
        with self.ready:
            self.arrived.append(received)
            self.ready.notify()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, code: Any, props: Any
    ) -> None:
        if code.is_failure:
            log.warning("broker refused the connection: %s", code)
            return
        self.session_present = bool(flags.session_present)
        # A client may not have more unacknowledged messages out than the broker takes.
        broker_maximum = getattr(props, "ReceiveMaximum", None)
        if broker_maximum:
            with self.room:
                self.window = min(self.session.publish_window, int(broker_maximum))
        kept = "its session kept" if self.session_present else "a new session"
        log.info("connected to %s as %s (%s)", self.session.broker, self.session.client_id, kept)
        client.subscribe([(topic, 1) for topic in self.session.subscriptions])

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, *_: Any
    ) -> None:
        refused = [code for code in codes if code.is_failure]
        if refused:
            log.error("the broker refused the fleet's topics: %s", ", ".join(map(str, refused)))
        else:
            log.info("subscribed to the fleet's topics")
            # Without a session kept, the controller rebuilds the retained alert topic.
            self._tell(Connected(self.session_present))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, *args: Any) -> None:
        """paho reconnects by itself; a renewed certificate is used from that handshake on."""
        if self.tls is not None and self.tls.reload():
            log.info("renewed client certificate loaded")
