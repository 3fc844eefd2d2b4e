"""A network blip shorter than the agent's will_delay is not an outage: no offline is published.

The agent reaches a real Mosquitto through a TCP relay that the test cuts: every connection
dropped at once, without MQTT DISCONNECT, as a switch reboot or a Wi-Fi roam does. The agent
reconnects to its session (clean start off, the session lasting will_delay) within
will_delay, so the broker never sends its pending Will. A cut longer than will_delay, the
control case, does send it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Broker, Service, free_port, wait_for

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


class Presences:
    """Every presence document of the host, as a subscriber on the broker itself sees them."""

    def __init__(self, broker: Broker) -> None:
        self.states: list[str] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda client, userdata, message: self.states.append(
            "offline" if b'"offline"' in message.payload else "online"
        )
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(f"cpsfleet/v1/hosts/{HOST_ID}/presence", qos=1)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def agent(tmp_path: Path, relay: Relay, services: Callable[..., Service]) -> Service:
    conf = tmp_path / "agent.toml"
    conf.write_text(
        f'broker = "mqtt://127.0.0.1:{relay.port}"\nsite = "Lyon"\nhost_id = "{HOST_ID}"\n'
        f"interval = 600\nsplay = 0\nwill_delay = {WILL_DELAY}\n"
        f'state_dir = "{tmp_path / "state"}"\n'
    )
    return services(tmp_path / "agent.log", "agent", "run", "--config", str(conf))


@pytest.fixture
def presences(
    tmp_path: Path, own_broker: Broker, relay: Relay, services: Callable[..., Service]
) -> Iterator[Presences]:
    """The agent running through the relay, online; its presence documents as they come."""
    seen = Presences(own_broker)
    try:
        agent(tmp_path, relay, services)
        wait_for(lambda: seen.states[-1:] == ["online"], 20, "the agent online")
        yield seen
    finally:
        seen.close()


def test_a_blip_shorter_than_will_delay_publishes_no_offline(
    relay: Relay, presences: Presences
) -> None:
    relay.cut()
    wait_for(lambda: presences.states.count("online") >= 2, WILL_DELAY - 1, "a reconnection")
    time.sleep(WILL_DELAY + 2)  # past the moment the Will would have gone out
    assert "offline" not in presences.states, presences.states


def test_a_cut_longer_than_will_delay_publishes_the_will(
    relay: Relay, presences: Presences
) -> None:
    relay.refusing.set()
    relay.cut()
    wait_for(lambda: "offline" in presences.states, WILL_DELAY + 5, "the Will")
    relay.refusing.clear()
    wait_for(lambda: presences.states[-1:] == ["online"], 30, "the agent back online")
