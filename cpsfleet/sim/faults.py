"""Misbehaving cards, for testing that a scan survives them.

A profile's ``[faults]`` table turns them on:

    [faults]
    remove_after_apdus = 5        # pulled out of the reader after 5 APDUs
    garbage = true                # answers every command with junk
    corrupt_certificates = true   # certificate files hold truncated DER
    no_aodf = true                # no PKCS#15 authentication objects: the PIN's
                                  #   reference, hence its state, cannot be found
"""

from __future__ import annotations

from dataclasses import dataclass

from cpsfleet.sim.iso import IsoCard

GARBAGE = bytes.fromhex("DEADBEEF9000")


class CardPulled(Exception):
    """The simulated holder pulled the card out: the reader connection must close."""


@dataclass(frozen=True)
class Faults:
    remove_after_apdus: int | None = None
    garbage: bool = False
    corrupt_certificates: bool = False
    no_aodf: bool = False


class FaultyCard:
    """Wraps a card and misbehaves as its ``Faults`` say."""

    def __init__(self, card: IsoCard, faults: Faults) -> None:
        self.card = card
        self.faults = faults
        self.atr = card.atr
        self.apdus = 0

    def reset(self) -> None:
        self.card.reset()

    def process(self, apdu: bytes) -> bytes:
        self.apdus += 1
        limit = self.faults.remove_after_apdus
        if limit is not None and self.apdus > limit:
            raise CardPulled(f"card pulled out after {limit} APDUs")
        return GARBAGE if self.faults.garbage else self.card.process(apdu)


def truncate(der: bytes | None) -> bytes | None:
    return None if der is None else der[: len(der) // 2]
