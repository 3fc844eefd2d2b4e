"""Single sign-on in a real headless Chromium (Debian's), driven by Playwright: a Lyon site
operator signs in on the OpenID Connect provider's own page (oidc-provider-mock), acts on
an alert of Lyon from the dashboard, is refused on Grenoble, and an admin signed in with the
configured password reads each step in the audit trail. Screenshots go to
test-artifacts/screenshots (or $CPSFLEET_SCREENSHOTS), as the other browser tests'.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.test_dashboard import GRENOBLE_HOST, LYON_HOST, PASSWORD, fleet_database
from tests.test_dashboard_browser import browser, shot
from tests.test_oidc import LYON_OPERATOR, audit, dashboard, person

with warnings.catch_warnings():
    # The provider imports Authlib's modules that Authlib itself marks as deprecated.
    warnings.simplefilter("ignore", DeprecationWarning)
    import oidc_provider_mock

__all__ = ["browser"]  # test_dashboard_browser's headless Chromium, for this module too

pytestmark = [
    pytest.mark.slow,
    # The provider, in its thread, calls an Authlib server interface that Authlib deprecates.
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
]

EXPIRED_CARD, EXPIRING_CARD = "20991234", "10452278"


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    with oidc_provider_mock.run_server_in_thread(require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    return fleet_database(tmp_path)


@pytest.fixture
def url(fleet: Path, provider: str) -> Iterator[str]:
    with dashboard(fleet, provider) as address:
        yield address


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="en-GB")
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    yield opened
    context.close()
    assert problems == [], f"the pages reported errors: {problems}"


def test_a_lyon_operator_signs_in_through_the_provider_acts_on_lyon_only(
    page: Page, browser: Browser, url: str, provider: str, fleet: Path
) -> None:
    person(provider, "lea", LYON_OPERATOR, name="Léa Martin")
    page.goto(f"{url}/alerts")
    assert page.url.startswith(f"{url}/login")
    shot(page, "oidc-login")
    page.click("#sso-login")
    page.wait_for_url(f"{provider}/oauth2/authorize?*")
    page.get_by_placeholder("sub").fill("lea")
    shot(page, "oidc-provider")
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{url}/alerts")
    assert page.locator("header").inner_text().count("lea · operator") == 1
    rows = page.locator("#alerts-table tbody tr")
    assert rows.count() > 0
    assert LYON_HOST in page.content() and GRENOBLE_HOST not in page.content()
    shot(page, "oidc-alerts-lyon")

    page.click(f'a[href="/alerts/card_expired/{LYON_HOST}/{EXPIRED_CARD}"]')
    page.fill("#acknowledge-form input[name=note]", "new card ordered")
    page.click("#acknowledge-form button[type=submit]")
    page.wait_for_selector('[data-done="acknowledged"]')
    assert "new card ordered" in page.locator('[data-field="acknowledgement"]').inner_text()

    page.goto(f"{url}/alerts/card_expiring/{LYON_HOST}/{EXPIRING_CARD}")
    page.select_option("#silence-form select[name=duration]", "1d")
    page.fill("#silence-form input[name=reason]", "renewal under way")
    page.click("#silence-form button[type=submit]")
    page.wait_for_selector('[data-done="silenced"]')
    shot(page, "oidc-alert-silenced")

    refused = page.goto(f"{url}/hosts/{GRENOBLE_HOST}")
    assert refused is not None and refused.status == 403
    assert "your rights do not cover the site of this host" in page.content()
    shot(page, "oidc-grenoble-refused")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    crafted = page.request.post(
        f"{url}/alerts/acknowledge",
        form={"csrf": csrf, "rule": "no_reader", "host": GRENOBLE_HOST, "subject": "", "note": "x"},
    )
    assert crafted.status == 403

    trail = reversed(audit(fleet))
    actions = [(entry.action, entry.outcome) for entry in trail if entry.actor == "lea"]
    assert actions == [
        ("user.add", "ok"),
        ("sign_in", "ok"),
        ("alert.acknowledge", "ok"),
        ("alert.silence", "ok"),
        ("read", "refused"),  # the Grenoble host's page
        ("alert.acknowledge", "refused"),
    ]

    admin = browser.new_context(viewport={"width": 1366, "height": 768}, locale="en-GB")
    audit_page = admin.new_page()
    audit_page.goto(f"{url}/audit")
    audit_page.fill("input[name=secret]", PASSWORD)
    audit_page.click("form.login button[type=submit]")
    audit_page.wait_for_url(f"{url}/audit")
    table = audit_page.locator("#audit-table tbody tr")
    shown = [
        (row.get_attribute("data-action"), row.get_attribute("data-outcome"), row.inner_text())
        for row in table.all()
    ]
    lea = [(action, outcome) for action, outcome, text in shown if "lea" in text]
    assert lea == [
        ("alert.acknowledge", "refused"),
        ("read", "refused"),
        ("alert.silence", "ok"),
        ("alert.acknowledge", "ok"),
        ("sign_in", "ok"),
        ("user.add", "ok"),
    ]
    assert any("via: oidc" in text for action, _, text in shown if action == "sign_in")
    shot(audit_page, "oidc-audit-trail")
    admin.close()


def test_a_person_whose_groups_give_no_role_reads_why_in_french(
    browser: Browser, url: str, provider: str, fleet: Path
) -> None:
    person(provider, "zoe", ["marketing", "site-lyon"])
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="fr-FR")
    page = context.new_page()
    page.goto(f"{url}/")
    page.get_by_role("link", name="Se connecter avec Keycloak SSTI").click()
    page.wait_for_url(f"{provider}/oauth2/authorize?*")
    page.get_by_placeholder("sub").fill("zoe")
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{url}/oidc/callback?*")
    refusal = page.locator("p.error").inner_text()
    assert refusal == (
        "Vous ne pouvez pas utiliser ce tableau de bord : "
        "aucun de vos groupes ne donne de rôle sur ce tableau de bord."
    )
    assert page.locator("p.error").get_attribute("data-status") == "403"
    shot(page, "oidc-refused-fr")
    page.goto(f"{url}/hosts")
    assert page.url.startswith(f"{url}/login")
    context.close()
    entry = audit(fleet, "sign_in")[0]
    assert (entry.actor, entry.outcome) == ("zoe", "refused")
