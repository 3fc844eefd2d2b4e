"""The filters every listing of the dashboard takes (``site``, ``severity``, ``q``, ``host``),
on the pages, their JSON and the downloads; and one opening of the database per request.

A real uvicorn server on a real database (SQLite or PostgreSQL), as in test_dashboard.py:
Lyon (ws-lyon-07, four readers and cards) and Grenoble (ws-gre-01, no reader), their findings
and alerts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from cpsfleet.controller.db.people import People
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.web.auth import new_user_token
from tests.conftest import run_cli
from tests.test_dashboard import (
    DOCTOR,
    EXPIRED,
    GRENOBLE_HOST,
    LYON_HOST,
    NURSE,
    PAGES,
    api,
    build_fleet,
    fetch,
    page,
    request,
    serving,
    table_rows,
)
from tests.test_readiness_cli import NOW

LISTINGS = ("overview", "hosts", "cards", "expiry", "findings", "alerts")
FILTERS = {"site", "severity", "q", "host"}


@pytest.fixture(scope="module")
def fleet(module_database: str) -> str:
    return build_fleet(module_database)


@pytest.fixture(scope="module")
def url(fleet: str) -> Iterator[str]:
    with serving(fleet) as address:
        yield address


def query(path: str, **params: str) -> str:
    return f"{path}?{urlencode(params)}"


# --- one dependency, the same parameters everywhere ------------------------------------------


def test_every_listing_describes_the_same_filters(url: str) -> None:
    spec = api(url, "/api/v1/openapi.json")["paths"]

    def names(path: str) -> set[str]:
        return {parameter["name"] for parameter in spec[path]["get"]["parameters"]}

    for listing in LISTINGS:
        own = {"present", "all"} if listing == "cards" else set()  # the cards' own choices
        assert names(f"/api/v1/{listing}") == FILTERS | own, listing
    assert names("/api/v1/readiness") == FILTERS - {"host"}
    assert names("/export/{name}") == {"name", "site", "severity", "host"}
    host = next(p for p in spec["/api/v1/hosts"]["get"]["parameters"] if p["name"] == "host")
    assert "id, or its hostname" in host["description"]


# --- host ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("named", [LYON_HOST, "ws-lyon-07", "WS-Lyon-07", "  ws-lyon-07 "])
def test_host_is_named_by_its_id_or_its_hostname_in_any_case(url: str, named: str) -> None:
    assert [row["id"] for row in api(url, "/api/v1/hosts", host=named)] == [LYON_HOST]


def test_host_keeps_one_hosts_rows_in_every_listing(url: str) -> None:
    findings = api(url, "/api/v1/findings", host="ws-gre-01")
    assert {row["rule"] for row in findings} == {"cryptolib_missing", "no_reader"}
    assert {row["host_id"] for row in api(url, "/api/v1/alerts", host="ws-gre-01")} == {
        GRENOBLE_HOST
    }
    cards = api(url, "/api/v1/cards", host="ws-lyon-07")
    assert {card["serial"] for card in cards} >= {DOCTOR, NURSE, EXPIRED}
    assert {card["host_id"] for card in cards} == {LYON_HOST}
    assert api(url, "/api/v1/cards", host="ws-gre-01") == []
    overview = api(url, "/api/v1/overview", host="ws-gre-01")
    assert overview["hosts"]["hosts"] == 1 and overview["cards"] == 0
    assert [site["site"] for site in overview["sites"]] == ["Grenoble"]
    # The overview's chart counts the cards of the hosts it keeps: none in Grenoble.
    chart = overview["expiry"]
    assert sum(month["cards"] for month in chart["months"]) + chart["expired"] == 0
    assert api(url, "/api/v1/expiry", host="ws-gre-01") == chart
    lyon = api(url, "/api/v1/expiry", host="ws-lyon-07")
    assert lyon == api(url, "/api/v1/expiry") and lyon["expired"] == 1


def test_host_combines_with_the_other_filters(url: str) -> None:
    both = api(url, "/api/v1/findings", host="ws-lyon-07", severity="critical")
    assert [(row["rule"], row["subject"]) for row in both] == [("card_expired", EXPIRED)]
    assert api(url, "/api/v1/hosts", host="ws-lyon-07", site="Grenoble") == []
    assert api(url, "/api/v1/cards", host="ws-lyon-07", q="martin")[0]["serial"] == NURSE


def test_an_empty_host_is_no_filter(url: str) -> None:
    assert api(url, "/api/v1/hosts", host="") == api(url, "/api/v1/hosts")
    assert api(url, "/api/v1/findings", host=" ") == api(url, "/api/v1/findings")


def test_an_unknown_host_is_refused_on_the_api_and_the_pages(url: str) -> None:
    for listing in LISTINGS:
        reply = fetch(url, query(f"/api/v1/{listing}", host="ws-nowhere"))
        assert reply.status == 400, listing
        assert reply.json()["detail"] == (
            "unknown host 'ws-nowhere': /api/v1/hosts lists the fleet"
        )
    reply = fetch(url, query("/findings", host="ws-nowhere"))
    assert reply.status == 400 and reply.headers["content-type"].startswith("text/html")
    assert "unknown host" in reply.text


def test_a_wrong_severity_is_refused_on_every_listing(url: str) -> None:
    for listing in (*LISTINGS, "readiness"):
        reply = fetch(url, query(f"/api/v1/{listing}", severity="urgent"))
        assert reply.status == 400, listing
        assert "use one of critical, warning, info" in reply.json()["detail"]


def test_the_readiness_takes_no_host(url: str) -> None:
    everyone = api(url, "/api/v1/readiness")
    assert everyone and api(url, "/api/v1/readiness", host="ws-nowhere") == everyone


def test_the_pages_filter_by_host(url: str) -> None:
    html = page(url, query("/hosts", host="ws-gre-01"))
    assert table_rows(html, "hosts-table", "data-host") == [GRENOBLE_HOST]
    assert 'name="host" value="ws-gre-01"' in html
    for path in PAGES:
        html = page(url, query(path, host="ws-lyon-07") if path != "/readiness" else path)
        assert ('name="host"' in html) is (path != "/readiness"), path
    assert "ws-gre-01" not in page(url, query("/findings", host="ws-lyon-07"))


# --- downloads ----------------------------------------------------------------------------------


def download(url: str, path: str, **params: str) -> Any:
    reply = fetch(url, query(path, **params))
    assert reply.status == 200, reply.text
    return reply.json() if path.endswith(".json") else reply.text


def test_downloads_take_the_severity_and_the_host(url: str) -> None:
    info = download(url, "/export/hosts.json", severity="info")
    assert [row["id"] for row in info] == [LYON_HOST]  # the Vitale card
    by_name = download(url, "/export/hosts.json", host="WS-GRE-01")
    assert [row["id"] for row in by_name] == [GRENOBLE_HOST]
    critical = download(url, "/export/cards.json", severity="critical")
    assert [row["serial"] for row in critical] == [EXPIRED]
    assert download(url, "/export/cards.json", host="ws-gre-01") == []
    lyon = download(url, "/export/cards.json", host="ws-lyon-07", site="lyon part-dieu")
    assert {row["serial"] for row in lyon} >= {DOCTOR, NURSE, EXPIRED}
    ready = download(url, "/export/readiness.json", severity="critical")
    assert ready and len(ready) < len(download(url, "/export/readiness.json"))


def test_downloads_refuse_what_the_export_command_refuses(url: str) -> None:
    reply = fetch(url, query("/export/cards.csv", severity="urgent"))
    assert reply.status == 400 and "use one of critical" in reply.json()["detail"]
    reply = fetch(url, query("/export/hosts.csv", host="ws-nowhere"))
    assert reply.status == 400 and "unknown host 'ws-nowhere'" in reply.json()["detail"]
    reply = fetch(url, query("/export/readiness.csv", host="ws-lyon-07"))
    assert reply.status == 400
    assert reply.json()["detail"] == "the readiness export has no host filter"


@pytest.mark.parametrize(
    ("what", "options"),
    [
        ("hosts", {"severity": "warning", "site": "GRENOBLE"}),
        ("cards", {"severity": "critical", "host": "ws-lyon-07"}),
        ("readiness", {"severity": "warning"}),
    ],
)
def test_a_download_is_the_export_command_with_the_same_filters(
    url: str, fleet: str, what: str, options: dict[str, str]
) -> None:
    reply = fetch(url, query(f"/export/{what}.json", **options))
    assert reply.status == 200
    arguments = [item for name, value in options.items() for item in (f"--{name}", value)]
    exported = run_cli(
        *("controller", "export", what, "--format", "json", "--database", fleet),
        *arguments,
    )
    assert exported.returncode == 0, exported.stderr
    downloaded, written = reply.json(), json.loads(exported.stdout)
    if what != "hosts":  # the command's clock is the real one, the dashboard's is the tests'
        for row in (*downloaded, *written):
            row.pop("days_left", None)
    assert downloaded == written


def test_download_links_keep_the_severity_and_host_but_not_the_text(url: str) -> None:
    html = page(url, "/cards?" + urlencode({"site": "Lyon", "severity": "critical", "q": "x"}))
    assert 'href="/export/cards.csv?site=Lyon&amp;severity=critical"' in html
    assert "(site Lyon, severity critical)" in html
    html = page(url, "/hosts?" + urlencode({"host": "ws-gre-01", "q": "x"}))
    assert 'href="/export/hosts.json?host=ws-gre-01"' in html
    html = page(url, "/readiness?" + urlencode({"site": "Grenoble", "host": "ws-gre-01"}))
    assert 'href="/export/readiness.csv?site=Grenoble"' in html


# --- one opening of the database per request ----------------------------------------------------


@pytest.fixture
def openings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the dashboard opens the database at, one entry per opening."""
    opened: list[str] = []
    original = Store.open_readonly.__func__  # type: ignore[attr-defined]

    def counted(cls: type[Store], path: Path | str) -> Store:
        opened.append(str(path))
        store: Store = original(cls, path)
        return store

    monkeypatch.setattr(Store, "open_readonly", classmethod(counted))
    return opened


@pytest.mark.parametrize(
    "path",
    [
        *PAGES,
        f"/hosts/{LYON_HOST}",
        "/alerts?host=ws-gre-01",
        "/cards?host=ws-lyon-07&severity=critical",
        *(f"/api/v1/{listing}?host=ws-lyon-07" for listing in LISTINGS),
        "/api/v1/readiness",
        f"/api/v1/hosts/{LYON_HOST}",
        "/export/cards.csv?host=ws-lyon-07",
        "/export/readiness.json",
    ],
)
def test_a_request_opens_the_database_once(url: str, openings: list[str], path: str) -> None:
    reply = fetch(url, path)
    assert reply.status == 200, reply.text
    assert len(openings) == 1, openings


def test_a_wrong_severity_is_refused_before_the_database_is_opened(
    url: str, openings: list[str]
) -> None:
    assert fetch(url, "/hosts?severity=urgent").status == 400
    assert fetch(url, "/api/v1/cards?severity=urgent").status == 400
    assert openings == []


# --- the user's sites, under every filter -------------------------------------------------------


@pytest.fixture(scope="module")
def lyon_only(fleet: str) -> dict[str, str]:
    """The Authorization header of a viewer of Lyon Part-Dieu alone (an API token of hers)."""
    token = new_user_token()
    with Store(fleet) as store:
        tables = People(store.database)
        tables.add_user("dominique", "viewer", ["lyon part-dieu"], NOW)
        tables.add_token("dominique", "reports", token, NOW, None)
    return {"Authorization": f"Bearer {token}"}


def test_a_user_of_one_site_is_kept_to_it_whatever_the_filters(
    url: str, lyon_only: dict[str, str], fleet: str
) -> None:
    def seen(path: str, **params: str) -> Any:
        reply = request(url, query(path, **params), headers=lyon_only)
        assert reply.status == 200, reply.text
        return reply.json()

    assert [row["id"] for row in seen("/api/v1/hosts")] == [LYON_HOST]
    assert {row["host_id"] for row in seen("/api/v1/findings")} == {LYON_HOST}
    assert [site["site"] for site in seen("/api/v1/overview")["sites"]] == ["Lyon Part-Dieu"]
    assert [row["id"] for row in seen("/export/hosts.json")] == [LYON_HOST]
    assert seen("/export/cards.json", site="lyon part-dieu") != []
    # Another site, or another site's host, asked by name: refused, whatever the listing.
    for path, params in (
        ("/api/v1/hosts", {"site": "Grenoble"}),
        ("/api/v1/findings", {"severity": "warning", "site": "grenoble"}),
        ("/export/cards.json", {"site": "Grenoble"}),
        ("/hosts", {"site": "GRENOBLE"}),
        ("/readiness", {"site": "Grenoble"}),
        ("/api/v1/alerts", {"host": "ws-gre-01"}),
        ("/api/v1/cards", {"host": "ws-gre-01"}),
        ("/export/hosts.csv", {"host": "ws-gre-01"}),
    ):
        reply = request(url, query(path, **params), headers=lyon_only)
        assert reply.status == 403, (path, params)
        assert "your rights do not cover" in reply.text
    with Store(fleet) as store:
        refused = People(store.database).audit(actor="dominique", action="read")
    assert len(refused) == 8 and {entry.outcome for entry in refused} == {"refused"}
    assert {entry.detail["site"] for entry in refused} >= {"Grenoble", "grenoble"}
    html = request(url, "/hosts?q=ws", headers=lyon_only).text
    assert table_rows(html, "hosts-table", "data-host") == [LYON_HOST]
    # /metrics counts the whole fleet: not for her.
    metrics = request(url, "/metrics", headers=lyon_only)
    assert metrics.status == 403 and "a user of every site" in metrics.json()["detail"]
    # The whole fleet's reader still sees both.
    assert len(api(url, "/api/v1/hosts")) == 2
