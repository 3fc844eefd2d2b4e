"""The dashboard in French and in English in a real headless Chromium: the overview, a host
page and the readiness, screenshotted in each language (test-artifacts/screenshots, or
$CPSFLEET_SCREENSHOTS), with the words a person reads checked in each, and the FR/EN switch
clicked as a person would.

Run it with the pcscd lock, as the other browser tests: ``flock /tmp/cpsfleet-pcscd.lock
.venv/bin/python -m pytest tests/test_dashboard_browser_i18n.py -q``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests import test_dashboard_browser
from tests.test_dashboard import LYON_HOST, fleet_database
from tests.test_dashboard_browser import SCREENSHOTS
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


def check(page: Page, url: str, pages: dict[str, tuple[str, tuple[str, ...]]], lang: str) -> None:
    for path, (title, words) in pages.items():
        page.goto(url + path)
        assert page.locator("html").get_attribute("lang") == lang
        assert page.locator("h1").inner_text() == title
        seen = page.locator("main").inner_text()
        for word in words:
            assert word in seen, (path, word)
        shot = SCREENSHOTS / f"{NAMES[path]}-{lang}.png"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000


def test_a_french_browser_reads_french(french_page: Page, url: str) -> None:
    check(french_page, url, FRENCH, "fr")
    french_page.goto(url + "/")
    months = french_page.locator("#expiry-chart text.label").all_text_contents()
    assert months[0] == "expirées" and all(len(month.split()) == 2 for month in months[1:])
    assert "Généré le" in french_page.locator("footer").inner_text()


def test_an_english_browser_reads_english(english_page: Page, url: str) -> None:
    check(english_page, url, ENGLISH, "en")


def test_the_switch_changes_the_language_and_keeps_the_page(french_page: Page, url: str) -> None:
    french_page.goto(url + "/readiness")
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
