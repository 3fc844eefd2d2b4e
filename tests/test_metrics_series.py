"""The per-card and per-host series of ``/metrics``, scraped from a real database (SQLite or
PostgreSQL)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cpsfleet.controller.db.store import Store
from cpsfleet.controller.model import Finding
from cpsfleet.controller.settings import load_settings
from cpsfleet.controller.web.metrics import Metrics
from cpsfleet.schemas import PRESENCE_SCHEMA, validate

EXAMPLES = Path(__file__).parent.parent / "cpsfleet" / "schemas" / "examples"
NOW = datetime(2026, 11, 27, 21, 0, 0, tzinfo=UTC)
LYON = "3f9c1a7be2d04c55"  # four readers: three CPS cards and a Vitale card
GRENOBLE = "8d2e44a0c1b94f07"  # pcscd down
CARD = ("ws-lyon-07", "Virtual PCD 00 00")  # Dr DONNAT-GADY's CPS3 card, serial 99213845


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text("utf-8"))
    return document


def presence(host_id: str, state: str) -> dict[str, Any]:
    reason = "connected" if state == "online" else "connection_lost"
    return validate(
        {"schema": PRESENCE_SCHEMA, "version": 1, "host_id": host_id, "state": state}
        | {"at": "2026-11-27T20:00:00Z", "reason": reason, "agent_version": "0.1.0"}
    )


@pytest.fixture
def fleet(database: str) -> str:
    with Store(database) as store:
        store.record_status(example("status-four-readers"), NOW)
        store.record_presence(presence(LYON, "online"), NOW)
        store.record_status(example("status-pcscd-down"), NOW)
    return database


def samples(metrics: Metrics, name: str) -> list[tuple[dict[str, str], float]]:
    body, _ = metrics.render()
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == name
    ]


def by_card(metrics: Metrics, name: str) -> dict[tuple[str, ...], float]:
    return {
        (labels["host"], labels["reader"], *([labels["role"]] if "role" in labels else [])): value
        for labels, value in samples(metrics, name)
    }


def test_each_certificate_role_of_each_card_has_its_dates_in_unix_seconds(fleet: str) -> None:
    metrics = Metrics(fleet, lambda: NOW)
    not_after = by_card(metrics, "cpsfleet_card_certificate_not_after_seconds")
    not_before = by_card(metrics, "cpsfleet_card_certificate_not_before_seconds")

    certificate = example("status-four-readers")["readers"][0]["card"]["certificates"][0]
    expected_after = datetime.fromisoformat(certificate["not_after"]).timestamp()
    assert not_after[(*CARD, "authentication")] == expected_after
    assert not_after[(*CARD, "signature")] == expected_after
    assert not_before[(*CARD, "authentication")] < NOW.timestamp()
    assert len(not_after) == 6  # three CPS cards, two roles each; the Vitale card has none


def test_card_labels_say_where_and_what_the_card_is_without_names_by_default(
    fleet: str,
) -> None:
    (labels, tries), *_ = samples(Metrics(fleet, lambda: NOW), "cpsfleet_card_pin_tries_left")

    assert labels == {
        "site": "Lyon Part-Dieu",
        "host_id": LYON,
        "host": "ws-lyon-07",
        "reader": "Virtual PCD 00 00",
        "serial": "99213845",
        "kind": "cps3",
        "profession": "Médecin",
    }
    assert tries == 3


def test_pin_tries_left_and_max_of_each_card_that_reported_them(fleet: str) -> None:
    metrics = Metrics(fleet, lambda: NOW)

    assert by_card(metrics, "cpsfleet_card_pin_tries_left") == {
        CARD: 3,
        ("ws-lyon-07", "Virtual PCD 00 01"): 3,
        ("ws-lyon-07", "Virtual PCD 2 00 00"): 2,
    }
    assert set(by_card(metrics, "cpsfleet_card_pin_tries_max").values()) == {3}


def test_holder_names_are_a_label_only_when_allowed(fleet: str) -> None:
    (labels, _), *_ = samples(
        Metrics(fleet, lambda: NOW, holder_names=True), "cpsfleet_card_pin_tries_max"
    )
    assert labels["holder"] == "DONNAT-GADY ISABELLE"


def test_names_are_off_by_default_and_always_off_with_pseudonyms(tmp_path: Path) -> None:
    key = tmp_path / "pseudonym.key"
    key.write_bytes(b"k" * 32)
    allowed = tmp_path / "allowed.toml"
    allowed.write_text("metrics_holder_names = true\n", "utf-8")
    pseudonymised = tmp_path / "pseudonymised.toml"
    pseudonymised.write_text(f'metrics_holder_names = true\npseudonym_key_file = "{key}"\n')
    default = tmp_path / "default.toml"
    default.write_text("", "utf-8")

    assert load_settings(allowed, {}).metrics_names
    assert not load_settings(default, {}).metrics_names
    assert not load_settings(pseudonymised, {}).metrics_names


def test_each_host_has_every_presence_with_one_set(fleet: str) -> None:
    with Store(fleet) as store:
        store.replace_findings([Finding("agent_offline", "critical", GRENOBLE, "", "silent")], NOW)
    presences = {
        (labels["host_id"], labels["presence"]): value
        for labels, value in samples(Metrics(fleet, lambda: NOW), "cpsfleet_host_presence")
    }

    assert presences == {
        (LYON, "online"): 1,
        (LYON, "offline"): 0,
        (LYON, "unknown"): 0,
        (GRENOBLE, "online"): 0,
        (GRENOBLE, "offline"): 1,  # as the rules see it: its agent_offline finding
        (GRENOBLE, "unknown"): 0,
    }


def test_each_host_has_its_pcsc_state_cryptolib_version_and_readers(fleet: str) -> None:
    metrics = Metrics(fleet, lambda: NOW)

    def per_host(name: str) -> dict[str, float]:
        return {labels["host_id"]: value for labels, value in samples(metrics, name)}

    assert per_host("cpsfleet_host_pcsc_up") == {LYON: 1, GRENOBLE: 0}
    assert per_host("cpsfleet_host_cryptolib_installed") == {LYON: 1, GRENOBLE: 1}
    assert per_host("cpsfleet_host_readers") == {LYON: 4, GRENOBLE: 0}
    versions = {
        labels["host_id"]: labels["version"]
        for labels, _ in samples(metrics, "cpsfleet_host_cryptolib_info")
    }
    assert versions == {LYON: "5.2.2", GRENOBLE: "5.2.2"}


def test_label_values_are_escaped_and_read_back_as_sent(database: str) -> None:
    """A quote, a backslash and a line break in a reader's or a host's name, an accent in its
    site: Prometheus' own parser and promtool read the exposition back as the agent said."""
    document = example("status-four-readers")
    odd_reader = 'Lecteur "bureau" \\ 2\nbis'
    document["readers"][0]["name"] = odd_reader
    document["host"] |= {"hostname": 'ws-"quoted"\\x', "site": "Saint-Étienne"}
    with Store(database) as store:
        store.record_status(validate(document), NOW)
    metrics = Metrics(database)
    readers = {labels["reader"] for labels, _ in samples(metrics, "cpsfleet_card_pin_tries_left")}
    assert odd_reader in readers
    hosts = samples(metrics, "cpsfleet_host_readers")
    assert [(labels["host"], labels["site"]) for labels, _ in hosts] == [
        ('ws-"quoted"\\x', "Saint-Étienne")
    ]
    promtool = shutil.which("promtool")
    if promtool is not None:  # the README's setup installs it
        body, _ = metrics.render()
        checked = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
        assert checked.returncode == 0, checked.stderr
