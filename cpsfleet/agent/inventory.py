"""The agent's inventory: plain data that becomes the status document.

Every class here maps one-to-one to an object of ``schemas/status.schema.json``;
``to_document`` turns them into JSON-ready dictionaries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cpsfleet.schemas import STATUS_SCHEMA, STATUS_VERSION

ReaderState = Literal["empty", "card_present", "in_use", "unavailable"]
CertificateRole = Literal["authentication", "signature", "technical", "unknown"]
IdType = Literal["rpps", "adeli", "structure", "other"]


@dataclass
class Problem:
    """Something that went wrong while inventorying one item; the scan goes on."""

    where: str
    message: str


@dataclass
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


@dataclass
class Pin:
    """The card's PIN as the card tells it without the PIN: 0 tries left is blocked.

    ``error`` says why the tries could not be read (then both counts are None)."""

    tries_left: int | None = None
    tries_max: int | None = None
    error: str | None = None


@dataclass
class Card:
    atr: str
    kind: str
    kind_label: str
    is_cps: bool
    serial: str | None = None
    certificates: list[Certificate] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    pin: Pin | None = None  # None for a card the agent does not read (not a CPS)


@dataclass
class Reader:
    name: str
    state: ReaderState
    card: Card | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass
class Pcsc:
    available: bool
    error: str | None = None


@dataclass
class Cryptolib:
    installed: bool
    version: str | None = None
    pkcs11_library: str | None = None
    pkcs11_library_present: bool = False
    cps_gestion: bool = False
    evidence: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class Host:
    id: str
    hostname: str
    os: str
    os_version: str
    agent_version: str
    site: str | None = None


@dataclass
class Status:
    host: Host
    scanned_at: str
    duration_ms: int
    pcsc: Pcsc
    readers: list[Reader]
    cryptolib: Cryptolib
    problems: list[Problem] = field(default_factory=list)
    scan_interval_s: int | None = None


def to_document(status: Status) -> dict[str, Any]:
    """The status as the JSON document the agent publishes (see ``schemas``)."""
    return {"schema": STATUS_SCHEMA, "version": STATUS_VERSION, **asdict(status)}
