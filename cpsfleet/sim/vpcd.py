"""The card side of vsmartcard's vpcd protocol.

vpcd (a pcscd reader driver) listens on a TCP port; a card is a client of it.
Every message, both ways, is a 2-byte big-endian length then that many bytes.
A 1-byte message from vpcd is a control code; anything longer is a command APDU
to be answered with a response APDU. Closing the connection removes the card.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
from typing import Protocol

from cpsfleet.sim.faults import CardPulled

log = logging.getLogger(__name__)

POWER_OFF, POWER_ON, RESET, GET_ATR = 0x00, 0x01, 0x02, 0x04
MESSAGE_TIMEOUT_S = 10
DEFAULT_PORT = 35963


class Card(Protocol):
    """What vpcd needs of a card."""

    atr: bytes

    def reset(self) -> None: ...

    def process(self, apdu: bytes) -> bytes: ...


class VpcdClosed(ConnectionError):
    """The reader side closed the connection (pcscd stopped or restarted)."""


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise VpcdClosed("vpcd closed the connection")
        chunks += chunk
    return bytes(chunks)


def _ack_quickly(sock: socket.socket) -> None:
    """vpcd writes the length and the APDU separately: without a quick ACK from us,
    Nagle's algorithm on its side holds the APDU until our delayed ACK, 40 ms later."""
    if hasattr(socket, "TCP_QUICKACK"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def receive(sock: socket.socket) -> bytes:
    _ack_quickly(sock)
    (size,) = struct.unpack(">H", _recv_exactly(sock, 2))
    _ack_quickly(sock)
    return _recv_exactly(sock, size)


def send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">H", len(payload)) + payload)


def answer(card: Card, message: bytes) -> bytes | None:
    """The reply to one vpcd message, or None when the protocol wants no reply."""
    if len(message) != 1:
        return card.process(message)
    if message[0] == GET_ATR:
        return card.atr
    if message[0] in (POWER_ON, RESET, POWER_OFF):
        card.reset()
    return None


def serve_connection(sock: socket.socket, card: Card, stop: threading.Event) -> None:
    """Answer vpcd on one connection until it closes or ``stop`` is set.

    Only the wait for the next message can time out (to look at ``stop``): a
    message once begun is read whole, or the 2-byte framing would be lost.
    """
    sock.settimeout(MESSAGE_TIMEOUT_S)
    while not stop.is_set():
        readable, _, _ = select.select([sock], [], [], 0.2)
        if not readable:
            continue
        reply = answer(card, receive(sock))
        if reply is not None:
            send(sock, reply)


def play(
    card: Card,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    stop: threading.Event | None = None,
    retry_delay: float = 0.5,
) -> None:
    """Insert ``card`` into the vpcd reader at ``port`` until ``stop`` is set.

    The card reconnects whenever the reader goes away (pcscd restarted), so a
    simulated card survives a pcscd restart like a real one left in its reader.
    """
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            with socket.create_connection((host, port), timeout=2) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                log.info("card inserted in the reader at %s:%d", host, port)
                card.reset()
                serve_connection(sock, card, stop)
        except CardPulled as pulled:
            log.info("%s", pulled)
            break
        except (OSError, VpcdClosed) as error:  # TimeoutError is an OSError too
            log.debug("reader at %s:%d not reachable: %s", host, port, error)
            stop.wait(retry_delay)
    log.info("card removed from the reader at %s:%d", host, port)
