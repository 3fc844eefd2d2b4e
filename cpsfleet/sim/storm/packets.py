"""The few MQTT 5 packets a storm agent speaks, made from bytes: CONNECT with a Will, PUBLISH,
PINGREQ and DISCONNECT out; CONNACK, PUBACK and DISCONNECT read back."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

from paho.mqtt.reasoncodes import ReasonCode

from cpsfleet.schemas.broker import BrokerUrl
from cpsfleet.schemas.topics import topic
from cpsfleet.sim.storm.settings import KEEPALIVE_S

WILL_FLAGS = 0x04 | 0x08 | 0x20  # a Will, QoS 1, retained; clean start false
PINGREQ, DISCONNECT = b"\xc0\x00", b"\xe0\x00"


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        number, byte = divmod(number, 128)
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _field(data: str | bytes) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(broker: BrokerUrl, host_id: str, will_delay_s: int, will: bytes) -> bytes:
    """CONNECT as the agent's: MQTT 5, clean start false, Session Expiry and Will Delay both
    ``will_delay_s``, a retained Will on the host's presence topic."""
    user, password = broker.username, broker.password
    flags = WILL_FLAGS | (0x80 if user else 0) | (0x40 if password else 0)
    session = b"\x05\x11" + struct.pack("!I", will_delay_s)
    delay = b"\x05\x18" + struct.pack("!I", will_delay_s)
    return _packet(
        0x10,
        _field("MQTT") + bytes([5, flags]) + struct.pack("!H", KEEPALIVE_S) + session,
        _field(f"cpsfleet-agent-{host_id}"),
        delay + _field(topic(host_id, "presence")) + _field(will),
        _field(user) if user else b"",
        _field(password) if password else b"",
    )


def publish_packet(name: str, payload: bytes, packet_id: int) -> bytes:
    """PUBLISH: QoS 1, retained, no properties."""
    return _packet(0x33, _field(name), struct.pack("!H", packet_id), b"\x00", payload)


def frames(inbox: bytearray) -> Iterator[tuple[int, bytes]]:
    """The whole packets at the head of ``inbox``, taken off it: (packet type, body)."""
    while (header := _header(inbox)) is not None:
        start, length = header
        kind, body = inbox[0] >> 4, bytes(inbox[start : start + length])
        del inbox[: start + length]
        yield kind, body


def _header(inbox: bytearray) -> tuple[int, int] | None:
    """Where the first packet's body starts and its length, once ``inbox`` holds it whole."""
    length = 0
    for at in range(1, min(len(inbox), 5)):
        length |= (inbox[at] & 0x7F) << 7 * (at - 1)
        if not inbox[at] & 0x80:
            return (at + 1, length) if len(inbox) >= at + 1 + length else None
    return None


def reason_text(packet: int, code: int) -> str:
    return str(ReasonCode(packet, identifier=code))
