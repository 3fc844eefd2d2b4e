"""Which hosts the clock alone may have changed the findings of, between two evaluations.

Every message that changes a host evaluates that host at once (``cpsfleet.controller.service``).
What else changes a finding is time passing: a certificate expiring or entering its last
60 or 14 days (and its "N days left", which changes once a day), a card's last update
turning three years old, an agent silent for longer than it may be, working hours starting
or ending, a card unseen for ``card_unseen_days`` or ``card_retire_after_days``.
``hosts_due`` finds the hosts where one of these happened between ``since`` and ``now``,
from a few columns of the whole fleet, without building its views; the periodic evaluation
then runs the rules over those hosts only. It returns None when every host must be evaluated
(working hours started or ended: each CPS card in a reader is concerned).

The conditions mirror ``rules.findings``; tests/test_due.py checks that evaluating the
hosts due gives the findings a full evaluation gives.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, tzinfo

from cpsfleet.controller.db import fleet
from cpsfleet.controller.db.queries import optional_time, time
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.rules.findings import Thresholds
from cpsfleet.schemas.times import add_years, days_left, shifted

DAY = timedelta(days=1)


def hosts_due(
    store: Store, since: datetime, now: datetime, thresholds: Thresholds
) -> set[str] | None:
    """The hosts whose findings may differ at ``now`` from those evaluated at ``since``."""
    hours = thresholds.hours()
    if hours.contains(since) != hours.contains(now) or now - since >= DAY:
        return None
    due = {
        host_id
        for host_id, expires, updated, last_seen in fleet.card_dates(store.database)
        if _stored_card_due(expires, updated, last_seen, since, now, thresholds)
    }
    due.update(_silent(fleet.host_clocks(store.database), since, now, thresholds))
    return due


def _stored_card_due(
    expires: str | None,
    updated: str | None,
    last_seen: str | None,
    since: datetime,
    now: datetime,
    thresholds: Thresholds,
) -> bool:
    try:
        if last_seen is not None:
            age = timedelta(days=thresholds.card_retire_after_days)
            retires = shifted(time(last_seen), age)  # year 9999 holds
            if since < retires <= now:  # the card retires: its findings end
                return True
            unseen = shifted(time(last_seen), timedelta(days=thresholds.card_unseen_days))
            if since < unseen <= now:  # card_unseen starts
                return True
        return _card_due(optional_time(expires), optional_time(updated), since, now, thresholds)
    except ValueError:  # a date an older controller stored: its evaluation says so
        return True


def _card_due(
    expires: datetime | None,
    updated: datetime | None,
    since: datetime,
    now: datetime,
    thresholds: Thresholds,
) -> bool:
    if expires is not None:
        if since < expires <= now:  # card_expired starts
            return True
        zone = thresholds.zone
        before, after = _days_left(expires, since, zone), _days_left(expires, now, zone)
        if (
            before is not None
            and after is not None
            and before != after
            and min(before, after) <= thresholds.expiring_warning_days
        ):
            return True  # card_expiring: its severity or its days left
    if updated is not None:
        anniversary = add_years(updated, thresholds.card_update_max_years)
        if since < anniversary <= now:  # card_not_updated starts
            return True
    return False


def _days_left(expires: datetime, moment: datetime, zone: tzinfo) -> int | None:
    """As card_expiring counts them (-1 once expired: no card_expiring then; None for a
    certificate that never expires)."""
    if expires <= moment:
        return -1
    return days_left(expires, moment, zone)


def _silent(
    rows: Iterable[tuple[str, str | None, str, int | None, str | None]],
    since: datetime,
    now: datetime,
    thresholds: Thresholds,
) -> set[str]:
    """Hosts that became silent for too long between ``since`` and ``now`` (agent_offline)."""
    found = set()
    for host_id, last_status_at, first_seen, interval, presence in rows:
        if presence == "offline":
            continue  # offline already, by a message that evaluated the host
        allowance = timedelta(seconds=2 * (interval or thresholds.default_scan_interval_s))
        deadline = time(last_status_at or first_seen) + allowance
        deadline += timedelta(seconds=thresholds.offline_margin_s)
        if since - deadline <= timedelta(0) < now - deadline:
            found.add(host_id)
    return found
