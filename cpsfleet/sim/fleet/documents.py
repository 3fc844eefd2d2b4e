"""A synthetic host's documents, as the agent publishes them: built with the agent's own types
(``cpsfleet.schemas.documents``), so they have its exact shape, valid against ``schemas/``.
``seq`` is added as the agent's outbox adds it."""

from __future__ import annotations

from datetime import datetime
from importlib.metadata import version
from typing import Any

from cpsfleet.schemas.documents import (
    Card,
    Certificate,
    Cryptolib,
    Event,
    EventCard,
    Host,
    Pcsc,
    Pin,
    Presence,
    PresenceReason,
    PresenceState,
    Reader,
    Status,
)
from cpsfleet.schemas.times import format_utc, format_utc_micro
from cpsfleet.sim.fleet.model import (
    CERTIFICATE_LABELS,
    PIN_TRIES,
    SimCard,
    SimCertificate,
    SimHost,
    SimReader,
)

AGENT_VERSION = version("cpsfleet")
MAX_INTERVAL_S = 30 * 86400  # the status schema's bound on scan_interval_s


def host_status(
    host: SimHost,
    now: datetime,
    interval_s: int | None = 900,
    removed: frozenset[str] = frozenset(),
) -> Status:
    """The host's inventory at ``now``; readers named in ``removed`` have had their card taken."""
    readers = tuple(_reader_status(r, now, r.name in removed) for r in host.readers)
    system = host.system
    return Status(
        host=Host(host.id, host.hostname, system.os, system.os_version, AGENT_VERSION, host.site),
        scanned_at=format_utc(now),
        duration_ms=9 + sum(30 if r.card else 4 for r in readers),
        pcsc=Pcsc(host.pcsc_error is None, host.pcsc_error),
        readers=readers,
        cryptolib=_cryptolib(host),
        scan_interval_s=interval_s,
    )


def status_document(
    host: SimHost,
    seq: int,
    now: datetime,
    interval_s: int | None = 900,
    removed: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """``host_status`` as the agent publishes it, numbered ``seq`` as its outbox does."""
    return {**host_status(host, now, interval_s, removed).document(), "seq": seq}


def _reader_status(reader: SimReader, now: datetime, removed: bool) -> Reader:
    card = None if removed or reader.card is None else _card_status(reader.card, now)
    return Reader(reader.name, "card_present" if card else "empty", card)


def _card_status(card: SimCard, now: datetime) -> Card:
    kind = card.kind
    certificates = tuple(_certificate(card, c, now) for c in card.certificates)
    return Card(
        kind.atr, kind.kind, kind.label, kind.is_cps, card.serial, certificates, (), _pin(card)
    )


def _pin(card: SimCard) -> Pin | None:
    """What the agent reports: the tries of a CPS card, nothing for another card."""
    if not card.kind.is_cps:
        return None
    return Pin(card.pin_tries_left, PIN_TRIES)


def _certificate(card: SimCard, cert: SimCertificate, now: datetime) -> Certificate:
    assert card.holder and card.not_before and card.not_after, "a CPS card has all three"
    holder = card.holder
    return Certificate(
        role=cert.role,
        label=CERTIFICATE_LABELS[cert.role],
        subject=holder.subject,
        id_nat=holder.id_nat,
        id_type="rpps",
        surname=holder.surname,
        given_name=holder.given_name,
        profession=holder.profession,
        issuer_cn="AC IGC-SANTE FORT PERSONNES",
        serial_number=cert.serial_number,
        not_before=format_utc(card.not_before),
        not_after=format_utc(card.not_after),
        days_left=(card.not_after - now).days,
        expired=now > card.not_after,
        sha256=cert.sha256,
    )


def _cryptolib(host: SimHost) -> Cryptolib:
    system, found = host.system, host.cryptolib
    parts = [int(part) for part in (found or "0").split(".")]
    spelt = {
        "version": found,
        "adm": "".join(f"{part:02d}" for part in parts),
        "registry": ".".join(f"{part:02d}" for part in parts),
    }
    return Cryptolib(
        installed=found is not None,
        version=found,
        pkcs11_library=system.pkcs11_library,
        pkcs11_library_present=found is not None,
        cps_gestion=found is not None,
        evidence=tuple(line.format(**spelt) for line in system.evidence) if found else (),
    )


def presence_document(
    host: SimHost, state: PresenceState, now: datetime, reason: PresenceReason | None = None
) -> dict[str, Any]:
    """``online`` (reason ``connected``) or ``offline`` (reason ``shutdown`` unless told); a
    Last Will (``connection_lost``) without a time, as the agent's."""
    reason = reason or ("connected" if state == "online" else "shutdown")
    at = None if reason == "connection_lost" else format_utc(now)
    return Presence(host.id, state, at, reason, AGENT_VERSION).document()


def card_event(host: SimHost, reader: SimReader, inserted: bool, now: datetime) -> Event:
    """``card_inserted`` or ``card_removed`` for the card that belongs in ``reader``."""
    assert reader.card is not None, "only a reader with a card has card events"
    kind = reader.card.kind
    change = "card_inserted" if inserted else "card_removed"
    card = EventCard(kind.atr, kind.kind, kind.is_cps)
    return Event(host.id, format_utc_micro(now), change, reader.name, card)


def event_document(
    host: SimHost, reader: SimReader, inserted: bool, seq: int, now: datetime
) -> dict[str, Any]:
    """``card_event`` as the agent publishes it, numbered ``seq`` as its outbox does."""
    return {**card_event(host, reader, inserted, now).document(), "seq": seq}
