"""What the agent leaves out of its reports when pseudonymisation is on."""

from __future__ import annotations

from dataclasses import replace

from cpsfleet.agent.inventory import Certificate, Status
from cpsfleet.schemas.privacy import pseudonym


def pseudonymise(status: Status, key: bytes) -> Status:
    """The holder's idNat becomes its keyed pseudonym; names and the full subject are dropped.

    Profession, identifier type, dates and fingerprints stay: the controller needs
    them, and they do not name anyone.
    """
    for reader in status.readers:
        if reader.card is not None:
            reader.card.certificates = [_certificate(c, key) for c in reader.card.certificates]
    return status


def _certificate(certificate: Certificate, key: bytes) -> Certificate:
    id_nat = pseudonym(key, certificate.id_nat) if certificate.id_nat else None
    return replace(certificate, id_nat=id_nat, subject=None, surname=None, given_name=None)
