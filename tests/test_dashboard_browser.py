"""The dashboard in a real headless Chromium (Debian's), driven by Playwright, on the demo fleet.

The demo fleet, as `scripts/demo.sh` runs it: a real pcscd with vpcd readers holding the four
example cards, the agent and the controller as processes on a Mosquitto of their own, plus a
synthetic fleet played by `cpsfleet sim fleet`. The test reads the expected figures from the
controller's database itself, then checks what the browser shows. Every test first asks for a
page, is sent to the login page, signs in there with the configured password and lands on the
page asked. Screenshots of each page go to test-artifacts/screenshots (or $CPSFLEET_SCREENSHOTS).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Page, Response, sync_playwright

from tests.conftest import BASE_PORT, Broker, PlayedCard, Service, run_cli, wait_for
from tests.fleet import Fleet
from tests.test_dashboard import PASSWORD, PASSWORD_HASH, fleet_database, serving

pytestmark = pytest.mark.pcsc

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = Path(os.environ.get("CPSFLEET_SCREENSHOTS", ROOT / "test-artifacts" / "screenshots"))
CHROMIUM = os.environ.get("CPSFLEET_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
]
SYNTHETIC_HOSTS, SEED = 24, 20261127
CARDS = ("doctor-cps3", "nurse-cps4", "expired-cps3", "vitale")
DOCTOR, NURSE, EXPIRED = "99213845", "10452278", "20991234"


class DemoFleet:
    def __init__(self, fleet: Fleet, url: str) -> None:
        self.fleet, self.url = fleet, url

    def scalar(self, sql: str, *params: Any) -> Any:
        return self.fleet.query(sql, *params)[0][0]


@pytest.fixture
def demo(
    tmp_path: Path,
    own_broker: Broker,
    services: Callable[..., Service],
    insert: Callable[..., PlayedCard],
    examples: dict[str, Path],
) -> DemoFleet:
    for offset, card in enumerate(CARDS):
        insert(examples[card], BASE_PORT + offset)
    fleet = Fleet(tmp_path, own_broker, services)
    # The configured password (its [dashboard] table is the configuration's last).
    with fleet.controller_conf.open("a") as configuration:
        configuration.write(f'password_hash = "{PASSWORD_HASH}"\n')
    fleet.controller()
    url = fleet.dashboard_url()
    fleet.agent()
    played = run_cli(
        *("sim", "fleet", "--broker", own_broker.url, "--once"),
        *("--agents", str(SYNTHETIC_HOSTS), "--seed", str(SEED)),
    )
    assert played.returncode == 0, played.stderr
    expected_hosts = SYNTHETIC_HOSTS + 1

    def loaded() -> bool:
        hosts = fleet.query("select count(*) from hosts where last_status_at is not null")
        view = fleet.view()
        cards = len(view.cards) if view else 0
        return bool(hosts) and hosts[0][0] == expected_hosts and cards == 4

    wait_for(loaded, 30, "the demo fleet in the controller's database")
    roster = run_cli(
        *("controller", "roster", "import", str(ROOT / "docs" / "roster-sample.csv")),
        *("--database", str(fleet.database)),
    )
    assert roster.returncode == 0, roster.stderr
    # The rules ran for each status as it was stored; one more status must not change counts.
    wait_for(lambda: _findings_settled(fleet), 15, "the findings of every host")
    return DemoFleet(fleet, url)


def _findings_settled(fleet: Fleet) -> bool:
    first = fleet.query("select count(*) from findings")
    return bool(first) and first == fleet.query("select count(*) from findings")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: scripts/setup.sh installs it"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, demo: DemoFleet) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda error: problems.append(str(error)))
    outside: list[str] = []
    opened.on("request", lambda r: None if r.url.startswith(demo.url) else outside.append(r.url))
    yield opened
    context.close()
    assert problems == [], f"the pages reported errors: {problems}"
    assert outside == [], f"the pages asked for other sites: {outside}"


def sign_in(
    page: Page, url: str, path: str = "/", user: str = "", secret: str = PASSWORD
) -> Response:
    """Ask for ``path``, sign in on the login page the dashboard sends to (no user name: the
    configured password signs in as admin), and land on ``path``; its response."""
    page.goto(url + path)
    assert page.url == f"{url}/login?{urlencode({'next': path})}"
    assert page.locator("input[name=next]").get_attribute("value") == path
    if user:
        page.fill("input[name=user]", user)
    page.fill("input[name=secret]", secret)
    with page.expect_navigation() as landed:
        page.click("form.login button[type=submit]")
    assert page.url == url + path
    response = landed.value
    assert response is not None
    return response


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


def count(page: Page, name: str) -> int:
    return int(page.locator(f'[data-count="{name}"]').first.inner_text())


def test_the_overview_shows_the_fleet_counts(page: Page, demo: DemoFleet) -> None:
    sign_in(page, demo.url, "/", user="admin")
    assert page.locator("header .user").get_attribute("data-role") == "admin"
    shot(page, "overview")
    hosts = demo.scalar("select count(*) from hosts")
    offline = demo.scalar("select count(*) from findings where rule = 'agent_offline'")
    assert count(page, "hosts") == hosts == SYNTHETIC_HOSTS + 1
    assert count(page, "offline") == offline
    assert count(page, "online") == demo.scalar(
        "select count(*) from hosts where presence = 'online' and id not in "
        "(select host_id from findings where rule = 'agent_offline')"
    )
    assert count(page, "readers") == demo.scalar("select count(*) from readers")
    assert count(page, "cards") == demo.scalar("select count(*) from cards")
    for severity in ("critical", "warning", "info"):
        expected = demo.scalar("select count(*) from findings where severity = ?", severity)
        assert count(page, severity) == expected, severity
    sites = demo.fleet.query("select count(distinct site) from hosts")[0][0]
    assert page.locator("#sites-table tbody tr").count() == sites
    # The nurse's CPS4 expires in 10 days: its month has a bar with at least that card.
    bars = page.locator("#expiry-chart g.bar")
    assert bars.count() == 13  # expired, then 12 months
    assert sum(int(bars.nth(i).get_attribute("data-count") or 0) for i in range(13)) > 0


def test_a_site_filter_and_a_text_filter_narrow_the_hosts(page: Page, demo: DemoFleet) -> None:
    sign_in(page, demo.url, "/hosts")
    rows = page.locator("#hosts-table tbody tr[data-host]")
    assert rows.count() == SYNTHETIC_HOSTS + 1
    site = demo.fleet.query(
        "select site from hosts group by site order by count(*) desc, site limit 1"
    )[0][0]
    with page.expect_navigation():
        page.select_option("select[name=site]", site)  # applies on change
    in_site = demo.scalar("select count(*) from hosts where site = ?", site)
    assert 0 < rows.count() == in_site < SYNTHETIC_HOSTS + 1
    assert page.locator("[data-count=rows]").inner_text() == str(in_site)
    shot(page, "hosts-filtered")
    page.goto(demo.url + "/hosts")
    page.fill("input[name=q]", demo.fleet.host_id)
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    assert [rows.nth(i).get_attribute("data-host") for i in range(rows.count())] == [
        demo.fleet.host_id
    ]


def test_a_severity_filter_narrows_the_cards(page: Page, demo: DemoFleet) -> None:
    sign_in(page, demo.url, "/cards")
    every = page.locator("#cards-table tbody tr[data-serial]").count()
    with page.expect_navigation():
        page.select_option("select[name=severity]", "critical")
    critical = page.locator("#cards-table tbody tr[data-serial]")
    assert 0 < critical.count() < every
    serials = {critical.nth(i).get_attribute("data-serial") for i in range(critical.count())}
    assert EXPIRED in serials and DOCTOR not in serials
    shot(page, "cards-critical")


def test_a_host_page_opens_from_the_hosts_table(page: Page, demo: DemoFleet) -> None:
    sign_in(page, demo.url, "/hosts")
    with page.expect_navigation():
        page.click(f'#hosts-table tr[data-host="{demo.fleet.host_id}"] a')
    assert page.url == f"{demo.url}/hosts/{demo.fleet.host_id}"
    assert page.locator("[data-field=id]").inner_text() == demo.fleet.host_id
    readers = page.locator("#readers-table tbody")
    for serial in (DOCTOR, NURSE, EXPIRED):
        assert serial in readers.inner_text()
    assert "card_expiring" in page.locator("#host-findings-table").inner_text()
    shot(page, "host")


def test_clicking_a_column_header_sorts_the_table(page: Page, demo: DemoFleet) -> None:
    sign_in(page, demo.url, "/hosts")
    header = page.locator("#hosts-table th", has_text="Readers")
    column = 4  # Host, Site, State, Last status, Readers

    def readers() -> list[int]:
        cells = page.locator(f"#hosts-table tbody tr td:nth-child({column + 1})")
        return [int(text) for text in cells.all_inner_texts()]

    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    ascending = readers()
    assert ascending == sorted(ascending) and ascending[0] < ascending[-1]
    header.locator("button").click()
    assert readers() == sorted(ascending, reverse=True)
    shot(page, "hosts-sorted")


def test_every_page_renders_in_the_browser(page: Page, demo: DemoFleet) -> None:
    sign_in(page, demo.url, "/findings")
    for path in ("/findings", "/alerts", "/readiness"):
        page.goto(demo.url + path)
        assert page.locator("h1").inner_text() in ("Findings", "Alerts", "Readiness")
        assert page.locator("table.sortable").count() >= 1
        shot(page, path.strip("/"))


def test_an_unknown_address_shows_the_dashboards_error_page(
    browser: Browser, tmp_path: Path
) -> None:
    with serving(fleet_database(tmp_path)) as url:
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        opened = context.new_page()
        response = sign_in(opened, url, "/hosts/nobody/readers")
        assert response.status == 404
        error = opened.locator("p.error")
        assert error.inner_text() == "This dashboard has nothing at this address."
        assert error.get_attribute("data-status") == "404"
        shot(opened, "not-found")
        opened.get_by_role("link", name="Back to the overview").click()
        opened.wait_for_url(url + "/")
        assert opened.locator("h1").inner_text() == "Fleet overview"
        context.close()
