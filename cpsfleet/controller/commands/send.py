"""Sending commands to agents: a short MQTT connection of its own, beside the running controller.

Commands are published with QoS 1, never retained (an agent subscribing later must not find
an old one), and with an MQTT 5 Message Expiry Interval equal to their own validity, so the
broker drops one that an offline agent's session still holds when it runs out; the agent
checks the same expiry on its own clock (``cpsfleet.schemas.commands``).

On the fleet's mutual-TLS broker (``controller.pki.mosquitto``) a client's CN is its MQTT user
name *and* its client id: connecting with the running controller's certificate would take
over its session and disconnect it. Commands are therefore sent with a certificate of their
own (``command_tls_cert``/``command_tls_key``, CN ``cpsfleet-commands``), which the ACL
lets write command topics and nothing else. The same certificate and key sign every
command (``cpsfleet.schemas.signing``), so that an agent on mutual TLS can tell for itself that a
command comes from the controller. On a broker without client certificates, a random
client id keeps the connections apart and commands go unsigned: plain MQTT is for loopback
and tests, where anyone local could publish anything anyway.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.schemas.broker import TlsContext, TlsFiles
from cpsfleet.schemas.commands import COMMANDS_IDENTITY, Command
from cpsfleet.schemas.signing import SignatureError, Signer
from cpsfleet.schemas.topics import command_topic

QOS = 1
NO_MATCHING_SUBSCRIBERS = 0x10
TIMEOUT_S = 10.0


class CommandError(Exception):
    """Commands cannot be sent: no certificate to send or sign them with, or the broker
    refuses."""


def command_tls(settings: ControllerSettings) -> TlsFiles | None:
    """The TLS files commands are sent with (None over plain MQTT)."""
    if not settings.broker_url.tls:
        return None
    if settings.tls_cert and not settings.command_tls_cert:
        raise CommandError(
            "commands need a client certificate of their own: the broker names clients by "
            "their certificate, and one connecting as the controller would take over its "
            f"session. Issue one (cpsfleet pki issue controller {COMMANDS_IDENTITY} --dir ...) "
            "and set command_tls_cert and command_tls_key in the controller's configuration"
        )
    return settings.command_tls


def command_signer(tls: TlsFiles | None) -> Signer | None:
    """What signs the commands: the commands certificate and key (None without them)."""
    if tls is None or not (tls.cert and tls.key):
        return None
    try:
        return Signer.from_files(Path(tls.cert), Path(tls.key))
    except SignatureError as error:
        raise CommandError(f"cannot sign commands: {error}") from None


class CommandSender:
    """One connection to the broker that publishes commands; use it as a context manager."""

    def __init__(self, settings: ControllerSettings, timeout: float = TIMEOUT_S) -> None:
        self.broker, self.timeout = settings.broker_url, timeout
        self.connected = threading.Event()
        self.refusal: ReasonCode | None = None
        self.acks: dict[int, ReasonCode] = {}
        self.acked = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"cpsfleet-commands-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        tls = command_tls(settings)
        self.signer = command_signer(tls)
        if tls is not None:
            self.client.tls_set_context(TlsContext(tls).context)
        if self.broker.username:
            self.client.username_pw_set(self.broker.username, self.broker.password)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish

    def __enter__(self) -> CommandSender:
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
            raise CommandError(f"cannot reach the broker {self.broker}: {error}") from None
        self.client.loop_start()
        if not self.connected.wait(self.timeout) or self.refusal is not None:
            self.close()
            why = self.refusal or f"no answer within {self.timeout:.0f} s"
            raise CommandError(f"the broker {self.broker} did not accept the connection: {why}")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def send(self, command: Command, expiry_s: int) -> bool:
        """Publish ``command``; True if an agent's subscription took it, False if none did
        (the agent is offline and has no session). CommandError if the broker refuses it."""
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.MessageExpiryInterval = expiry_s
        document = command.document()
        payload = _encode(document if self.signer is None else self.signer.sign(document))
        name = command_topic(command.host_id)
        with self.acked:
            info = self.client.publish(name, payload, qos=QOS, retain=False, properties=properties)
            if not self.acked.wait_for(lambda: info.mid in self.acks, self.timeout):
                raise CommandError(f"the broker did not acknowledge the command to {name}")
        code = self.acks.pop(info.mid)
        if code.is_failure:
            raise CommandError(f"the broker refused the command to {name}: {code}")
        return code.value != NO_MATCHING_SUBSCRIBERS

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, code: ReasonCode, props: Any
    ) -> None:
        if code.is_failure:
            self.refusal = code
        self.connected.set()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, code: ReasonCode, props: Any
    ) -> None:
        with self.acked:
            self.acks[mid] = code
            self.acked.notify_all()


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
