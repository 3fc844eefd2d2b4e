"""What the dashboard shows, as plain rows: each page's data, filtered, for HTML and JSON alike.

Every function reads an open ``Store`` and returns dicts and lists of plain values
(times as aware datetimes); ``cpsfleet.controller.web.app`` renders them as pages or as
``/api/v1`` JSON, and the ``cpsfleet controller`` listings print them. ``Filters``
(``cpsfleet.controller.filters``) narrows every listing the same way: by site (any case,
accents and spacing), by severity, by host, and by a text that must appear in one of the
row's values (any case, any accents).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from cpsfleet.controller.alerts.book import AlertBook
from cpsfleet.controller.db import fleet
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.filters import Filters, fold
from cpsfleet.controller.model import SEVERITIES
from cpsfleet.controller.rules.findings import Thresholds
from cpsfleet.controller.rules.readiness import State
from cpsfleet.controller.web import exports
from cpsfleet.schemas.times import days_left, format_utc

Row = dict[str, Any]
HOST_STATES = ("online", "offline", "unknown")
# The readiness states that keep a professional from logging in at all, and the steps left
# (ready and ready_ecps are neither: e-CPS is advised, never required).
BLOCKING: frozenset[State] = frozenset(
    {
        "no_card",
        "renew_card",
        "unblock_pin",
        "no_reader",
        "install_cryptolib",
        "install_cps_gestion",
    }
)
PENDING: frozenset[State] = frozenset({"renew_soon"})
EXPIRY_MONTHS = 12
EVENTS_SHOWN = 50
# A blocked PIN is critical, its last try a warning, as the rules pin_blocked and pin_last_try.
PIN_SEVERITY = {0: "critical", 1: "warning"}


# --- the fleet -----------------------------------------------------------------------------


def sites(store: Store, scope: frozenset[str] | None = None) -> list[str]:
    """Every site a host reported (those of ``scope`` when given), for the filter's list."""
    known = fleet.sites(store.database)
    return sorted((s for s in known if scope is None or fold(s) in scope), key=fold)


def host_state(offline: bool, presence: str | None) -> str:
    """online, offline, or unknown (no presence yet). ``offline`` is whether the host has an
    open agent_offline finding (its will, a clean stop, or silent too long): every page and
    /metrics take the state the rules last saw, so they agree with the findings they show."""
    return "offline" if offline else presence or "unknown"


def hosts(store: Store, filters: Filters) -> list[Row]:
    """The hosts listing, with their state; ``severity`` keeps hosts with such a finding open."""
    offline = fleet.offline_hosts(store.database)
    rows = []
    for row in exports.hosts(store):
        listed = {**row, "state": host_state(row["id"] in offline, row["presence"])}
        if filters.severity is not None and not row[filters.severity]:
            continue
        if replace(filters, severity=None).keeps(listed):
            rows.append(listed)
    return rows


def overview(
    store: Store, now: datetime, thresholds: Thresholds, filters: Filters
) -> dict[str, Any]:
    """Counts for the hosts the filters keep: by state, readers, cards, findings; per site."""
    rows = hosts(store, filters)
    per_site: dict[str | None, Counter[str]] = {}
    for row in rows:
        counts = per_site.setdefault(row["site"], Counter())
        counts.update({"hosts": 1, row["state"]: 1})
        counts.update({name: row[name] for name in ("readers", "cards", *SEVERITIES)})
    total: Counter[str] = sum(per_site.values(), Counter())
    ordered = sorted(per_site, key=lambda site: (site is None, fold(site or "")))
    names = ("hosts", *HOST_STATES, "readers", "cards", *SEVERITIES)
    return {
        "hosts": {name: total[name] for name in ("hosts", *HOST_STATES)},
        "readers": total["readers"],
        "cards": total["cards"],
        "findings": {severity: total[severity] for severity in SEVERITIES},
        "sites": [{"site": site, **{n: per_site[site][n] for n in names}} for site in ordered],
        "expiry": expiry(store, now, thresholds, replace(filters, severity=None)),
    }


# --- readers ---------------------------------------------------------------------------------

READERS_SQL = """
select readers.host_id, hosts.hostname, hosts.site, readers.name, readers.state,
  usb_vendor_id, usb_product_id, manufacturer, product, driver_version
from readers join hosts on hosts.id = readers.host_id
"""
MODEL_KEYS = ("usb_vendor_id", "usb_product_id", "manufacturer", "product")


def reader_models(store: Store, filters: Filters) -> list[Row]:
    """The readers the filters keep, grouped by model (USB ids, manufacturer, product): how
    many readers, on how many hosts, at which sites, with which CCID driver versions, and how
    many hold a card. Readers whose model is not reported (virtual readers, systems that do
    not expose it, older agents) make one group whose model parts are all null; the most
    used models come first."""
    groups: dict[tuple[str | None, ...], dict[str, Any]] = {}
    for values in store.database.execute(READERS_SQL).fetchall():
        host_id, hostname, site, name, state, *model, driver = values
        reader = {"id": host_id, "hostname": hostname, "site": site, "name": name}
        reader |= dict(zip(MODEL_KEYS, model, strict=True)) | {"driver_version": driver}
        if not replace(filters, severity=None).keeps(reader):
            continue
        group = groups.setdefault(
            tuple(model),
            {"readers": 0, "with_card": 0, "hosts": set(), "sites": set(), "drivers": set()},
        )
        group["readers"] += 1
        group["with_card"] += state == "card_present"
        group["hosts"].add(host_id)
        group["sites"] |= {site} if site is not None else set()
        group["drivers"] |= {driver} if driver else set()
    rows = [
        dict(zip(MODEL_KEYS, model, strict=True))
        | {
            "known": any(part is not None for part in model),
            "readers": group["readers"],
            "with_card": group["with_card"],
            "hosts": len(group["hosts"]),
            "sites": sorted(group["sites"], key=fold),
            "driver_versions": sorted(group["drivers"]),
        }
        for model, group in groups.items()
    ]
    return sorted(rows, key=lambda row: (not row["known"], -row["readers"], _model_name(row)))


def _model_name(row: Row) -> str:
    return " ".join(str(row[key] or "") for key in MODEL_KEYS)


# --- cards -----------------------------------------------------------------------------------


def card_severity(days_left: int | None, thresholds: Thresholds) -> str | None:
    """critical when expired or within the critical days, warning within the warning days."""
    if days_left is None:
        return None
    if days_left <= thresholds.expiring_critical_days:
        return "critical"
    if days_left <= thresholds.expiring_warning_days:
        return "warning"
    return None


def pin_severity(tries_left: int | None) -> str | None:
    return None if tries_left is None else PIN_SEVERITY.get(tries_left)


def _worst(*severities: str | None) -> str | None:
    return min((s for s in severities if s), key=SEVERITIES.index, default=None)


def cards(
    store: Store,
    now: datetime,
    thresholds: Thresholds,
    filters: Filters,
    every: bool = False,
    present: bool = False,
) -> list[Row]:
    """The cards the fleet watches (as ``export cards``: in a reader or not), with the
    severity of its expiry or of its PIN's tries, whichever is worse (``pin_severity`` for
    the PIN alone); ``every``: the superseded and retired ones too; ``present``: only those
    in a reader now."""
    rows = []
    for row in exports.cards(store, now, thresholds):
        if (row["status"] != "active" and not every) or (present and not row["in_reader"]):
            continue
        watched = row["status"] == "active"  # a superseded or retired card worries nobody
        pin = pin_severity(row["pin_tries_left"]) if watched else None
        expiry_severity = card_severity(row["days_left"], thresholds) if watched else None
        listed = {**row, "severity": _worst(expiry_severity, pin), "pin_severity": pin}
        if filters.keeps(listed):
            rows.append(listed)
    return rows


def expiry(store: Store, now: datetime, thresholds: Thresholds, filters: Filters) -> dict[str, Any]:
    """CPS cards by month of expiry over the next 12 months; those expired, later, undated."""
    window = _months(now, EXPIRY_MONTHS)
    counts: Counter[str] = Counter()
    for row in cards(store, now, thresholds, filters):
        expires: datetime | None = row["expires"]
        if expires is None and row["id_nat"] is None:
            continue  # not a CPS card (a Vitale card has no certificate)
        if expires is None:
            counts["unknown"] += 1
        elif expires <= now:
            counts["expired"] += 1
        else:
            month = format_utc(expires)[:7]
            counts[month if month in window else "later"] += 1
    return {
        "months": [{"month": month, "cards": counts[month]} for month in window],
        **{name: counts[name] for name in ("expired", "later", "unknown")},
    }


def _months(now: datetime, count: int) -> list[str]:
    start = now.astimezone(UTC)
    steps = (divmod(start.month - 1 + offset, 12) for offset in range(count))
    return [f"{start.year + years:04d}-{month + 1:02d}" for years, month in steps]


# --- one host ---------------------------------------------------------------------------------


def host(store: Store, host_id: str, now: datetime, thresholds: Thresholds) -> Row | None:
    """Everything about one host: facts, Cryptolib, readers and cards, findings, alerts, events."""
    view = store.host_view(host_id)
    if view is None:
        return None
    raw = fleet.host_row(store.database, host_id)
    if raw is None:  # removed between the two reads
        return None
    cards_by_reader = {card.reader: card for card in view.cards}
    return {
        "id": view.id,
        "hostname": view.hostname,
        "site": view.site,
        "state": host_state(store.has_finding(host_id, "agent_offline"), view.presence),
        **{name: raw[name] for name in ("os", "os_version", "agent_version")},
        "first_seen": view.first_seen,
        "last_seen": view.last_seen,
        "last_status_at": view.last_status_at,
        "presence": view.presence,
        "presence_at": view.presence_at,
        "scan_interval_s": view.scan_interval_s,
        "pcsc": {"available": view.pcsc_available, "error": view.pcsc_error},
        "cryptolib": json.loads(raw["cryptolib_json"]) if raw["cryptolib_json"] else None,
        "problems": [asdict(problem) for problem in view.problems],
        "readers": [
            {
                "name": reader.name,
                "state": reader.state,
                "problems": [asdict(problem) for problem in reader.problems],
                "model": asdict(reader.model) if reader.model is not None else None,
                "card": _card(cards_by_reader.get(reader.name), now, thresholds),
            }
            for reader in view.readers
        ],
        "findings": [asdict(finding) for finding in store.findings(host_id=host_id)],
        "alerts": [asdict(alert) for alert in AlertBook(store.database).alerts(host_id=host_id)],
        "events": store.events(host_id, EVENTS_SHOWN),
    }


def _card(card: Any, now: datetime, thresholds: Thresholds) -> Row | None:
    if card is None:
        return None
    certificates = []
    for certificate in card.certificates:
        days = days_left(certificate.not_after, now, thresholds.zone)
        certificates.append(
            {**asdict(certificate), "days_left": days, "severity": card_severity(days, thresholds)}
        )
    pin = None
    if card.pin is not None:
        pin = {**asdict(card.pin), "severity": pin_severity(card.pin.tries_left)}
    return {
        **{name: getattr(card, name) for name in ("atr", "kind", "kind_label", "is_cps", "serial")},
        "certificates": certificates,
        "problems": [asdict(problem) for problem in card.problems],
        "pin": pin,
    }


# --- findings, alerts, readiness ---------------------------------------------------------------


def findings(store: Store, filters: Filters) -> list[Row]:
    """Open findings, most severe first, then by host and rule."""
    rows = [asdict(finding) for finding in store.findings(filters.severity, host_id=filters.host)]
    return [row for row in rows if filters.keeps(row)]


def alerts(store: Store, filters: Filters, state: str | None = None) -> list[Row]:
    """Firing alerts first, then resolved ones, as ``AlertBook.alerts`` orders them; ``state``
    keeps the firing or the resolved ones."""
    book = AlertBook(store.database)
    rows = [asdict(alert) for alert in book.alerts(state, host_id=filters.host)]
    return [row for row in rows if filters.keeps(row)]


def silences(store: Store, now: datetime, filters: Filters | None = None) -> list[Row]:
    """The silences in force now; with ``filters``, those of a host its site and host
    filters and its scope keep, and those of no host (a rule's, everywhere)."""
    rows = [asdict(silence) for silence in AlertBook(store.database).silences(now)]
    if filters is None:
        return rows
    site_of = {host["id"]: host["site"] for host in store.hosts()}
    return [
        row
        for row in rows
        if row["host_id"] is None
        or (filters.site_matches(site_of.get(row["host_id"])) and filters.host_matches(row))
    ]


def readiness_severity(state: str) -> str | None:
    """critical: the professional cannot log in; warning: a step is left; None when ready."""
    if state in BLOCKING:
        return "critical"
    return "warning" if state in PENDING else None


def readiness(
    store: Store, now: datetime, thresholds: Thresholds, key: bytes | None, filters: Filters
) -> list[Row]:
    """Each professional of the roster with their state and next step (as ``readiness``)."""
    rows = []
    for row in exports.readiness(store, now, thresholds, key):
        listed = {**row, "severity": readiness_severity(row["state"])}
        if filters.keeps(listed):
            rows.append(listed)
    return rows
