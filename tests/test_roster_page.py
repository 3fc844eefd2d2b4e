"""The roster from the dashboard: /roster shows what it holds, POST /api/v1/roster replaces it
with a CSV file (from a script's token, or the page's form in a real Chromium), for operators
and admins of every site only, every import and refusal in the audit trail; a real uvicorn
server on a real database (SQLite or PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from cpsfleet.controller.db.people import People
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.intake.roster import load_professionals
from cpsfleet.controller.web.auth import new_user_token
from tests.test_dashboard import (
    PASSWORD,
    PASSWORD_HASH,
    Reply,
    build_fleet,
    csrf_of,
    login,
    request,
    serving,
    session_cookie,
)
from tests.test_dashboard_browser import browser, shot
from tests.test_readiness_cli import NOW, SAMPLE

__all__ = ["browser"]  # test_dashboard_browser's headless Chromium, for this module too

LYON = "Lyon Part-Dieu"
HEADER = "surname;given_name;profession;rpps;adeli;site;ecps_activated;mobile_on_file;email_on_file"
ONE = f"{HEADER}\nDUPONT;Anne;médecin;10009876543;;Annecy;non;oui;oui\n"
# People: an operator of every site, a Lyon operator, a viewer; each with an API token.
PEOPLE = {"olga": ("operator", None), "lea": ("operator", [LYON]), "victor": ("viewer", None)}


@pytest.fixture
def database(database: str) -> str:
    return build_fleet(database)  # the sample roster: four professionals, two sites


@pytest.fixture
def tokens(database: str) -> dict[str, str]:
    made = {}
    with Store(database) as store:
        people = People(store.database)
        for name, (role, sites) in PEOPLE.items():
            people.add_user(name, role, sites, NOW, PASSWORD_HASH)  # type: ignore[arg-type]
            made[name] = new_user_token()
            people.add_token(name, "tests", made[name], NOW, None)
    return made


@pytest.fixture
def url(database: str) -> Iterator[str]:
    with serving(database) as address:
        yield address


def send(url: str, body: bytes, headers: dict[str, str]) -> Reply:
    return request(url, "/api/v1/roster", "POST", {"Content-Type": "text/csv"} | headers, body)


def surnames(database: str) -> list[str]:
    with Store(database) as store:
        return sorted(p.surname for p in load_professionals(store.database))


def imports(database: str) -> list[tuple[str, str, str]]:
    """The imports from the dashboard (the fleet's first came from the command line)."""
    with Store(database) as store:
        entries = People(store.database).audit(action="roster.import")
    return [(e.actor, e.target, e.outcome) for e in entries if not e.actor.startswith("cli:")]


def test_the_page_shows_the_roster_per_site_and_offers_the_import_to_who_may(
    url: str, tokens: dict[str, str]
) -> None:
    olga = {"Authorization": f"Bearer {tokens['olga']}"}
    page = unescape(request(url, "/roster", headers=olga).text)
    assert 'data-count="rows">4<' in page and 'data-site="Grenoble"' in page
    assert 'id="roster-form"' in page
    lea = unescape(
        request(url, "/roster", headers={"Authorization": f"Bearer {tokens['lea']}"}).text
    )
    assert 'data-count="rows">2<' in lea and 'data-site="Grenoble"' not in lea  # her site's
    assert 'id="roster-form"' not in lea  # the roster is every site's: not hers to replace
    summary = request(url, "/api/v1/roster", headers=olga).json()
    assert summary["professionals"] == 4 and summary["imported_at"].endswith("Z")
    assert [site["site"] for site in summary["sites"]] == ["Grenoble", LYON]


def test_a_script_replaces_the_roster_with_its_token(
    url: str, database: str, tokens: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {tokens['olga']}", "X-Roster-File": "annecy%C3%A9.csv"}
    reply = send(url, ONE.encode(), headers)
    assert reply.status == 200 and reply.json() == {"imported": 1, "replaced": 4}
    assert surnames(database) == ["DUPONT"]
    assert imports(database) == [("olga", "annecyé.csv", "ok")]
    with Store(database) as store:
        entry = People(store.database).audit(action="roster.import")[0]
    assert entry.detail == {"imported": 1, "replaced": 4}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"", "text/csv", 400, "line 1: no header"),
        (HEADER.encode() + b"\n", "text/csv", 400, "no professional"),
        (f"{HEADER}\nX;Y;pilote;123;;Lyon;non;oui;oui\n".encode(), "text/csv", 400, "line 2"),
        (ONE.encode("latin-1"), "text/csv", 400, "not UTF-8"),
        (ONE.encode(), "application/json", 415, "text/csv"),
        (b"x" * (5 * 1024 * 1024 + 1), "text/csv", 413, "larger than 5 MB"),
    ],
    ids=["empty", "header-only", "bad-row", "latin-1", "json", "too-large"],
)
def test_a_roster_that_cannot_be_imported_changes_nothing_and_says_why(
    url: str,
    database: str,
    tokens: dict[str, str],
    body: bytes,
    content_type: str,
    status: int,
    message: str,
) -> None:
    headers = {"Authorization": f"Bearer {tokens['olga']}", "Content-Type": content_type}
    reply = request(url, "/api/v1/roster", "POST", headers, body)
    assert reply.status == status and message in reply.json()["detail"], reply.text
    assert surnames(database) == ["BERNARD", "DONNAT-GADY", "MARTIN", "ROUSSEAU"]


def test_only_users_of_every_site_who_act_import_and_refusals_are_recorded(
    url: str, database: str, tokens: dict[str, str]
) -> None:
    for name in ("lea", "victor"):
        reply = send(url, ONE.encode(), {"Authorization": f"Bearer {tokens[name]}"})
        assert reply.status == 403, name
    assert surnames(database) == ["BERNARD", "DONNAT-GADY", "MARTIN", "ROUSSEAU"]
    assert sorted(imports(database)) == [("lea", "", "refused"), ("victor", "", "refused")]


def test_a_session_needs_its_csrf_token(url: str, database: str) -> None:
    signed = login(url, PASSWORD, "/roster")
    cookie = {"Cookie": session_cookie(signed)}
    assert send(url, ONE.encode(), cookie).status == 403
    csrf = csrf_of(request(url, "/roster", headers=cookie).text)
    assert send(url, ONE.encode(), cookie | {"X-CSRF-Token": csrf}).status == 200
    assert surnames(database) == ["DUPONT"]
    assert imports(database)[0] == ("admin", "roster.csv", "ok")


@pytest.mark.slow
def test_the_page_s_form_uploads_the_file_and_lists_the_faults(
    url: str, database: str, tmp_path: Path, browser: Browser
) -> None:
    """In a real Chromium: a bad file's faults are shown and change nothing; the sample
    roster is then imported and the page shows it."""
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{HEADER}\nX;Y;pilote;123;;Lyon;non;oui;oui\n", encoding="utf-8")
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    page.goto(f"{url}/roster")
    page.fill("input[name=secret]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/roster")
    page.set_input_files("#roster-form input[type=file]", str(bad))
    page.click("#roster-form button")
    page.wait_for_selector("#roster-status pre.problems")
    status = page.inner_text("#roster-status")
    assert "Rien n'a été importé" in status and "line 2" in status
    shot(page, "roster-refused-fr")
    assert len(surnames(database)) == 4
    page.set_input_files("#roster-form input[type=file]", str(SAMPLE))
    page.click("#roster-form button")
    page.wait_for_url(f"{url}/roster?done=roster_imported&count=4")
    notice = "La liste des professionnels est importée : 4 professionnels."
    assert notice in page.inner_text("main")
    shot(page, "roster-imported-fr")
    context.close()
    assert imports(database)[0] == ("admin", "roster-sample.csv", "ok")
