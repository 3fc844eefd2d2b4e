"""What the controller knows of the fleet, as plain data: the input of the rules.

The store builds these views from SQLite; the rules read them and return
findings. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info")
Presence = Literal["online", "offline"]

# The rules about a CPS card itself: their findings hold whether or not the card is in a
# reader, and follow it from host to host (the subject is its serial).
CARD_RULES = ("card_expired", "card_expiring", "card_not_updated", "pin_blocked", "pin_last_try")


@dataclass(frozen=True)
class ProblemView:
    """A problem the agent reported: where (e.g. "serial", "pcsc") and what."""

    where: str
    message: str


@dataclass(frozen=True)
class CertificateView:
    role: str
    label: str | None
    id_nat: str | None
    surname: str | None
    given_name: str | None
    profession: str | None
    not_before: datetime | None
    not_after: datetime | None
    error: str | None = None


@dataclass(frozen=True)
class PinView:
    """The card's PIN tries as its agent read them; ``error`` says why they are unknown."""

    tries_left: int | None
    tries_max: int | None
    error: str | None = None


@dataclass(frozen=True)
class CardView:
    reader: str
    atr: str
    kind: str
    kind_label: str
    is_cps: bool
    serial: str | None
    certificates: tuple[CertificateView, ...] = ()
    problems: tuple[ProblemView, ...] = ()
    pin: PinView | None = None  # None: not reported (not a CPS, or an older agent)
    # A card remembered after it left the reader (see ``HostView.remembered``): when it was
    # last seen there. None: in the reader now.
    last_seen: datetime | None = None
    superseded_by: str | None = None  # a newer card of the same holder (idNat)
    superseded_at: datetime | None = None


@dataclass(frozen=True)
class ReaderModel:
    """A reader's model as its agent read it from the system (any part may be unknown)."""

    usb_vendor_id: str | None = None
    usb_product_id: str | None = None
    manufacturer: str | None = None
    product: str | None = None
    driver_version: str | None = None


@dataclass(frozen=True)
class ReaderView:
    name: str
    state: str
    problems: tuple[ProblemView, ...] = ()
    model: ReaderModel | None = None  # None: not reported (virtual reader, older agent)


@dataclass(frozen=True)
class HostView:
    """One host as last reported, with the controller's own receive times."""

    id: str
    hostname: str | None
    site: str | None
    first_seen: datetime
    last_seen: datetime
    presence: Presence | None = None
    presence_at: datetime | None = None
    last_status_at: datetime | None = None
    scan_interval_s: int | None = None
    pcsc_available: bool | None = None
    pcsc_error: str | None = None
    cryptolib_installed: bool | None = None
    cryptolib_version: str | None = None
    cryptolib_problems: tuple[ProblemView, ...] = ()
    cps_gestion: bool | None = None  # found with Cryptolib CPS; None: never reported
    problems: tuple[ProblemView, ...] = ()
    readers: tuple[ReaderView, ...] = ()
    cards: tuple[CardView, ...] = ()
    # The CPS cards last seen on this host that left its readers: their findings are still
    # this host's (a card taken home at night is the same card, with the same expiry).
    remembered: tuple[CardView, ...] = ()
    # Serials of cards in ``cards`` seen on another host since, or superseded (see
    # ``CardView.superseded_by``): a stale inventory does not speak for them.
    elsewhere: frozenset[str] = frozenset()
    # What of its stored inventory could not be read back (the rules run on the rest, and
    # ``evaluation_failed`` says what was left out).
    unreadable: tuple[str, ...] = ()
    agent_version: str | None = None  # as its last status or presence said
    # The idNats of the roster as last imported, and their pseudonyms when the controller
    # has the fleet's pseudonym key (``roster_pseudonyms``); None: no roster imported
    # (nobody to miss).
    roster: frozenset[str] | None = None
    roster_pseudonyms: bool = False


@dataclass(frozen=True)
class Finding:
    """Something wrong, for one host and optionally one reader or card.

    ``subject`` tells which reader or card ("" for the host itself); with
    ``rule`` and ``host_id`` it is the finding's identity across evaluations.
    ``since`` is when the condition started, when the rule can tell (a
    certificate's expiry date); None lets the store keep the first time it
    saw the finding.
    """

    rule: str
    severity: Severity
    host_id: str
    subject: str
    message: str
    since: datetime | None = None
    site: str | None = field(default=None, compare=False)
