"""The listings of ``cpsfleet controller`` take the same filters, matched the same way.

``hosts``, ``cards``, ``findings``, ``alerts``, ``readiness``, ``forecast`` and ``export``
on a real database, through Typer's runner: a site named in any case, accents and spacing,
a severity, a host by id or hostname, and JSON with ISO 8601 UTC times.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import typer.main
from typer.core import TyperCommand, TyperGroup
from typer.testing import CliRunner, Result

from cpsfleet.controller.alerts.book import AlertBook
from cpsfleet.controller.cli.app import app
from cpsfleet.controller.commands.rescan import RescanError, choose_hosts
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.rules.findings import evaluate_fleet
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.schemas import validate
from tests.test_readiness_cli import NOW, grenoble, imported, lyon

LYON_HOST, ETIENNE_HOST = "3f9c1a7be2d04c55", "8d2e44a0c1b94f07"
LYON, ETIENNE = "Lyon Part-Dieu", "Saint-Étienne"
EXPIRED = "20991234"
UTC_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
# Each listing and the filters it takes (export has --format where the others have --json).
FILTERS = {
    "hosts": {"--site", "--severity", "--host", "--json"},
    "cards": {"--site", "--severity", "--host", "--json"},
    "findings": {"--site", "--severity", "--host", "--json"},
    "alerts": {"--site", "--severity", "--host", "--json"},
    "readiness": {"--site", "--severity", "--json"},
    "forecast": {"--site", "--json"},
    "export hosts": {"--site", "--severity", "--host", "--format"},
    "export cards": {"--site", "--severity", "--host", "--format"},
    "export readiness": {"--site", "--severity", "--format"},
}


def saint_etienne() -> dict[str, Any]:
    document = copy.deepcopy(grenoble())
    document["host"] |= {"hostname": "WS-STE-01", "site": ETIENNE}
    return validate(document)


@pytest.fixture(scope="module")
def database(module_database: str) -> str:
    """Lyon Part-Dieu (four readers) and Saint-Étienne (none), their findings and alerts, and
    the sample roster."""
    with Store(module_database) as store:
        store.record_status(lyon(), NOW)
        store.record_status(saint_etienne(), NOW)
        findings = evaluate_fleet(store.host_views(), NOW, ControllerSettings().thresholds)
        store.replace_findings(findings, NOW)
        AlertBook(store.database).update(findings, NOW)
    return imported(module_database)


def run(database: str, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--database", str(database)])


def listed(database: str, *args: str) -> Any:
    result = run(database, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def command(path: str) -> TyperCommand:
    found: Any = typer.main.get_command(app)
    for name in path.split():
        assert isinstance(found, TyperGroup)
        found = found.commands[name]
    assert isinstance(found, TyperCommand)
    return found


@pytest.mark.parametrize(("path", "options"), FILTERS.items())
def test_every_listing_takes_the_same_filters(path: str, options: set[str]) -> None:
    names = {name for param in command(path).params for name in param.opts}
    assert options <= names


@pytest.mark.parametrize("site", ["saint-etienne", "SAINT-ÉTIENNE", "  Saint-Etienne ", ETIENNE])
@pytest.mark.parametrize("listing", ["hosts", "findings", "alerts"])
def test_a_site_is_named_in_any_case_accents_and_spacing(
    database: str, listing: str, site: str
) -> None:
    rows = listed(database, listing, "--site", site)
    assert rows and {row["site"] for row in rows} == {ETIENNE}


@pytest.mark.parametrize("site", ["lyon part-dieu", "LYON  PÀRT-DIEU"])
def test_cards_forecast_readiness_and_exports_match_sites_alike(database: str, site: str) -> None:
    assert {row["site"] for row in listed(database, "cards", "--site", site)} == {LYON}
    assert {row["site"] for row in listed(database, "forecast", "--site", site)} == {LYON}
    assert {row["site"] for row in listed(database, "readiness", "--site", site)} == {LYON}
    for what in ("hosts", "cards", "readiness"):
        result = run(database, "export", what, "--format", "json", "--site", site)
        assert result.exit_code == 0, result.output
        assert {row["site"] for row in json.loads(result.stdout)} == {LYON}, what


def test_a_site_without_hosts_is_an_empty_listing(database: str) -> None:
    result = run(database, "findings", "--site", "annecy")
    assert result.exit_code == 0 and result.stdout == "no finding\n"


def test_the_severity_filter(database: str) -> None:
    findings = listed(database, "findings", "--severity", "critical")
    assert findings and {row["severity"] for row in findings} == {"critical"}
    alerts = listed(database, "alerts", "--severity", "warning")
    assert alerts and {row["severity"] for row in alerts} == {"warning"}
    cards = listed(database, "cards", "--severity", "critical")
    assert [card["serial"] for card in cards] == [EXPIRED]
    hosts = listed(database, "hosts", "--severity", "info")  # the Vitale card in Lyon
    assert [host["id"] for host in hosts] == [LYON_HOST]
    blocked = listed(database, "readiness", "--severity", "critical")
    assert blocked and {row["state"] for row in blocked} <= {"no_card", "renew_card", "no_reader"}


@pytest.mark.parametrize("listing", ["hosts", "cards", "findings", "alerts", "readiness"])
def test_an_unknown_severity_is_refused_in_one_line(database: str, listing: str) -> None:
    result = run(database, listing, "--severity", "urgent")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --severity must be one of critical, warning, info, not 'urgent'\n"
    )


@pytest.mark.parametrize("host", [ETIENNE_HOST, "ws-ste-01", "WS-STE-01"])
def test_a_host_is_named_by_its_id_or_hostname(database: str, host: str) -> None:
    for listing in ("findings", "alerts"):
        rows = listed(database, listing, "--host", host)
        assert rows and {row["host_id"] for row in rows} == {ETIENNE_HOST}, listing
    assert [row["id"] for row in listed(database, "hosts", "--host", host)] == [ETIENNE_HOST]
    assert listed(database, "cards", "--host", host) == []
    lyon_cards = listed(database, "cards", "--host", "ws-lyon-07")
    assert len(lyon_cards) == 4 and {card["host_id"] for card in lyon_cards} == {LYON_HOST}


def test_an_unknown_host_is_refused_in_one_line(database: str) -> None:
    result = run(database, "findings", "--host", "ws-nowhere")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: unknown host 'ws-nowhere': `cpsfleet controller hosts` lists the fleet\n"
    )


def test_json_times_are_iso_8601_utc(database: str) -> None:
    finding = listed(database, "findings")[0]
    assert UTC_TIME.match(finding["since"])
    host = listed(database, "hosts", "--host", "ws-lyon-07")[0]
    assert UTC_TIME.match(host["last_seen"]) and host["state"] in ("online", "unknown")
    card = next(c for c in listed(database, "cards") if c["serial"] == EXPIRED)
    assert UTC_TIME.match(card["expires"]) and card["days_left"] < 0
    alert = listed(database, "alerts")[0]
    assert UTC_TIME.match(alert["started_at"])


def test_cards_expiring_within_keeps_those_ending_by_then(database: str) -> None:
    cards = listed(database, "cards", "--expiring-within", "30")
    assert {card["serial"] for card in cards} == {EXPIRED, "10452278"}  # expired, 20 days left


def test_rescan_names_a_site_as_the_listings_do(database: str) -> None:
    with Store.open_readonly(database) as store:
        assert choose_hosts(store, [], "SAINT-ETIENNE") == [ETIENNE_HOST]
        with pytest.raises(RescanError, match="no host in site 'saint etienne'"):
            choose_hosts(store, [], "saint etienne")  # a hyphen is not a space
