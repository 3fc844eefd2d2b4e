"""Where each CPS card was last seen, and the fleet's card expiry forecast.

Pure functions over what the hosts last reported (``HostView``). A card is "seen"
when it is in some host's last reported inventory; it is "present" when that host
is not offline (``rules.agent_offline``), so a card left in a switched-off
workstation is seen but not present.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cpsfleet.controller.model import CardView, HostView
from cpsfleet.controller.rules.findings import Thresholds, _expiry, _last_update, agent_offline
from cpsfleet.schemas.times import format_utc

EARLIEST = datetime.min.replace(tzinfo=UTC)


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


# --- gathering them -----------------------------------------------------------------------


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


def merge_sightings(
    current: Iterable[CardSighting], earlier: Iterable[CardSighting]
) -> list[CardSighting]:
    """The hosts' inventories win; a card no inventory holds now is kept from memory."""
    now_seen = list(current)
    serials = {sighting.serial for sighting in now_seen if sighting.serial}
    return [*now_seen, *(s for s in earlier if s.serial not in serials)]


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
