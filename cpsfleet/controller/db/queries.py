"""Reading the controller database: the SQL of the listings, and rows turned into views.

``cpsfleet.controller.db.store`` runs the queries; the functions here only convert what
they return (ISO text to aware datetimes, JSON columns to problem views).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from cpsfleet.controller.model import (
    SEVERITIES,
    CardView,
    CertificateView,
    Finding,
    HostView,
    PinView,
    Presence,
    ProblemView,
    ReaderModel,
    ReaderView,
    Severity,
)
from cpsfleet.schemas import times

Row = dict[str, Any]
PRESENCES: dict[str, Presence] = {"online": "online", "offline": "offline"}
SEVERITY_NAMES: dict[str, Severity] = {severity: severity for severity in SEVERITIES}
FINDING_PK = ("rule", "host_id", "subject")


# The queries of the host views select each view's fields in the view's order, after the
# keys that group them, so that a row becomes its view without a dict: a fleet is many rows.
# {where} is one of a ``Scope``'s conditions.
VIEW_HOSTS_SQL = """
select id, hostname, site, first_seen, last_seen, presence, presence_at, last_status_at,
  scan_interval_s, pcsc_available, pcsc_error, cryptolib_installed, cryptolib_version,
  json_extract(cryptolib_json, '$.problems'), json_extract(cryptolib_json, '$.cps_gestion'),
  problems_json, agent_version
from hosts where {where} order by id
"""
ROSTER_IDS_SQL = "select id_nat from professionals where id_nat is not null"
READERS_SQL = """
select host_id, name, state, problems_json,
  usb_vendor_id, usb_product_id, manufacturer, product, driver_version
from readers where {where}
order by host_id, position
"""
CARDS_SQL = """
select cards.host_id, cards.reader, atr, kind, kind_label, is_cps, serial,
  cards.problems_json, pin_tries_left, pin_tries_max, pin_error
from cards
join readers on readers.host_id = cards.host_id and readers.name = cards.reader
where {where}
order by cards.host_id, readers.position
"""
CERTIFICATES_SQL = """
select host_id, reader, role, label, id_nat, surname, given_name, profession,
  not_before, not_after, error
from certificates where {where}
order by host_id, reader, position
"""
# The CPS cards last seen on the hosts and no longer in their readers.
REMEMBERED_CARDS_SQL = """
select s.host_id, s.reader, s.kind, s.serial, s.certificates_json, s.pin_tries_left,
  s.pin_tries_max, s.last_seen, s.superseded_by, s.superseded_at, s.id_nat, s.not_before,
  s.not_after
from card_sightings s
where {where}
  and not exists (select 1 from cards c where c.host_id = s.host_id and c.serial = s.serial)
order by s.host_id, s.serial
"""
# The cards in the hosts' inventories that another host has seen since, or that a newer card
# of their holder superseded.
ELSEWHERE_SQL = """
select cards.host_id, cards.serial from cards
join card_sightings s on s.serial = cards.serial
where {where} and (s.host_id != cards.host_id or s.superseded_by is not null)
"""


@dataclass(frozen=True)
class Scope:
    """Which hosts' views to read: every host, some hosts, or the hosts whose ids lie
    between two (the chunks of a whole-fleet evaluation: a range the indexes serve, where
    a list of thousands of ids would be looked up one by one)."""

    host_ids: list[str] | None = None
    first: str | None = None
    last: str | None = None

    @classmethod
    def of_hosts(cls, hosts: Iterable[str] | None) -> Scope:
        """Every host (None), or those of ``hosts``."""
        return cls(None if hosts is None else sorted(hosts))

    def condition(self, column: str) -> tuple[str, Row]:
        """The SQL condition that keeps this scope's hosts by ``column``, and its parameters."""
        if self.first is not None and self.last is not None:
            return f"{column} between :first and :last", {"first": self.first, "last": self.last}
        if self.host_ids is None:
            return "1 = 1", {}
        where = f"{column} in (select value from json_each(:hosts))"
        return where, {"hosts": json.dumps(self.host_ids)}

    def query(self, sql: str, column: str) -> tuple[str, Row]:
        """``sql`` with its {where} kept to this scope's hosts by ``column``, and parameters."""
        where, params = self.condition(column)
        return sql.format(where=where), params


HOSTS_SQL = """
select hosts.id, hosts.hostname, hosts.site, hosts.presence, hosts.last_seen,
  hosts.last_status_at,
  (select count(*) from readers where readers.host_id = hosts.id) as readers,
  (select count(*) from cards where cards.host_id = hosts.id) as cards,
  hosts.cryptolib_version, hosts.pcsc_available,
  (select count(*) from findings f where f.host_id = hosts.id and f.severity = 'critical')
    as critical,
  (select count(*) from findings f where f.host_id = hosts.id and f.severity = 'warning')
    as warning,
  (select count(*) from findings f where f.host_id = hosts.id and f.severity = 'info') as info
from hosts
order by hosts.site is null, hosts.site, hosts.hostname, hosts.id
"""
FINDINGS_SQL = """
select findings.*, hosts.site from findings join hosts on hosts.id = findings.host_id
where (:severity is null or findings.severity = :severity)
  and (:host_id is null or findings.host_id = :host_id)
order by case findings.severity when 'critical' then 0 when 'warning' then 1 else 2 end,
  findings.host_id, findings.rule, findings.subject
"""
EVENTS_SQL = """
select events.id, events.host_id, hosts.hostname, events.received_at, events.at,
  events.type, events.reader, events.card_json
from events join hosts on hosts.id = events.host_id
where :host_id is null or events.host_id = :host_id
order by events.received_at desc, events.id desc
limit :limit
"""


@lru_cache(maxsize=100_000)
def time(text: str) -> datetime:
    """A stored time (ISO 8601, UTC); the same texts recur across a fleet, hence the cache.
    A text that is not a real date raises ``cpsfleet.schemas.times.TimeError`` (a ValueError)."""
    return times.parse(text)


def optional_time(text: str | None) -> datetime | None:
    return None if text is None else time(text)


def optional_bool(value: int | str | None) -> bool | None:
    """A JSON boolean as json_extract gives it: 1 or 0 (as text on PostgreSQL)."""
    return None if value is None else bool(int(value))


def problems(text: str | None) -> tuple[ProblemView, ...]:
    if not text or text == "[]":  # nearly always: no need to parse it
        return ()
    return problem_views(json.loads(text))


def problem_views(items: list[Row]) -> tuple[ProblemView, ...]:
    return tuple(ProblemView(item["where"], item["message"]) for item in items)


def certificate_view(row: Sequence[Any]) -> CertificateView:
    role, label, id_nat, surname, given_name, profession, not_before, not_after, error = row
    return CertificateView(
        role=role,
        label=label,
        id_nat=id_nat,
        surname=surname,
        given_name=given_name,
        profession=profession,
        not_before=optional_time(not_before),
        not_after=optional_time(not_after),
        error=error,
    )


def card_view(
    reader: str, row: Sequence[Any], certificates: tuple[CertificateView, ...]
) -> CardView:
    atr, kind, kind_label, is_cps, serial, problems_json, tries_left, tries_max, pin_error = row
    pin = (tries_left, tries_max, pin_error)
    return CardView(
        reader=reader,
        atr=atr,
        kind=kind,
        kind_label=kind_label,
        is_cps=bool(is_cps),
        serial=serial,
        certificates=certificates,
        problems=problems(problems_json),
        pin=None if pin == (None, None, None) else PinView(*pin),
    )


def remembered_card_view(row: Sequence[Any]) -> CardView:
    """A card from a REMEMBERED_CARDS_SQL row (after its host id): as last seen."""
    reader, kind, serial, certificates_json, tries_left, tries_max = row[:6]
    last_seen, superseded_by, superseded_at, id_nat, not_before, not_after = row[6:]
    if certificates_json is None:  # remembered by a controller older than version 13: the
        # dates and idNat it kept stand for the certificates
        stored = [{"role": "authentication", "id_nat": id_nat}]
        stored[0] |= {"not_before": not_before, "not_after": not_after}
    else:
        stored = json.loads(certificates_json)
    certificates = tuple(
        certificate_view([*(c.get(name) for name in REMEMBERED_CERTIFICATE), None]) for c in stored
    )
    return CardView(
        reader=reader or "",
        atr="",
        kind=kind or "unknown",
        kind_label=kind or "unknown",
        is_cps=True,
        serial=serial,
        certificates=certificates,
        pin=None if (tries_left, tries_max) == (None, None) else PinView(tries_left, tries_max),
        last_seen=time(last_seen),
        superseded_by=superseded_by,
        superseded_at=optional_time(superseded_at),
    )


REMEMBERED_CERTIFICATE = (
    *("role", "label", "id_nat", "surname", "given_name", "profession"),
    *("not_before", "not_after"),
)
PIN_COLUMNS = {"pin_tries_left": "tries_left", "pin_tries_max": "tries_max", "pin_error": "error"}


def pin_columns(card: Row) -> Row:
    """The cards table's PIN columns from a status document's card (all null without "pin")."""
    pin = card.get("pin") or {}
    return {column: pin.get(name) for column, name in PIN_COLUMNS.items()}


def reader_view(row: Sequence[Any]) -> ReaderView:
    name, state, problems_json, *model = row
    known = any(part is not None for part in model)
    return ReaderView(
        name=name,
        state=state,
        problems=problems(problems_json),
        model=ReaderModel(*model) if known else None,
    )


def host_view(
    row: Sequence[Any],
    readers: tuple[ReaderView, ...],
    cards: tuple[CardView, ...],
    unreadable: tuple[str, ...] = (),
    remembered: tuple[CardView, ...] = (),
    elsewhere: frozenset[str] = frozenset(),
    roster: frozenset[str] | None = None,
    roster_pseudonyms: bool = False,
) -> HostView:
    """A host from a VIEW_HOSTS_SQL row, with its readers' and cards' views."""
    host_id, hostname, site, first_seen, last_seen, presence, presence_at, last_status_at = row[:8]
    interval, pcsc_available, pcsc_error, installed, version, cryptolib_problems = row[8:14]
    return HostView(
        id=host_id,
        hostname=hostname,
        site=site,
        first_seen=time(first_seen),
        last_seen=time(last_seen),
        presence=PRESENCES.get(presence),
        presence_at=optional_time(presence_at),
        last_status_at=optional_time(last_status_at),
        scan_interval_s=interval,
        pcsc_available=optional_bool(pcsc_available),
        pcsc_error=pcsc_error,
        cryptolib_installed=optional_bool(installed),
        cryptolib_version=version,
        cryptolib_problems=problems(cryptolib_problems),
        cps_gestion=optional_bool(row[14]),
        problems=problems(row[15]),
        readers=readers,
        cards=cards,
        remembered=remembered,
        elsewhere=elsewhere,
        unreadable=unreadable,
        agent_version=row[16],
        roster=roster,
        roster_pseudonyms=roster_pseudonyms,
    )


def finding(row: Row) -> Finding:
    return Finding(
        **pick(row, (*FINDING_PK, "message")),
        severity=SEVERITY_NAMES[row["severity"]],
        since=time(row["since"]),
        site=row.get("site"),
    )


def event_listing(row: Row) -> Row:
    card_json = row.pop("card_json")
    return row | {"card": None if card_json is None else json.loads(card_json)}


def pick(mapping: Row, names: Iterable[str]) -> Row:
    return {name: mapping[name] for name in names}
