"""Working hours and the hygiene rule: a CPS card left in a reader out of hours."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cpsfleet import i18n
from cpsfleet.controller.rules.findings import RulesConfigError, Thresholds
from cpsfleet.controller.rules.hours import HoursError, parse_days, parse_hours
from tests.test_rules import found, host, vitale_card

PARIS_HOURS = parse_hours("07:00-20:00", "mon-fri", "Europe/Paris")


@pytest.mark.parametrize(
    ("utc", "inside"),
    [
        (datetime(2026, 11, 27, 6, 0, tzinfo=UTC), True),  # Friday 07:00 in Paris (UTC+1)
        (datetime(2026, 11, 27, 5, 59, tzinfo=UTC), False),  # 06:59
        (datetime(2026, 11, 27, 18, 59, tzinfo=UTC), True),  # 19:59
        (datetime(2026, 11, 27, 19, 0, tzinfo=UTC), False),  # 20:00: closed
        (datetime(2026, 11, 28, 10, 0, tzinfo=UTC), False),  # Saturday
        (datetime(2026, 7, 3, 5, 0, tzinfo=UTC), True),  # summer (UTC+2): Friday 07:00
    ],
)
def test_working_hours_are_read_in_local_time(utc: datetime, inside: bool) -> None:
    assert PARIS_HOURS.contains(utc) is inside


def test_days_as_ranges_lists_and_wrapping_weeks() -> None:
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("mon,wed, fri") == frozenset({0, 2, 4})
    assert parse_days("sat-mon") == frozenset({5, 6, 0})


@pytest.mark.parametrize(
    ("hours", "days", "zone", "message"),
    [
        ("7h-20h", "mon-fri", "Europe/Paris", "must look like 07:00-20:00"),
        ("20:00-07:00", "mon-fri", "Europe/Paris", "must end after it starts"),
        ("07:00-20:00", "lundi", "Europe/Paris", "must look like mon-fri"),
        ("07:00-20:00", "mon-fri", "Mars/Olympus", "not a known time zone"),
    ],
)
def test_bad_hours_are_explained(hours: str, days: str, zone: str, message: str) -> None:
    with pytest.raises(HoursError, match=None) as raised:
        parse_hours(hours, days, zone)
    assert message in str(raised.value)
    with pytest.raises(RulesConfigError):
        Thresholds(working_hours=hours, working_days=days, timezone=zone)


def test_a_cps_card_left_in_a_reader_at_night_is_a_warning() -> None:
    night = datetime(2026, 11, 27, 22, 30, tzinfo=UTC)
    [finding] = found("card_left_in_reader", host(), now=night)
    assert (finding.severity, finding.subject) == ("warning", "99213845")
    assert "outside working hours (Mon-Fri 07:00-20:00 Europe/Paris)" in finding.message


def test_no_hygiene_finding_in_working_hours_for_offline_hosts_or_non_cps_cards() -> None:
    night = datetime(2026, 11, 27, 22, 30, tzinfo=UTC)
    assert found("card_left_in_reader", host()) == []
    assert found("card_left_in_reader", host(presence="offline"), now=night) == []
    assert found("card_left_in_reader", host(vitale_card()), now=night) == []


def test_a_night_shift_site_can_widen_its_hours() -> None:
    night = datetime(2026, 11, 27, 22, 30, tzinfo=UTC)
    always = Thresholds(working_hours="00:00-24:00", working_days="mon-sun")
    assert found("card_left_in_reader", host(), now=night, thresholds=always) == []


@pytest.mark.parametrize(
    ("days", "in_english", "in_french"),
    [
        ("mon-fri", "Mon-Fri", "lun.-ven."),
        ("mon,tue,thu", "Mon, Tue, Thu", "lun., mar., jeu."),
        ("sat-sun", "Sat, Sun", "sam., dim."),
        ("mon-wed,fri-sun", "Mon-Wed, Fri-Sun", "lun.-mer., ven.-dim."),
    ],
)
def test_working_hours_read_as_days_in_each_language(
    days: str, in_english: str, in_french: str
) -> None:
    hours = parse_hours("07:00-20:00", days, "Europe/Paris")
    assert hours.describe() == f"{in_english} 07:00-20:00 Europe/Paris"
    with i18n.use("fr"):
        assert hours.describe() == f"{in_french} 07:00-20:00 Europe/Paris"
