"""The fleet's past, day by day, counted from what the controller keeps: the alerts, the
cards it has seen and the roster. ``status_history`` is not read: it is kept ``history_days``
only (30 by default), and its documents are the largest rows of the database.

Each day is a day of the fleet's time zone; the window ends today. For every series, each
row of a table gives one span of time (from, until), turned into SQL into the local day it
starts (+1) and the local day it stops counting (-1); what comes back is one row per series
and day that changes, summed up day by day here. So the cost is one pass over the alerts
and one over the cards seen, whatever the window, and never a loop over documents.

What each series counts, and where that is not the whole truth:

- ``alerts``, by severity: the alerts open at some time of the day (an alert started on
  Monday and resolved on Wednesday counts on Monday, Tuesday and Wednesday). Every finding
  is an alert (all severities are tracked, only the notifying ones are sent), so these are
  the findings open that day. An alert keeps only its latest episode: when one resolved and
  fired again, its earlier episode is no longer counted; and it counts under its latest
  severity and site.
- ``expiring`` and ``expired``: the CPS cards the fleet watched at the end of the day (now,
  for today): from the moment it first saw them until a newer card of their holder
  superseded them or they were ``card_retire_after_days`` unseen. Expiring: within
  ``expiring_warning_days`` of their expiry (the earliest notAfter); expired: past it. By
  the site where each card was last seen.
- ``with_usable_card``: the readiness of the past cannot be rebuilt (the workstations'
  readers, Cryptolib CPS and CPS Gestion, and the PIN's tries, are the hosts' current
  state; only status_history had them, and only for its last days). The nearest honest
  measure is its card part: the professionals of today's roster whose card, as the fleet
  watched it at the end of the day, was not expired, not within ``expiring_critical_days``
  of its expiry and updated less than ``card_update_max_years`` ago. e-CPS, the PIN and
  the workstations are not part of it; the roster is today's for every day, by its sites.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Protocol

from cpsfleet.controller.db.connect import Database
from cpsfleet.controller.model import SEVERITIES
from cpsfleet.schemas.times import format_utc

# How many days a window may have, and has unless asked.
MIN_DAYS, MAX_DAYS, DEFAULT_DAYS = 7, 730, 90
CARD_SERIES = ("expiring", "expired")
READY_SERIES = "with_usable_card"
# A stored time later than any other: "until further notice".
FOREVER = "9999-12-31T23:59:59Z"


class HistoryError(ValueError):
    """A window the history does not count; the message says the range it takes."""


class Thresholds(Protocol):
    """The rules' thresholds that the series count with (``rules.findings.Thresholds``)."""

    @property
    def expiring_warning_days(self) -> int: ...
    @property
    def expiring_critical_days(self) -> int: ...
    @property
    def card_update_max_years(self) -> int: ...
    @property
    def card_retire_after_days(self) -> int: ...


@dataclass(frozen=True)
class Window:
    """The days counted, in the fleet's time zone, the last one today."""

    days: tuple[date, ...]
    start: datetime  # the first day's midnight, UTC
    now: datetime
    # (from, offset in seconds) of the zone within the window, latest first: the UTC offset
    # from each moment on (SQLite has no time zones).
    shifts: tuple[tuple[datetime, int], ...]

    @classmethod
    def ending(cls, now: datetime, zone: tzinfo, days: int = DEFAULT_DAYS) -> Window:
        """The ``days`` days ending with today (``now``'s day in ``zone``)."""
        if not MIN_DAYS <= days <= MAX_DAYS:
            raise HistoryError(
                f"a history of {days} days: from {MIN_DAYS} to {MAX_DAYS} days are counted"
            )
        today = now.astimezone(zone).date()
        listed = tuple(today - timedelta(days=back) for back in range(days - 1, -1, -1))
        start = _midnight(listed[0], zone)
        end = _midnight(today + timedelta(days=1), zone)
        return cls(listed, start, now, tuple(reversed(_shifts(start, end, zone))))


def _midnight(day: date, zone: tzinfo) -> datetime:
    """The first moment of ``day`` in ``zone``, in UTC (a day may start at 01:00 somewhere)."""
    return datetime.combine(day, time(), zone).astimezone(UTC)


def _offset(moment: datetime, zone: tzinfo) -> int:
    shift = moment.astimezone(zone).utcoffset()
    return int(shift.total_seconds()) if shift is not None else 0


def _shifts(start: datetime, end: datetime, zone: tzinfo) -> list[tuple[datetime, int]]:
    """Where the zone's offset changes between ``start`` and ``end``: checked every six
    hours (no zone changes twice so soon), each change found to the second."""
    shifts = [(start, _offset(start, zone))]
    step, moment = timedelta(hours=6), start
    while moment < end:
        later = min(moment + step, end)
        if _offset(later, zone) != shifts[-1][1]:
            changed = _change(moment, later, zone)
            shifts.append((changed, _offset(changed, zone)))
        moment = later
    return shifts


def _change(before: datetime, after: datetime, zone: tzinfo) -> datetime:
    """The first second of ``after``'s offset, after ``before``."""
    offset = _offset(after, zone)
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) / 2
        middle = middle.replace(microsecond=0)
        if _offset(middle, zone) == offset:
            after = middle
        else:
            before = middle
    return after


@dataclass(frozen=True)
class History:
    """Each series' count on each day of ``window.days`` (lists in that order)."""

    window: Window
    alerts: dict[str, list[int]]  # by severity
    cards: dict[str, list[int]]  # expiring, expired
    professionals: int  # in today's roster (of the sites kept)
    with_usable_card: list[int]


@dataclass(frozen=True)
class Sites:
    """Which sites' rows are counted: every row (``every``), else those of ``names``."""

    every: bool = True
    names: tuple[str, ...] = ()


def known_sites(db: Database) -> list[str]:
    """Every site named by a host, an alert, a card seen or the roster."""
    found: set[str] = set()
    for table in ("hosts", "alerts", "card_sightings", "professionals"):
        rows = db.execute(f"select distinct site from {table} where site is not null")
        found.update(str(site) for (site,) in rows.fetchall())
    return sorted(found)


def history(
    db: Database,
    window: Window,
    thresholds: Thresholds,
    sites: Sites,
    aliases: Iterable[tuple[str, str]] = (),
) -> History:
    """The series of ``window`` for the rows of ``sites``, from one snapshot of the database.

    A card's holder is a professional of the roster by its idNat, or by one of ``aliases``,
    (idNat, the name its cards carry): the pseudonyms of the roster's idNats when agents
    pseudonymise."""
    params = _params(window, thresholds, sites) | {"aliases": json.dumps(list(aliases))}
    with db.atomic():
        alerts = db.execute(_sql(ALERTS_SQL, window), params).fetchall()
        cards = db.execute(_sql(CARDS_SQL, window), params).fetchall()
        roster = db.execute(ROSTER_SQL, params).fetchone()[0]
    alert_counts = _accumulate(window, alerts, SEVERITIES)
    card_counts = _accumulate(window, cards, (*CARD_SERIES, READY_SERIES))
    return History(
        window,
        alerts=alert_counts,
        cards={name: card_counts[name] for name in CARD_SERIES},
        professionals=int(roster),
        with_usable_card=card_counts[READY_SERIES],
    )


def _accumulate(
    window: Window, rows: Sequence[tuple[Any, ...]], series: Sequence[str]
) -> dict[str, list[int]]:
    """Each series' running sum of its (series, day, change) rows, on each day of the window
    (the SQL moves the start of a span begun before the window to its first day; a day
    after today is not shown)."""
    changes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for name, day, change in rows:
        changes[name][day] += change
    counts: dict[str, list[int]] = {}
    for name in series:
        running, listed = 0, []
        for day in window.days:
            running += changes[name].get(day.isoformat(), 0)
            listed.append(running)
        counts[name] = listed
    return counts


def _params(window: Window, thresholds: Thresholds, sites: Sites) -> dict[str, Any]:
    params: dict[str, Any] = {
        "first_day": window.days[0].isoformat(),
        "start": format_utc(window.start),
        "now": format_utc(window.now),
        "forever": FOREVER,
        "every_site": int(sites.every),
        "sites": json.dumps(list(sites.names)),
        "warning": f"-{thresholds.expiring_warning_days} days",
        "critical": f"-{thresholds.expiring_critical_days} days",
        "updated": f"+{thresholds.card_update_max_years} years",
        "retired": f"+{thresholds.card_retire_after_days} days",
    }
    for index, (since, offset) in enumerate(window.shifts):
        params[f"shift{index}"] = format_utc(since)
        params[f"offset{index}"] = f"{offset:+d} seconds"
    return params


def _sql(template: str, window: Window) -> str:
    """``template`` with each {day(column)} as the local day of that column's time."""

    def local(column: str) -> str:
        *later, earliest = range(len(window.shifts))
        if not later:
            return f"date({column}, :offset{earliest})"
        branches = " ".join(f"when {column} >= :shift{i} then :offset{i}" for i in later)
        return f"date({column}, case {branches} else :offset{earliest} end)"

    return template.format(start_day=local("since"), stop_day=local("until"), site_kept=SITE_KEPT)


SITE_KEPT = "(:every_site = 1 or site in (select value from json_each(:sites)))"

# Open at some time of the day: from the day it started (the window's first, if earlier)
# through the day it resolved.
ALERTS_SQL = """
with spans as (
  select severity, started_at as since, resolved_at as until from alerts
  where {site_kept} and started_at <= :now and (resolved_at is null or resolved_at >= :start)
)
select series, day, sum(change) from (
  select severity as series, max({start_day}, :first_day) as day, 1 as change from spans
  union all
  select severity, date({stop_day}, '+1 day'), -1 from spans
  where until is not null and until <= :now
) as changes
group by 1, 2
"""

# At the end of the day (now, for today): counted from ``since`` (that day's end on) until
# ``until`` (from that day on, not counted). ``watched`` is each card seen, from when it was
# first seen until it was superseded or retired.
CARDS_SQL = """
with watched as (
  select *, case
      when superseded_at is not null and (retired is null or superseded_at < retired)
        then superseded_at
      else coalesce(retired, :forever)
    end as watched_until
  from (
    select site, id_nat, first_seen, superseded_at, not_before, not_after,
      strftime('%Y-%m-%dT%H:%M:%SZ', last_seen, :retired) as retired
    from card_sightings
  ) as sighted
), spans as (
  select 'expired' as series, max(first_seen, not_after) as since, watched_until as until
  from watched where {site_kept}
  union all
  select 'expiring',
    max(first_seen, strftime('%Y-%m-%dT%H:%M:%SZ', not_after, :warning)),
    min(not_after, watched_until)
  from watched where {site_kept}
  union all
  select 'with_usable_card', w.first_seen, min(
      w.watched_until,
      coalesce(strftime('%Y-%m-%dT%H:%M:%SZ', w.not_after, :critical),
        :forever),
      coalesce(strftime('%Y-%m-%dT%H:%M:%SZ', w.not_before, :updated), :forever))
  from professionals p
  join (
    select id_nat, id_nat as alias from professionals where id_nat is not null
    union
    select json_extract(value, '$[0]'), json_extract(value, '$[1]') from json_each(:aliases)
  ) names on names.id_nat = p.id_nat
  join watched w on w.id_nat = names.alias
  where (:every_site = 1 or p.site in (select value from json_each(:sites)))
), kept as (
  select * from spans
  where since is not null and until is not null and since < until and since <= :now
    and until > :start
)
select series, day, sum(change) from (
  select series, max({start_day}, :first_day) as day, 1 as change from kept
  union all
  select series, {stop_day}, -1 from kept where until <= :now
) as changes
group by 1, 2
"""
ROSTER_SQL = f"select count(*) from professionals where {SITE_KEPT}"
