"""A starting agent publishes one status, says when the broker acknowledged it, and stops
without a warning; a status taken while the broker is down waits for it, and is the one."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.agent_topics import AgentTopics
from tests.conftest import Broker, Readers, Service, wait_for

HOST_ID = "ws-startup"


def start_agent(home: Path, broker: Broker, services: Callable[..., Service]) -> Service:
    conf = home / "agent.toml"
    conf.write_text(
        f'broker = "{broker.url}"\nsite = "Lyon"\nhost_id = "{HOST_ID}"\n'
        f'interval = 600\nsplay = 0\nwill_delay = 5\nstate_dir = "{home / "state"}"\n'
    )
    return services(home / "agent.log", "agent", "run", "--config", str(conf))


@pytest.fixture
def seen(own_broker: Broker, readers: Readers) -> Iterator[AgentTopics]:
    """The host's documents on a broker of the test's own (no retained status from others)."""
    topics = AgentTopics(own_broker, HOST_ID)
    yield topics
    topics.close()


def published(log: str) -> list[int]:
    return [int(seq) for seq in re.findall(r"status published \(#(\d+)\)", log)]


def test_a_started_agent_publishes_one_status_and_stops_without_a_warning(
    tmp_path: Path, own_broker: Broker, seen: AgentTopics, services: Callable[..., Service]
) -> None:
    agent = start_agent(tmp_path, own_broker, services)
    wait_for(lambda: published(agent.logs()) == [1], 20, "the first status acknowledged")
    answer = seen.rescan()  # handled after whatever the start asked for
    assert [status["seq"] for status in seen.statuses] == [1, 2]
    assert answer["seq"] == 2 and "answers" not in seen.statuses[0]
    wait_for(lambda: published(agent.logs()) == [1, 2], 10, "the answer acknowledged")
    assert agent.stop() == 0
    assert seen.states()[-1] == "offline" and seen.presences[-1]["reason"] == "shutdown"
    assert " WARNING " not in agent.logs(), agent.logs()


def test_a_status_taken_while_the_broker_is_down_is_queued_then_the_one_published(
    tmp_path: Path, own_broker: Broker, seen: AgentTopics, services: Callable[..., Service]
) -> None:
    own_broker.stop()
    agent = start_agent(tmp_path, own_broker, services)
    wait_for(
        lambda: "status queued while the broker is down (#1)" in agent.logs(),
        20,
        "the first status queued",
    )
    assert published(agent.logs()) == []
    own_broker.start()
    wait_for(lambda: published(agent.logs()) == [1], 30, "the queued status acknowledged")
    replacement = AgentTopics(own_broker, HOST_ID)  # the broker restarted: a new subscriber
    try:
        answer = replacement.rescan()
        assert answer["seq"] == 2, "the reconnection asked for no other inventory"
        assert [status["seq"] for status in replacement.statuses] == [1, 2]
        assert replacement.statuses[0]["late"] is True
    finally:
        replacement.close()
