"""A network blip shorter than the agent's will_delay is not an outage: no offline is published.

The agent reaches a real Mosquitto through a TCP relay that the test cuts: every connection
dropped at once, without MQTT DISCONNECT, as a switch reboot or a Wi-Fi roam does. The agent
reconnects to its session (clean start off, the session lasting will_delay) within
will_delay, so the broker never sends its pending Will, and the agent publishes no status
again (the broker kept it). A cut longer than will_delay, the control case, does send the
Will, without a time (the agent wrote it when it connected), and the agent, back, publishes
a fresh status: the broker kept no session of it, and perhaps not its retained status.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.agent_topics import AgentTopics
from tests.conftest import Broker, Readers, Service, free_port, wait_for

WILL_DELAY = 6
HOST_ID = "ws-blip"


class Relay:
    """A TCP relay from a local port to the broker; ``cut`` drops every connection through it,
    and while ``refusing`` it closes new ones at once."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.refusing = threading.Event()
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def cut(self) -> None:
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.sockets.clear()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        self.cut()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass


@pytest.fixture
def relay(own_broker: Broker) -> Iterator[Relay]:
    started = Relay(own_broker.port)
    yield started
    started.close()


def agent(tmp_path: Path, relay: Relay, services: Callable[..., Service]) -> Service:
    conf = tmp_path / "agent.toml"
    conf.write_text(
        f'broker = "mqtt://127.0.0.1:{relay.port}"\nsite = "Lyon"\nhost_id = "{HOST_ID}"\n'
        f"interval = 600\nsplay = 0\nwill_delay = {WILL_DELAY}\n"
        f'state_dir = "{tmp_path / "state"}"\n'
    )
    return services(tmp_path / "agent.log", "agent", "run", "--config", str(conf))


@pytest.fixture
def seen(
    tmp_path: Path,
    own_broker: Broker,
    relay: Relay,
    readers: Readers,
    services: Callable[..., Service],
) -> Iterator[AgentTopics]:
    """The agent running through the relay, online, its status out; what it publishes. PC/SC
    is up: an agent without it would publish a status again when its watcher gives up."""
    topics = AgentTopics(own_broker, HOST_ID)
    try:
        agent(tmp_path, relay, services)
        wait_for(lambda: topics.states()[-1:] == ["online"], 20, "the agent online")
        wait_for(lambda: len(topics.statuses) == 1, 20, "the first status")
        yield topics
    finally:
        topics.close()


def test_a_blip_shorter_than_will_delay_publishes_no_offline(
    relay: Relay, seen: AgentTopics
) -> None:
    relay.cut()
    wait_for(lambda: seen.states().count("online") >= 2, WILL_DELAY - 1, "a reconnection")
    time.sleep(WILL_DELAY + 2)  # past the moment the Will would have gone out
    assert "offline" not in seen.states(), seen.states()
    assert seen.rescan()["seq"] == 2, "a resumed session: no status published again"


def test_a_cut_longer_than_will_delay_publishes_the_will(relay: Relay, seen: AgentTopics) -> None:
    relay.refusing.set()
    relay.cut()
    wait_for(lambda: "offline" in seen.states(), WILL_DELAY + 5, "the Will")
    will = seen.presences[-1]
    assert will["reason"] == "connection_lost" and will["at"] is None, will
    relay.refusing.clear()
    wait_for(lambda: seen.states()[-1:] == ["online"], 30, "the agent back online")
    wait_for(lambda: len(seen.statuses) == 2, 20, "a fresh status after the outage")
    assert seen.statuses[1]["seq"] == 2 and "late" not in seen.statuses[1]
