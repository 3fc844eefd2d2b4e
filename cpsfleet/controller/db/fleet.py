"""The fleet's tables as the readers beside the store see them: what the periodic evaluation,
``/metrics``, the exports, the dashboard's lists and ``rescan`` ask of them.

Plain functions over an open ``Database`` (``Store.database``); each returns rows or plain
values and writes nothing. The store (``cpsfleet.controller.db.store``) keeps the writes and
the views the rules read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cpsfleet.controller.db.connect import Database

Row = tuple[Any, ...]

# Per CPS card in a reader, then per card remembered out of its reader and not superseded:
# its host, the earliest notAfter and the latest notBefore, and for a remembered card when it
# was last seen.
DUE_CARDS_SQL = """
select cards.host_id, min(c.not_after) as expires, max(c.not_before) as updated,
  null as last_seen
from cards join certificates c on c.host_id = cards.host_id and c.reader = cards.reader
where cards.is_cps = 1
group by cards.host_id, cards.reader
union all
select s.host_id, s.not_after, s.not_before, s.last_seen from card_sightings s
where s.superseded_by is null
  and not exists (select 1 from cards c where c.host_id = s.host_id and c.serial = s.serial)
"""
DUE_HOSTS_SQL = "select id, last_status_at, first_seen, scan_interval_s, presence from hosts"

# A host the controller has seen: it reported, or an alert (kept after the host) names it.
KNOWN_HOST_SQL = """
select exists(select 1 from hosts where id = :host)
  or exists(select 1 from alerts where host_id = :host)
"""
# A card or reader named by an alert or an open finding of the rule and host (null: any).
SUBJECT_NAMED_SQL = """
select exists(select 1 from alerts where subject = :subject
    and (:rule is null or rule = :rule) and (:host is null or host_id = :host))
  or exists(select 1 from findings where subject = :subject
    and (:rule is null or rule = :rule) and (:host is null or host_id = :host))
"""

# Offline as the rules see it (and the dashboard shows it): the agent said so, its Last Will
# did, or it has been silent too long; each makes an open agent_offline finding.
HOSTS_SQL = """
select coalesce(site, '') as site,
  case
    when exists (select 1 from findings f where f.host_id = hosts.id and f.rule = 'agent_offline')
      then 'offline'
    when presence in ('online', 'offline') then presence
    else 'unknown'
  end as presence,
  count(*) as hosts
from hosts
group by 1, 2
"""
READERS_SQL = """
select coalesce(hosts.site, '') as site, count(readers.name) as readers
from hosts left join readers on readers.host_id = hosts.id
group by 1
"""
CARDS_SQL = """
select coalesce(hosts.site, '') as site, cards.kind, count(*) as cards
from cards join hosts on hosts.id = cards.host_id
group by 1, 2
"""
# The whole days left of each CPS card's earliest certificate, -1 once expired (a certificate
# is valid through its not_after). :now is in seconds rounded up, which makes the integer
# difference with the whole-second not_after the floor of the exact one.
EXPIRY_SQL = """
select case when seconds_left < 0 then -1 else seconds_left / 86400 end as days,
  count(*) as cards
from (
  select min(cast(strftime('%s', c.not_after) as integer)) - :now as seconds_left
  from cards
  left join certificates c on c.host_id = cards.host_id and c.reader = cards.reader
  where cards.is_cps = 1
  group by cards.host_id, cards.reader
) as per_card
group by 1
"""
FINDINGS_SQL = "select rule, severity, count(*) as findings from findings group by 1, 2"
COUNTERS_SQL = "select name, value from counters"
CHANNELS_FAILING_SQL = "select count(*) from channels where failures > 0"

# Each card in a reader now: its holder from its first certificate naming one, its expiry
# from its earliest notAfter (ISO 8601 UTC text sorts as time does), where it is. Correlated
# subqueries on the certificates' (host_id, reader) index: a window over every certificate
# took twice as long for 60,000 cards.
CURRENT_CARDS_SQL = """
select cards.serial, cards.kind, h.surname, h.given_name, h.id_nat, h.profession,
  (select min(e.not_after) from certificates e
   where e.host_id = cards.host_id and e.reader = cards.reader) as expires,
  cards.pin_tries_left, cards.pin_tries_max,
  cards.host_id, coalesce(hosts.hostname, hosts.id) as host, hosts.site, cards.reader,
  hosts.last_status_at
from cards
join hosts on hosts.id = cards.host_id
left join certificates h on h.id = (
  select c.id from certificates c
  where c.host_id = cards.host_id and c.reader = cards.reader
    and (c.surname is not null or c.id_nat is not null)
  order by c.position limit 1
)
"""

# Per card in a reader and certificate role: the earliest notAfter and the latest notBefore,
# in seconds since the epoch (null when unreadable).
CARD_DATES_SQL = """
select host_id, reader, role, min(cast(strftime('%s', not_after) as integer)),
  max(cast(strftime('%s', not_before) as integer))
from certificates where role in ('authentication', 'signature')
group by 1, 2, 3
"""
# Each host with its presence as HOSTS_SQL counts it, its PC/SC, Cryptolib and readers.
HOST_STATES_SQL = """
select id as host_id, coalesce(hostname, id) as host, coalesce(site, '') as site,
  case
    when exists (select 1 from findings f where f.host_id = hosts.id and f.rule = 'agent_offline')
      then 'offline'
    when presence in ('online', 'offline') then presence
    else 'unknown'
  end as presence,
  pcsc_available, cryptolib_installed, cryptolib_version,
  (select count(*) from readers r where r.host_id = hosts.id) as readers
from hosts
"""

SITES_SQL = "select distinct site from hosts where site is not null"
OFFLINE_SQL = "select host_id from findings where rule = 'agent_offline'"
LAST_STATUS_SQL = "select coalesce(max(id), 0) from status_history where host_id = ?"
# Only rows stored since the command was sent can answer it: the search stays short.
ANSWER_SQL = (
    "select exists (select 1 from status_history, json_each(document, '$.answers') "
    "where host_id = ? and status_history.id > ? and json_each.value = ?)"
)


def card_dates(db: Database) -> list[Row]:
    """Each CPS card in a reader, then each remembered: (host_id, earliest notAfter, latest
    notBefore, last seen or None), as text."""
    return db.execute(DUE_CARDS_SQL).fetchall()


def host_clocks(db: Database) -> list[Row]:
    """Each host: (id, last_status_at, first_seen, scan_interval_s, presence)."""
    return db.execute(DUE_HOSTS_SQL).fetchall()


@dataclass(frozen=True)
class Counts:
    """The fleet counted for ``/metrics``: each list holds rows of label values, then a count."""

    hosts: list[Row] = field(default_factory=list)  # (site, presence, hosts)
    readers: list[Row] = field(default_factory=list)  # (site, readers)
    cards: list[Row] = field(default_factory=list)  # (site, kind, cards)
    expiry: list[Row] = field(default_factory=list)  # (whole days left or -1, cards)
    findings: list[Row] = field(default_factory=list)  # (rule, severity, findings)
    counters: dict[str, int] = field(default_factory=dict)
    channels_failing: int = 0
    cards_now: list[dict[str, Any]] = field(default_factory=list)  # current_cards' rows
    card_dates: list[Row] = field(default_factory=list)  # CARD_DATES_SQL's rows
    host_states: list[dict[str, Any]] = field(default_factory=list)  # HOST_STATES_SQL's rows


def counts(db: Database, now_s: int) -> Counts:
    """The fleet counted at ``now_s`` (seconds since the epoch, rounded up), from one snapshot."""
    with db.atomic():
        return Counts(
            hosts=db.execute(HOSTS_SQL).fetchall(),
            readers=db.execute(READERS_SQL).fetchall(),
            cards=db.execute(CARDS_SQL).fetchall(),
            expiry=db.execute(EXPIRY_SQL, {"now": now_s}).fetchall(),
            findings=db.execute(FINDINGS_SQL).fetchall(),
            counters=dict(db.execute(COUNTERS_SQL).fetchall()),
            channels_failing=db.execute(CHANNELS_FAILING_SQL).fetchone()[0],
            cards_now=current_cards(db),
            card_dates=db.execute(CARD_DATES_SQL).fetchall(),
            host_states=list(db.query(HOST_STATES_SQL)),
        )


def current_cards(db: Database) -> list[dict[str, Any]]:
    """Each card in a reader now, with its holder, its expiry and where it is."""
    return list(db.query(CURRENT_CARDS_SQL))


def sites(db: Database) -> list[str]:
    """Every site a host reported, unsorted."""
    return [str(row[0]) for row in db.execute(SITES_SQL).fetchall()]


def offline_hosts(db: Database) -> set[str]:
    """The hosts with an open agent_offline finding."""
    return {row[0] for row in db.execute(OFFLINE_SQL).fetchall()}


def host_row(db: Database, host_id: str) -> dict[str, Any] | None:
    """The ``hosts`` row of ``host_id``, as stored."""
    rows = list(db.query("select * from hosts where id = ?", [host_id]))
    return rows[0] if rows else None


def last_status_id(db: Database, host_id: str) -> int:
    """The id of the last status stored for ``host_id`` in the history, 0 if none."""
    (last,) = db.execute(LAST_STATUS_SQL, [host_id]).fetchone()
    return int(last)


def has_answered(db: Database, host_id: str, after_id: int, command_id: str) -> bool:
    """Whether a status of ``host_id`` stored after ``after_id`` answers ``command_id``."""
    (found,) = db.execute(ANSWER_SQL, [host_id, after_id, command_id]).fetchone()
    return bool(found)


def known_host(db: Database, host_id: str) -> bool:
    """Whether the controller has seen ``host_id``: it reported, or an alert names it."""
    (found,) = db.execute(KNOWN_HOST_SQL, {"host": host_id}).fetchone()
    return bool(found)


def subject_named(db: Database, subject: str, rule: str | None, host_id: str | None) -> bool:
    """Whether an alert or an open finding of ``rule`` on ``host_id`` (None: any) is about
    the card or reader ``subject``."""
    params = {"subject": subject, "rule": rule, "host": host_id}
    (found,) = db.execute(SUBJECT_NAMED_SQL, params).fetchone()
    return bool(found)
