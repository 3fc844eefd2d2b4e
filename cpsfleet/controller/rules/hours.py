"""Working hours, for the hygiene rule: a CPS card left in a reader out of hours is a risk.

working_hours = "07:00-20:00"
working_days = "mon-fri"          # or "mon,tue,wed,thu,fri,sat"
timezone = "Europe/Paris"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cpsfleet.i18n import N_, _, current, use

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])")


class HoursError(ValueError):
    """Working hours that cannot be understood; the message shows the expected form."""


@dataclass(frozen=True)
class WorkingHours:
    start: time
    end: time
    days: frozenset[int]
    zone: ZoneInfo

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone)
        return local.weekday() in self.days and self.start <= local.time() < self.end

    def describe(self) -> str:
        """As people read them, in the current language: "Mon-Fri 07:00-20:00 Europe/Paris"."""
        return _describe(self, current())


# The days as people read them, Monday first.
DAY_WORDS = (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))


@cache
def _describe(hours: WorkingHours, language: str) -> str:
    with use(language):
        days = ", ".join(_day_run(run) for run in _runs(sorted(hours.days)))
        return f"{days} {hours.start:%H:%M}-{hours.end:%H:%M} {hours.zone.key}"


def _runs(days: list[int]) -> list[list[int]]:
    """Consecutive days together: [0, 1, 2, 4] -> [[0, 1, 2], [4]]."""
    runs: list[list[int]] = []
    for day in days:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def _day_run(run: list[int]) -> str:
    first, last = _(DAY_WORDS[run[0]]), _(DAY_WORDS[run[-1]])
    return first if len(run) == 1 else f"{first}-{last}" if len(run) > 2 else f"{first}, {last}"


@cache
# Cached: the rules ask for the configured hours once per host of every evaluation.
@lru_cache(maxsize=64)
def parse_hours(hours: str, days: str, zone: str) -> WorkingHours:
    match = HOURS.fullmatch(hours.replace(" ", ""))
    if not match:
        raise HoursError(f"working_hours {hours!r} must look like 07:00-20:00")
    h1, m1, h2, m2 = (int(group) for group in match.groups())
    end = time.max if (h2, m2) == (24, 0) else time(h2 % 24, m2)
    if (h2, m2) != (24, 0) and end <= time(h1, m1):
        raise HoursError(f"working_hours {hours!r} must end after it starts")
    try:
        timezone = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise HoursError(
            f"timezone {zone!r} is not a known time zone (e.g. Europe/Paris)"
        ) from None
    return WorkingHours(time(h1, m1), end, parse_days(days), timezone)


def parse_days(text: str) -> frozenset[int]:
    """ "mon-fri" or "mon,wed,fri" (or a mix) as weekday numbers, Monday = 0."""
    found: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise HoursError(f"working_days {text!r} must look like mon-fri or mon,tue,wed")
        a, b = DAYS.index(first), DAYS.index(last or first)
        found.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(found)
