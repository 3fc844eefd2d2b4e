"""The dashboard in the reader's language: French by default for people, English when the
browser or the switch asks for it; dates, times and numbers as each language writes them;
the JSON, /metrics and the exports' keys in English whatever the language."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from html import unescape
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cpsfleet import i18n
from cpsfleet.controller.db.people import People
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.web import language
from cpsfleet.controller.web.auth import hash_secret, new_user_token
from tests.test_dashboard import (
    GRENOBLE_HOST,
    LYON_HOST,
    PASSWORD,
    build_fleet,
    fetch,
    login,
    request,
    session_cookie,
)
from tests.test_dashboard import serving as dashboard_serving
from tests.test_readiness_cli import NOW

ENGLISH = {"Accept-Language": "en-GB,en;q=0.9"}
FRENCH = {"Accept-Language": "fr-FR,fr;q=0.9"}


@contextmanager
def serving(database: str, spoken: str | None = "fr", **dashboard: Any) -> Iterator[str]:
    with dashboard_serving(database, spoken, **dashboard) as address:
        yield address


@pytest.fixture(scope="module")
def fleet(module_database: str) -> str:
    return build_fleet(module_database)


@pytest.fixture(scope="module")
def url(fleet: str) -> Iterator[str]:
    with serving(fleet) as address:
        yield address


def text(url: str, path: str, headers: dict[str, str] | None = None, status: int = 200) -> str:
    reply = fetch(url, path, headers=headers or {})
    assert reply.status == status, reply.text
    return unescape(reply.text)


def test_the_pages_speak_french_by_default(url: str) -> None:
    overview = text(url, "/")
    assert '<html lang="fr">' in overview
    assert "Vue d'ensemble du parc" in overview and "Par site" in overview
    assert "Cartes CPS qui expirent, 12 prochains mois" in overview
    assert ">critique<" in overview and "Fleet overview" not in overview
    readiness = text(url, "/readiness")
    assert "<h1>Préparation</h1>" in readiness and "Étape suivante" in readiness
    assert "Aucun professionnel" not in readiness  # the roster has rows
    host = text(url, f"/hosts/{LYON_HOST}")
    assert "Lecteurs et cartes" in host and "Constats ouverts" in host
    assert "carte présente" in host  # a reader's state as a word, not card_present
    assert "card_present" not in host.replace("data-", "")
    alerts = text(url, "/alerts")
    assert "Silences en vigueur" in alerts and ">en cours<" in alerts


def test_the_browser_s_language_then_the_switch_choose_english(url: str) -> None:
    english = text(url, "/", ENGLISH)
    assert '<html lang="en">' in english and "Fleet overview" in english
    assert "Vue d'ensemble" not in english
    # The switch sets a cookie and comes back to the page it was clicked on.
    reply = request(url, "/language/en?next=/readiness")
    assert reply.status == 303 and reply.headers["location"] == "/readiness"
    cookie = reply.headers["set-cookie"].split(";")[0]
    assert cookie == f"{language.COOKIE}=en"
    assert "<h1>Readiness</h1>" in text(url, "/readiness", {"Cookie": cookie})
    # The switch wins over the browser, which wins over the configuration.
    french = {"Cookie": f"{language.COOKIE}=fr", **ENGLISH}
    assert "<h1>Préparation</h1>" in text(url, "/readiness", french)
    # No redirect elsewhere than this dashboard.
    assert request(url, "/language/fr?next=//evil.example").headers["location"] == "/"


def test_the_switch_links_every_page_to_both_languages(url: str) -> None:
    html = text(url, "/cards?site=Lyon")
    assert 'href="/language/en?next=/cards?site%3DLyon"' in html.replace("&amp;", "&") or (
        "/language/en?next=%2Fcards%3Fsite%3DLyon" in html
    )
    assert 'data-language="fr"' in html and 'aria-current="true"' in html


def test_the_configuration_chooses_when_the_browser_says_nothing_of_ours(fleet: str) -> None:
    with serving(fleet, spoken="en") as address:
        assert "Fleet overview" in text(address, "/", {"Accept-Language": "de-DE,de;q=0.9"})
        assert "Vue d'ensemble du parc" in text(address, "/", {"Accept-Language": "fr-CA"})


def test_the_404_page_and_errors_are_translated(url: str) -> None:
    missing = text(url, "/nothing-here", status=404)
    assert "Ce tableau de bord n'a rien à cette adresse." in missing
    assert "<h1>Erreur</h1>" in missing and "Retour à la vue d'ensemble" in missing
    english = text(url, "/nothing-here", ENGLISH, status=404)
    assert "This dashboard has nothing at this address." in english
    host = text(url, "/hosts/nobody", status=404)
    assert "aucun poste 'nobody' ne s'est signalé" in host


def test_the_login_page_is_translated(fleet: str) -> None:
    with serving(fleet, password_hash=hash_secret(PASSWORD)) as address:
        # Where a page sends whoever has not signed in yet.
        asked = request(address, "/cards")
        assert asked.status == 303 and asked.headers["location"] == "/login?next=%2Fcards"
        login = unescape(request(address, "/login?next=%2Fcards").text)
        assert '<html lang="fr">' in login
        assert "Nom d'utilisateur" in login and "Mot de passe" in login
        assert "Se connecter" in login and "Password" not in login
        english = unescape(request(address, "/login", headers=ENGLISH).text)
        assert "User name" in english and "Password" in english
        # The switch is open before signing in.
        reply = request(address, "/language/en?next=/login")
        assert reply.status == 303 and reply.headers["location"] == "/login"
        wrong = request(
            address,
            "/login",
            "POST",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"secret=wrong&next=/",
        )
        assert wrong.status == 401
        assert "Nom d'utilisateur ou mot de passe incorrect." in unescape(wrong.text)


def test_dates_and_numbers_follow_the_reader_s_convention(url: str) -> None:
    cards = text(url, "/cards")
    zone = ZoneInfo("Europe/Paris")
    generated = NOW.astimezone(zone)
    months = "janv. févr. mars avr. mai juin juil. août sept. oct. nov. déc.".split()
    french_day = f"{generated.day} {months[generated.month - 1]} {generated.year}"
    assert f"Généré le {french_day} {generated:%H:%M}" in cards
    english = text(url, "/cards", ENGLISH)
    assert (
        f"Generated {generated:%b} {generated.day}, {generated.year} {generated:%H:%M}" in english
    )
    # The chart's months cannot be read as days: "déc. 2026", not "Dec 26".
    overview = text(url, "/")
    assert f">{months[NOW.month - 1]} {NOW.year}</text>" in overview
    assert f">{NOW:%b} {NOW.year}</text>" in text(url, "/", ENGLISH)
    with i18n.use("fr"):
        assert language.number(1234) == "1\u202f234"
        assert language.day("2026-12-13") == "13 déc. 2026"
        assert language.month("2026-12") == "déc. 2026"
        assert language.day("9999-12-31") == "sans expiration"
        moment = datetime(2026, 12, 13, 13, 5, tzinfo=ZoneInfo("UTC"))
        assert language.when(moment, zone) == "13 déc. 2026 14:05"
    with i18n.use("en"):
        assert language.number(1234) == "1,234"
        assert language.day(date(2026, 12, 13)) == "Dec 13, 2026"


def test_machines_read_english_whatever_the_language(url: str) -> None:
    french = {"Cookie": f"{language.COOKIE}=fr", "Accept-Language": "fr"}
    reply = fetch(url, "/api/v1/readiness", headers=french)
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    rows = reply.json()
    assert rows and {"surname", "state", "next_step"} <= set(rows[0])
    english = fetch(url, "/api/v1/readiness", headers=ENGLISH).json()
    assert rows == english
    missing = fetch(url, "/api/v1/hosts/nobody", headers=french)
    assert missing.status == 404 and missing.json() == {"detail": "no host 'nobody' has reported"}
    metrics = fetch(url, "/metrics", headers=french).text
    assert "cpsfleet_" in metrics
    export = fetch(url, "/export/cards.csv", headers=french).text
    assert export.splitlines()[0].startswith(export.splitlines()[0].lower()[:1])


def test_accept_language_prefers_the_heaviest_of_ours() -> None:
    assert language.preferred("de-DE,de;q=0.9,en;q=0.8,fr;q=0.7") == "en"
    assert language.preferred("fr-FR,fr;q=0.9,en-US;q=0.8") == "fr"
    assert language.preferred("en;q=0,fr;q=0.1") == "fr"
    assert language.preferred("de, *") is None
    assert language.preferred(None) is None


def test_the_access_errors_are_translated(fleet: str) -> None:
    """What refuses a person is said in their language; the API's JSON stays English."""
    with serving(fleet, password_hash=hash_secret(PASSWORD)) as address:
        cookie = {"Cookie": session_cookie(login(address, PASSWORD))}
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        expired = request(address, "/logout", "POST", cookie | form, b"csrf=stale")
        assert expired.status == 403
        assert "ce formulaire a expiré : rechargez la page" in unescape(expired.text)
        foreign = login(address, PASSWORD, headers={"Origin": "https://evil.example"})
        assert foreign.status == 403
        assert "un formulaire venu d'un autre site est refusé" in unescape(foreign.text)
        token = new_user_token()
        with Store(fleet) as store:
            tables = People(store.database)
            tables.add_user("claude", "viewer", ["Lyon Part-Dieu"], NOW)
            tables.add_token("claude", "reading", token, NOW, None)
        lyon_only = {"Authorization": f"Bearer {token}"}
        other_site = request(address, f"/hosts/{GRENOBLE_HOST}", headers=lyon_only)
        assert other_site.status == 403
        assert "vos droits ne couvrent pas le site de ce poste" in unescape(other_site.text)
        machine = request(address, f"/api/v1/hosts/{GRENOBLE_HOST}", headers=lyon_only | FRENCH)
        assert machine.status == 403 and machine.json() == {
            "detail": "your rights do not cover the site of this host"
        }
