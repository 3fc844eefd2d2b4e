"""Each professional's readiness for CPS activation, and the fleet's card expiry forecast.

Pure functions over the roster (``Professional``) and what the hosts last
reported (``HostView``). ``DECISIONS`` is the seed's activation flowchart as a
table: the first row whose condition holds gives the professional's state and
next step. A card is "seen" when it is in some host's last reported inventory;
it is "present" when that host is not offline (``rules.agent_offline``), so a
card left in a switched-off workstation is seen but not present.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from cpsfleet.controller.filters import same_site
from cpsfleet.controller.intake.roster import KINDS, Kind, Professional
from cpsfleet.controller.model import CardView, HostView
from cpsfleet.controller.rules.findings import (
    PIN_NEXT_STEP,
    Thresholds,
    _expiry,
    _last_update,
    _version_key,
    agent_offline,
)
from cpsfleet.schemas.privacy import pseudonym
from cpsfleet.schemas.times import add_years, format_utc

State = Literal[
    "no_card",
    "renew_card",
    "unblock_pin",
    "no_reader",
    "install_cryptolib",
    "verify_contacts",
    "activate_ecps",
    "ready",
]
EARLIEST = datetime.min.replace(tzinfo=UTC)
# The columns of ``readiness_rows``, in order.
REPORT_FIELDS = (
    *("surname", "given_name", "profession", "id_nat", "site", "state", "next_step", "detail"),
    *("card_serial", "card_expires", "card_updated", "card_present"),
    *("last_seen_host", "last_seen_at"),
)


@dataclass(frozen=True)
class CardSighting:
    """A CPS card in a host's last reported inventory, with the dates that decide its use."""

    id_nat: str | None
    serial: str | None
    expires: datetime | None  # the earliest notAfter of its certificates
    updated: datetime | None  # the latest notBefore: an update writes new certificates
    host: str
    site: str | None
    seen_at: datetime | None  # the host's last status
    present: bool
    pin_tries_left: int | None = None  # 0: blocked; None: not reported


@dataclass(frozen=True)
class Facts:
    """What the fleet knows that matters to one professional."""

    card: CardSighting | None  # their newest card seen, if any
    hosts: tuple[HostView, ...]  # the hosts of their site


@dataclass(frozen=True)
class Readiness:
    state: State
    next_step: str
    detail: str


@dataclass(frozen=True)
class Situation:
    """One professional's case, as the conditions of the decision table read it."""

    professional: Professional
    facts: Facts
    now: datetime
    thresholds: Thresholds


# A condition returns the detail (what was found) when its row applies, None otherwise.
Condition = Callable[[Situation], str | None]


class Decision(NamedTuple):
    state: State
    applies: Condition
    next_step: Mapping[Kind, str]


# --- gathering the facts ------------------------------------------------------------------


def card_sightings(
    hosts: Iterable[HostView], now: datetime, thresholds: Thresholds
) -> list[CardSighting]:
    """Every CPS card of the hosts' last inventories, once each: where it was seen last."""
    latest: dict[str, CardSighting] = {}
    for host in hosts:
        present = not any(agent_offline(host, now, thresholds))
        for card in (card for card in host.cards if card.is_cps):
            sighting = _sighting(host, card, present)
            key = card.serial or f"{host.id}/{card.reader}"
            if key not in latest or _seen(sighting) > _seen(latest[key]):
                latest[key] = sighting
    return list(latest.values())


def remembered(rows: Iterable[Mapping[str, Any]]) -> list[CardSighting]:
    """Cards stored from earlier inventories (``Store.card_sightings``), not known in a reader."""
    return [
        CardSighting(
            id_nat=row["id_nat"],
            serial=row["serial"],
            expires=_time(row["not_after"]),
            updated=_time(row["not_before"]),
            host=row["host"],
            site=row["site"],
            seen_at=_time(row["last_seen"]),
            present=False,
            pin_tries_left=row["pin_tries_left"],
        )
        for row in rows
    ]


def merge_sightings(
    current: Iterable[CardSighting], earlier: Iterable[CardSighting]
) -> list[CardSighting]:
    """The hosts' inventories win; a card no inventory holds now is kept from memory."""
    now_seen = list(current)
    serials = {sighting.serial for sighting in now_seen if sighting.serial}
    return [*now_seen, *(s for s in earlier if s.serial not in serials)]


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _sighting(host: HostView, card: CardView, present: bool) -> CardSighting:
    return CardSighting(
        id_nat=next((c.id_nat for c in card.certificates if c.id_nat), None),
        serial=card.serial,
        expires=_expiry(card),
        updated=_last_update(card),
        host=host.hostname or host.id,
        site=host.site,
        seen_at=host.last_status_at,
        present=present,
        pin_tries_left=card.pin.tries_left if card.pin else None,
    )


def _seen(sighting: CardSighting) -> datetime:
    return sighting.seen_at or EARLIEST


def facts_for(
    professional: Professional,
    sightings: Iterable[CardSighting],
    hosts: Iterable[HostView],
    key: bytes | None = None,
) -> Facts:
    """Their newest card (latest update, then latest expiry, then last seen), their site's hosts.

    With the fleet's pseudonym ``key``, a card reported under the pseudonym of their idNat
    is theirs too (see ``cpsfleet.schemas.privacy``).
    """
    names = {professional.id_nat}
    if key is not None:
        names.add(pseudonym(key, professional.id_nat))
    cards = [sighting for sighting in sightings if sighting.id_nat in names]
    card = max(cards, key=_newest, default=None)
    return Facts(card, tuple(host for host in hosts if same_site(professional.site, host.site)))


def _newest(card: CardSighting) -> tuple[datetime, datetime, datetime]:
    return (card.updated or EARLIEST, card.expires or EARLIEST, _seen(card))


# --- the decision table -------------------------------------------------------------------


def _no_card(situation: Situation) -> str | None:
    if situation.facts.card is not None:
        return None
    return f"no CPS card with idNat {situation.professional.id_nat} in the fleet's readers"


def _card_outdated(situation: Situation) -> str | None:
    card, now = situation.facts.card, situation.now
    if card is None:
        return None
    if card.expires is not None and card.expires <= now:
        return f"{_card_name(card)} expired on {_day(card.expires)}"
    years = situation.thresholds.card_update_max_years
    if card.updated is not None and now >= add_years(card.updated, years):
        updated = _day(card.updated)
        return f"{_card_name(card)} was last updated on {updated}, {years} years ago or more"
    return None


def _pin_blocked(situation: Situation) -> str | None:
    card = situation.facts.card
    if card is None or card.pin_tries_left != 0:
        return None
    return f"the PIN of {_card_name(card)} is blocked (seen on {card.host})"


def _no_reader(situation: Situation) -> str | None:
    hosts, site = situation.facts.hosts, situation.professional.site
    if any(host.readers for host in hosts):
        return None
    if not hosts:
        return f"no workstation of site {site!r} reports to the fleet"
    return f"no card reader on the workstations of site {site!r}: {_host_names(hosts)}"


def _no_cryptolib(situation: Situation) -> str | None:
    with_reader = [host for host in situation.facts.hosts if host.readers]
    faults = [(host, _cryptolib_fault(host, situation.thresholds)) for host in with_reader]
    if not faults or not all(fault for _, fault in faults):
        return None
    return "; ".join(f"{_host_name(host)}: {fault}" for host, fault in faults)


def _cryptolib_fault(host: HostView, thresholds: Thresholds) -> str | None:
    """What keeps the host's Cryptolib CPS from working, None if nothing we know of."""
    if not host.cryptolib_installed:
        return "Cryptolib CPS is not installed"
    installed = _version_key(host.cryptolib_version)
    minimum = _version_key(thresholds.min_cryptolib_version)
    if installed is not None and minimum is not None and installed < minimum:
        return (
            f"Cryptolib CPS {host.cryptolib_version} is older than "
            f"{thresholds.min_cryptolib_version}"
        )
    return None


def _contacts_missing(situation: Situation) -> str | None:
    professional = situation.professional
    missing = [
        what
        for what, on_file in (
            ("mobile number", professional.mobile_on_file),
            ("e-mail", professional.email_on_file),
        )
        if not on_file
    ]
    return f"no {' nor '.join(missing)} on file (per the roster)" if missing else None


def _ecps_not_activated(situation: Situation) -> str | None:
    return None if situation.professional.ecps_activated else "e-CPS not activated (per the roster)"


def _ready(situation: Situation) -> str:
    card, thresholds = situation.facts.card, situation.thresholds
    working = [
        h for h in situation.facts.hosts if h.readers and not _cryptolib_fault(h, thresholds)
    ]
    parts = []
    if card is not None and card.expires is not None:
        parts.append(f"{_card_name(card)} valid until {_day(card.expires)}")
    if working:
        parts.append(f"reader and Cryptolib CPS on {_host_names(working)}")
    return "; ".join(parts) or "nothing left to do"


def _card_name(card: CardSighting) -> str:
    return f"card {card.serial}" if card.serial else "their card"


def _day(moment: datetime) -> str:
    return format_utc(moment)[:10]


def _host_name(host: HostView) -> str:
    return host.hostname or host.id


def _host_names(hosts: Sequence[HostView]) -> str:
    return ", ".join(_host_name(host) for host in hosts)


def _same(text: str) -> dict[Kind, str]:
    return dict.fromkeys(KINDS, text)


READY_STEP = "none: ready for SI-DEP and the services behind Pro Santé Connect"
SEEN_ELSEWHERE = "; if they hold a valid card, insert it in a reader of a monitored workstation"

# The seed's activation flowchart, in the order its questions are asked: first match wins.
DECISIONS: tuple[Decision, ...] = (
    Decision(
        "no_card",
        _no_card,
        {
            "doctor": "ask the Ordre des médecins for a CPS card" + SEEN_ELSEWHERE,
            "nurse": "fill form 201 (demande de carte CPS) on the Ordre national des "
            "infirmiers' site" + SEEN_ELSEWHERE,
        },
    ),
    Decision(
        "renew_card",
        _card_outdated,
        {
            "doctor": "renew the CPS card: ask the Ordre des médecins (activation needs a card "
            "updated less than three years ago)",
            "nurse": "renew the CPS card: ask the Ordre national des infirmiers (activation "
            "needs a card updated less than three years ago)",
        },
    ),
    Decision("unblock_pin", _pin_blocked, _same(PIN_NEXT_STEP)),
    Decision(
        "no_reader",
        _no_reader,
        _same(
            "buy a single-slot PC/SC card reader (lecteur monofente, about 10–20 € TTC) for a "
            "workstation of their site"
        ),
    ),
    Decision(
        "install_cryptolib",
        _no_cryptolib,
        _same(
            "install or update Cryptolib CPS (free from the Agence du Numérique en Santé) on a "
            "workstation with a reader, then activate the card with CPS Gestion"
        ),
    ),
    Decision(
        "verify_contacts",
        _contacts_missing,
        {
            "doctor": "check that their private space (espace privé) on the Ordre des médecins' "
            "site has a mobile number and a valid e-mail: e-CPS needs both",
            "nurse": "check that their private space (espace privé) on the Ordre national des "
            "infirmiers' site has a mobile number and a valid e-mail: e-CPS needs both",
        },
    ),
    Decision(
        "activate_ecps",
        _ecps_not_activated,
        _same("activate e-CPS: install the e-CPS app on their smartphone and follow its steps"),
    ),
    Decision("ready", _ready, _same(READY_STEP)),
)


def decide(
    professional: Professional, facts: Facts, now: datetime, thresholds: Thresholds
) -> Readiness:
    """The first row of ``DECISIONS`` that applies: the professional's state and next step."""
    situation = Situation(professional, facts, now, thresholds)
    for decision in DECISIONS:
        detail = decision.applies(situation)
        if detail is not None:
            return Readiness(decision.state, decision.next_step[professional.profession], detail)
    raise AssertionError("the last row of DECISIONS always applies")


def readiness_rows(
    professionals: Iterable[Professional],
    hosts: Sequence[HostView],
    now: datetime,
    thresholds: Thresholds,
    earlier: Iterable[CardSighting] = (),
    key: bytes | None = None,
) -> list[dict[str, Any]]:
    """One row per professional: who, state, next step, detail, and their card as last seen.

    ``earlier`` are the cards remembered from past inventories (see ``remembered``);
    ``key`` the pseudonym key when agents pseudonymise.
    """
    sightings = merge_sightings(card_sightings(hosts, now, thresholds), earlier)
    rows = []
    for professional in professionals:
        facts = facts_for(professional, sightings, hosts, key)
        rows.append(_row(professional, facts, decide(professional, facts, now, thresholds)))
    return rows


def _row(professional: Professional, facts: Facts, readiness: Readiness) -> dict[str, Any]:
    card = facts.card
    return {
        "surname": professional.surname,
        "given_name": professional.given_name,
        "profession": professional.profession,
        "id_nat": professional.id_nat,
        "site": professional.site,
        "state": readiness.state,
        "next_step": readiness.next_step,
        "detail": readiness.detail,
        "card_serial": card.serial if card else None,
        "card_expires": _day(card.expires) if card and card.expires else None,
        "card_updated": _day(card.updated) if card and card.updated else None,
        "card_present": card.present if card else None,
        "last_seen_host": card.host if card else None,
        "last_seen_at": _stamp(card.seen_at) if card and card.seen_at else None,
    }


def _stamp(moment: datetime) -> str:
    return format_utc(moment)


# --- the expiry forecast ------------------------------------------------------------------


def forecast(
    cards: Iterable[CardSighting], now: datetime, months: int = 12
) -> list[dict[str, Any]]:
    """How many cards expire in each of ``months`` months from ``now``'s month, per site.

    One row per site of the cards given and month ("YYYY-MM", UTC), zero-filled;
    cards already expired at ``now``, or without a date, count nowhere.
    """
    window = _months(now, months)
    sites: set[str | None] = set()
    counts: Counter[tuple[str | None, str]] = Counter()
    for card in cards:
        sites.add(card.site)
        if card.expires is not None and card.expires > now:
            counts[card.site, format_utc(card.expires)[:7]] += 1
    ordered = sorted(sites, key=lambda site: (site is None, site or ""))
    return [
        {"site": site, "month": month, "cards": counts[site, month]}
        for site in ordered
        for month in window
    ]


def _months(now: datetime, count: int) -> list[str]:
    start = now.astimezone(UTC)
    steps = (divmod(start.month - 1 + offset, 12) for offset in range(count))
    return [f"{start.year + years:04d}-{month + 1:02d}" for years, month in steps]
