"""The controller's Prometheus metrics, scraped from real databases (SQLite and PostgreSQL) and
parsed back."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from cpsfleet.controller.db.store import Store
from cpsfleet.controller.model import Finding
from cpsfleet.controller.web.metrics import Metrics
from cpsfleet.schemas import EVENT_SCHEMA, PRESENCE_SCHEMA, validate

# Helpers of its own rather than imports from tests.test_store: ``tests`` is not importable
# under a bare ``pytest`` run.
EXAMPLES = Path(__file__).parent.parent / "cpsfleet" / "schemas" / "examples"
NOW = datetime(2026, 11, 27, 21, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
LYON = "3f9c1a7be2d04c55"  # the four-readers example
GRENOBLE = "8d2e44a0c1b94f07"  # the pcscd-down example
LYON_2 = "5a1b2c3d4e5f6071"  # a second Lyon workstation, without readers
UNNAMED = "c0ffee0000000001"  # known only by an event: no site, never told its presence
ANNECY = "a11ec70000000001"


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text("utf-8"))
    return document


def four_readers() -> dict[str, Any]:
    return example("status-four-readers")


def pcscd_down() -> dict[str, Any]:
    return example("status-pcscd-down")


def presence(host_id: str, state: str) -> dict[str, Any]:
    reason = "connected" if state == "online" else "connection_lost"
    return validate(
        {"schema": PRESENCE_SCHEMA, "version": 1, "host_id": host_id, "state": state}
        | {"at": "2026-11-27T20:00:00Z", "reason": reason, "agent_version": "0.1.0"}
    )


def card_removed(host_id: str) -> dict[str, Any]:
    return validate(
        {"schema": EVENT_SCHEMA, "version": 1, "host_id": host_id, "at": "2026-11-27T20:56:09Z"}
        | {"type": "card_removed", "reader": "R", "card": None}
    )


def finding(rule: str, host_id: str = LYON, **changes: Any) -> Finding:
    fields: dict[str, Any] = {"severity": "warning", "subject": "", "message": rule} | changes
    return Finding(rule=rule, host_id=host_id, **fields)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def second_lyon_host() -> dict[str, Any]:
    document = pcscd_down()
    document["host"] |= {"id": LYON_2, "hostname": "ws-lyon-08", "site": "Lyon Part-Dieu"}
    return validate(document)


def cps_reader(name: str, *expiries: timedelta) -> dict[str, Any]:
    """Reader ``name`` (one letter) holding a CPS3 card, with a certificate expiring at NOW
    plus each of ``expiries``."""
    reader = copy.deepcopy(four_readers()["readers"][0])
    certificate = reader["card"]["certificates"][0]
    reader["name"] = name
    reader["card"]["serial"] = f"9000{ord(name):04d}"
    reader["card"]["certificates"] = [
        certificate | {"not_after": stamp(NOW + expiry)} for expiry in expiries
    ]
    return reader


def annecy(*readers: dict[str, Any]) -> dict[str, Any]:
    document = four_readers()
    document["host"] |= {"id": ANNECY, "hostname": "ws-annecy-01", "site": "Annecy"}
    document["readers"] = [*readers, four_readers()["readers"][3]]  # and a Vitale card
    return validate(document)


@pytest.fixture
def fleet(database: str) -> str:
    """Lyon: one host online with four cards, one offline without readers; Grenoble: one host
    offline; one host without site nor presence."""
    with Store(database) as store:
        store.record_status(four_readers(), NOW)
        store.record_presence(presence(LYON, "online"), NOW)
        store.record_status(second_lyon_host(), NOW)
        store.record_presence(presence(LYON_2, "offline"), NOW)
        store.record_status(pcscd_down(), NOW)
        store.record_presence(presence(GRENOBLE, "offline"), NOW)
        store.record_event(card_removed(UNNAMED), NOW)
    return database


def scrape(metrics: Metrics) -> dict[str, list[Any]]:
    """Every sample of a scrape by its name, as (labels, value)."""
    body, _ = metrics.render()
    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def values(metrics: Metrics, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(sample_labels[label] for label in labels): value
        for sample_labels, value in scrape(metrics).get(name, [])
    }


def value(metrics: Metrics, name: str) -> float:
    ((_, found),) = scrape(metrics)[name]
    return float(found)


def test_hosts_are_counted_by_site_and_presence(fleet: str) -> None:
    assert values(Metrics(fleet, lambda: NOW), "cpsfleet_hosts", "site", "presence") == {
        ("Lyon Part-Dieu", "online"): 1,
        ("Lyon Part-Dieu", "offline"): 1,
        ("Lyon Part-Dieu", "unknown"): 0,
        ("Grenoble", "online"): 0,
        ("Grenoble", "offline"): 1,
        ("Grenoble", "unknown"): 0,
        ("", "online"): 0,
        ("", "offline"): 0,
        ("", "unknown"): 1,
    }


def test_a_silent_host_counts_as_offline_as_the_rules_see_it(fleet: str) -> None:
    """Online by its last presence, but silent too long: the agent_offline finding decides."""
    with Store(fleet) as store:
        store.replace_findings([finding("agent_offline", LYON, severity="critical")], NOW)
    hosts = values(Metrics(fleet, lambda: NOW), "cpsfleet_hosts", "site", "presence")
    assert hosts[("Lyon Part-Dieu", "online")] == 0
    assert hosts[("Lyon Part-Dieu", "offline")] == 2


def test_readers_and_cards_in_readers_are_counted_by_site(fleet: str) -> None:
    metrics = Metrics(fleet, lambda: NOW)

    assert values(metrics, "cpsfleet_readers", "site") == {
        ("Lyon Part-Dieu",): 4,
        ("Grenoble",): 0,
        ("",): 0,
    }
    assert values(metrics, "cpsfleet_cards", "site", "kind") == {
        ("Lyon Part-Dieu", "cps3"): 2,
        ("Lyon Part-Dieu", "cps4"): 1,
        ("Lyon Part-Dieu", "vitale2"): 1,
    }


def test_open_findings_are_counted_by_rule_and_severity(fleet: str) -> None:
    with Store(fleet) as store:
        store.replace_findings(
            [
                finding("offline", GRENOBLE, severity="critical"),
                finding("offline", LYON_2, severity="critical"),
                finding("card_expiring", subject="Virtual PCD 00 01"),
                finding("card_expired", subject="Virtual PCD 2 00 00", severity="critical"),
                finding("cryptolib_old", severity="info"),
            ],
            NOW,
        )
        store.replace_findings([], NOW, [LYON_2])

    assert values(Metrics(fleet), "cpsfleet_findings", "rule", "severity") == {
        ("offline", "critical"): 1,
        ("card_expiring", "warning"): 1,
        ("card_expired", "critical"): 1,
        ("cryptolib_old", "info"): 1,
    }


def test_message_counters_are_read_from_the_database_and_outlive_the_controller(
    fleet: str,
) -> None:
    with Store(fleet) as store:
        store.increment("messages_accepted", 41)
        store.increment("messages_accepted")
        store.increment("messages_rejected", 3)
        store.increment("messages_duplicate", 2)
        store.increment("messages_stale", 5)
        store.increment("alerts_sent", 9)
        store.increment("evaluation_failures", 7)
    expected = {("accepted",): 42, ("stale",): 5, ("rejected",): 3, ("duplicate",): 2}
    expected |= {("failed",): 0}

    assert values(Metrics(fleet), "cpsfleet_messages_total", "outcome") == expected
    assert values(Metrics(fleet), "cpsfleet_messages_total", "outcome") == expected
    assert value(Metrics(fleet), "cpsfleet_evaluation_failures_total") == 7


def test_cps_cards_in_readers_are_counted_by_days_until_their_first_certificate_expires(
    database: str,
) -> None:
    document = annecy(
        cps_reader("A", -5 * DAY),
        cps_reader("B", -SECOND),
        cps_reader("C", timedelta(0)),  # a certificate is valid through its not_after
        cps_reader("D", 15 * DAY - SECOND),
        cps_reader("E", 400 * DAY, 15 * DAY),
        cps_reader("F", 30 * DAY + 12 * timedelta(hours=1)),
        cps_reader("G", 45 * DAY),
        cps_reader("H", 400 * DAY, 100 * DAY),
        cps_reader("I", 366 * DAY - SECOND),
        cps_reader("J", 366 * DAY),
        cps_reader("K"),
    )
    with Store(database) as store:
        store.record_status(document, NOW)

    metrics = Metrics(database, lambda: NOW)

    assert values(metrics, "cpsfleet_cards_expiring", "days_to_expiry") == {
        ("expired",): 2,
        ("0-14",): 2,
        ("15-30",): 2,
        ("31-60",): 1,
        ("61-90",): 0,
        ("91-180",): 1,
        ("181-365",): 1,
        ("366+",): 1,
        ("unknown",): 1,
    }


@pytest.mark.parametrize(
    ("clock", "bucket"),
    [
        (NOW, "15-30"),
        (NOW + timedelta(milliseconds=500), "0-14"),
        (NOW + 15 * DAY, "0-14"),
        (NOW + 15 * DAY + timedelta(milliseconds=500), "expired"),
    ],
)
def test_days_to_expiry_are_whole_days_at_the_scrape_clock(
    database: str, clock: datetime, bucket: str
) -> None:
    with Store(database) as store:
        store.record_status(annecy(cps_reader("A", 15 * DAY)), NOW)

    metrics = Metrics(database, lambda: clock)

    counts = values(metrics, "cpsfleet_cards_expiring", "days_to_expiry")
    assert {label: count for (label,), count in counts.items() if count} == {bucket: 1}


def test_an_empty_database_gives_zeros_not_missing_series(database: str) -> None:
    Store(database).close()
    metrics = Metrics(database, lambda: NOW)

    assert value(metrics, "cpsfleet_database_up") == 1
    assert set(values(metrics, "cpsfleet_cards_expiring", "days_to_expiry").values()) == {0}
    assert len(values(metrics, "cpsfleet_cards_expiring", "days_to_expiry")) == 9
    assert values(metrics, "cpsfleet_messages_total", "outcome") == {
        ("accepted",): 0,
        ("stale",): 0,
        ("rejected",): 0,
        ("duplicate",): 0,
        ("failed",): 0,
    }
    assert "cpsfleet_hosts" not in scrape(metrics)


def test_ingest_latency_is_a_histogram_of_the_observed_times(fleet: str) -> None:
    metrics = Metrics(fleet)
    for seconds in (0.0002, 0.0008, 0.003, 0.2, 4.0, -0.5):
        metrics.observe_ingest(seconds)

    buckets = values(metrics, "cpsfleet_ingest_latency_seconds_bucket", "le")

    assert value(metrics, "cpsfleet_ingest_latency_seconds_count") == 6
    assert value(metrics, "cpsfleet_ingest_latency_seconds_sum") == pytest.approx(4.204)
    assert buckets[("0.0005",)] == 2  # a negative time (a clock stepped back) counts as zero
    assert buckets[("0.001",)] == 3
    assert buckets[("0.005",)] == 4
    assert buckets[("0.25",)] == 5
    assert buckets[("5.0",)] == buckets[("+Inf",)] == 6


def test_a_missing_database_scrapes_with_database_up_0(tmp_path: Path) -> None:
    metrics = Metrics(tmp_path / "not-yet.db")
    metrics.observe_ingest(0.01)

    found = scrape(metrics)

    assert value(metrics, "cpsfleet_database_up") == 0
    assert value(metrics, "cpsfleet_ingest_latency_seconds_count") == 1
    assert "cpsfleet_hosts" not in found and "cpsfleet_messages_total" not in found
    assert not (tmp_path / "not-yet.db").exists()


def test_a_file_that_is_not_a_database_scrapes_with_database_up_0(tmp_path: Path) -> None:
    (tmp_path / "controller.db").write_bytes(b"not SQLite at all" * 100)

    assert value(Metrics(tmp_path / "controller.db"), "cpsfleet_database_up") == 0


def test_each_scrape_reads_the_latest_commit_beside_the_open_writer(database: str) -> None:
    metrics = Metrics(database)
    assert value(metrics, "cpsfleet_database_up") == 0

    with Store(database) as writer:
        writer.record_status(pcscd_down(), NOW)
        assert value(metrics, "cpsfleet_database_up") == 1
        assert values(metrics, "cpsfleet_readers", "site") == {("Grenoble",): 0}
        writer.record_status(four_readers(), NOW)
        writer.increment("messages_accepted", 2)

        assert values(metrics, "cpsfleet_readers", "site") == {
            ("Grenoble",): 0,
            ("Lyon Part-Dieu",): 4,
        }
        assert values(metrics, "cpsfleet_messages_total", "outcome")[("accepted",)] == 2


def test_two_controllers_in_one_process_keep_their_own_metrics(fleet: str, tmp_path: Path) -> None:
    first, second = Metrics(fleet), Metrics(tmp_path / "other.db")
    first.observe_ingest(0.01)

    assert value(first, "cpsfleet_ingest_latency_seconds_count") == 1
    assert value(second, "cpsfleet_ingest_latency_seconds_count") == 0
    assert value(first, "cpsfleet_database_up") == 1
    assert value(second, "cpsfleet_database_up") == 0


def test_every_metric_is_documented_and_served_as_prometheus_text(fleet: str) -> None:
    body, content_type = Metrics(fleet).render()
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}

    assert content_type == CONTENT_TYPE_LATEST
    assert content_type.startswith("text/plain")
    assert {name for name in families if not name.endswith("_created")} == {
        "cpsfleet_hosts",
        "cpsfleet_readers",
        "cpsfleet_cards",
        "cpsfleet_cards_expiring",
        "cpsfleet_findings",
        "cpsfleet_messages",
        "cpsfleet_evaluation_failures",
        "cpsfleet_notification_failures",
        "cpsfleet_alert_channels_failing",
        "cpsfleet_ingest_latency_seconds",
        "cpsfleet_database_up",
        "cpsfleet_card_certificate_not_after_seconds",
        "cpsfleet_card_certificate_not_before_seconds",
        "cpsfleet_card_pin_tries_left",
        "cpsfleet_card_pin_tries_max",
        "cpsfleet_host_presence",
        "cpsfleet_host_pcsc_up",
        "cpsfleet_host_cryptolib_installed",
        "cpsfleet_host_cryptolib_info",
        "cpsfleet_host_readers",
    }
    assert all(family.documentation for family in families.values())
    assert families["cpsfleet_messages"].type == "counter"
    assert families["cpsfleet_ingest_latency_seconds"].type == "histogram"
