"""The audit trail in the dashboard: ``/audit``, ``/api/v1/audit`` and the exports, for
admins of every site only, their filters and paging; and its retention (``purge``), which
the database itself bounds (schema version 15: no update, no delete of an entry younger than
a day). A real uvicorn server on a real database (SQLite or PostgreSQL).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from html import unescape
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from cpsfleet.controller.db.people import People
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.service import Controller
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.controller.web.audit import COLUMNS, PAGE_SIZE, purge
from cpsfleet.controller.web.auth import DashboardSettings
from tests.test_dashboard import (
    PASSWORD,
    PASSWORD_HASH,
    TOKEN,
    Reply,
    build_fleet,
    login,
    session_cookie,
)
from tests.test_dashboard_actions import (
    ADMIN,
    LYON,
    OPERATOR,
    VIEWER,
    Client,
    Person,
    add_people,
    by_session,
    by_token,
    serving,
)
from tests.test_readiness_cli import NOW

ZONE = ZoneInfo(DashboardSettings().timezone)
# The seeded entries' days, in the dashboard's time zone: three weeks before the tests run.
DAY = (NOW - timedelta(days=21)).astimezone(ZONE).date()
LYON_ADMIN = Person("lyon-admin", "admin", (LYON,))
BOTS = 230  # entries of one actor, over three pages


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """A moment of ``day`` in the dashboard's time zone, in UTC."""
    return datetime.combine(day, time(hour, minute), ZONE).astimezone(UTC)


# The seeded entries, oldest first: (at, actor, action, target, outcome, detail).
SEEDED = {
    # Just after midnight in Paris: the day before in UTC.
    "ack": (at(DAY, 0, 30), "lea", "alert.acknowledge", "card_expiring/h/1", "ok", {"note": "n"}),
    "silence": (at(DAY + timedelta(1), 12), "victor", "alert.silence", "r/h/*", "refused", {}),
    "rescan": (at(DAY + timedelta(2), 23, 30), "lea", "host.rescan", "h", "failed", {}),
    "formula": (at(DAY + timedelta(3), 8), "ada", "alertness", '=HYPERLINK("x")', "ok", {}),
}


def seed(database: str) -> dict[str, int]:
    """The seeded entries, and the bot's before them; their ids by name."""
    ids = {}
    with Store(database) as store:
        people = People(store.database)
        start = at(DAY - timedelta(days=5), 9)
        for number in range(BOTS):
            moment = start + timedelta(minutes=number)
            people.record(moment, "bot", "10.0.0.9", "sign_in", detail={"n": number})
        for name, (moment, actor, action, target, outcome, detail) in SEEDED.items():
            ids[name] = people.record(moment, actor, "192.0.2.7", action, target, outcome, detail)
    return ids


@pytest.fixture(scope="module")
def fleet(module_database: str) -> str:
    path = build_fleet(module_database)
    add_people(path)
    with Store(path) as store:
        People(store.database).add_user(
            LYON_ADMIN.name, LYON_ADMIN.role, LYON_ADMIN.sites, NOW, None
        )
        People(store.database).add_token(LYON_ADMIN.name, "tests", LYON_ADMIN.token, NOW, None)
    return path


@pytest.fixture(scope="module")
def ids(fleet: str) -> dict[str, int]:
    return seed(fleet)


@pytest.fixture(scope="module")
def url(fleet: str, ids: dict[str, int]) -> Iterator[str]:
    with serving(fleet) as address:
        yield address


def entries(client: Client, **filters: str) -> dict[str, Any]:
    reply = client.get(f"/api/v1/audit?{urlencode(filters)}")
    assert reply.status == 200, reply.text
    found: dict[str, Any] = reply.json()
    return found


def seeded_ids(client: Client, **filters: str) -> list[int]:
    """The ids of the entries the filters keep, within the seeded days."""
    window = {"since": str(DAY - timedelta(days=1)), "until": str(DAY + timedelta(days=4))}
    kept = entries(client, **(window | filters))["entries"]
    return [entry["id"] for entry in kept if entry["actor"] != "bot"]


# --- who reads it ------------------------------------------------------------------------------

AUDIT_PATHS = ("/audit", "/api/v1/audit", "/export/audit.csv")


def test_only_admins_of_every_site_read_the_audit_trail(url: str) -> None:
    for client in (by_token(url, ADMIN), by_session(url, ADMIN)):
        for path in AUDIT_PATHS:
            assert client.get(path).status == 200, path
        assert 'href="/audit"' in client.get("/hosts").text
    password = login(url, PASSWORD)  # the configuration's admin
    admin = Client(url, {"Cookie": session_cookie(password)})
    assert admin.get("/audit").status == 200 and 'href="/audit"' in admin.get("/").text
    others = [by_token(url, person) for person in (OPERATOR, VIEWER, LYON_ADMIN)]
    others += [by_session(url, OPERATOR), by_session(url, VIEWER)]
    others.append(Client(url, {"Authorization": f"Bearer {TOKEN}"}))  # the scraper's token
    for client in others:
        for path in AUDIT_PATHS:
            reply = client.get(path)
            assert reply.status == 403 and "your role does not allow this" in reply.text, path
        assert 'href="/audit"' not in client.get("/hosts").text


def test_a_page_of_the_audit_trail_shows_who_when_from_where_what(
    url: str, ids: dict[str, int]
) -> None:
    page = by_session(url, ADMIN).get(
        f"/audit?{urlencode({'actor': 'lea', 'since': str(DAY), 'until': str(DAY)})}"
    )
    assert page.status == 200
    table = page.text.split('id="audit-table"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr data-action=") == 1
    assert 'data-action="alert.acknowledge" data-outcome="ok"' in table
    assert "192.0.2.7" in table and "card_expiring/h/1" in table and "note: n" in table
    assert SEEDED["ack"][0].strftime("%Y-%m-%dT%H:%M:%SZ") in table
    assert '<span data-count="rows">1</span> entry' in page.text


# --- filters and pages -------------------------------------------------------------------------


def test_the_filters_keep_what_they_name(url: str, ids: dict[str, int]) -> None:
    ada = by_token(url, ADMIN)
    assert seeded_ids(ada, actor="lea") == [ids["rescan"], ids["ack"]]
    assert seeded_ids(ada, actor="le") == []  # a user's name exactly
    # An action and those it begins, never another word that starts alike.
    assert seeded_ids(ada, action="alert") == [ids["silence"], ids["ack"]]
    assert seeded_ids(ada, action="alert.silence") == [ids["silence"]]
    assert seeded_ids(ada, action="alertness") == [ids["formula"]]
    assert seeded_ids(ada, outcome="refused") == [ids["silence"]]
    assert seeded_ids(ada, outcome="failed", actor="lea") == [ids["rescan"]]


def test_since_and_until_are_days_of_the_dashboards_time_zone(
    url: str, ids: dict[str, int]
) -> None:
    ada = by_token(url, ADMIN)

    def between(since: date, until: date) -> list[int]:
        found = entries(ada, since=str(since), until=str(until), actor="lea")["entries"]
        return [entry["id"] for entry in found]

    assert between(DAY, DAY) == [ids["ack"]]  # 00:30 in Paris, the day before in UTC
    assert between(DAY - timedelta(1), DAY - timedelta(1)) == []
    two = DAY + timedelta(2)
    assert between(two, two) == [ids["rescan"]]  # 23:30 in Paris: its last hour
    assert between(DAY + timedelta(1), DAY + timedelta(1)) == []
    assert between(DAY, two) == [ids["rescan"], ids["ack"]]


@pytest.mark.parametrize(
    ("query", "status", "why"),
    [
        ("outcome=maybe", 400, "unknown outcome 'maybe': use one of ok, refused, failed"),
        ("since=yesterday", 400, "'yesterday' is not a day like 2026-12-01"),
        ("until=2026-13-01", 400, "is not a day like"),
        ("page=0", 422, "page"),
        ("page=101", 422, "page"),
        ("page=two", 422, "page"),
    ],
)
def test_bad_filters_are_refused(url: str, query: str, status: int, why: str) -> None:
    for path in ("/api/v1/audit", "/audit", "/export/audit.csv"):
        reply = by_token(url, ADMIN).get(f"{path}?{query}")
        assert reply.status == status and why in unescape(reply.text), (path, reply.text)


def test_the_trail_comes_in_pages_newest_first(url: str, ids: dict[str, int]) -> None:
    ada = by_token(url, ADMIN)
    pages = [entries(ada, actor="bot", page=str(number)) for number in (1, 2, 3, 4)]
    assert [len(page["entries"]) for page in pages] == [PAGE_SIZE, PAGE_SIZE, 30, 0]
    assert [page["more"] for page in pages] == [True, True, False, False]
    numbers = [entry["detail"]["n"] for page in pages for entry in page["entries"]]
    assert numbers == list(reversed(range(BOTS)))
    html = by_session(url, ADMIN).get("/audit?actor=bot")
    assert '<span data-count="rows">230</span> entries' in html.text
    assert 'href="?actor=bot&amp;page=2" rel="next"' in html.text and 'rel="prev"' not in html.text
    last = by_session(url, ADMIN).get("/audit?actor=bot&page=3")
    assert 'href="?actor=bot&amp;page=2" rel="prev"' in last.text and 'rel="next"' not in last.text
    assert last.text.count('<tr data-action="sign_in"') == 30


# --- exports -----------------------------------------------------------------------------------

WINDOW = {"actor": "lea", "since": str(DAY), "until": str(DAY + timedelta(days=3))}


def export(client: Client, suffix: str, **filters: str) -> Reply:
    reply = client.get(f"/export/audit.{suffix}?{urlencode(filters)}")
    assert reply.status == 200, reply.text
    return reply


def expected_rows(ids: dict[str, int]) -> list[dict[str, str]]:
    rows = []
    for name in ("rescan", "ack"):
        moment, actor, action, target, outcome, detail = SEEDED[name]
        rows.append(
            {
                "id": str(ids[name]),
                "at": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "actor": actor,
                "source": "192.0.2.7",
                "action": action,
                "target": target,
                "outcome": outcome,
                "detail": json.dumps(detail),
            }
        )
    return rows


def last_export(database: str) -> Any:
    with Store.open_readonly(database) as store:
        [entry] = People(store.database).audit(action="export", limit=1)
    return entry


def test_the_csv_exports_hold_the_entries_and_are_audited(
    url: str, fleet: str, ids: dict[str, int]
) -> None:
    ada = by_session(url, ADMIN)
    reply = export(ada, "csv", **WINDOW)
    assert reply.headers["content-type"] == "text/csv; charset=utf-8"
    day = NOW.strftime("%Y-%m-%d")
    assert reply.headers["content-disposition"] == (
        f'attachment; filename="cpsfleet-audit-{day}.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert list(rows[0]) == list(COLUMNS)
    assert rows == expected_rows(ids)
    entry = last_export(fleet)
    assert (entry.actor, entry.target, entry.outcome, entry.detail) == (
        "ada",
        "audit.csv",
        "ok",
        WINDOW,
    )
    excel = export(ada, "csv-excel", **WINDOW)
    assert excel.body.startswith(b"\xef\xbb\xbf")
    assert excel.headers["content-disposition"].endswith(f'cpsfleet-audit-{day}-excel.csv"')
    text = excel.body.decode("utf-8-sig")
    assert text.splitlines()[0] == ";".join(COLUMNS)
    assert list(csv.DictReader(io.StringIO(text), delimiter=";")) == expected_rows(ids)
    assert last_export(fleet).target == "audit.csv-excel"


def test_a_formula_in_an_entry_is_not_run_by_a_spreadsheet(url: str, ids: dict[str, int]) -> None:
    reply = export(by_token(url, ADMIN), "csv", action="alertness")
    [row] = csv.DictReader(io.StringIO(reply.text))
    assert row["target"] == '\'=HYPERLINK("x")'


def test_the_xlsx_export_has_typed_times(url: str, fleet: str, ids: dict[str, int]) -> None:
    reply = export(by_token(url, ADMIN), "xlsx", **WINDOW)
    assert reply.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = openpyxl.load_workbook(io.BytesIO(reply.body)).active
    assert sheet is not None and sheet.title == "audit"
    lines = list(sheet.iter_rows(values_only=True))
    assert lines[0] == COLUMNS
    assert [line[0] for line in lines[1:]] == [ids["rescan"], ids["ack"]]
    when = [line[1] for line in lines[1:]]
    assert all(isinstance(moment, datetime) for moment in when)
    assert when == [SEEDED[name][0].replace(tzinfo=None) for name in ("rescan", "ack")]
    assert [line[2:7] for line in lines[1:]] == [
        ("lea", "192.0.2.7", "host.rescan", "h", "failed"),
        ("lea", "192.0.2.7", "alert.acknowledge", "card_expiring/h/1", "ok"),
    ]
    assert lines[2][7] == '{"note": "n"}'
    entry = last_export(fleet)
    assert (entry.actor, entry.target) == ("ada", "audit.xlsx")


def test_the_json_export(url: str, fleet: str, ids: dict[str, int]) -> None:
    reply = export(by_token(url, ADMIN), "json", **WINDOW)
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == [row | {"id": int(row["id"])} for row in expected_rows(ids)]
    assert last_export(fleet).target == "audit.json"


def test_an_unknown_export_is_a_404(url: str, fleet: str) -> None:
    before = last_export(fleet).id
    reply = by_token(url, ADMIN).get("/export/audit.pdf")
    assert reply.status == 404 and ".csv, .csv-excel, .xlsx or .json" in reply.text
    assert last_export(fleet).id == before


# --- retention ---------------------------------------------------------------------------------


@pytest.fixture
def people(database: str) -> Iterator[People]:
    with Store(database) as store:
        yield People(store.database)


def recorded(people: People) -> list[str]:
    return [entry.action for entry in reversed(people.audit())]


def test_purge_forgets_the_entries_older_than_the_days_kept(people: People) -> None:
    now = datetime.now(UTC)  # the database's triggers go by the system's clock
    for days, action in ((400, "old"), (40, "month"), (10, "days"), (0, "young")):
        people.record(now - timedelta(days=days, minutes=1), "ada", "", action)
    assert purge(people, now, 365) == 1
    assert recorded(people) == ["month", "days", "young"]
    assert purge(people, now, 30) == 1
    assert recorded(people) == ["days", "young"]
    assert purge(people, now, 30) == 0
    assert purge(people, now, 1) == 1
    assert recorded(people) == ["young"]


def test_the_database_keeps_every_entry_a_day_at_least_and_changes_none(
    people: People,
) -> None:
    now = datetime.now(UTC)
    people.record(now - timedelta(days=3), "ada", "", "old")
    young = people.record(now - timedelta(hours=20), "ada", "", "young")
    # A retention shorter than a day deletes nothing: not even what it could.
    with pytest.raises(sqlite3.IntegrityError, match="keeps at least a day"):
        purge(people, now, 0)
    assert recorded(people) == ["old", "young"]
    with pytest.raises(sqlite3.IntegrityError, match="keeps at least a day"):
        people.db.execute("delete from audit where id = ?", [young])
    for change in ("actor = 'someone else'", "outcome = 'refused'", "at = '2000-01-01T00:00:00Z'"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            people.db.execute(f"update audit set {change}")
    assert [(entry.actor, entry.outcome) for entry in people.audit()] == [("ada", "ok")] * 2
    people.db.execute("delete from audit where action = 'old'")  # older than a day: may go
    assert recorded(people) == ["young"]


def test_the_controller_purges_with_its_audit_days(database: str) -> None:
    now = datetime.now(UTC)
    with Store(database) as store:
        people = People(store.database)
        for days in (400, 60, 2):
            people.record(now - timedelta(days=days), "ada", "", f"{days} days ago")
        settings = ControllerSettings(database=database, dashboard=DashboardSettings(audit_days=90))
        assert Controller(settings).purge_audit(store) == 1
        assert recorded(people) == ["60 days ago", "2 days ago"]


def test_each_start_records_which_parts_of_the_configuration_changed(database: str) -> None:
    """Digests only: a secret of the configuration never reaches the audit trail."""
    secret = PASSWORD_HASH
    first = ControllerSettings(database=database, dashboard=DashboardSettings(password_hash=secret))
    with Store(database) as store:
        assert Controller(first).record_configuration(store) == [
            "controller",
            "thresholds",
            "alerts",
            "dashboard",
            "oidc",
        ]
        assert Controller(first).record_configuration(store) == []  # restarted as it was
        lower = replace(first, thresholds=replace(first.thresholds, expiring_warning_days=45))
        assert Controller(lower).record_configuration(store) == ["thresholds"]
        entries = People(store.database).audit(action="config.change")
    assert [entry.detail["changed"] for entry in entries] == [
        ["thresholds"],
        ["controller", "thresholds", "alerts", "dashboard", "oidc"],
    ]
    assert entries[0].detail["since"] == entries[1].id
    assert (entries[0].actor, entries[0].source, entries[0].outcome) == (
        "controller",
        "config",
        "ok",
    )
    assert secret not in json.dumps([entry.detail for entry in entries])


def test_the_audit_page_in_french(url: str, ids: dict[str, int]) -> None:
    ada = by_session(url, ADMIN)
    ada.headers |= {"Accept-Language": "fr"}
    page = unescape(ada.get("/audit?outcome=refused&actor=victor").text)
    assert "<h1>Journal d'audit</h1>" in page and "Télécharger le journal d'audit" in page
    assert '<option value="refused" selected>refusé</option>' in page
    assert "<td>refusé</td>" in page and '<span data-count="rows">1</span> entrée' in page
