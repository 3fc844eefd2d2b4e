"""The expiry forecast: cards expiring per site and month, zero-filled, expired ones left out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from cpsfleet.controller.model import CardView, CertificateView, HostView, ReaderView
from cpsfleet.controller.rules.findings import Thresholds
from cpsfleet.controller.rules.sightings import CardSighting, card_sightings, forecast

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
WINDOW = [
    *("2026-11", "2026-12", "2027-01", "2027-02", "2027-03", "2027-04"),
    *("2027-05", "2027-06", "2027-07", "2027-08", "2027-09", "2027-10"),
]


def sighting(
    expires: datetime | None, site: str | None = "Lyon", serial: str = "1"
) -> CardSighting:
    return CardSighting(
        id_nat="810002813839",
        serial=serial,
        expires=expires,
        updated=None,
        host="ws",
        site=site,
        seen_at=NOW,
        present=True,
    )


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def counts(rows: list[dict[str, Any]], site: str | None = "Lyon") -> dict[str, int]:
    return {row["month"]: row["cards"] for row in rows if row["site"] == site}


def test_twelve_zero_filled_months_from_the_current_one() -> None:
    rows = forecast([sighting(at(2027, 3, 15))], NOW)
    assert [row["month"] for row in rows] == WINDOW
    assert counts(rows) == {month: int(month == "2027-03") for month in WINDOW}


def test_each_site_gets_its_own_months() -> None:
    cards = [
        sighting(at(2027, 1, 10), "Lyon", "1"),
        sighting(at(2027, 1, 20), "Lyon", "2"),
        sighting(at(2027, 1, 20), "Grenoble", "3"),
        sighting(at(2027, 6, 1), None, "4"),
    ]
    rows = forecast(cards, NOW)
    assert [row["site"] for row in rows[::12]] == ["Grenoble", "Lyon", None]  # no site last
    assert len(rows) == 36
    assert counts(rows, "Lyon")["2027-01"] == 2
    assert counts(rows, "Grenoble")["2027-01"] == 1
    assert counts(rows, None)["2027-06"] == 1
    assert sum(row["cards"] for row in rows) == 4


def test_month_boundaries() -> None:
    cards = [
        sighting(at(2026, 11, 30, 23, 59, 59)),  # last second of the current month
        sighting(at(2026, 12, 1)),  # first second of the next
        sighting(at(2027, 10, 31, 23, 59, 59)),  # last second of the twelfth month
        sighting(at(2027, 11, 1)),  # beyond the window
    ]
    found = counts(forecast(cards, NOW))
    assert (found["2026-11"], found["2026-12"], found["2027-10"]) == (1, 1, 1)
    assert sum(found.values()) == 3


def test_months_are_utc_months() -> None:
    paris = timezone(timedelta(hours=1))
    just_after_midnight_in_paris = datetime(2026, 12, 1, 0, 30, tzinfo=paris)  # 23:30 UTC
    assert counts(forecast([sighting(just_after_midnight_in_paris)], NOW))["2026-11"] == 1


def test_expired_and_undated_cards_are_not_forecast() -> None:
    cards = [
        sighting(NOW - SECOND, serial="expired"),
        sighting(NOW, serial="expiring right now"),
        sighting(None, serial="undated"),
        sighting(NOW + SECOND, serial="expires this month"),
    ]
    assert counts(forecast(cards, NOW)) == {month: int(month == "2026-11") for month in WINDOW}


def test_a_site_whose_cards_all_expired_shows_zeros() -> None:
    rows = forecast([sighting(NOW - 10 * SECOND, site="Vienne")], NOW)
    assert counts(rows, "Vienne") == dict.fromkeys(WINDOW, 0)


def test_the_window_crosses_the_year_and_can_be_shorter() -> None:
    december = at(2026, 12, 15)
    rows = forecast([sighting(at(2027, 2, 1))], december, months=3)
    assert counts(rows) == {"2026-12": 0, "2027-01": 0, "2027-02": 1}


def test_no_card_no_rows() -> None:
    assert forecast([], NOW) == []


def test_a_card_seen_on_two_hosts_counts_once() -> None:
    certificates = tuple(
        CertificateView(role, None, "810002813839", "X", "Y", None, NOW, at(2027, 2, 2))
        for role in ("authentication", "signature")
    )
    card = CardView("R", "3B", "cps3", "CPS3", True, "99213845", certificates)

    def host(name: str, last_status_at: datetime) -> HostView:
        return HostView(
            id=name,
            hostname=name,
            site="Lyon",
            first_seen=NOW,
            last_seen=last_status_at,
            last_status_at=last_status_at,
            readers=(ReaderView("R", "card_present"),),
            cards=(card,),
        )

    hosts = [host("ws-1", NOW - 3 * 86400 * SECOND), host("ws-2", NOW)]
    cards = card_sightings(hosts, NOW, Thresholds())
    assert counts(forecast(cards, NOW))["2027-02"] == 1
