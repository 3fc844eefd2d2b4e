"""What one agent publishes, as a subscriber on the broker sees it, and a command to it."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cpsfleet.schemas.commands import new_command
from cpsfleet.schemas.topics import command_topic, topic
from tests.conftest import Broker, wait_for


class AgentTopics:
    """Every status and presence document of one host, in the order the broker sent them."""

    def __init__(self, broker: Broker, host_id: str) -> None:
        self.broker, self.host_id = broker, host_id
        self.statuses: list[dict[str, Any]] = []
        self.presences: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        for channel in ("status", "presence"):
            self.client.subscribe(topic(host_id, channel), qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        document = json.loads(message.payload)
        with self.lock:
            kept = self.statuses if message.topic.endswith("/status") else self.presences
            kept.append(document)

    def states(self) -> list[str]:
        with self.lock:
            return [presence["state"] for presence in self.presences]

    def rescan(self) -> dict[str, Any]:
        """Send a ``rescan`` command (unsigned: plain MQTT) and return the status answering it.
        A sync point: the agent handles what came before the command first."""
        command = new_command(
            self.host_id, "rescan", datetime.now(UTC), timedelta(minutes=1), "tests"
        )
        info = self.client.publish(
            command_topic(self.host_id), json.dumps(command.document()), qos=1
        )
        info.wait_for_publish(10)
        found: list[dict[str, Any]] = []

        def answered() -> bool:
            with self.lock:
                found[:] = [s for s in self.statuses if command.id in (s.get("answers") or [])]
            return bool(found)

        wait_for(answered, 20, f"the status answering command {command.id}")
        return found[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
