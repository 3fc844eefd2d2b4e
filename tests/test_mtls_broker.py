"""A real Mosquitto with the fleet's mutual TLS and ACL: who may connect, publish and read.

The broker is configured by ``cpsfleet.controller.pki.mosquitto`` with certificates from
``cpsfleet.controller.pki.ca``; the clients are paho-mqtt 2 over MQTT 5 with client certificates.
"""

from __future__ import annotations

import queue
import signal
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from cpsfleet.controller.pki import ca as pki
from cpsfleet.controller.pki import mosquitto
from cpsfleet.controller.pki.ca import COMMANDS_IDENTITY, CONTROLLER_IDENTITY
from tests.conftest import MtlsBroker, wait_for

NOT_AUTHORIZED = 0x87
TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def broker(mtls_broker: MtlsBroker) -> MtlsBroker:
    return mtls_broker


@dataclass
class Client:
    """A paho client that records what the broker answers."""

    mqtt: mqtt.Client
    connected: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)
    pubacks: dict[int, ReasonCode] = field(default_factory=dict)
    subacks: dict[int, list[ReasonCode]] = field(default_factory=dict)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> ReasonCode:
        """Publish with QoS 1 and return the PUBACK's reason code."""
        info = self.mqtt.publish(topic, payload, qos=1, retain=retain)
        wait_for(lambda: info.mid in self.pubacks, TIMEOUT_S, f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def subscribe(self, *topics: str) -> list[ReasonCode]:
        """Subscribe with QoS 1 and return the SUBACK's reason codes, one per topic."""
        _, mid = self.mqtt.subscribe([(topic, 1) for topic in topics])
        assert mid is not None, "paho did not send the SUBSCRIBE"
        wait_for(lambda: mid in self.subacks, TIMEOUT_S, f"SUBACK for {topics}")
        return self.subacks[mid]

    def next_message(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=TIMEOUT_S)

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def _client(
    broker: MtlsBroker,
    certificate: Path | None = None,
    key: Path | None = None,
    client_id: str = "",
) -> Client:
    paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    # A refused or replaced client stays down: each test looks at the connections it made.
    paho.reconnect_delay_set(min_delay=60, max_delay=60)
    paho.tls_set(
        ca_certs=str(broker.pki / "ca.pem"),
        certfile=str(certificate) if certificate else None,
        keyfile=str(key) if key else None,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    client = Client(paho)

    def on_connect(c: mqtt.Client, u: Any, flags: Any, code: ReasonCode, props: Any) -> None:
        if not code.is_failure:
            client.connected.set()

    def on_disconnect(c: mqtt.Client, u: Any, flags: Any, code: Any, props: Any) -> None:
        client.closed.set()

    def on_publish(c: mqtt.Client, u: Any, mid: int, code: ReasonCode, props: Any) -> None:
        client.pubacks[mid] = code

    def on_subscribe(c: mqtt.Client, u: Any, mid: int, codes: Any, props: Any) -> None:
        client.subacks[mid] = list(codes)

    def on_message(c: mqtt.Client, u: Any, message: mqtt.MQTTMessage) -> None:
        client.messages.put((message.topic, bytes(message.payload)))

    paho.on_connect, paho.on_disconnect = on_connect, on_disconnect
    paho.on_publish, paho.on_subscribe, paho.on_message = on_publish, on_subscribe, on_message
    return client


def try_connect(
    broker: MtlsBroker, certificate: Path | None = None, key: Path | None = None
) -> Client | None:
    """A connected client, or None when the broker refuses (TLS handshake or CONNACK)."""
    client = _client(broker, certificate, key)
    try:
        client.mqtt.connect("127.0.0.1", broker.port, keepalive=30)
    except (ssl.SSLError, OSError):
        return None
    client.mqtt.loop_start()
    wait_for(
        lambda: client.connected.is_set() or client.closed.is_set(), TIMEOUT_S, "CONNACK or close"
    )
    if client.connected.is_set():
        return client
    client.close()
    return None


Connect = Callable[[str, str], Client]


@pytest.fixture
def connect(broker: MtlsBroker) -> Iterator[Connect]:
    """Connect as a role and name of the fleet PKI; every client is closed after the test."""
    opened: list[Client] = []

    def open_client(role: str, name: str) -> Client:
        client = try_connect(broker, *broker.files(role, name))
        assert client is not None, f"the broker refused {role} {name}"
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


def accepted(code: ReasonCode) -> bool:
    """Success, or a success that says more (0x10, no matching subscribers): below 0x80."""
    return not code.is_failure


def status(host: str) -> str:
    return f"cpsfleet/v1/hosts/{host}/status"


def presence(host: str) -> str:
    return f"cpsfleet/v1/hosts/{host}/presence"


def command(host: str) -> str:
    return f"cpsfleet/v1/hosts/{host}/command"


# --- the configuration ------------------------------------------------------------------


def config_lines(persistence: Path | None = Path("/var/lib/mosquitto")) -> list[str]:
    etc = Path("/etc/mosquitto")
    text = mosquitto.broker_config(
        8883, etc / "ca.pem", etc / "broker.pem", etc / "broker.key", etc / "acl", persistence
    )
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_config_admits_only_fleet_certificates_named_by_their_cn() -> None:
    lines = config_lines()
    for line in (
        "listener 8883 0.0.0.0",
        "cafile /etc/mosquitto/ca.pem",
        "certfile /etc/mosquitto/broker.pem",
        "keyfile /etc/mosquitto/broker.key",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        "allow_anonymous false",
        "acl_file /etc/mosquitto/acl",
        "persistence true",
        "persistence_location /var/lib/mosquitto/",
    ):
        assert line in lines, line
    assert int(next(x for x in lines if x.startswith("max_queued_messages ")).split()[1]) >= 10**5
    assert "persistence false" in config_lines(persistence=None)


def test_the_config_refuses_what_mosquitto_would_misread() -> None:
    etc = Path("/etc")
    with pytest.raises(mosquitto.MosquittoConfigError, match="must be an absolute path"):
        mosquitto.broker_config(8883, Path("ca.pem"), etc, etc, etc, None)
    with pytest.raises(mosquitto.MosquittoConfigError, match="line break"):
        mosquitto.broker_config(
            8883, Path("/etc/ca.pem\nallow_anonymous true"), etc, etc, etc, None
        )
    with pytest.raises(mosquitto.MosquittoConfigError, match="between 1 and 65535"):
        mosquitto.broker_config(0, etc, etc, etc, etc, None)
    with pytest.raises(mosquitto.MosquittoConfigError, match="bind address"):
        mosquitto.broker_config(8883, etc, etc, etc, etc, None, bind="0.0.0.0 1884")
    with pytest.raises(mosquitto.MosquittoConfigError, match="controller identity"):
        mosquitto.acl("ctl one")


def test_the_acl_names_the_controller_and_confines_agents_by_pattern() -> None:
    lines = [x for x in mosquitto.acl("ctl-lyon").splitlines() if x and not x.startswith("#")]
    assert lines == [
        "pattern write cpsfleet/v1/hosts/%u/presence",
        "pattern write cpsfleet/v1/hosts/%u/status",
        "pattern write cpsfleet/v1/hosts/%u/events",
        "pattern read cpsfleet/v1/hosts/%u/command",
        "user ctl-lyon",
        "topic read cpsfleet/v1/hosts/+/presence",
        "topic read cpsfleet/v1/hosts/+/status",
        "topic read cpsfleet/v1/hosts/+/events",
        "topic write cpsfleet/v1/hosts/+/command",
        "topic readwrite cpsfleet/v1/alerts/#",
        "user cpsfleet-commands",
        "topic write cpsfleet/v1/hosts/+/command",
    ]


# --- publishing -------------------------------------------------------------------


def test_an_agent_publishes_its_own_status_to_the_controller(connect: Connect) -> None:
    controller = connect("controller", CONTROLLER_IDENTITY)
    assert [code.value for code in controller.subscribe(status("+"))] == [1]
    agent = connect("agent", "ws-a")
    assert accepted(agent.publish(status("ws-a"), b"inventory of ws-a"))
    assert controller.next_message() == (status("ws-a"), b"inventory of ws-a")


def test_an_agent_publishing_as_another_host_is_refused(connect: Connect) -> None:
    controller = connect("controller", CONTROLLER_IDENTITY)
    controller.subscribe(status("+"), "cpsfleet/v1/hosts/+/events")
    agent = connect("agent", "ws-a")
    for channel in ("status", "events", "presence"):
        code = agent.publish(f"cpsfleet/v1/hosts/ws-b/{channel}", b"forged by ws-a")
        assert code.value == NOT_AUTHORIZED, channel
    assert agent.publish(command("ws-a"), b"an agent does not command").value == NOT_AUTHORIZED
    assert agent.publish("cpsfleet/v1/alerts/x/ws-b", b"nor alert").value == NOT_AUTHORIZED
    # QoS 1 from one client arrives in order: if the forgeries had been routed, they'd be first.
    assert accepted(agent.publish(status("ws-a"), b"genuine"))
    assert controller.next_message() == (status("ws-a"), b"genuine")
    assert controller.messages.empty()


# --- reading --------------------------------------------------------------------------


def test_an_agent_reads_its_own_command_topic_and_nothing_of_other_hosts(
    connect: Connect,
) -> None:
    """Mosquitto 2.0's acl_file checks reads when it delivers, not when a client subscribes:
    a subscription beyond the agent's rights is acknowledged, then never delivers."""
    controller = connect("controller", CONTROLLER_IDENTITY)
    other = connect("agent", "ws-b")
    assert accepted(other.publish(status("ws-b"), b"retained status of ws-b", retain=True))
    try:
        _read_nothing_of_others(controller, other, connect("agent", "ws-a"))
    finally:
        other.publish(status("ws-b"), b"", retain=True)


def _read_nothing_of_others(controller: Client, other: Client, agent: Client) -> None:
    codes = agent.subscribe(command("ws-b"), status("+"), "#", command("ws-a"))
    assert codes[-1].value == 1  # its own command topic, granted at QoS 1
    assert all(code.value in (1, NOT_AUTHORIZED) for code in codes)
    assert accepted(controller.publish(command("ws-b"), b"for ws-b only"))
    assert accepted(other.publish(status("ws-b"), b"new status of ws-b"))
    assert accepted(controller.publish(command("ws-a"), b"for ws-a"))
    # Routed in order, so anything of ws-b would come first; "#" and the exact topic both
    # match ws-a's command, and MQTT 5 allows a copy for each of them.
    assert agent.next_message() == (command("ws-a"), b"for ws-a")
    assert list(agent.messages.queue) in ([], [(command("ws-a"), b"for ws-a")])


def test_the_commands_identity_writes_commands_and_nothing_else(
    broker: MtlsBroker, connect: Connect
) -> None:
    """``cpsfleet controller rescan``'s certificate: commands to any host, no fleet data."""
    if not broker.files("controller", COMMANDS_IDENTITY)[0].exists():
        pki.issue(broker.pki, "controller", COMMANDS_IDENTITY)
    commands = connect("controller", COMMANDS_IDENTITY)
    agent = connect("agent", "ws-a")
    assert agent.subscribe(command("ws-a"))[0].value == 1
    commands.subscribe(status("+"), presence("+"), "cpsfleet/v1/alerts/#")
    assert accepted(agent.publish(status("ws-a"), b"not for the commands identity"))
    for topic in (status("ws-b"), presence("ws-b"), "cpsfleet/v1/alerts/x/ws-b"):
        assert commands.publish(topic, b"forged").value == NOT_AUTHORIZED, topic
    assert accepted(commands.publish(command("ws-a"), b"rescan, please"))
    assert agent.next_message() == (command("ws-a"), b"rescan, please")
    assert commands.messages.empty()


def test_no_agent_certificate_can_be_issued_under_a_controller_identity(tmp_path: Path) -> None:
    pki.create_ca(tmp_path)
    for name in (CONTROLLER_IDENTITY, COMMANDS_IDENTITY):
        with pytest.raises(pki.PkiError, match="already the name of the controller"):
            pki.issue(tmp_path, "agent", name)


def test_an_agent_cannot_take_over_the_controllers_session(
    broker: MtlsBroker, connect: Connect
) -> None:
    """The client id is the certificate's CN: claiming the controller's id changes nothing."""
    controller = connect("controller", CONTROLLER_IDENTITY)
    controller.subscribe(status("+"))
    impostor = _client(broker, *broker.files("agent", "ws-b"), client_id=CONTROLLER_IDENTITY)
    impostor.mqtt.connect("127.0.0.1", broker.port)
    impostor.mqtt.loop_start()
    try:
        wait_for(impostor.connected.is_set, TIMEOUT_S, "the impostor's CONNACK")
        assert accepted(impostor.publish(status("ws-b"), b"from ws-b"))
        assert controller.next_message() == (status("ws-b"), b"from ws-b")
        assert not controller.closed.is_set()
    finally:
        impostor.close()


# --- connecting -------------------------------------------------------------------------


def test_a_client_without_a_certificate_cannot_connect(broker: MtlsBroker) -> None:
    assert try_connect(broker) is None


def test_a_certificate_from_another_ca_cannot_connect(broker: MtlsBroker, tmp_path: Path) -> None:
    pki.create_ca(tmp_path / "other")
    stranger = pki.issue(tmp_path / "other", "agent", "ws-a")
    assert try_connect(broker, stranger.certificate, stranger.key) is None


def test_the_brokers_certificate_is_no_client_certificate(broker: MtlsBroker) -> None:
    assert try_connect(broker, *broker.files("broker", "broker")) is None


# --- renewal ------------------------------------------------------------------------------


def test_a_renewed_agent_certificate_connects_and_the_old_session_goes_on(
    broker: MtlsBroker, connect: Connect
) -> None:
    controller = connect("controller", CONTROLLER_IDENTITY)
    controller.subscribe(status("ws-r"))
    old = connect("agent", "ws-r")
    before = x509.load_pem_x509_certificate(broker.files("agent", "ws-r")[0].read_bytes())
    pki.renew(broker.pki, "agent", "ws-r")
    # Renewing replaces files, not the TLS session already set up from them.
    assert accepted(old.publish(status("ws-r"), b"old connection"))
    assert controller.next_message() == (status("ws-r"), b"old connection")
    new = connect("agent", "ws-r")
    renewed = x509.load_pem_x509_certificate(broker.files("agent", "ws-r")[0].read_bytes())
    assert renewed.serial_number != before.serial_number
    assert accepted(new.publish(status("ws-r"), b"renewed certificate"))
    assert controller.next_message() == (status("ws-r"), b"renewed certificate")
    # One connection per identity: the broker hands the session to the newer one.
    wait_for(old.closed.is_set, TIMEOUT_S, "the older ws-r connection to be replaced")


def test_a_renewed_broker_certificate_is_served_after_sighup(
    broker: MtlsBroker, connect: Connect
) -> None:
    controller = connect("controller", CONTROLLER_IDENTITY)
    controller.subscribe(status("ws-a"))
    agent = connect("agent", "ws-a")
    served = _served_serial(agent)
    pki.renew(broker.pki, "broker", "broker")
    renewed = x509.load_pem_x509_certificate(broker.files("broker", "broker")[0].read_bytes())
    broker.process.send_signal(signal.SIGHUP)
    fresh: list[Client] = []

    def serves_renewed() -> bool:
        client = try_connect(broker, *broker.files("agent", "ws-b"))
        if client is None:
            return False
        fresh.append(client)
        return _served_serial(client) == renewed.serial_number

    try:
        wait_for(serves_renewed, TIMEOUT_S, "the broker to serve its renewed certificate")
    finally:
        for client in fresh:
            client.close()
    assert served != renewed.serial_number
    assert accepted(agent.publish(status("ws-a"), b"still connected"))
    assert controller.next_message() == (status("ws-a"), b"still connected")


def _served_serial(client: Client) -> int:
    sock = client.mqtt.socket()
    assert isinstance(sock, ssl.SSLSocket)
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


# --- the Last Will -------------------------------------------------------------------------


def test_an_agents_last_will_is_delivered_only_on_its_own_presence_topic(
    broker: MtlsBroker, connect: Connect
) -> None:
    """A Last Will goes out under its sender's identity: the presence write grant covers
    an agent's own, and one naming another host is dropped when it would be sent."""
    controller = connect("controller", CONTROLLER_IDENTITY)
    controller.subscribe(presence("+"))
    for host in ("ws-b", "ws-a"):
        agent = _client(broker, *broker.files("agent", "ws-a"))
        agent.mqtt.will_set(presence(host), f"ws-a's will on {host}".encode(), qos=1)
        agent.mqtt.connect("127.0.0.1", broker.port)
        agent.mqtt.loop_start()
        wait_for(agent.connected.is_set, TIMEOUT_S, "ws-a's CONNACK")
        _lose_network(agent)
    assert controller.next_message() == (presence("ws-a"), b"ws-a's will on ws-a")


def _lose_network(client: Client) -> None:
    """The connection ends without DISCONNECT, so the broker sends the client's will."""
    sock = client.mqtt.socket()
    client.mqtt.loop_stop()
    assert sock is not None
    sock.close()
