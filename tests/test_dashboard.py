"""The dashboard over HTTP: a real uvicorn server on a real database (SQLite or PostgreSQL),
read as a client.

The pages in a browser are in test_dashboard_browser.py; here, what the server sends:
pages, JSON, filters, downloads, the OpenAPI description, and who may see them.
"""

from __future__ import annotations

import csv
import http.client
import io
import ipaddress
import json
import re
import ssl
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cpsfleet.controller.alerts.book import AlertBook
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.filters import Filters
from cpsfleet.controller.rules.findings import evaluate_fleet
from cpsfleet.controller.settings import ControllerSettings, SettingsError, load_settings
from cpsfleet.controller.web import data as webdata
from cpsfleet.controller.web import exports
from cpsfleet.controller.web.app import create_app
from cpsfleet.controller.web.auth import (
    DashboardConfigError,
    DashboardSettings,
    hash_secret,
    verify_secret,
)
from cpsfleet.controller.web.server import DashboardError, DashboardServer
from tests.conftest import free_port, run_cli
from tests.test_readiness_cli import NOW, grenoble, imported, lyon

PASSWORD = "correct horse battery staple"
TOKEN = "a-token-for-prometheus-0123456789"
# Hashed once: scrypt costs tens of milliseconds.
PASSWORD_HASH, TOKEN_HASH = hash_secret(PASSWORD), hash_secret(TOKEN)
PAGES = ("/", "/hosts", "/cards", "/findings", "/alerts", "/readiness")
LYON_HOST, GRENOBLE_HOST = "3f9c1a7be2d04c55", "8d2e44a0c1b94f07"
DOCTOR, NURSE, EXPIRED = "99213845", "10452278", "20991234"


class Reply:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    url: str,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    context: ssl.SSLContext | None = None,
) -> Reply:
    """One request, redirects not followed."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=10, context=context
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        return Reply(connection.getresponse())
    finally:
        connection.close()


def fetch(url: str, path: str, method: str = "GET", **options: Any) -> Reply:
    """``request`` with the configured token (``serving`` configures it): a signed-in reader
    of the whole fleet."""
    headers = {"Authorization": f"Bearer {TOKEN}", **options.pop("headers", {})}
    return request(url, path, method, headers, **options)


@pytest.fixture(scope="module")
def fleet(module_database: str) -> str:
    return build_fleet(module_database)


def fleet_database(directory: Path) -> Path:
    """``build_fleet`` in an SQLite file of ``directory``."""
    return Path(build_fleet(str(directory / "fleet.db")))


def build_fleet(database: str) -> str:
    """Lyon (four readers: a valid, an expiring and an expired CPS, a Vitale card) and Grenoble
    (no reader, no Cryptolib), their findings and alerts, a silence, the sample roster, in the
    new ``database`` (a path or a PostgreSQL URL)."""
    with Store(database) as store:
        store.record_status(lyon(), NOW)
        store.record_status(grenoble(), NOW)
        findings = evaluate_fleet(store.host_views(), NOW, ControllerSettings().thresholds)
        store.replace_findings(findings, NOW)
        book = AlertBook(store.database)
        book.update(findings, NOW)
        book.add_silence(
            "no_reader", GRENOBLE_HOST, None, NOW + timedelta(days=2), "moving", "it", NOW
        )
    imported(database)
    return database


@contextmanager
def serving(database: Path | str, language: str | None = None, **dashboard: Any) -> Iterator[str]:
    """The dashboard of ``database`` on a free port (``language``: the configuration's)."""
    secrets = {"password_hash": PASSWORD_HASH, "token_hash": TOKEN_HASH}
    settings = ControllerSettings(
        database=str(database),
        language=language,
        dashboard=DashboardSettings(**{"listen": "127.0.0.1:0"} | secrets | dashboard),
    )
    server = DashboardServer(settings.dashboard, create_app(settings, clock=lambda: NOW))
    server.start()
    try:
        yield server.url.replace("0.0.0.0", "127.0.0.1")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def url(fleet: str) -> Iterator[str]:
    with serving(fleet) as address:
        yield address


def api(url: str, path: str, **params: str) -> Any:
    reply = fetch(url, f"{path}?{urlencode(params)}" if params else path)
    assert reply.status == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    return reply.json()


def page(url: str, path: str) -> str:
    reply = fetch(url, path)
    assert reply.status == 200, reply.text
    assert reply.headers["content-type"].startswith("text/html")
    return reply.text


def table_rows(html: str, table_id: str, attribute: str) -> list[str]:
    body = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return re.findall(rf'<tr {attribute}="([^"]*)"', body)


# --- pages and their JSON -----------------------------------------------------------------------


def test_every_page_renders_the_fleet(url: str) -> None:
    overview = page(url, "/")
    assert "Lyon Part-Dieu" in overview and "Grenoble" in overview
    assert table_rows(page(url, "/hosts"), "hosts-table", "data-host") == [
        GRENOBLE_HOST,
        LYON_HOST,
    ]
    cards = table_rows(page(url, "/cards"), "cards-table", "data-serial")
    assert cards[:3] == [EXPIRED, NURSE, DOCTOR]  # soonest expiry first
    findings = page(url, "/findings")
    assert 'data-rule="card_expired"' in findings and 'data-rule="no_reader"' in findings
    alerts = page(url, "/alerts")
    assert "moving" in alerts  # the silence and its reason
    readiness = page(url, "/readiness")
    assert "MARTIN" in readiness and "next step" in readiness.lower()
    # Each professional's card expiry, as the page and its JSON show it.
    ends = (NOW + timedelta(days=20)).date().isoformat()
    shown = (NOW + timedelta(days=20)).strftime("%b %-d, %Y")  # in the reader's convention
    assert f'<td data-sort="{ends}">{shown}</td>' in readiness
    rows = {row["surname"]: row for row in api(url, "/api/v1/readiness")}
    assert (rows["MARTIN"]["state"], rows["MARTIN"]["card_expires"]) == ("ready", ends)
    assert "advised too: e-CPS" in rows["MARTIN"]["next_step"]


def test_overview_counts_what_the_store_holds(url: str, fleet: str) -> None:
    data = api(url, "/api/v1/overview")
    with Store.open_readonly(fleet) as store:
        severities = Counter(finding.severity for finding in store.findings())
        readers = sum(len(host.readers) for host in store.host_views())
        cards = sum(len(host.cards) for host in store.host_views())
    assert data["hosts"] == {"hosts": 2, "online": 0, "offline": 0, "unknown": 2}
    assert (data["readers"], data["cards"]) == (readers, cards) == (4, 4)
    assert data["findings"] == {name: severities[name] for name in ("critical", "warning", "info")}
    assert [site["site"] for site in data["sites"]] == ["Grenoble", "Lyon Part-Dieu"]
    lyon_site = data["sites"][1]
    assert (lyon_site["hosts"], lyon_site["readers"], lyon_site["cards"]) == (1, 4, 4)


def test_a_host_silent_too_long_is_offline_though_its_presence_says_online(
    database: str,
) -> None:
    earlier = NOW - timedelta(hours=2)  # statuses every 900 s: silent after 35 minutes
    with Store(database) as store:
        store.record_status(lyon(), earlier)
        store.record_presence(
            {
                "schema": "cpsfleet.presence",
                "version": 1,
                "host_id": LYON_HOST,
                "state": "online",
                "reason": "connected",
                "at": "2026-11-27T20:00:00Z",
                "agent_version": "0.1.0",
            },
            earlier,
        )
        store.replace_findings(
            evaluate_fleet(store.host_views(), NOW, ControllerSettings().thresholds), NOW
        )
    with serving(database) as address:
        assert api(address, "/api/v1/overview")["hosts"] == {
            "hosts": 1,
            "online": 0,
            "offline": 1,
            "unknown": 0,
        }
        assert [host["state"] for host in api(address, "/api/v1/hosts")] == ["offline"]
        assert api(address, f"/api/v1/hosts/{LYON_HOST}")["state"] == "offline"


def test_the_host_page_and_the_list_take_the_state_the_rules_last_saw(database: str) -> None:
    """Silent for two hours but not evaluated since: online on both pages, as on /metrics,
    until an evaluation opens its agent_offline finding; then offline on both."""
    thresholds = ControllerSettings().thresholds
    with Store(database) as store:
        host_id = store.record_status(lyon(), NOW - timedelta(hours=2)).host_id
        online = {"schema": "cpsfleet.presence", "version": 1, "host_id": host_id}
        online |= {"state": "online", "reason": "connected", "at": "2026-11-27T20:00:00Z"}
        store.record_presence(online | {"agent_version": "0.1.0"}, NOW - timedelta(hours=2))

        def states() -> tuple[str, str]:
            page = webdata.host(store, host_id, NOW, thresholds)
            assert page is not None
            return page["state"], webdata.hosts(store, webdata.Filters())[0]["state"]

        assert states() == ("online", "online")
        store.replace_findings(evaluate_fleet(store.host_views(), NOW, thresholds), NOW)
        assert states() == ("offline", "offline")


def test_the_expiry_chart_counts_cps_cards_by_month(url: str) -> None:
    expiry = api(url, "/api/v1/expiry")
    months = {bar["month"]: bar["cards"] for bar in expiry["months"]}
    assert len(months) == 12 and next(iter(months)) == NOW.strftime("%Y-%m")
    # lyon(): the nurse's card in 20 days, the doctor's in 200, one expired; no Vitale card.
    nurse = (NOW + timedelta(days=20)).strftime("%Y-%m")
    doctor = (NOW + timedelta(days=200)).strftime("%Y-%m")
    assert months[nurse] >= 1 and months[doctor] >= 1
    assert sum(months.values()) == 2
    assert (expiry["expired"], expiry["later"], expiry["unknown"]) == (1, 0, 0)
    html = page(url, "/")
    assert f'data-month="{nurse}" data-count="{months[nurse]}"' in html
    assert 'data-month="expired" data-count="1"' in html


def test_a_host_page_shows_its_readers_cards_and_findings(url: str) -> None:
    html = page(url, f"/hosts/{LYON_HOST}")
    assert set(table_rows(html, "readers-table", "data-reader")) == {
        reader["name"] for reader in lyon()["readers"]
    }
    for serial in (DOCTOR, NURSE, EXPIRED):
        assert serial in html
    assert "5.2.2" in html and "card_expiring" in html
    data = api(url, f"/api/v1/hosts/{LYON_HOST}")
    assert data["cryptolib"]["version"] == "5.2.2"
    assert [reader["card"]["serial"] for reader in data["readers"][:3]] == [DOCTOR, NURSE, EXPIRED]
    assert {finding["rule"] for finding in data["findings"]} >= {"card_expired", "card_expiring"}
    assert all(alert["host_id"] == LYON_HOST for alert in data["alerts"])


def test_an_unknown_host_is_a_404_page_and_a_404_json(url: str) -> None:
    html = fetch(url, "/hosts/nobody")
    assert html.status == 404 and "no host 'nobody' has reported" in unescape(html.text)
    assert html.headers["content-type"].startswith("text/html")
    reply = fetch(url, "/api/v1/hosts/nobody")
    assert reply.status == 404 and reply.json() == {"detail": "no host 'nobody' has reported"}


@pytest.mark.parametrize("path", ["/nowhere", "/hosts/x/y", "/static-not"])
def test_an_unknown_address_is_the_dashboards_own_error_page(url: str, path: str) -> None:
    reply = fetch(url, path)
    assert reply.status == 404 and reply.headers["content-type"].startswith("text/html")
    assert '<p class="error" data-status="404">' in reply.text
    assert "This dashboard has nothing at this address." in reply.text
    assert 'href="/findings"' in reply.text  # the dashboard's own navigation
    assert reply.headers["content-security-policy"].startswith("default-src 'self'")


@pytest.mark.parametrize("path", ["/api/v1/nowhere", "/api/v2/hosts", "/metrics/x", "/export/"])
def test_an_unknown_machine_address_is_a_json_404(url: str, path: str) -> None:
    reply = fetch(url, path)
    assert reply.status == 404 and reply.headers["content-type"] == "application/json"
    assert reply.json() == {"detail": "This dashboard has nothing at this address."}


def test_a_method_a_page_does_not_take_is_a_405_page(url: str) -> None:
    reply = fetch(url, "/hosts", method="DELETE")
    assert reply.status == 405 and reply.headers["allow"] == "GET, HEAD"
    assert "This address does not take that method." in reply.text
    reply = fetch(url, "/api/v1/hosts", method="PUT")
    assert (
        reply.status == 405 and reply.json()["detail"] == "This address does not take that method."
    )


HEADED = (
    *PAGES,
    f"/hosts/{LYON_HOST}",
    "/api/v1/hosts",
    "/api/v1/openapi.json",
    "/export/cards.csv",
    "/metrics",
    "/static/style.css",
    "/login",
)


@pytest.mark.parametrize("path", HEADED)
def test_head_answers_wherever_get_does(url: str, path: str) -> None:
    got, head = fetch(url, path), fetch(url, path, method="HEAD")
    assert got.status == head.status == 200
    assert head.body == b"" and got.body
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-security-policy"] == got.headers["content-security-policy"]
    if not path.startswith(("/metrics", "/login")):  # a new sign-in token, the clock's samples
        assert int(head.headers["content-length"]) == len(got.body)


def test_head_of_an_unknown_address_is_a_404_without_a_body(url: str) -> None:
    reply = fetch(url, "/nowhere", method="HEAD")
    assert reply.status == 404 and reply.body == b""
    assert reply.headers["content-type"].startswith("text/html")


# --- filters --------------------------------------------------------------------------------------


def test_the_site_filter_ignores_case_accents_and_spacing(url: str) -> None:
    hosts = api(url, "/api/v1/hosts", site="  lyon  PART-dieu ")
    assert [host["id"] for host in hosts] == [LYON_HOST]
    html = page(url, "/hosts?" + urlencode({"site": "Grenoble"}))
    assert table_rows(html, "hosts-table", "data-host") == [GRENOBLE_HOST]
    html = page(url, "/hosts?" + urlencode({"site": "GRÉNOBLE"}))
    assert table_rows(html, "hosts-table", "data-host") == [GRENOBLE_HOST]
    findings = api(url, "/api/v1/findings", site="grénoble")
    assert findings and {finding["host_id"] for finding in findings} == {GRENOBLE_HOST}
    cards = api(url, "/api/v1/cards", site="Lyon Pàrt-Dieu")
    assert {card["serial"] for card in cards} >= {DOCTOR, NURSE, EXPIRED}
    exported = fetch(url, "/export/hosts.json?" + urlencode({"site": "grénoble"}))
    assert [host["id"] for host in exported.json()] == [GRENOBLE_HOST]


def test_the_severity_filter(url: str) -> None:
    assert {f["severity"] for f in api(url, "/api/v1/findings", severity="warning")} == {"warning"}
    critical_cards = api(url, "/api/v1/cards", severity="critical")
    assert [card["serial"] for card in critical_cards] == [EXPIRED]
    info_hosts = api(url, "/api/v1/hosts", severity="info")
    assert [host["id"] for host in info_hosts] == [LYON_HOST]  # the Vitale card


def test_the_text_filter_ignores_case_and_accents(url: str) -> None:
    cards = api(url, "/api/v1/cards", q="martin")
    assert [card["serial"] for card in cards] == [NURSE]
    accents = api(url, "/api/v1/cards", q="kinesitherapeute")  # Masseur-Kinésithérapeute
    assert [card["serial"] for card in accents] == [EXPIRED]
    assert api(url, "/api/v1/findings", q="no such text anywhere") == []


def test_an_unknown_severity_is_refused_with_the_known_ones(url: str) -> None:
    reply = fetch(url, "/api/v1/findings?severity=urgent")
    assert reply.status == 400
    assert "use one of critical, warning, info" in reply.json()["detail"]
    assert fetch(url, "/findings?severity=urgent").status == 400


# --- downloads, API description, what the pages load ---------------------------------------


def test_downloads_are_the_exports(url: str, fleet: str) -> None:
    reply = fetch(url, "/export/cards.csv?site=Lyon%20Part-Dieu")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/csv; charset=utf-8"
    assert reply.headers["content-disposition"] == (
        f'attachment; filename="cpsfleet-cards-{NOW:%Y-%m-%d}.csv"'
    )
    expected = io.StringIO(newline="")
    with Store.open_readonly(fleet) as store:
        lyon = Filters("Lyon Part-Dieu")
        rows = webdata.cards(store, NOW, ControllerSettings().thresholds, lyon)
        exports.write(rows, exports.CARD_COLUMNS, "csv", expected)
    assert reply.text == expected.getvalue()
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert {row["serial"] for row in rows} >= {DOCTOR, NURSE, EXPIRED}
    hosts = fetch(url, "/export/hosts.json").body
    assert [host["id"] for host in json.loads(hosts)] == [GRENOBLE_HOST, LYON_HOST]
    readiness = fetch(url, "/export/readiness.csv")
    assert readiness.status == 200 and readiness.text.startswith("surname,given_name,")
    assert fetch(url, "/export/passwords.csv").status == 404
    assert fetch(url, "/export/hosts.xml").status == 404


def test_pages_link_their_downloads(url: str) -> None:
    html = page(url, "/cards?site=Grenoble&q=x")
    assert 'href="/export/cards.csv?site=Grenoble"' in html
    assert 'href="/export/cards.json?site=Grenoble"' in html


def test_the_openapi_description_covers_the_json(url: str) -> None:
    spec = api(url, "/api/v1/openapi.json")
    paths = set(spec["paths"])
    assert {
        *("/api/v1/overview", "/api/v1/hosts", "/api/v1/hosts/{host_id}", "/api/v1/cards"),
        *("/api/v1/expiry", "/api/v1/findings", "/api/v1/alerts", "/api/v1/silences"),
        *("/api/v1/readiness", "/api/v1/sites", "/metrics", "/export/{name}"),
    } <= paths
    severity = next(
        p for p in spec["paths"]["/api/v1/findings"]["get"]["parameters"] if p["name"] == "severity"
    )
    assert severity["schema"]["enum"] == ["critical", "warning", "info"]
    assert fetch(url, "/docs").status == 404  # its scripts would come from a CDN


def test_pages_load_nothing_from_outside(url: str) -> None:
    for path in (*PAGES, f"/hosts/{LYON_HOST}"):
        reply = fetch(url, path)
        assert "default-src 'self'" in reply.headers["content-security-policy"]
        for link in re.findall(r'(?:src|href)="([^"]*)"', reply.text):
            assert link.startswith(("/", "?", "#")) and not link.startswith("//"), (path, link)
    assert fetch(url, "/static/app.js").status == 200
    assert fetch(url, "/static/style.css").status == 200


def test_metrics_are_served_in_the_prometheus_format(url: str) -> None:
    reply = fetch(url, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    assert 'cpsfleet_hosts{presence="unknown",site="Grenoble"} 1.0' in reply.text


# --- access ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(fleet: str) -> Iterator[str]:
    """The dashboard on every address: login required."""
    with serving(
        fleet,
        listen="0.0.0.0:0",
        password_hash=hash_secret(PASSWORD),
        token_hash=hash_secret(TOKEN),
    ) as address:
        yield address


def test_loopback_needs_a_login_too(url: str) -> None:
    for path in PAGES:
        reply = request(url, path)
        assert reply.status == 303 and reply.headers["location"].startswith("/login?next=")
    for path in ("/api/v1/hosts", "/metrics", "/export/hosts.csv"):
        assert request(url, path).status == 401, path
    assert fetch(url, "/").status == 200


def test_only_healthz_answers_anyone(url: str) -> None:
    reply = request(url, "/healthz")
    assert reply.status == 200 and reply.json() == {"status": "ok"}


def test_a_public_metrics_endpoint_is_a_setting(fleet: str) -> None:
    with serving(fleet, metrics_public=True) as address:
        assert request(address, "/metrics").status == 200
        assert request(address, "/api/v1/hosts").status == 401


def test_beyond_loopback_pages_ask_for_a_login(guarded: str) -> None:
    reply = request(guarded, "/hosts")
    assert reply.status == 303 and reply.headers["location"] == "/login?next=%2Fhosts"
    assert request(guarded, "/login").status == 200
    assert request(guarded, "/static/style.css").status == 200


def test_beyond_loopback_the_api_wants_a_bearer_token(guarded: str) -> None:
    for path in ("/api/v1/hosts", "/metrics", "/export/cards.csv", "/api/v1/openapi.json"):
        reply = request(guarded, path)
        assert reply.status == 401, path
        assert reply.headers["www-authenticate"] == 'Bearer realm="cpsfleet"'
    wrong = request(guarded, "/api/v1/hosts", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    right = request(guarded, "/api/v1/hosts", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status == 200 and len(right.json()) == 2
    metrics = request(guarded, "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert metrics.status == 200


def login(url: str, secret: str, target: str = "/hosts", user: str = "", **options: Any) -> Reply:
    body = urlencode({"user": user, "secret": secret, "next": target}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **options.pop("headers", {})}
    return request(url, "/login", "POST", headers, body, **options)


def session_cookie(reply: Reply) -> str:
    cookie = reply.headers["set-cookie"]
    return cookie.split(";", 1)[0]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found[1]


def test_a_password_login_opens_a_session_until_logout(guarded: str) -> None:
    failed = login(guarded, "wrong password")
    assert failed.status == 401 and "Wrong user name or password" in failed.text
    assert "set-cookie" not in failed.headers
    reply = login(guarded, PASSWORD)
    assert reply.status == 303 and reply.headers["location"] == "/hosts"
    flags = reply.headers["set-cookie"].lower()
    assert "httponly" in flags and "samesite=lax" in flags and "secure" not in flags
    cookie = {"Cookie": session_cookie(reply)}
    hosts = request(guarded, "/hosts", headers=cookie)
    assert hosts.status == 200 and "Log out" in hosts.text and ">admin · admin<" in hosts.text
    assert request(guarded, "/api/v1/hosts", headers=cookie).status == 200
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    # Signing out is a state change: without the session's CSRF token it is refused.
    assert request(guarded, "/logout", "POST", headers=cookie | form, body=b"").status == 403
    assert request(guarded, "/hosts", headers=cookie).status == 200
    body = urlencode({"csrf": csrf_of(hosts.text)}).encode()
    assert request(guarded, "/logout", "POST", headers=cookie | form, body=body).status == 303
    assert request(guarded, "/hosts", headers=cookie).status == 303


def test_a_form_posted_from_another_site_is_refused(guarded: str) -> None:
    reply = login(guarded, PASSWORD, headers={"Origin": "https://evil.example"})
    assert reply.status == 403 and "set-cookie" not in reply.headers


def test_the_token_also_logs_in_a_browser(guarded: str) -> None:
    reply = login(guarded, TOKEN, "/cards")
    assert reply.status == 303 and reply.headers["location"] == "/cards"


def test_login_redirects_stay_on_the_dashboard(guarded: str) -> None:
    for target in ("//evil.example/", "https://evil.example/", "javascript:alert(1)"):
        assert login(guarded, PASSWORD, target).headers["location"] == "/"


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert, key_file = directory / "dashboard.pem", directory / "dashboard.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key_file


def test_https_with_the_configured_certificate(fleet: str, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    trusting = ssl.create_default_context(cafile=str(cert))
    with serving(
        fleet,
        listen="0.0.0.0:0",
        password_hash=hash_secret(PASSWORD),
        tls_cert=str(cert),
        tls_key=str(key),
    ) as address:
        assert address.startswith("https://")
        reply = login(address, PASSWORD, context=trusting)
        assert reply.status == 303 and "secure" in reply.headers["set-cookie"].lower()
        cookie = {"Cookie": session_cookie(reply)}
        assert request(address, "/", headers=cookie, context=trusting).status == 200
        with pytest.raises(ssl.SSLCertVerificationError):
            request(address, "/", context=ssl.create_default_context())


# --- settings and secrets ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"audit_days": 0}, "audit_days must be from 1 to 36500"),
        ({"listen": "8080"}, "listen must be host:port"),
        ({"listen": "dashboard.local:8080"}, "is not an IP address"),
        ({"listen": "127.0.0.1:70000"}, "listen must be host:port"),
        ({"password_hash": "hunter2"}, "password_hash is not a secret hash"),
        ({"tls_cert": "/etc/hostname"}, "tls_cert and tls_key go together"),
        ({"tls_cert": "/nonexistent.pem", "tls_key": "/nonexistent.key"}, "no such file"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"enabled": "yes"}, "enabled must be a true or false"),
        ({"session_hours": 0}, "session_hours must be at least 1"),
    ],
)
def test_bad_dashboard_settings_are_refused(table: dict[str, Any], message: str) -> None:
    with pytest.raises(DashboardConfigError, match=re.escape(message)):
        DashboardSettings(**table)


def test_the_dashboard_table_of_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "controller.toml"
    hashed = hash_secret(PASSWORD)
    path.write_text(f'[dashboard]\nlisten = "[::]:8443"\npassword_hash = "{hashed}"\n')
    dashboard = load_settings(path, {}).dashboard
    assert (dashboard.address.host, dashboard.address.port) == ("::", 8443)
    assert dashboard.login_required and not dashboard.tls
    assert dashboard.enabled
    path.write_text('[dashboard]\nlisten = "10.0.0.5:8080"\nsession_hours = 0\n')
    with pytest.raises(SettingsError, match="controller.toml: session_hours must be at least 1"):
        load_settings(path, {})
    # Users may live in the database only: no secret in the configuration is no error.
    assert DashboardSettings(listen="10.0.0.5:8080").login_required


def test_secrets_are_hashed_with_a_salt() -> None:
    first, second = hash_secret(PASSWORD), hash_secret(PASSWORD)
    assert first != second and PASSWORD not in first
    assert verify_secret(PASSWORD, first) and verify_secret(PASSWORD, second)
    assert not verify_secret("correct horse battery stapl", first)
    assert not verify_secret(PASSWORD, "scrypt$3$8$1$AAAA$AAAA")
    assert not verify_secret("", first)


def test_dashboard_secret_hashes_a_password_from_stdin() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cpsfleet", "controller", "dashboard-secret", "--password-stdin"],
        input=f"{PASSWORD}\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    hashed = re.fullmatch(r'password_hash = "(.*)"', line)
    assert hashed and verify_secret(PASSWORD, hashed.group(1))
    short = subprocess.run(
        [sys.executable, "-m", "cpsfleet", "controller", "dashboard-secret", "--password-stdin"],
        input="short\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert short.returncode == 2 and "at least 12 characters" in short.stderr


def test_dashboard_secret_makes_a_token_and_its_hash() -> None:
    result = run_cli("controller", "dashboard-secret", "--token")
    assert result.returncode == 0, result.stderr
    token = re.search(r"Bearer (\S+)'", result.stdout)
    hashed = re.search(r'token_hash = "(.*)"', result.stdout)
    assert token and hashed and verify_secret(token.group(1), hashed.group(1))


def test_a_busy_port_is_an_error_at_startup(fleet: str, tmp_path: Path) -> None:
    port = free_port()
    with serving(fleet, listen=f"127.0.0.1:{port}"):
        with pytest.raises(DashboardError, match=f"cannot listen on 127.0.0.1:{port}"):
            DashboardServer(
                DashboardSettings(listen=f"127.0.0.1:{port}"), create_app(ControllerSettings())
            )
        config = tmp_path / "controller.toml"
        config.write_text(
            f'broker = "mqtt://127.0.0.1:{free_port()}"\ndatabase = "{tmp_path / "c.db"}"\n'
            f'[dashboard]\nlisten = "127.0.0.1:{port}"\n'
        )
        result = run_cli("controller", "run", "--config", str(config))
    assert result.returncode == 2
    assert f"error: the dashboard cannot listen on 127.0.0.1:{port}" in result.stderr
