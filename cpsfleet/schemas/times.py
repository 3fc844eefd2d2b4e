"""Times on the wire, and the arithmetic the controller does on them.

Every date a document carries is UTC at second precision, ``2026-12-03T11:42:54Z``
(an event's ``at`` may add up to six decimals). The contract admits any real calendar
date from year 0001 to 9999, the range Python's ``datetime`` holds: a certificate may
say ``0001-01-01T00:00:00Z`` or, as RFC 5280 (4.1.2.5) prescribes for a certificate
with no well-defined expiry, ``9999-12-31T23:59:59Z``. So nothing here may step past
either end: sums saturate at ``FIRST`` and ``LAST`` instead of raising, and a conversion
to a local time zone that would leave the range stays in UTC.

``%Y`` is not used to write a year: glibc writes year 1 as ``1``, which no parser
reads back.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, tzinfo

FIRST = datetime(1, 1, 1, tzinfo=UTC)
LAST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
# RFC 5280: "99991231235959Z" means the certificate has no well-defined expiration date.
NO_EXPIRY = LAST

# What the schemas' "timestamp" pattern admits; ``parse`` then checks the calendar.
WIRE_TIME = re.compile(
    r"(?!0000)[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?Z"
)


class TimeError(ValueError):
    """A text that is not a wire time, or not a real date; the message quotes it."""


def format_utc(moment: datetime) -> str:
    """``moment`` (aware) as a wire time, to the second, the year always in four digits."""
    if moment.tzinfo is None:
        raise TimeError(f"{moment!r} has no time zone: wire times are UTC")
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}Z"


def format_utc_micro(moment: datetime) -> str:
    """``format_utc`` with microseconds, as events carry them."""
    return f"{format_utc(moment)[:-1]}.{moment.astimezone(UTC).microsecond:06d}Z"


def parse(text: str) -> datetime:
    """The aware UTC datetime of a wire time; TimeError for anything else, impossible
    calendar dates (31 February, 29 February of a common year) included."""
    if not isinstance(text, str) or not WIRE_TIME.fullmatch(text):
        raise TimeError(f"{text!r:.60} is not a UTC time like 2026-12-03T11:42:54Z")
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as error:  # the calendar: the pattern lets 2027-02-31 through
        raise TimeError(f"{text!r} is not a real date: {error}") from None


def is_real(text: str) -> bool:
    """Whether ``text`` is a wire time on a real calendar date."""
    try:
        parse(text)
    except TimeError:
        return False
    return True


def shifted(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, held within FIRST..LAST instead of raising OverflowError."""
    try:
        result = moment + delta
    except OverflowError:
        return LAST if delta > timedelta(0) else FIRST
    return min(max(result, FIRST), LAST)


def add_years(moment: datetime, years: int) -> datetime:
    """Same day ``years`` later (29 February becomes 28 February in a common year), or
    LAST when that is past year 9999."""
    year = moment.year + years
    if year > LAST.year:
        return LAST
    if year < FIRST.year:
        return FIRST
    try:
        return moment.replace(year=year)
    except ValueError:  # only 29 February can be missing from the target year
        return moment.replace(year=year, day=28)


def never_expires(moment: datetime | None) -> bool:
    """Whether an end date is RFC 5280's "no well-defined expiration date"."""
    return moment is not None and moment >= NO_EXPIRY


def in_zone(moment: datetime, zone: tzinfo) -> datetime:
    """``moment`` in ``zone`` for display; left in UTC where the zone's offset would take
    it past year 1 or 9999 (e.g. 9999-12-31T23:59:59Z in Paris)."""
    try:
        return moment.astimezone(zone)
    except (OverflowError, ValueError):
        return moment.astimezone(UTC)


def days_left(expires: datetime | None, now: datetime, zone: tzinfo = UTC) -> int | None:
    """The calendar days from ``now``'s date to ``expires``'s, both in ``zone`` (the fleet's
    time zone): on 3 December, a card ending on 13 December has 10 days left, whatever the
    hour; 0 on its last day, negative once past. None when there is no end date, or RFC
    5280's "no expiry", which counts no days."""
    if expires is None or never_expires(expires):
        return None
    return (local_date(expires, zone) - local_date(now, zone)).days


def local_date(moment: datetime, zone: tzinfo) -> date:
    """The date of ``moment`` in ``zone`` (in UTC where the zone would leave years 1-9999)."""
    return in_zone(moment, zone).date()
