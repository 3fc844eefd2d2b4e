"""One MQTT 5 connection that plays every agent of the fleet.

It publishes to every host's topics, which a broker whose ACL confines each agent to its own
subtree (the fleet's mutual TLS set-up) refuses: the fleet generator is for plain test brokers.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cpsfleet.i18n import _
from cpsfleet.schemas.broker import BrokerUrl
from cpsfleet.sim.fleet import FleetError

STALL_S = 30.0  # seconds without an acknowledgement before giving up
QOS = 1


@dataclass(frozen=True)
class Counts:
    """What the connection published and what the broker answered (PUBACK) so far."""

    published: int = 0
    acknowledged: int = 0
    refused: int = 0
    connected: bool = False
    refusal: str | None = None  # the broker's reason for the first refused message or connection

    @property
    def answered(self) -> int:
        return self.acknowledged + self.refused


Progress = Callable[[Counts], None]


class FleetConnection:
    """One MQTT 5 connection publishing, with QoS 1, for every played agent."""

    def __init__(self, broker: BrokerUrl) -> None:
        if broker.tls:
            raise FleetError(
                _(
                    "{broker} is a TLS broker: the fleet generator plays every agent over one "
                    "connection, which the fleet's per-host ACL refuses; use a plain mqtt:// "
                    "broker"
                ).format(broker=broker)
            )
        self.broker = broker
        self.lock = threading.Lock()
        self.counts = Counts()
        self.answered = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"cpsfleet-sim-fleet-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    def connect(self, timeout: float = 10) -> None:
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        except (OSError, ValueError) as error:
            raise FleetError(f"cannot reach the broker at {self.broker}: {error}") from None
        self.client.loop_start()
        if not self.answered.wait(timeout) or not self.counts.connected:
            self.close()
            reason = self.counts.refusal or f"no answer within {timeout:g} s"
            raise FleetError(f"the broker at {self.broker} refused the connection: {reason}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, document: dict[str, Any], retain: bool) -> None:
        payload = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        self._update(lambda c: replace(c, published=c.published + 1))
        self.client.publish(topic, payload, qos=QOS, retain=retain)

    def wait_answered(self, progress: Progress, stop: threading.Event | None = None) -> Counts:
        """Wait until the broker answered every message, calling ``progress`` each second;
        FleetError when ``stop`` is set or the broker answers nothing for ``STALL_S``."""
        stop = stop or threading.Event()
        tick = moved = time.monotonic()
        answered = self.counts.answered
        while (counts := self.counts).answered < counts.published:
            if stop.wait(0.05):
                raise FleetError(f"interrupted: {_answered(counts)}")
            if counts.answered > answered:
                answered, moved = counts.answered, time.monotonic()
            elif time.monotonic() - moved > STALL_S:
                raise FleetError(f"the broker stopped answering: {_answered(counts)}")
            if time.monotonic() - tick >= 1:
                tick = time.monotonic()
                progress(counts)
        return counts

    def _update(self, change: Callable[[Counts], Counts]) -> None:
        with self.lock:
            self.counts = change(self.counts)

    def _on_connect(self, client: mqtt.Client, data: Any, flags: Any, code: Any, p: Any) -> None:
        failed = code.is_failure
        self._update(
            lambda c: replace(c, connected=not failed, refusal=str(code) if failed else c.refusal)
        )
        self.answered.set()

    def _on_disconnect(self, client: mqtt.Client, data: Any, flags: Any, code: Any, p: Any) -> None:
        self._update(lambda c: replace(c, connected=False))

    def _on_publish(self, client: mqtt.Client, data: Any, mid: int, code: Any, p: Any) -> None:
        if code.is_failure:
            self._update(
                lambda c: replace(c, refused=c.refused + 1, refusal=c.refusal or str(code))
            )
        else:
            self._update(lambda c: replace(c, acknowledged=c.acknowledged + 1))


def _answered(counts: Counts) -> str:
    return f"the broker acknowledged {counts.acknowledged} of {counts.published} messages"
