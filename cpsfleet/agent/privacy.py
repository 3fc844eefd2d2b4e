"""What the agent leaves out of its reports when pseudonymisation is on."""

from __future__ import annotations

from dataclasses import replace

from cpsfleet.schemas.documents import Certificate, Reader, Status
from cpsfleet.schemas.privacy import pseudonym


def pseudonymise(status: Status, key: bytes) -> Status:
    """The holder's idNat becomes its keyed pseudonym; names and the full subject are dropped.

    Profession, identifier type, dates and fingerprints stay: the controller needs
    them, and they do not name anyone.
    """
    return replace(status, readers=tuple(_reader(reader, key) for reader in status.readers))


def _reader(reader: Reader, key: bytes) -> Reader:
    if reader.card is None:
        return reader
    certificates = tuple(_certificate(c, key) for c in reader.card.certificates)
    return replace(reader, card=replace(reader.card, certificates=certificates))


def _certificate(certificate: Certificate, key: bytes) -> Certificate:
    id_nat = pseudonym(key, certificate.id_nat) if certificate.id_nat else None
    return replace(certificate, id_nat=id_nat, subject=None, surname=None, given_name=None)
