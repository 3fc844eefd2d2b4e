"""``cpsfleet sim fleet --storm``: every agent on its own MQTT connection, all back at once."""

from __future__ import annotations

import json
import math
import re
import resource
import subprocess
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cpsfleet.schemas import PRESENCE_SCHEMA, STATUS_SCHEMA, parse
from cpsfleet.schemas.broker import parse_broker_url
from cpsfleet.schemas.topics import parse_topic
from cpsfleet.sim.fleet.model import generate_fleet
from cpsfleet.sim.storm.packets import frames
from cpsfleet.sim.storm.play import play_storm
from cpsfleet.sim.storm.results import StormProgress, StormResult
from cpsfleet.sim.storm.settings import StormSettings
from tests.conftest import CLI, free_port, run_cli, wait_for

AGENTS = 300
CONNECTED = re.compile(r"New client connected from \S+ as (cpsfleet-agent-sim-\d+) \((.*?)\)")


def raise_open_files() -> None:
    """In the broker's process, before exec: one file descriptor per agent and then some."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class StormBroker:
    """A Mosquitto for storms: no connection limit, $SYS every second, a log to read."""

    home: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, *lines: str) -> StormBroker:
        conf = self.home / "mosquitto.conf"
        settings = (
            f"listener {self.port} 127.0.0.1",
            "user root",
            "max_connections -1",
            "sys_interval 1",
            "max_queued_messages 100000",
            f"log_dest file {self.home / 'mosquitto.log'}",
            *lines,
        )
        conf.write_text("\n".join(settings) + "\n")
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=raise_open_files,
        )
        wait_for(lambda: "running" in self.log(), what=f"mosquitto on port {self.port}")
        return self

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=10)

    def log(self) -> str:
        path = self.home / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def connections(self) -> dict[str, list[str]]:
        """Each client id that connected, with the flags of each of its connections."""
        seen = defaultdict(list)
        for client_id, flags in CONNECTED.findall(self.log()):
            seen[client_id].append(flags)
        return dict(seen)


@pytest.fixture
def storm_broker(tmp_path: Path) -> Iterator[StormBroker]:
    broker = StormBroker(tmp_path).start("allow_anonymous true")
    yield broker
    broker.stop()


@dataclass
class Watched:
    """What a subscriber saw: each host's documents by schema, in order, and $SYS numbers."""

    documents: dict[tuple[str, str], list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    retained: set[tuple[str, str]] = field(default_factory=set)
    clients_connected: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, schema: str) -> int:
        return sum(len(docs) for docs in self.of(schema).values())

    def of(self, schema: str) -> dict[str, list[dict[str, Any]]]:
        with self.lock:
            return {h: list(docs) for (h, s), docs in self.documents.items() if s == schema}


@contextmanager
def watching(broker: StormBroker, *topics: str) -> Iterator[Watched]:
    """A subscriber validating every fleet document it receives."""
    watched, ready = Watched(), threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(client: mqtt.Client, data: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == "$SYS/broker/clients/connected":
            watched.clients_connected.append(int(message.payload))
            return
        host_id, schema = parse_topic(message.topic)
        document = parse(message.payload, schema)
        with watched.lock:
            watched.documents[(host_id, schema)].append(document)
            if message.retain:
                watched.retained.add((host_id, schema))

    client.on_message = on_message
    client.on_subscribe = lambda *args: ready.set()
    client.connect("127.0.0.1", broker.port)
    client.subscribe([(name, 1) for name in topics])
    client.loop_start()
    try:
        wait_for(ready.is_set, what="subscribed")
        yield watched
    finally:
        client.disconnect()
        client.loop_stop()


def hosts(count: int = AGENTS) -> list[str]:
    return [f"sim-{n:04d}" for n in range(1, count + 1)]


def test_each_agent_holds_its_own_connection_and_leaves_online_and_its_status(
    storm_broker: StormBroker,
) -> None:
    stop, phases, results = threading.Event(), [], []

    def progress(state: StormProgress) -> None:
        phases.append(state.phase)

    def play() -> None:
        settings = StormSettings(workers=2, hold_s=math.inf)
        url = parse_broker_url(storm_broker.url)
        results.append(play_storm(url, generate_fleet(AGENTS), 1000, progress, settings, stop))

    with watching(storm_broker, "$SYS/broker/clients/connected") as watched:
        player = threading.Thread(target=play)
        player.start()
        try:
            wait_for(lambda: "hold" in phases, timeout=60, what="the agents holding on")
            wait_for(
                lambda: max(watched.clients_connected, default=0) >= AGENTS + 1,
                what="the broker counting every agent and this subscriber connected",
            )
        finally:
            stop.set()
            player.join(timeout=30)
    result: StormResult = results[0]
    run = result.storm
    assert (run.agents, run.connected, run.connect_errors) == (AGENTS, AGENTS, 0)
    assert (run.published, run.acknowledged, run.refused) == (2 * AGENTS, 2 * AGENTS, 0)
    assert 0 < run.connect_seconds <= run.seconds and run.connects_per_s > 0
    assert 0 < run.connack_median_s <= run.connack_p99_s <= run.connack_max_s < run.seconds
    assert (result.workers, result.seq, result.problem, result.first_contact) == (
        2,
        1001,
        None,
        None,
    )
    connections = storm_broker.connections()
    assert sorted(connections) == [f"cpsfleet-agent-{host}" for host in hosts()]
    assert {flags for each in connections.values() for flags in each} == {"p5, c0, k30"}
    with watching(
        storm_broker, "cpsfleet/v1/hosts/+/presence", "cpsfleet/v1/hosts/+/status"
    ) as seen:
        wait_for(lambda: len(seen.retained) == 2 * AGENTS, what="every retained document")
    assert sorted(seen.of(PRESENCE_SCHEMA)) == sorted(seen.of(STATUS_SCHEMA)) == hosts()
    assert {docs[0]["state"] for docs in seen.of(PRESENCE_SCHEMA).values()} == {"online"}
    assert {docs[0]["seq"] for docs in seen.of(STATUS_SCHEMA).values()} == {1001}
    cleanly = re.findall(r"Client cpsfleet-agent-\S+ disconnected\.", storm_broker.log())
    assert len(cleanly) == AGENTS, "each agent sent DISCONNECT: no Will"


def test_the_first_contact_leaves_each_agents_will_then_the_storm_brings_it_back(
    storm_broker: StormBroker,
) -> None:
    settings = StormSettings(workers=2, first_contact=True, will_delay_s=1)
    url = parse_broker_url(storm_broker.url)
    topics = ("cpsfleet/v1/hosts/+/presence", "cpsfleet/v1/hosts/+/status")
    with watching(storm_broker, *topics) as watched:
        result = play_storm(url, generate_fleet(AGENTS), 7000, lambda state: None, settings)
        wait_for(
            lambda: (
                watched.count(PRESENCE_SCHEMA) == 3 * AGENTS
                and watched.count(STATUS_SCHEMA) == 2 * AGENTS
            ),
            what="online, the Will, online again and two statuses for every host",
        )
    assert result.wills == AGENTS and result.first_contact is not None
    assert result.first_contact.acknowledged == result.storm.acknowledged == 2 * AGENTS
    assert result.seq == 7002 and result.problem is None
    for host, presences in watched.of(PRESENCE_SCHEMA).items():
        sequence = [(doc["state"], doc["reason"]) for doc in presences]
        assert sequence == [
            ("online", "connected"),
            ("offline", "connection_lost"),
            ("online", "connected"),
        ], host
    assert {
        host: [doc["seq"] for doc in docs] for host, docs in watched.of(STATUS_SCHEMA).items()
    } == {host: [7001, 7002] for host in hosts()}
    assert all(len(flags) == 2 for flags in storm_broker.connections().values())


def test_the_command_prints_a_json_summary_the_benchmark_can_read(
    storm_broker: StormBroker,
) -> None:
    result = run_cli(
        "sim",
        "fleet",
        "--storm",
        "--agents",
        "50",
        "--workers",
        "2",
        "--json",
        "--broker",
        storm_broker.url,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {key: summary[key] for key in ("agents", "connected", "connect_errors")} == {
        "agents": 50,
        "connected": 50,
        "connect_errors": 0,
    }
    assert (summary["acknowledged"], summary["workers"], summary["first_contact"]) == (100, 2, None)
    assert summary["seconds"] > 0 and summary["connects_per_s"] > 0


def test_a_broker_refusing_the_agents_counts_each_as_a_connect_error(tmp_path: Path) -> None:
    broker = StormBroker(tmp_path).start("allow_anonymous false")
    try:
        result = run_cli("sim", "fleet", "--storm", "--agents", "20", "--broker", broker.url)
    finally:
        broker.stop()
    assert result.returncode == 1
    assert "0 connected, 20 connect errors, 0 of 40 messages acknowledged" in result.stdout
    assert "error: 20 of 20 agents failed (Not authorized: 20 times)" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--storm", "--workers", "0"], "error: the storm needs at least 1 worker, not 0"),
        (["--storm", "--hold", "-1"], "error: the storm needs a hold of 0 seconds or more"),
        (["--storm", "--will-delay", "-1"], "error: the storm needs a Will Delay of 0 to"),
        (["--storm", "--agents", "0"], "error: the fleet needs at least 1 agent, not 0"),
        (["--storm", "--once"], "go with --storm, which plays once, without --once"),
        (["--workers", "2"], "error: --workers, --first-contact, --hold and --will-delay go"),
        (["--storm", "--broker", "mqtts://127.0.0.1"], "is a TLS broker: the storm plays plain"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args: list[str], message: str) -> None:
    result = run_cli("sim", "fleet", "--broker", "mqtt://127.0.0.1:1", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_broker_exits_2_with_a_clear_message() -> None:
    port = free_port()
    result = run_cli("sim", "fleet", "--storm", "--broker", f"mqtt://127.0.0.1:{port}")
    assert result.returncode == 2
    assert f"error: cannot reach the broker at mqtt://127.0.0.1:{port}: " in result.stderr
    assert "Connection refused" in result.stderr and "Traceback" not in result.stderr


def test_too_few_open_files_for_the_agents_is_said_before_the_storm(
    storm_broker: StormBroker,
) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))

    result = subprocess.run(
        [*CLI, "sim", "fleet", "--storm", "--agents", "300", "--workers", "1"]
        + ["--broker", storm_broker.url],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=low_limit,
    )
    assert result.returncode == 2
    assert "error: each of the 1 workers needs 364 open files, but the hard limit is 100" in (
        result.stderr
    )
    assert not storm_broker.connections()


def test_packets_are_read_whole_however_the_bytes_arrive() -> None:
    big = bytes([0x30, 0xC8, 0x01]) + bytes(200)  # a 200-byte body: two length bytes
    stream = bytes([0x40, 0x02, 0x00, 0x01]) + big + bytes([0xD0, 0x00])
    for cut in range(len(stream) + 1):
        inbox, got = bytearray(), []
        for piece in (stream[:cut], stream[cut:]):
            inbox += piece
            got += list(frames(inbox))
        assert got == [(4, b"\x00\x01"), (3, bytes(200)), (13, b"")], cut
        assert not inbox
