"""The dashboard in French and in English in a real headless Chromium: the overview, a host
page and the readiness, screenshotted in each language (test-artifacts/screenshots, or
$CPSFLEET_SCREENSHOTS), with the words a person reads checked in each, and the FR/EN switch
clicked as a person would. Each test signs in on the login page first; the page header names
who signed in and their role in the page's language, logging out leads back to the login page,
and a wrong password is told in the page's language.

Run it with the pcscd lock, as the other browser tests: ``flock /tmp/cpsfleet-pcscd.lock
.venv/bin/python -m pytest tests/test_dashboard_browser_i18n.py -q``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Page

from tests import test_dashboard_browser
from tests.test_dashboard import LYON_HOST, TOKEN, fleet_database
from tests.test_dashboard_browser import SCREENSHOTS, sign_in
from tests.test_dashboard_i18n import serving

pytestmark = [pytest.mark.pcsc, pytest.mark.slow]
browser = test_dashboard_browser.browser  # the same Chromium fixture

FRENCH = {
    "/": ("Vue d'ensemble du parc", ("Par site", "Cartes CPS qui expirent", "critique")),
    f"/hosts/{LYON_HOST}": ("ws-lyon-07", ("Lecteurs et cartes", "carte présente", "Constats")),
    "/readiness": ("Préparation", ("Étape suivante", "pas de carte", "prêt")),
}
ENGLISH = {
    "/": ("Fleet overview", ("Per site", "CPS cards expiring", "critical")),
    f"/hosts/{LYON_HOST}": ("ws-lyon-07", ("Readers and cards", "card present", "Open findings")),
    "/readiness": ("Readiness", ("Next step", "no card", "ready")),
}
NAMES = {"/": "overview", f"/hosts/{LYON_HOST}": "host", "/readiness": "readiness"}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(fleet_database(tmp_path_factory.mktemp("browser-i18n")), spoken="fr") as address:
        yield address


def opened(browser: Browser, locale: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale=locale)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    yield page
    context.close()
    assert problems == [], problems


@pytest.fixture
def french_page(browser: Browser) -> Iterator[Page]:
    yield from opened(browser, "fr-FR")


@pytest.fixture
def english_page(browser: Browser) -> Iterator[Page]:
    yield from opened(browser, "en-US")


def screenshot(page: Page, name: str) -> None:
    shot = SCREENSHOTS / f"{name}.png"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def check(page: Page, url: str, pages: dict[str, tuple[str, tuple[str, ...]]], lang: str) -> None:
    for path, (title, words) in pages.items():
        page.goto(url + path)
        assert page.locator("html").get_attribute("lang") == lang
        assert page.locator("h1").inner_text() == title
        seen = page.locator("main").inner_text()
        for word in words:
            assert word in seen, (path, word)
        screenshot(page, f"{NAMES[path]}-{lang}")


def test_a_french_browser_reads_french(french_page: Page, url: str) -> None:
    sign_in(french_page, url, "/")
    check(french_page, url, FRENCH, "fr")
    french_page.goto(url + "/")
    months = french_page.locator("#expiry-chart text.label").all_text_contents()
    assert months[0] == "expirées" and all(len(month.split()) == 2 for month in months[1:])
    assert "Généré le" in french_page.locator("footer").inner_text()


def test_an_english_browser_reads_english(english_page: Page, url: str) -> None:
    sign_in(english_page, url, "/")
    check(english_page, url, ENGLISH, "en")


def test_the_switch_changes_the_language_and_keeps_the_page(french_page: Page, url: str) -> None:
    sign_in(french_page, url, "/readiness")
    assert french_page.locator("h1").inner_text() == "Préparation"
    with french_page.expect_navigation():
        french_page.click("nav.languages a[data-language=en]")
    assert french_page.url == url + "/readiness"
    assert french_page.locator("h1").inner_text() == "Readiness"
    french_page.goto(url + "/")  # the choice is kept (a cookie)
    assert french_page.locator("h1").inner_text() == "Fleet overview"
    with french_page.expect_navigation():
        french_page.click("nav.languages a[data-language=fr]")
    assert french_page.locator("h1").inner_text() == "Vue d'ensemble du parc"


def test_the_header_names_who_signed_in_and_logging_out_signs_out(
    french_page: Page, url: str
) -> None:
    page = french_page
    page.goto(url + "/readiness")
    assert page.locator("h1").inner_text() == "Se connecter"
    form = page.locator("form.login").inner_text()
    assert "Nom d'utilisateur" in form and "Mot de passe" in form
    assert page.locator("header form.logout").count() == 0  # nobody to name yet
    screenshot(page, "login-fr")
    sign_in(page, url, "/readiness", user="admin")
    user = page.locator("header form.logout .user")
    assert user.get_attribute("data-role") == "admin"
    assert user.inner_text() == "admin · administrateur"
    assert page.locator("header form.logout button").inner_text() == "Se déconnecter"
    with page.expect_navigation():
        page.click("nav.languages a[data-language=en]")
    assert user.inner_text() == "admin · admin"
    assert page.locator("header form.logout button").inner_text() == "Log out"
    screenshot(page, "signed-in-en")
    with page.expect_navigation():
        page.click("header form.logout button")
    assert page.url == url + "/login"
    assert page.locator("h1").inner_text() == "Log in"
    assert page.locator("header form.logout").count() == 0
    page.goto(url + "/hosts")  # the session is gone: back to the login page
    assert page.url == f"{url}/login?{urlencode({'next': '/hosts'})}"
    page.goto(url + "/api/v1/overview")
    assert "login required" in page.locator("body").inner_text()


def test_the_token_signs_in_as_a_viewer(english_page: Page, url: str) -> None:
    sign_in(english_page, url, "/hosts", secret=TOKEN)
    user = english_page.locator("header form.logout .user")
    assert user.get_attribute("data-role") == "viewer"
    assert user.inner_text() == "token · viewer"


@pytest.mark.parametrize(
    ("locale", "lang", "title", "error"),
    [
        ("fr-FR", "fr", "Se connecter", "Nom d'utilisateur ou mot de passe incorrect."),
        ("en-US", "en", "Log in", "Wrong user name or password."),
    ],
)
def test_a_wrong_password_is_told_in_the_pages_language(
    browser: Browser, url: str, locale: str, lang: str, title: str, error: str
) -> None:
    with contextmanager(opened)(browser, locale) as page:
        page.goto(url + "/cards")
        page.fill("input[name=secret]", "not the password")
        with page.expect_navigation() as answered:
            page.click("form.login button[type=submit]")
        response = answered.value
        assert response is not None and response.status == 401
        assert page.locator("html").get_attribute("lang") == lang
        assert page.locator("h1").inner_text() == title
        assert page.locator("form.login p.error[role=alert]").inner_text() == error
        # The form keeps the page asked: the right password then lands on it.
        assert page.locator("input[name=next]").get_attribute("value") == "/cards"
        screenshot(page, f"login-failed-{lang}")
        page.fill("input[name=secret]", test_dashboard_browser.PASSWORD)
        with page.expect_navigation():
            page.click("form.login button[type=submit]")
        assert page.url == url + "/cards"
