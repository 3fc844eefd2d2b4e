"""Talking to a card: one small transport interface and the ISO 7816 exchanges on top."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cpsfleet.agent import tlv

SW_OK = 0x9000
SW_FILE_NOT_FOUND = 0x6A82
MAX_GET_RESPONSE_ROUNDS = 64
MAX_SHORT_RESPONSE = 256  # the most data a short APDU (Le of one byte, 00 = 256) can bring back


class CardError(Exception):
    """The card could not be read; the message says what failed."""


class StatusWordError(CardError):
    def __init__(self, what: str, sw: int) -> None:
        super().__init__(f"{what}: card answered {sw:04X}")
        self.sw = sw


class BudgetExhausted(CardError):
    """The card used up the commands a reading may send it; the reading stops there."""


class Transport(Protocol):
    """Sends one command APDU and returns the response data and status word."""

    def transmit(self, apdu: bytes) -> tuple[bytes, int]: ...


def command(
    cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None
) -> bytes:
    body = bytes([len(data)]) + data if data else b""
    tail = bytes([le & 0xFF]) if le is not None else b""
    return bytes([cla, ins, p1, p2]) + body + tail


def with_le(apdu: bytes, le: int) -> bytes:
    """``apdu`` with its Le set to ``le``: replaced if it has one (cases 2 and 4), else added."""
    has_le = len(apdu) == 5 or (len(apdu) > 5 and len(apdu) == 6 + apdu[4])
    return (apdu[:-1] if has_le else apdu) + bytes([le & 0xFF])


def exchange(transport: Transport, apdu: bytes) -> tuple[bytes, int]:
    """Send ``apdu``, following ``61xx`` with GET RESPONSE and ``6Cxx`` with the right Le."""
    data, sw = _transmit(transport, apdu)
    if sw >> 8 == 0x6C:
        data, sw = _transmit(transport, with_le(apdu, sw))
    collected = bytearray(data)
    for _ in range(MAX_GET_RESPONSE_ROUNDS):
        if sw >> 8 != 0x61:
            return bytes(collected), sw
        data, sw = _transmit(transport, command(apdu[0], 0xC0, 0, 0, le=sw & 0xFF))
        collected += data
    raise CardError("the card keeps asking for GET RESPONSE")


def _transmit(transport: Transport, apdu: bytes) -> tuple[bytes, int]:
    data, sw = transport.transmit(apdu)
    if len(data) > MAX_SHORT_RESPONSE:
        raise CardError(f"the card answered {len(data)} bytes to a command that allows 256")
    return data, sw


class CommandBudget:
    """A ``Transport`` that lets at most ``limit`` commands through to the card.

    Whatever a card answers (61xx forever, files that name each other), a
    reading through this wrapper costs a bounded number of round trips.
    """

    def __init__(self, transport: Transport, limit: int) -> None:
        self.transport = transport
        self.limit = limit
        self.sent = 0

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        if self.sent >= self.limit:
            raise BudgetExhausted(
                f"the card needed more than {self.limit} commands: reading stopped before "
                f"{apdu[:4].hex().upper()} (damaged card, or not a CPS)"
            )
        self.sent += 1
        return self.transport.transmit(apdu)


@dataclass(frozen=True)
class FileInfo:
    size: int | None


def file_info(fcp: bytes) -> FileInfo:
    """The size of a file from its FCP (tag 80, or 81 as some cards write it)."""
    try:
        templates = tlv.parse(fcp)
    except tlv.TlvError as error:
        raise CardError(f"unreadable FCP: {error}") from error
    inner = templates[0].children() if templates and templates[0].tag in (0x62, 0x6F) else []
    size = next((t for t in inner if t.tag in (0x80, 0x81)), None)
    return FileInfo(int.from_bytes(size.value, "big") if size else None)
