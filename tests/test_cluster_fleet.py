"""Several controllers sharing one fleet, as real processes: ``cpsfleet controller run`` on
one PostgreSQL database, receiving through one MQTT shared subscription on the tests' own
Mosquitto. Every status is stored exactly once, each alert notified once, also when a
controller is killed with SIGKILL in the middle of a burst; the leader's work is taken
over when the leader is killed."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cpsfleet.sim.fleet.model import generate_fleet
from tests.bench import Publisher, documents
from tests.conftest import Broker, Service, Webhook, wait_for
from tests.postgres import Postgres

# The first line of a new alert in a notification: "- <host>, <site>, <subject>: ... [rule, new]"
NEW_ALERT = re.compile(r"^- (?P<where>.+?): .* \[(?P<rule>[a-z_]+), new\]$", re.MULTILINE)


@pytest.fixture
def url(postgres: Postgres) -> Iterator[str]:
    created = postgres.create_database()
    yield created
    postgres.drop_database(created)


@dataclass
class Cluster:
    """Controllers of one share group, each with its configuration and log in ``home``."""

    home: Path
    broker: Broker
    url: str
    hook_url: str
    services: Callable[..., Service]

    def start(self, node: str) -> Service:
        conf = self.home / f"{node}.toml"
        conf.write_text(
            f'broker = "{self.broker.url}"\ndatabase = "{self.url}"\nshare_group = "fleet"\n'
            f'node_name = "{node}"\nevaluate_every = 1\n'
            f'[alerts]\nchannels = ["{self.hook_url}"]\n[dashboard]\nenabled = false\n'
        )
        return self.services(self.log(node), "controller", "run", "--config", str(conf))

    def log(self, node: str) -> Path:
        return self.home / f"{node}.log"

    def said(self, node: str, text: str) -> int:
        log = self.log(node)
        return log.read_text(errors="replace").count(text) if log.exists() else 0

    def start_all(self, nodes: list[str]) -> dict[str, Service]:
        started = {node: self.start(node) for node in nodes}
        for node in nodes:
            self.wait_said(node, "subscribed to the fleet's topics", 1, 60)
        wait_for(lambda: len(self.leaders(nodes)) == 1, 30, "one leader")
        return started

    def wait_said(self, node: str, text: str, times: int, timeout: float) -> None:
        wait_for(lambda: self.said(node, text) >= times, timeout, f"{node}: {text} ({times})")

    def leaders(self, nodes: list[str]) -> list[str]:
        """The nodes that said last that they lead (and did not stop since)."""
        return [node for node in nodes if self.said(node, f"{node} leads") > 0]

    def scalar(self, sql: str) -> Any:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                row = conn.execute(sql).fetchone()
        except psycopg.errors.UndefinedTable:  # not migrated yet
            return 0
        return None if row is None else row[0]

    def statuses(self) -> int:
        return int(self.scalar("select count(*) from status_history"))

    def firing(self) -> Counter[tuple[str, str]]:
        """The firing alerts that notify (warning or worse), as a notification names them."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "select host_id, site, subject, rule from alerts where state = 'firing' "
                "and severity in ('critical', 'warning')"
            ).fetchall()
        return Counter((", ".join(filter(None, row[:3])), row[3]) for row in rows)


def notified(hook: Webhook) -> Counter[tuple[str, str]]:
    """How many times each alert was told as new, over every message the webhook got."""
    return Counter(
        (found["where"], found["rule"])
        for post in list(hook.posts)
        for found in NEW_ALERT.finditer(post["message"])
    )


@pytest.fixture
def cluster(
    tmp_path: Path,
    own_broker: Broker,
    url: str,
    webhook: tuple[Webhook, str],
    services: Callable[..., Service],
) -> Cluster:
    return Cluster(tmp_path, own_broker, url, webhook[1], services)


def each_notified_once(cluster: Cluster, hook: Webhook, leader: str) -> None:
    """Wait until every firing alert was notified and stays so over two more periodic runs
    of the leader (an evaluation committed after the last status may add alerts, and a run
    would send any alert again), then check that each was told once."""
    deadline = time.monotonic() + 120
    while True:
        wait_for(lambda: set(notified(hook)) >= set(cluster.firing()), 60, "alerts notified", 0.5)
        runs = cluster.said(leader, "(the hosts due)")
        cluster.wait_said(leader, "(the hosts due)", runs + 2, 30)
        told, expected = notified(hook), cluster.firing()
        if set(told) == set(expected) or time.monotonic() > deadline:
            break
    assert expected, "the documents raise no alert: the test would prove nothing"
    assert set(told) == set(expected)
    assert [key for key, count in told.items() if count != 1] == []


def test_two_controllers_split_the_intake_and_store_each_status_once(
    cluster: Cluster, webhook: tuple[Webhook, str]
) -> None:
    nodes = ["ctl-1", "ctl-2"]
    started = cluster.start_all(nodes)
    messages = documents(generate_fleet(2000, seed=5), 1, first_seq=1)
    publisher = Publisher(cluster.broker.url, "cluster-publisher")
    publisher.publish(messages)
    publisher.wait(len(messages), 60)
    wait_for(lambda: cluster.statuses() == len(messages), 120, "every status stored")
    (leader,) = cluster.leaders(nodes)
    each_notified_once(cluster, webhook[0], leader)
    publisher.close()
    for service in started.values():
        assert service.stop(signal.SIGTERM) == 0
    stored = {
        node: int(re.findall(rf"{node} stored (\d+) messages", cluster.log(node).read_text())[-1])
        for node in nodes
    }
    assert sum(stored.values()) == len(messages)
    assert all(count > len(messages) // 10 for count in stored.values()), stored
    assert cluster.scalar("select count(distinct host_id) from status_history") == len(messages)
    assert cluster.scalar("select count(*) from hosts") == len(messages)


@pytest.mark.timeout(600)  # about two minutes on two idle cores; the suite shares them
def test_a_controller_killed_during_a_burst_loses_and_doubles_nothing(
    cluster: Cluster, webhook: tuple[Webhook, str]
) -> None:
    """10,000 statuses of 10,000 hosts on three controllers; one (not the leader) is killed
    with SIGKILL a third of the way and started again, as systemd does: Mosquitto keeps
    what was in flight to it for its session (tests/test_cluster_broker.py)."""
    nodes = ["ctl-1", "ctl-2", "ctl-3"]
    started = cluster.start_all(nodes)
    (leader,) = cluster.leaders(nodes)
    victim = next(node for node in nodes if node != leader)
    messages = documents(generate_fleet(10_000, seed=9), 1, first_seq=1)
    publisher = Publisher(cluster.broker.url, "cluster-publisher")
    began = time.monotonic()
    publisher.publish(messages)
    wait_for(lambda: cluster.statuses() >= 3000, 120, "a third of the burst stored", 0.01)
    started[victim].stop(signal.SIGKILL)
    killed_at = cluster.statuses()
    cluster.start(victim)  # its service manager starts it again
    publisher.wait(len(messages), 120)
    wait_for(lambda: cluster.statuses() >= len(messages), 180, "every status stored", 0.2)
    drained = time.monotonic() - began
    assert cluster.statuses() == len(messages)
    pairs = "select count(distinct (host_id, run, seq)) from status_history"
    assert cluster.scalar(pairs) == len(messages)
    assert cluster.scalar("select count(*) from hosts") == len(messages)
    assert cluster.scalar("select count(*) from status_history where seq is null") == 0
    assert killed_at < len(messages), "killed after the burst: the test would prove nothing"
    each_notified_once(cluster, webhook[0], leader)
    publisher.close()
    duplicates = cluster.scalar("select value from counters where name = 'messages_duplicate'")
    print(
        f"burst of {len(messages)} stored in {drained:.1f} s, {victim} killed at {killed_at}; "
        f"{duplicates or 0} duplicates"
    )


def test_the_leaders_work_is_taken_over_when_it_is_killed(
    cluster: Cluster, webhook: tuple[Webhook, str]
) -> None:
    nodes = ["ctl-1", "ctl-2"]
    started = cluster.start_all(nodes)
    (leader,) = cluster.leaders(nodes)
    (follower,) = [node for node in nodes if node != leader]
    killed = time.monotonic()
    started[leader].stop(signal.SIGKILL)
    wait_for(lambda: cluster.said(follower, f"{follower} leads") > 0, 30, "the take-over")
    print(f"{follower} took over {time.monotonic() - killed:.2f} s after {leader}'s SIGKILL")
    messages = documents(generate_fleet(300, seed=3), 1, first_seq=1)
    publisher = Publisher(cluster.broker.url, "cluster-publisher")
    publisher.publish(messages)
    publisher.wait(len(messages), 60)
    cluster.start(leader)  # back, its share of the documents is stored too
    wait_for(lambda: cluster.statuses() == len(messages), 120, "every status stored")
    each_notified_once(cluster, webhook[0], follower)
    publisher.close()
    assert cluster.said(leader, f"{leader} leads") == 1  # the one before its SIGKILL
