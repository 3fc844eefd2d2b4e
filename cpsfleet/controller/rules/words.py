"""Dates and moments as people read them in findings, readiness and notifications: in the
fleet's time zone and the current language ("13 déc. 2026", "Dec 13, 2026"), by Babel's
medium format. The stored and machine-readable times stay ISO 8601 UTC."""

from __future__ import annotations

from datetime import date, datetime, tzinfo

from babel.dates import format_date

from cpsfleet import i18n
from cpsfleet.schemas.times import in_zone, local_date


def day(when: date) -> str:
    """A calendar day: "13 déc. 2026" in French, "Dec 13, 2026" in English."""
    return str(format_date(when, format="medium", locale=i18n.current()))


def local_day(moment: datetime, zone: tzinfo) -> str:
    """The day of ``moment`` in the fleet's time zone ``zone``."""
    return day(local_date(moment, zone))


def local_moment(moment: datetime, zone: tzinfo) -> str:
    """The day and hour of ``moment`` in ``zone``: "13 déc. 2026 20:56"."""
    there = in_zone(moment, zone)
    return f"{day(there.date())} {there:%H:%M}"
