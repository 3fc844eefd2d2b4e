"""The controller's receiving process, against a real Mosquitto: what arrives is passed on,
what is not acknowledged comes again, alerts are published, and the process never outlives
the controller."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cpsfleet.controller.intake.receiver import PUBLISH_WAIT_S, Message, Receiver, Session
from cpsfleet.schemas.broker import parse_broker_url
from cpsfleet.schemas.topics import SUBSCRIPTIONS, topic
from tests.conftest import CLI, Broker, descendants, wait_for


def session(broker: Broker, client_id: str) -> Session:
    return Session(
        broker=parse_broker_url(broker.url),
        tls=None,
        client_id=client_id,
        subscriptions=SUBSCRIPTIONS,
        session_expiry_s=600,
        receive_maximum=100,
        batch_max=7,
        log_level=logging.INFO,
    )


def connection(broker: Broker) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


@pytest.fixture
def publisher(own_broker: Broker) -> Iterator[mqtt.Client]:
    client = connection(own_broker)
    yield client
    client.disconnect()
    client.loop_stop()


def publish(client: mqtt.Client, host_ids: list[str], pad: str | None = None) -> None:
    """A status-topic message for each host, ``pad`` added to make it bigger; returns once
    the broker has them all."""
    infos = [
        client.publish(topic(host_id, "status"), json.dumps(_body(host_id, pad)), qos=1)
        for host_id in host_ids
    ]
    for info in infos:
        info.wait_for_publish(10)


def _body(host_id: str, pad: str | None) -> dict[str, str]:
    return {"host": host_id} if pad is None else {"host": host_id, "pad": pad}


def receive(receiver: Receiver, count: int, timeout: float = 10) -> list[Message]:
    got: list[Message] = []
    wait_for(lambda: bool(got.extend(receiver.next_batch(0.1))) or len(got) >= count, timeout)
    return got


def connected(receiver: Receiver) -> Receiver:
    wait_for(lambda: receiver.next_batch(0.1) == [] and receiver.fresh_session.is_set(), 10)
    return receiver


def test_messages_come_in_batches_and_unacknowledged_ones_come_again(
    own_broker: Broker, publisher: mqtt.Client
) -> None:
    """On a broker of its own: the session's broker holds other tests' retained documents."""
    broker = own_broker
    client_id = f"receiver-{uuid.uuid4().hex[:8]}"
    hosts = [f"ws-{uuid.uuid4().hex[:6]}-{n:02d}" for n in range(20)]
    receiver = connected(Receiver(session(broker, client_id)))
    try:
        publish(publisher, hosts)
        first = receive(receiver, len(hosts))
        assert [message.topic for message in first] == [topic(host, "status") for host in hosts]
        assert all(message.qos == 1 and message.received_at.tzinfo for message in first)
        assert json.loads(first[3].payload) == {"host": hosts[3]}
        receiver.ack(first[:12])  # the rest is stored by nobody
    finally:
        receiver.stop()

    receiver = Receiver(session(broker, client_id))  # the same persistent session
    try:
        again = receive(receiver, len(hosts) - 12)
        assert [message.topic for message in again] == [topic(h, "status") for h in hosts[12:]]
        receiver.ack(again)
        # The broker kept the session, hence the retained alerts: nothing to rebuild.
        assert receiver.next_batch(1.0) == [] and not receiver.fresh_session.is_set()
    finally:
        receiver.stop()


def test_alerts_are_published_retained_and_cleared(broker: Broker) -> None:
    prefix = f"cpsfleet-test/{uuid.uuid4().hex}/alerts"
    receiver = connected(Receiver(session(broker, f"receiver-{uuid.uuid4().hex[:8]}")))
    try:
        receiver.publish(f"{prefix}/no_reader/ws-1/_", b'{"state": "firing"}')
        wait_for(
            lambda: (
                retained(broker, prefix) == {f"{prefix}/no_reader/ws-1/_": b'{"state": "firing"}'}
            ),
            10,
        )
        receiver.publish(f"{prefix}/no_reader/ws-1/_", b"")
        wait_for(lambda: retained(broker, prefix) == {}, 10)
    finally:
        receiver.stop()


def test_many_alerts_go_out_a_window_at_a_time_and_all_arrive(broker: Broker) -> None:
    """A rebuild of the alert topic: 300 alerts through a window of 8 unacknowledged."""
    prefix = f"cpsfleet-test/{uuid.uuid4().hex}/alerts"
    window = replace(session(broker, f"receiver-{uuid.uuid4().hex[:8]}"), publish_window=8)
    receiver = connected(Receiver(window))
    expected = {f"{prefix}/no_reader/ws-{n:03d}/_": f"alert {n}".encode() for n in range(300)}
    try:
        for topic_name, payload in expected.items():
            receiver.publish(topic_name, payload)
        wait_for(lambda: retained(broker, prefix) == expected, 20)
    finally:
        receiver.stop()


def test_alerts_go_out_while_the_controller_is_not_reading(
    own_broker: Broker, publisher: mqtt.Client
) -> None:
    """A controller restarting on a backlog: the messages fill the pipe while it sends
    alerts. The receiving process must go on taking the broker's acknowledgements (a wait
    for the pipe in paho's thread made each alert wait PUBLISH_WAIT_S)."""
    client_id = f"receiver-{uuid.uuid4().hex[:8]}"
    connected(Receiver(session(own_broker, client_id))).stop()  # the persistent session
    hosts = [f"ws-{uuid.uuid4().hex[:6]}-{n:04d}" for n in range(600)]
    for start in range(0, len(hosts), 100):
        publish(publisher, hosts[start : start + 100], pad="x" * 8000)  # a hundred fill the pipe
    prefix = f"cpsfleet-test/{uuid.uuid4().hex}/alerts"
    expected = {f"{prefix}/no_reader/ws-{n:03d}/_": b"x" * 500 for n in range(400)}
    receiver = Receiver(replace(session(own_broker, client_id), publish_window=8))
    try:
        time.sleep(1)  # the backlog pours in, and nothing reads it
        started = time.monotonic()
        for topic_name, payload in expected.items():
            receiver.publish(topic_name, payload)
        wait_for(lambda: retained(own_broker, prefix) == expected, 30)
        assert time.monotonic() - started < PUBLISH_WAIT_S
        got: list[Message] = []

        def take() -> bool:  # acknowledging as it goes: the broker sends 100 ahead at most
            batch = receiver.next_batch(0.1)
            receiver.ack(batch)
            got.extend(batch)
            return len(got) >= len(hosts)

        wait_for(take, 60)
        assert {message.topic for message in got} == {topic(host, "status") for host in hosts}
    finally:
        receiver.stop()


def retained(broker: Broker, prefix: str) -> dict[str, bytes]:
    got: dict[str, bytes] = {}
    marker, done = f"cpsfleet-test/marker/{uuid.uuid4().hex}", threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == marker:
            done.set()
        elif message.retain:
            got[message.topic] = bytes(message.payload)

    client.on_message = on_message
    client.on_subscribe = lambda *args: client.publish(marker, b"end")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.subscribe([(f"{prefix}/#", 0), (marker, 0)])
    try:
        assert done.wait(5), "the marker never came back"
    finally:
        client.disconnect()
        client.loop_stop()
    return got


PARENT = """
import logging, os, sys, time
from cpsfleet.controller.intake.receiver import Receiver, Session
from cpsfleet.schemas.broker import parse_broker_url
session = Session(parse_broker_url(sys.argv[1]), None, sys.argv[2], ["cpsfleet/v1/hosts/+/status"],
                  60, 10, 10, logging.INFO)
receiver = Receiver(session)
print(receiver.pid, flush=True)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waits for its parent to reap it: it has exited.
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def ignores(pid: int, signum: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def test_the_receiving_process_ignores_termination_and_ends_with_the_controller(
    broker: Broker,
) -> None:
    client_id = f"receiver-{uuid.uuid4().hex[:8]}"
    with subprocess.Popen(
        [sys.executable, "-c", PARENT, broker.url, client_id], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        wait_for(lambda: ignores(child, signal.SIGTERM) and ignores(child, signal.SIGINT), 10)
        os.kill(child, signal.SIGTERM)  # systemd sends it to the whole unit: the parent decides
        os.kill(child, signal.SIGINT)
        time.sleep(0.5)
        assert alive(child)
        parent.kill()  # the controller is gone without a word: the pipe closes
        parent.wait(10)
        wait_for(lambda: not alive(child), 10, "the receiving process to end")


def test_a_controller_whose_receiving_process_dies_stops_with_a_clear_error(
    tmp_path: Path, database: str, broker: Broker
) -> None:
    conf = tmp_path / "controller.toml"
    conf.write_text(
        f'broker = "{broker.url}"\ndatabase = "{database}"\n[dashboard]\nenabled = false\n'
    )
    log = tmp_path / "controller.log"
    with (
        open(log, "wb") as output,
        subprocess.Popen(
            [*CLI, "controller", "run", "--config", str(conf)], stdout=output, stderr=output
        ) as controller,
    ):
        try:
            wait_for(lambda: "subscribed to the fleet's topics" in log.read_text(), 30)
            receiving = [
                child
                for child in descendants(controller.pid)
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
            ]
            assert len(receiving) == 1
            os.kill(receiving[0], signal.SIGKILL)
            assert controller.wait(15) == 2
        finally:
            if controller.poll() is None:
                controller.kill()
    assert "error: the MQTT receiving process stopped (exit code -9)" in log.read_text()
