"""The fleet's history, day by day in the fleet's time zone: alerts open, cards expiring and
expired, professionals with a usable card; per site; the page in French and English, its
JSON, and the window's bounds. A real database, filled through the store, the roster import
and the alert book; a fixed clock, so that nothing depends on when the suite runs."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cpsfleet.controller.alerts.book import AlertBook
from cpsfleet.controller.db import history
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.intake.roster import import_roster, parse_roster
from cpsfleet.controller.model import Finding, Severity
from cpsfleet.controller.rules.findings import Thresholds
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.controller.web.app import create_app
from cpsfleet.controller.web.auth import DashboardSettings
from cpsfleet.controller.web.server import DashboardServer
from cpsfleet.schemas import validate
from tests.test_dashboard import PASSWORD_HASH, TOKEN_HASH, fetch

EXAMPLES = Path(__file__).parent.parent / "cpsfleet" / "schemas" / "examples"
ROSTER = Path(__file__).parent.parent / "docs" / "roster-sample.csv"
PARIS = ZoneInfo("Europe/Paris")
# Noon in Paris on Sunday 13 December 2026 (UTC+1 in winter).
NOW = datetime(2026, 12, 13, 11, 0, tzinfo=UTC)
DAY = timedelta(days=1)
LYON, GRENOBLE = "Lyon Part-Dieu", "Grenoble"
LYON_HOST, GRENOBLE_HOST = "3f9c1a7be2d04c55", "8d2e44a0c1b94f07"
SEEN = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)  # when the cards were first seen
ENGLISH = {"Accept-Language": "en"}
FRENCH = {"Accept-Language": "fr"}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def dated(card: dict[str, Any], not_before: datetime, not_after: datetime) -> None:
    for certificate in card["certificates"]:
        certificate["not_before"], certificate["not_after"] = stamp(not_before), stamp(not_after)
        certificate["days_left"] = (not_after - NOW).days
        certificate["expired"] = not_after <= NOW


def lyon(scanned: datetime) -> dict[str, Any]:
    """Lyon's workstation: the doctor's card (DONNAT-GADY) valid 200 more days, the nurse's
    (MARTIN) 20 more, a card of no one on the roster expired on 8 December at noon (UTC)."""
    document: dict[str, Any] = json.loads((EXAMPLES / "status-four-readers.json").read_text())
    doctor, nurse, expired, _ = (reader["card"] for reader in document["readers"])
    dated(doctor, NOW - 100 * DAY, NOW + 200 * DAY)
    dated(nurse, NOW - 100 * DAY, NOW + 20 * DAY)
    dated(expired, NOW - 1000 * DAY, utc("2026-12-08T12:00:00"))
    document["scanned_at"] = stamp(scanned)
    return validate(document)


def grenoble(scanned: datetime) -> dict[str, Any]:
    document = copy.deepcopy(lyon(scanned))
    document["host"] |= {"id": GRENOBLE_HOST, "hostname": "ws-gre-01", "site": GRENOBLE}
    document["readers"] = []
    return validate(document)


def finding(rule: str, severity: Severity, host: str, site: str) -> Finding:
    return Finding(rule, severity, host, "", f"{rule} on {host}", None, site)


def fleet_database(database: str) -> str:
    """Lyon and Grenoble from 3 December on, the sample roster (two professionals of each
    site), and three alerts:

    - critical on Lyon from 5 December 09:00 to 7 December 15:00 (UTC): three days open;
    - info on Lyon from 1 December 23:30 to 2 December 22:30 UTC, 2 December in Paris only;
    - warning on Grenoble since 12 December 23:30 UTC, 13 December in Paris, still open.
    """
    with Store(database) as store:
        store.record_status(lyon(SEEN), SEEN)
        store.record_status(grenoble(SEEN), SEEN)
        import_roster(store.database, parse_roster(ROSTER.read_text()), SEEN)
        book = AlertBook(store.database)
        steps = (
            ("2026-12-01T23:30:00", [finding("pcsc_down", "info", LYON_HOST, LYON)], LYON_HOST),
            ("2026-12-02T22:30:00", [], LYON_HOST),
            ("2026-12-05T09:00:00", [finding("no_reader", "critical", LYON_HOST, LYON)], LYON_HOST),
            ("2026-12-07T15:00:00", [], LYON_HOST),
            (
                "2026-12-12T23:30:00",
                [finding("no_reader", "warning", GRENOBLE_HOST, GRENOBLE)],
                GRENOBLE_HOST,
            ),
        )
        for at, found, host in steps:
            book.update(found, utc(at), [host])
    return database


@pytest.fixture(scope="module")
def fleet(module_database: str) -> str:
    return fleet_database(module_database)


def counted(
    path: str, days: int = 14, sites: history.Sites | None = None, zone: ZoneInfo = PARIS
) -> dict[str, Any]:
    """Each series by day, as {ISO day: count}."""
    window = history.Window.ending(NOW, zone, days)
    with Store.open_readonly(path) as store:
        found = history.history(store.database, window, Thresholds(), sites or history.Sites())
    named = {**found.alerts, **found.cards, "with_usable_card": found.with_usable_card}
    by_day = {
        name: {day.isoformat(): count for day, count in zip(window.days, counts, strict=True)}
        for name, counts in named.items()
    }
    return by_day | {"professionals": found.professionals}


def days_of(counts: dict[str, int]) -> list[str]:
    """The days with a count, and not zero."""
    return [day for day, count in counts.items() if count]


def december(*numbers: int) -> list[str]:
    return [date(2026, 12, number).isoformat() for number in numbers]


# --- the counts ---------------------------------------------------------------------------------


def test_an_alert_open_three_days_counts_on_those_three_days_only(fleet: str) -> None:
    counts = counted(fleet)
    assert days_of(counts["critical"]) == december(5, 6, 7)
    assert set(counts["critical"].values()) == {0, 1}


def test_days_are_the_fleet_s_time_zone_s(fleet: str) -> None:
    paris = counted(fleet)
    # 23:30 UTC is 00:30 in Paris the next day.
    assert days_of(paris["info"]) == december(2)
    assert days_of(paris["warning"]) == december(13)
    in_utc = counted(fleet, zone=ZoneInfo("UTC"))
    assert days_of(in_utc["info"]) == december(1, 2)
    assert days_of(in_utc["warning"]) == december(12, 13)


def test_cards_expiring_then_expired_from_when_the_fleet_saw_them(fleet: str) -> None:
    counts = counted(fleet)
    # Nothing before 3 December: the fleet had not seen the cards yet.
    assert days_of(counts["expiring"])[0] == "2026-12-03"
    # The nurse's card (20 days left today) and the one that expired on 8 December.
    assert [counts["expiring"][day] for day in december(3, 7, 8, 13)] == [2, 2, 1, 1]
    assert days_of(counts["expired"]) == december(*range(8, 14))


def test_professionals_with_a_usable_card(fleet: str) -> None:
    counts = counted(fleet)
    assert counts["professionals"] == 4
    # The doctor's and the nurse's cards; the nurse's is more than 14 days from its end.
    assert [counts["with_usable_card"][day] for day in december(2, 3, 13)] == [0, 2, 2]


def test_a_nurse_s_card_within_the_critical_threshold_is_not_usable(database: str) -> None:
    path = fleet_database(database)
    window = history.Window.ending(NOW, PARIS, 14)
    with Store.open_readonly(path) as store:
        # The nurse's card ends in 20 days: 25 days' notice makes it unusable from its first day.
        found = history.history(
            store.database, window, Thresholds(expiring_critical_days=25), history.Sites()
        )
    assert found.with_usable_card[-1] == 1


def test_a_site_keeps_its_own_rows_only(fleet: str) -> None:
    grenoble_only = counted(fleet, sites=history.Sites(every=False, names=(GRENOBLE,)))
    assert grenoble_only["professionals"] == 2
    assert not days_of(grenoble_only["critical"]) and not days_of(grenoble_only["info"])
    assert days_of(grenoble_only["warning"]) == december(13)
    assert not days_of(grenoble_only["expiring"]) and not days_of(grenoble_only["expired"])
    assert not days_of(grenoble_only["with_usable_card"])
    lyon_only = counted(fleet, sites=history.Sites(every=False, names=(LYON,)))
    assert days_of(lyon_only["critical"]) == december(5, 6, 7)
    assert not days_of(lyon_only["warning"])
    assert lyon_only["with_usable_card"]["2026-12-13"] == 2


def test_an_empty_fleet_counts_zero_every_day(database: str) -> None:
    with Store(database):
        pass
    counts = counted(database, days=history.MAX_DAYS)
    assert counts["professionals"] == 0
    for name in ("critical", "warning", "info", "expiring", "expired", "with_usable_card"):
        assert len(counts[name]) == history.MAX_DAYS and not days_of(counts[name])


def test_a_window_at_its_bounds(fleet: str) -> None:
    shortest = counted(fleet, days=history.MIN_DAYS)
    assert list(shortest["critical"]) == december(*range(7, 14))
    # Seven days from the 7th: the critical alert, resolved that day, counts on it alone.
    assert days_of(shortest["critical"]) == december(7)
    longest = counted(fleet, days=history.MAX_DAYS)
    assert list(longest["critical"])[0] == (date(2026, 12, 13) - 729 * DAY).isoformat()
    assert days_of(longest["critical"]) == december(5, 6, 7)
    for days in (history.MIN_DAYS - 1, history.MAX_DAYS + 1):
        with pytest.raises(history.HistoryError):
            history.Window.ending(NOW, PARIS, days)


def test_a_window_across_a_change_of_the_clocks() -> None:
    """Paris goes from UTC+2 to UTC+1 on 25 October 2026, at 01:00 UTC."""
    window = history.Window.ending(NOW, PARIS, 60)
    assert [offset for _, offset in window.shifts] == [3600, 7200]
    assert window.shifts[0][0] == utc("2026-10-25T01:00:00")
    assert window.start == utc("2026-10-14T22:00:00")  # midnight of 15 October in Paris


def test_near_midnight_in_paris_and_in_utc(database: str) -> None:
    """An alert from 22:59:59 to 23:00:00 UTC in winter: 23:59:59 and midnight in Paris."""
    with Store(database) as store:
        book = AlertBook(store.database)
        book.update([finding("pcsc_down", "critical", LYON_HOST, LYON)], utc("2026-12-10T22:59:59"))
        book.update([], utc("2026-12-10T23:00:00"))
    assert days_of(counted(database)["critical"]) == december(10, 11)
    assert days_of(counted(database, zone=ZoneInfo("UTC"))["critical"]) == december(10)


# --- the page and its JSON ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def url(fleet: str) -> Iterator[str]:
    secrets = {"password_hash": PASSWORD_HASH, "token_hash": TOKEN_HASH}
    settings = ControllerSettings(
        database=fleet,
        dashboard=DashboardSettings(**{"listen": "127.0.0.1:0"} | secrets),
    )
    server = DashboardServer(settings.dashboard, create_app(settings, clock=lambda: NOW))
    server.start()
    try:
        yield server.url.replace("0.0.0.0", "127.0.0.1")
    finally:
        server.stop()


def api(url: str, query: str = "") -> Any:
    reply = fetch(url, f"/api/v1/history{query}")
    assert reply.status == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    return reply.json()


def page(url: str, query: str = "", headers: dict[str, str] | None = None) -> str:
    reply = fetch(url, f"/history{query}", headers=headers or ENGLISH)
    assert reply.status == 200, reply.text
    return unescape(reply.text)


def test_the_json_has_a_row_per_day(url: str) -> None:
    data = api(url)
    assert list(data) == ["site", "days", "first_day", "last_day", "professionals", "series"]
    assert (data["site"], data["days"], data["professionals"]) == (None, 90, 4)
    assert (data["first_day"], data["last_day"]) == ("2026-09-15", "2026-12-13")
    assert len(data["series"]) == 90
    today = data["series"][-1]
    assert today == {
        "day": "2026-12-13",
        "professionals": {"with_usable_card": 2, "without": 2},
        "cards": {"expiring": 1, "expired": 1},
        "alerts": {"critical": 0, "warning": 1, "info": 0},
    }
    by_day = {row["day"]: row["alerts"]["critical"] for row in data["series"]}
    assert [day for day, count in by_day.items() if count] == december(5, 6, 7)


def test_the_json_keeps_a_site_as_people_name_it(url: str) -> None:
    data = api(url, "?site=grenoble&days=7")
    assert (data["site"], data["days"], data["professionals"]) == ("grenoble", 7, 2)
    assert data["series"][-1]["alerts"] == {"critical": 0, "warning": 1, "info": 0}
    assert data["series"][-1]["cards"] == {"expiring": 0, "expired": 0}


@pytest.mark.parametrize("days", ["6", "731", "0", "-7", "ninety", "7.5"])
def test_a_window_out_of_bounds_is_refused(url: str, days: str) -> None:
    reply = fetch(url, f"/api/v1/history?days={days}")
    assert reply.status == 400
    assert "from 7 to 730" in reply.json()["detail"]
    assert fetch(url, f"/history?days={days}", headers=ENGLISH).status == 400


@pytest.mark.parametrize("days", ["7", "730"])
def test_a_window_at_its_bounds_is_served(url: str, days: str) -> None:
    assert len(api(url, f"?days={days}")["series"]) == int(days)
    assert "<svg" in page(url, f"?days={days}")


def table_row(html: str, chart: str, day: str) -> str:
    table = html.split(f'id="{chart}-table"', 1)[1].split("</table>", 1)[0]
    return table.split(f'<tr data-day="{day}">', 1)[1].split("</tr>", 1)[0]


def test_the_page_in_english(url: str) -> None:
    html = page(url)
    assert '<html lang="en">' in html and "<h1>History</h1>" in html
    assert 'href="/history" aria-current="page"' in html
    for chart in ("professionals", "cards", "alerts"):
        assert f'id="{chart}-chart"' in html and f'id="{chart}-table"' in html
    assert "Professionals with a usable CPS card" in html and "Open alerts by severity" in html
    # The figures, as text: today's in the legend, every day's in the tables.
    assert '<span data-count="with_usable_card">2</span>' in html
    assert '<span data-count="warning">1</span>' in html
    row = table_row(html, "alerts", "2026-12-06")
    assert "Dec 6, 2026" in row and "<td>1</td><td>0</td><td>0</td>" in row
    assert table_row(html, "cards", "2026-12-06").endswith("<td>2</td><td>0</td>")
    assert "Sep 15, 2026" in html  # the first day, as a reader writes it
    assert "<script" not in html.split("</head>", 1)[1]  # no script but static/'s


def test_the_page_in_french(url: str) -> None:
    html = page(url, "?site=Lyon+Part-Dieu", FRENCH)
    assert '<html lang="fr">' in html and "<h1>Historique</h1>" in html
    assert "Professionnels avec une carte CPS utilisable" in html
    assert "Alertes ouvertes par gravité" in html
    assert "6 déc. 2026" in html and "Dec 6" not in html
    # critical, warning, info
    assert "<td>1</td><td>0</td><td>0</td>" in table_row(html, "alerts", "2026-12-06")
    assert '<option value="Lyon Part-Dieu" selected>' in html
    assert '<span data-count="warning">0</span>' in html  # Grenoble's is not Lyon's


def test_an_empty_fleet_s_page(database: str) -> None:
    with Store(database):
        pass
    settings = ControllerSettings(
        database=database,
        dashboard=DashboardSettings(listen="127.0.0.1:0", token_hash=TOKEN_HASH),
    )
    server = DashboardServer(settings.dashboard, create_app(settings, clock=lambda: NOW))
    server.start()
    try:
        address = server.url.replace("0.0.0.0", "127.0.0.1")
        html = page(address)
        assert "<svg" in html and '<span data-count="expired">0</span>' in html
        data = api(address, "?days=7")
        assert data["professionals"] == 0
        assert all(
            row["alerts"] == {"critical": 0, "warning": 0, "info": 0} for row in data["series"]
        )
    finally:
        server.stop()
