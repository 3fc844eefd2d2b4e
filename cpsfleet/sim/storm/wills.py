"""Counting the offline Wills the broker publishes for the fleet's hosts."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cpsfleet.schemas.broker import BrokerUrl
from cpsfleet.schemas.topics import PREFIX, parse_topic
from cpsfleet.sim.fleet import FleetError
from cpsfleet.sim.fleet.connection import QOS, STALL_S
from cpsfleet.sim.storm.settings import KEEPALIVE_S


class WillWatch:
    """Counts the fleet's hosts whose offline Will the broker published (live, not retained)."""

    def __init__(self, broker: BrokerUrl, host_ids: set[str]) -> None:
        self.broker, self.host_ids, self.seen = broker, host_ids, set[str]()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"cpsfleet-sim-storm-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()

    @contextmanager
    def watching(self) -> Iterator[WillWatch]:
        # Room for every Will in flight: a broker drops what would queue beyond its limit.
        room = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        room.ReceiveMaximum = 65535
        try:
            self.client.connect(self.broker.host, self.broker.port, KEEPALIVE_S, properties=room)
        except OSError as error:
            raise FleetError(f"cannot reach the broker at {self.broker}: {error}") from None
        self.client.subscribe(f"{PREFIX}/+/presence", qos=QOS)
        self.client.loop_start()
        try:
            if not self.subscribed.wait(STALL_S):
                raise FleetError(f"the broker at {self.broker} did not answer a SUBSCRIBE")
            yield self
        finally:
            self.client.disconnect()
            self.client.loop_stop()

    def wait(
        self, count: int, timeout: float, stop: threading.Event, tick: Callable[[int], None]
    ) -> int:
        """Wait up to ``timeout`` for ``count`` Wills, ticking each second; how many came."""
        now = time.monotonic()
        deadline, ticked = now + timeout, now
        while len(self.seen) < count and time.monotonic() < deadline:
            if stop.wait(0.1):
                raise FleetError(f"interrupted: {len(self.seen)} of {count} Wills published")
            if time.monotonic() - ticked >= 1:
                ticked = time.monotonic()
                tick(len(self.seen))
        return len(self.seen)

    def _on_message(self, client: mqtt.Client, data: Any, message: mqtt.MQTTMessage) -> None:
        try:
            host_id, _ = parse_topic(message.topic)
            state = json.loads(message.payload).get("state")
        except (ValueError, AttributeError):
            return
        if not message.retain and state == "offline" and host_id in self.host_ids:
            self.seen.add(host_id)
