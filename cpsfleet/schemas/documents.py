"""The documents an agent publishes, as types: status, event and presence.

Every class here maps one-to-one to an object of a JSON Schema of this package
(``status.schema.json``, ``event.schema.json``, ``presence.schema.json``), its fields in the
schema's order; ``document()`` gives the JSON-ready dictionary. The agent builds them from
what it reads, the simulators from their synthetic fleet, so both publish the same shape.

Times are wire texts already (``cpsfleet.schemas.times``): an event's ``at`` may carry
microseconds, a status's or a presence's never. ``seq`` and ``run`` are not here: the agent's
outbox stamps them on the document it queues.

Standard library only: the agent imports this, and its memory counts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Literal

from cpsfleet.schemas import (
    EVENT_SCHEMA,
    EVENT_VERSION,
    PRESENCE_SCHEMA,
    PRESENCE_VERSION,
    STATUS_SCHEMA,
    STATUS_VERSION,
)

ReaderState = Literal["empty", "card_present", "in_use", "unavailable"]
CertificateRole = Literal["authentication", "signature", "technical", "unknown"]
IdType = Literal["rpps", "adeli", "structure", "other"]
PresenceState = Literal["online", "offline"]
PresenceReason = Literal["connected", "shutdown", "connection_lost"]


@dataclass(frozen=True)
class Problem:
    """Something that went wrong while inventorying one item; the scan goes on."""

    where: str
    message: str


@dataclass(frozen=True)
class Certificate:
    role: CertificateRole
    label: str | None = None
    subject: str | None = None
    id_nat: str | None = None
    id_type: IdType | None = None
    surname: str | None = None
    given_name: str | None = None
    profession: str | None = None
    issuer_cn: str | None = None
    serial_number: str | None = None
    not_before: str | None = None
    not_after: str | None = None
    days_left: int | None = None
    expired: bool | None = None
    sha256: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Pin:
    """The card's PIN as the card tells it without the PIN: 0 tries left is blocked.

    ``error`` says why the tries could not be read (then both counts are None)."""

    tries_left: int | None = None
    tries_max: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Card:
    atr: str
    kind: str
    kind_label: str
    is_cps: bool
    serial: str | None = None
    certificates: tuple[Certificate, ...] = ()
    problems: tuple[Problem, ...] = ()
    pin: Pin | None = None  # None for a card the agent does not read (not a CPS)


@dataclass(frozen=True)
class ReaderModel:
    """Which reader it is, where the system tells: USB ids (4 hex digits), names, driver."""

    usb_vendor_id: str | None = None
    usb_product_id: str | None = None
    manufacturer: str | None = None
    product: str | None = None
    driver_version: str | None = None  # the PC/SC driver's (CCID's) version


@dataclass(frozen=True)
class Reader:
    name: str
    state: ReaderState
    card: Card | None = None
    problems: tuple[Problem, ...] = ()
    model: ReaderModel | None = None  # None: unknown (a virtual reader, another system)


@dataclass(frozen=True)
class Pcsc:
    available: bool
    error: str | None = None


@dataclass(frozen=True)
class Cryptolib:
    installed: bool
    version: str | None = None
    pkcs11_library: str | None = None
    pkcs11_library_present: bool = False
    cps_gestion: bool = False
    evidence: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Host:
    id: str
    hostname: str
    os: str
    os_version: str
    agent_version: str
    site: str | None = None


@dataclass(frozen=True)
class Status:
    host: Host
    scanned_at: str
    duration_ms: int
    pcsc: Pcsc
    readers: tuple[Reader, ...]
    cryptolib: Cryptolib
    problems: tuple[Problem, ...] = ()
    scan_interval_s: int | None = None

    def document(self) -> dict[str, Any]:
        """The ``cpsfleet.status`` document."""
        return {"schema": STATUS_SCHEMA, "version": STATUS_VERSION, **_plain(self)}


@dataclass(frozen=True)
class EventCard:
    """The card of a card event, as far as its ATR tells."""

    atr: str
    kind: str
    is_cps: bool


@dataclass(frozen=True)
class Event:
    """A card inserted or removed, a reader added or removed; ``card`` None for a reader."""

    host_id: str
    at: str
    type: str  # card_inserted, card_removed, reader_added, reader_removed
    reader: str
    card: EventCard | None = None

    def document(self) -> dict[str, Any]:
        """The ``cpsfleet.event`` document."""
        return {"schema": EVENT_SCHEMA, "version": EVENT_VERSION, **_plain(self)}


@dataclass(frozen=True)
class Presence:
    """The agent's birth (online), its goodbye and its Last Will (offline). A Last Will's
    ``at`` is None: the broker holds it from the connection on, so no time written into it
    could be when the connection was lost."""

    host_id: str
    state: PresenceState
    at: str | None
    reason: PresenceReason
    agent_version: str

    def document(self) -> dict[str, Any]:
        """The ``cpsfleet.presence`` document."""
        return {"schema": PRESENCE_SCHEMA, "version": PRESENCE_VERSION, **_plain(self)}


def _plain(value: object) -> Any:
    """JSON-ready data: a document type as a dictionary of its fields in their order, a
    sequence as a list, anything else as it is."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain(getattr(value, field.name)) for field in fields(value)}
    return value
