"""``cpsfleet sim fleet``: a synthetic fleet of valid agents' documents, played on a real broker."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import cpsfleet.sim.fleet.player
from cpsfleet.agent.atr import classify_atr
from cpsfleet.schemas import (
    EVENT_SCHEMA,
    PRESENCE_SCHEMA,
    STATUS_SCHEMA,
    SchemaError,
    parse,
    validate,
)
from cpsfleet.schemas.broker import parse_broker_url
from cpsfleet.schemas.topics import SUBSCRIPTIONS, check_host_id, parse_topic
from cpsfleet.sim.fleet import FleetError
from cpsfleet.sim.fleet.documents import event_document, presence_document, status_document
from cpsfleet.sim.fleet.model import DEFAULT_SITES, SimCard, SimHost, generate_fleet
from cpsfleet.sim.fleet.player import FleetPlayer, play_fleet
from tests.conftest import CLI, Broker, free_port, run_cli, wait_for

NOW = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)


def cards(hosts: list[SimHost]) -> list[SimCard]:
    return [reader.card for host in hosts for reader in host.readers if reader.card is not None]


def cps_cards(hosts: list[SimHost]) -> list[SimCard]:
    return [card for card in cards(hosts) if card.kind.is_cps]


def test_every_document_of_a_200_host_fleet_follows_the_schemas() -> None:
    for host in generate_fleet(200, seed=7, now=NOW):
        with_cards = [reader for reader in host.readers if reader.card is not None]
        taken = frozenset(reader.name for reader in with_cards)
        validate(status_document(host, 1, NOW), STATUS_SCHEMA)
        validate(status_document(host, 2, NOW, None, removed=taken), STATUS_SCHEMA)
        for state in ("online", "offline"):
            validate(presence_document(host, state, NOW), PRESENCE_SCHEMA)
        for reader in with_cards:
            for inserted in (True, False):
                validate(event_document(host, reader, inserted, 3, NOW), EVENT_SCHEMA)


def test_the_same_seed_gives_the_same_fleet_whose_dates_follow_now() -> None:
    assert generate_fleet(200, seed=42, now=NOW) == generate_fleet(200, seed=42, now=NOW)
    assert generate_fleet(200, seed=42, now=NOW) != generate_fleet(200, seed=43, now=NOW)
    later = generate_fleet(200, seed=42, now=NOW + timedelta(days=30))
    for card, moved in zip(
        cps_cards(generate_fleet(200, 42, now=NOW)), cps_cards(later), strict=True
    ):
        assert (card.serial, card.holder, card.certificates) == (
            moved.serial,
            moved.holder,
            moved.certificates,
        )
        assert moved.not_after == card.not_after + timedelta(days=30)


def test_host_ids_card_serials_and_rpps_numbers_are_unique() -> None:
    hosts = generate_fleet(500, seed=3, now=NOW)
    ids = [check_host_id(host.id) for host in hosts]
    assert ids[:2] == ["sim-0001", "sim-0002"] and len(set(ids)) == 500
    assert len({host.hostname for host in hosts}) == 500
    serials = [card.serial for card in cps_cards(hosts)]
    assert len(serials) > 500 and len(set(serials)) == len(serials)
    assert all(serial and len(serial) == 8 and serial.isdigit() for serial in serials)
    rpps = [card.holder.rpps for card in cps_cards(hosts) if card.holder]
    assert len(set(rpps)) == len(serials)


def test_the_mix_has_expired_and_expiring_cards_and_broken_hosts() -> None:
    hosts = generate_fleet(200, seed=7, now=NOW)
    days = [(card.not_after - NOW).days for card in cps_cards(hosts) if card.not_after]
    assert 0.01 < sum(d < 0 for d in days) / len(days) < 0.10, "a few % expired"
    assert any(0 <= d < 14 for d in days) and any(d > 2 * 365 for d in days)
    months = {(NOW + timedelta(days=d)).strftime("%Y-%m") for d in days if 0 <= d < 365}
    assert len(months) >= 11, "an expiry chart over the next 12 months has something to show"
    down = [host for host in hosts if host.pcsc_error]
    assert len(down) == 6 and all(not host.readers for host in down)
    versions = Counter(host.cryptolib for host in hosts)
    assert versions[None] == 8 and versions["5.2.2"] == 200 - 8 - 10
    outdated = [v for v in versions if v and tuple(map(int, v.split("."))) < (5, 2)]
    assert sum(versions[v] for v in outdated) == 10
    kinds = Counter(
        reader.card.kind.kind if reader.card else None for h in hosts for reader in h.readers
    )
    assert kinds["cps3"] and kinds["cps4"] and kinds[None] and kinds["vitale2"] + kinds["vitale1"]
    assert {len(host.readers) for host in hosts if not host.pcsc_error} == {0, 1, 2, 3, 4}
    assert {host.site for host in hosts} == set(DEFAULT_SITES)
    assert {card.holder.profession for card in cps_cards(hosts) if card.holder} >= {
        "Médecin",
        "Infirmier",
    }


def test_the_demos_dozen_hosts_show_a_blocked_pin_a_last_try_and_one_wrong_try() -> None:
    hosts = generate_fleet(12, seed=20261127, now=NOW)  # as scripts/demo.sh plays them
    reported = [
        card["pin"]
        for host in hosts
        for reader in status_document(host, 1, NOW)["readers"]
        if (card := reader["card"]) and card["kind"] == "cps3"
    ]
    assert sorted(pin["tries_left"] for pin in reported if pin["tries_left"] < 3) == [0, 1, 2]
    assert {pin["tries_max"] for pin in reported} == {3}


def test_pin_states_are_drawn_apart_from_the_rest_of_the_fleet() -> None:
    hosts = generate_fleet(200, seed=7, now=NOW)
    blocked = [card.serial for card in cps_cards(hosts) if card.pin_tries_left == 0]
    assert blocked and blocked == [
        card.serial
        for card in cps_cards(generate_fleet(200, seed=7, now=NOW))
        if card.pin_tries_left == 0
    ]
    assert all(card.kind.kind == "cps3" for card in cps_cards(hosts) if card.pin_tries_left < 3)


def test_a_cps4_reports_its_pin_tries_and_a_vitale_card_no_pin() -> None:
    pins = {
        card["kind"]: card["pin"]
        for host in generate_fleet(200, seed=7, now=NOW)
        for reader in status_document(host, 1, NOW)["readers"]
        if (card := reader["card"])
    }
    assert pins["cps4"] == {"tries_left": 3, "tries_max": 3, "error": None}
    assert pins["vitale2"] is None and pins["vitale1"] is None


def test_card_kinds_are_those_the_agent_reads_from_the_atr() -> None:
    for card in cards(generate_fleet(200, seed=7, now=NOW)):
        found = classify_atr(bytes.fromhex(card.kind.atr))
        assert (found.kind, found.label, found.is_cps) == (
            card.kind.kind,
            card.kind.label,
            card.kind.is_cps,
        )


def test_a_status_counts_days_left_from_its_own_time() -> None:
    host = next(h for h in generate_fleet(200, seed=7, now=NOW) if cps_cards([h]))
    card = cps_cards([host])[0]
    assert card.not_after
    later = card.not_after + timedelta(days=2)
    certificates = [
        cert
        for reader in status_document(host, 1, later)["readers"]
        if reader["card"] and reader["card"]["serial"] == card.serial
        for cert in reader["card"]["certificates"]
    ]
    assert [(c["days_left"], c["expired"]) for c in certificates] == [(-2, True), (-2, True)]
    assert certificates[0]["id_nat"] == "8" + (card.holder.rpps if card.holder else "")
    assert certificates[0]["issuer_cn"] == "AC IGC-SANTE FORT PERSONNES"


@dataclass
class ListSink:
    """The player's documents, kept in order instead of going to a broker."""

    sent: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)

    def publish(self, topic: str, document: dict[str, Any], retain: bool) -> None:
        self.sent.append((topic, document, retain))


def test_a_card_taken_out_is_an_event_then_a_status_with_the_reader_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cpsfleet.sim.fleet.player, "CARD_SWAP_CHANCE", 1.0)
    hosts = generate_fleet(50, seed=7, now=NOW)
    index = next(i for i, h in enumerate(hosts) if len(cards([h])) == 1)
    reader = next(r for r in hosts[index].readers if r.card)
    sink = ListSink()
    player = FleetPlayer(hosts, sink, 900, seq_start=100)
    player.announce()
    assert len(sink.sent) == 100 and all(retain for _, _, retain in sink.sent)
    del sink.sent[:]
    player.report(index)
    player.report(index)
    kinds = [(doc.get("type") or doc["schema"], doc["seq"], retain) for _, doc, retain in sink.sent]
    assert kinds == [
        ("card_removed", 102, False),
        (STATUS_SCHEMA, 103, True),
        ("card_inserted", 104, False),
        (STATUS_SCHEMA, 105, True),
    ]
    states = [
        next(r["state"] for r in doc["readers"] if r["name"] == reader.name)
        for _, doc, _ in sink.sent
        if doc["schema"] == STATUS_SCHEMA
    ]
    assert states == ["empty", "card_present"]


def test_reports_spread_over_the_interval_one_slot_per_host() -> None:
    player = FleetPlayer(generate_fleet(100, now=NOW), ListSink(), 900)
    due = player.schedule(1000.0)
    assert sorted(index for _, index in due) == list(range(100))
    assert all(1000 + index * 9 <= at < 1000 + (index + 1) * 9 for at, index in due)


def test_bad_input_is_a_fleet_error() -> None:
    with pytest.raises(FleetError, match="at least 1 agent"):
        generate_fleet(0)
    with pytest.raises(FleetError, match="at least one site"):
        generate_fleet(5, sites=[])
    with pytest.raises(FleetError, match="interval must be 1 to 2592000 seconds, not 0"):
        hosts = generate_fleet(5)
        play_fleet(parse_broker_url("mqtt://127.0.0.1:1"), hosts, 0, threading.Event(), print)


@dataclass
class Received:
    """Every message seen on the fleet's topics: (host, schema) → documents, retained flags."""

    documents: dict[tuple[str, str], list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    retained: dict[tuple[str, str], list[bool]] = field(default_factory=lambda: defaultdict(list))
    invalid: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, schema: str) -> dict[str, list[dict[str, Any]]]:
        with self.lock:
            return {h: list(docs) for (h, s), docs in self.documents.items() if s == schema}


@contextmanager
def subscribed(broker: Broker) -> Iterator[Received]:
    """A subscriber to every host's presence, status and events, validating each message."""
    received, ready = Received(), threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(client: mqtt.Client, data: Any, message: mqtt.MQTTMessage) -> None:
        host_id, schema = parse_topic(message.topic)
        try:
            document = parse(message.payload, schema)
        except SchemaError as error:
            received.invalid.append(f"{message.topic}: {error}")
            return
        if document.get("host_id", document.get("host", {}).get("id")) != host_id:
            received.invalid.append(f"{message.topic}: a document of another host")
        with received.lock:
            received.documents[(host_id, schema)].append(document)
            received.retained[(host_id, schema)].append(bool(message.retain))

    client.on_message = on_message
    client.on_subscribe = lambda *args: ready.set()
    client.connect("127.0.0.1", broker.port)
    client.subscribe([(name, 1) for name in SUBSCRIPTIONS])
    client.loop_start()
    try:
        wait_for(ready.is_set, what="subscribed")
        yield received
    finally:
        client.disconnect()
        client.loop_stop()
    assert not received.invalid


def test_once_leaves_a_valid_retained_status_and_presence_for_each_host(
    own_broker: Broker,
) -> None:
    result = run_cli("sim", "fleet", "--broker", own_broker.url, "--once", "--agents", "50")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("50 hosts on 5 sites: 100 messages acknowledged by")
    with subscribed(own_broker) as received:  # after the run: only what the broker retained
        wait_for(lambda: len(received.of(STATUS_SCHEMA)) == 50, what="50 retained statuses")
        wait_for(lambda: len(received.of(PRESENCE_SCHEMA)) == 50, what="50 presences")
    assert sorted(received.of(STATUS_SCHEMA)) == [f"sim-{n:04d}" for n in range(1, 51)]
    assert all(flags == [True] for flags in received.retained.values())
    presence = received.of(PRESENCE_SCHEMA).values()
    assert {docs[0]["state"] for docs in presence} == {"online"}
    assert not received.of(EVENT_SCHEMA)


def test_a_running_fleet_keeps_reporting_then_says_offline_on_sigterm(
    own_broker: Broker,
) -> None:
    with subscribed(own_broker) as received:
        process = subprocess.Popen(
            [*CLI, "sim", "fleet", "--broker", own_broker.url, "--agents", "5"]
            + ["--interval", "1", "--sites", "Chambéry, Valence"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(
                lambda: (
                    len(received.of(STATUS_SCHEMA)) == 5
                    and all(len(docs) >= 3 for docs in received.of(STATUS_SCHEMA).values())
                ),
                what="every host's status three times",
            )
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, err
        assert "5 hosts on 2 sites" in out and "published" in err
        wait_for(lambda: len(received.of(PRESENCE_SCHEMA)) == 5, what="presences")
    for host, docs in received.of(PRESENCE_SCHEMA).items():
        assert [d["state"] for d in docs] == ["online", "offline"], host
    for host, statuses in received.of(STATUS_SCHEMA).items():
        assert {s["host"]["site"] for s in statuses} <= {"Chambéry", "Valence"}
        events = received.of(EVENT_SCHEMA).get(host, [])
        seqs = sorted(d["seq"] for d in statuses + events)
        assert len(set(seqs)) == len(seqs) and [s["seq"] for s in statuses] == sorted(
            s["seq"] for s in statuses
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agents", "0"], "error: the fleet needs at least 1 agent, not 0"),
        (["--broker", "http://127.0.0.1"], "error: broker URL 'http://127.0.0.1' must start"),
        (["--broker", "mqtts://127.0.0.1"], "is a TLS broker"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args: list[str], message: str) -> None:
    result = run_cli("sim", "fleet", "--once", "--broker", "mqtt://127.0.0.1:1", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def read_only_broker(tmp_path: Path) -> Iterator[str]:
    """A Mosquitto whose ACL lets anonymous clients read but not write: a PUBACK refuses."""
    port = free_port()
    (tmp_path / "acl").write_text("topic read #\n")
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\nacl_file {tmp_path / 'acl'}\n"
    )
    process = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: accepts(port), what=f"mosquitto on port {port}")
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def test_a_broker_refusing_the_messages_exits_2_naming_its_reason(read_only_broker: str) -> None:
    result = run_cli("sim", "fleet", "--once", "--agents", "3", "--broker", read_only_broker)
    assert result.returncode == 2
    assert "error: the broker refused 6 of 6 messages (Not authorized)" in result.stderr


def test_an_unreachable_broker_exits_2_with_a_clear_message() -> None:
    port = free_port()
    result = run_cli("sim", "fleet", "--once", "--broker", f"mqtt://127.0.0.1:{port}")
    assert result.returncode == 2
    assert f"error: cannot reach the broker at mqtt://127.0.0.1:{port}:" in result.stderr
    assert "refused" in result.stderr and "Traceback" not in result.stderr
