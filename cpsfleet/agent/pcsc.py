"""PC/SC through pyscard's thin ``scard`` layer: readers, their state, card connections.

Every failing call raises ``PcscError`` with pcsc-lite's own message and code,
so a problem entry can say exactly what PC/SC answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from smartcard import scard

from cpsfleet.agent.apdu import CardError
from cpsfleet.schemas.documents import ReaderState

GONE_CODES = {scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_RESET_CARD}


class PcscError(CardError):
    """A PC/SC call failed."""

    def __init__(self, call: str, code: int) -> None:
        message = scard.SCardGetErrorMessage(code).strip().rstrip(".")
        super().__init__(f"{call}: {message} (0x{code & 0xFFFFFFFF:08X})")
        self.code = code

    @property
    def card_gone(self) -> bool:
        return self.code in GONE_CODES


def _check(call: str, result: Any) -> Any:
    """pyscard returns (hresult, value...) tuples: raise on failure, return the values."""
    code, *values = result if isinstance(result, tuple | list) else (result,)
    if code != scard.SCARD_S_SUCCESS:
        raise PcscError(call, code)
    return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class ReaderStatus:
    name: str
    state: ReaderState
    atr: bytes
    mute: bool


STATE_FLAGS: tuple[tuple[int, ReaderState], ...] = (
    (scard.SCARD_STATE_UNAVAILABLE, "unavailable"),
    (scard.SCARD_STATE_EXCLUSIVE, "in_use"),
    (scard.SCARD_STATE_INUSE, "in_use"),
    (scard.SCARD_STATE_PRESENT, "card_present"),
)


def reader_state(flags: int) -> ReaderState:
    """The first matching flag in ``STATE_FLAGS`` order names the state."""
    return next((state for flag, state in STATE_FLAGS if flags & flag), "empty")


class CardConnection:
    """A shared connection to the card in one reader; a ``Transport``."""

    def __init__(self, handle: Any, protocol: int) -> None:
        self.handle = handle
        self.protocol = protocol

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        response = bytes(
            _check("SCardTransmit", scard.SCardTransmit(self.handle, self.protocol, list(apdu)))
        )
        if not response:
            raise CardError("the card gave no answer: it was removed or stopped responding")
        if len(response) < 2:
            raise CardError(f"response too short to hold a status word: {response.hex()}")
        return response[:-2], int.from_bytes(response[-2:], "big")


class PcscContext:
    """One PC/SC context. Raises ``PcscError`` when the service is unreachable."""

    def __init__(self) -> None:
        self.handle = _check(
            "SCardEstablishContext", scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        )

    def close(self) -> None:
        scard.SCardReleaseContext(self.handle)

    def __enter__(self) -> PcscContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def readers(self) -> list[str]:
        result = scard.SCardListReaders(self.handle, [])
        if result[0] == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        return list(_check("SCardListReaders", result))

    def statuses(self, readers: list[str], timeout_ms: int = 0) -> list[ReaderStatus]:
        query = [(name, scard.SCARD_STATE_UNAWARE) for name in readers]
        states = _check(
            "SCardGetStatusChange", scard.SCardGetStatusChange(self.handle, timeout_ms, query)
        )
        return [
            ReaderStatus(
                name, reader_state(flags), bytes(atr), bool(flags & scard.SCARD_STATE_MUTE)
            )
            for name, flags, atr in states
        ]

    @contextmanager
    def connect(self, reader: str) -> Iterator[CardConnection]:
        """A shared connection inside a transaction, so no other program interleaves APDUs."""
        protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        handle, protocol = _check(
            "SCardConnect",
            scard.SCardConnect(self.handle, reader, scard.SCARD_SHARE_SHARED, protocols),
        )
        try:
            _check("SCardBeginTransaction", scard.SCardBeginTransaction(handle))
            try:
                yield CardConnection(handle, protocol)
            finally:
                scard.SCardEndTransaction(handle, scard.SCARD_LEAVE_CARD)
        finally:
            scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
