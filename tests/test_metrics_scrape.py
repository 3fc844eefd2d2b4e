"""Prometheus scrapes a running controller: its /metrics agree with what it stored.

A real Mosquitto, `cpsfleet controller run` as a process and a synthetic fleet from
`cpsfleet sim fleet`; the scrape is a plain HTTP GET with the configured token (as
Prometheus's ``authorization`` sends it) parsed by prometheus_client's own parser, as
Prometheus would read it.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Broker, Service, run_cli, wait_for
from tests.fleet import Fleet
from tests.test_dashboard import TOKEN, TOKEN_HASH, request

AGENTS = 30
Samples = dict[str, list[tuple[dict[str, str], float]]]


def signed(url: str) -> urllib.request.Request:
    return urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(signed(f"{url}/metrics"), timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode("utf-8")
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


def publish_garbage(broker: Broker) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    info = client.publish("cpsfleet/v1/hosts/ws-broken/status", b"{not json", qos=1)
    info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_metrics_count_what_the_controller_stored(
    tmp_path: Path, own_broker: Broker, services: Callable[..., Service]
) -> None:
    fleet = Fleet(tmp_path, own_broker, services)
    with fleet.controller_conf.open("a") as conf:  # into its [dashboard] table, the last
        conf.write(f'token_hash = "{TOKEN_HASH}"\n')
    fleet.controller()
    url = fleet.dashboard_url()
    refused = request(url, "/metrics")  # no token: no metrics (metrics_public is false)
    assert refused.status == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    before = scrape(url)
    assert value(before, "cpsfleet_database_up") == 1
    assert value(before, "cpsfleet_messages_total") == 0

    played = run_cli("sim", "fleet", "--broker", own_broker.url, "--once", "--agents", str(AGENTS))
    assert played.returncode == 0, played.stderr
    publish_garbage(own_broker)
    # Each synthetic host sent a presence and a status; the garbage is rejected.
    wait_for(
        lambda: (
            value(scrape(url), "cpsfleet_messages_total", outcome="rejected") == 1
            and value(scrape(url), "cpsfleet_messages_total", outcome="accepted") == 2 * AGENTS
        ),
        30,
        "every message counted",
    )
    samples = scrape(url)

    assert value(samples, "cpsfleet_ingest_latency_seconds_count") == 2 * AGENTS
    assert 0 < value(samples, "cpsfleet_ingest_latency_seconds_sum") < 2 * AGENTS
    assert value(samples, "cpsfleet_hosts", presence="online") == AGENTS
    assert value(samples, "cpsfleet_hosts", presence="offline") == 0

    readers = fleet.query("select count(*) from readers")[0][0]
    assert value(samples, "cpsfleet_readers") == readers
    cps_cards = fleet.query("select count(*) from cards where is_cps")[0][0]
    assert value(samples, "cpsfleet_cards_expiring") == cps_cards > 0
    assert value(samples, "cpsfleet_cards") == fleet.query("select count(*) from cards")[0][0]

    stored = Counter(
        {
            (rule, severity): n
            for rule, severity, n in fleet.query(
                "select rule, severity, count(*) from findings group by rule, severity"
            )
        }
    )
    scraped = Counter(
        {(labels["rule"], labels["severity"]): v for labels, v in samples["cpsfleet_findings"]}
    )
    assert +scraped == stored and stored  # the synthetic fleet has things wrong with it

    sites = {row[0] for row in fleet.query("select distinct site from hosts")}
    assert {labels["site"] for labels, _ in samples["cpsfleet_hosts"]} == sites

    # The JSON overview of the same controller agrees with the scrape.
    with urllib.request.urlopen(signed(f"{url}/api/v1/overview"), timeout=10) as response:
        overview = json.load(response)
    assert overview["hosts"]["online"] == AGENTS and overview["readers"] == readers
