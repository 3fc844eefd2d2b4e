"""Nothing lost: broker outages and controller crashes, with real Mosquitto, pcscd and processes."""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import BASE_PORT, wait_for
from tests.fleet import Fleet

# Two readers of two vpcd driver instances (one instance serves its two slots one at a time):
# 2 readers x 50 insertions and removals = 200 card events.
PORTS = (BASE_PORT, BASE_PORT + 2)
CYCLES_PER_READER = 50


@pytest.fixture
def fleet(tmp_path: Path, own_broker, services, readers) -> Fleet:
    return Fleet(tmp_path, own_broker, services)


def events_stored(fleet: Fleet) -> list[tuple[int, int]]:
    return [
        (int(seq), int(late or 0))
        for seq, late in fleet.query(
            "select seq, late from events where host_id = ?", fleet.host_id
        )
    ]


def test_two_hundred_card_events_during_a_broker_outage_arrive_exactly_once(
    fleet: Fleet, own_broker, insert, examples
) -> None:
    fleet.controller()
    agent = fleet.agent()
    wait_for(lambda: fleet.view() is not None, timeout=15, what="the host")
    own_broker.stop()

    def cycle(port: int) -> None:
        for _ in range(CYCLES_PER_READER):
            insert(examples["doctor-cps3"], port).remove()

    threads = [threading.Thread(target=cycle, args=(port,)) for port in PORTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    seen_by_agent = agent.logs().count(" card_inserted in ") + agent.logs().count(
        " card_removed in "
    )
    assert seen_by_agent == 2 * len(PORTS) * CYCLES_PER_READER
    own_broker.start()
    wait_for(lambda: len(events_stored(fleet)) >= seen_by_agent, timeout=60, what="all events")
    stored = events_stored(fleet)
    seqs = [seq for seq, _ in stored]
    assert len(stored) == seen_by_agent == len(set(seqs))
    assert all(late for _, late in stored)
    assert seqs == sorted(seqs), "delivered in order"


def burst(port: int, host_id: str, count: int) -> None:
    """``count`` valid events numbered 1..count, QoS 1, as fast as the broker takes them."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    infos = []
    for seq in range(1, count + 1):
        document = {
            "schema": "cpsfleet.event",
            "version": 1,
            "host_id": host_id,
            "at": at,
            "seq": seq,
            "type": "card_inserted" if seq % 2 else "card_removed",
            "reader": "Reader 0",
            "card": {"atr": "3BAC00402A001225006480000310009000", "kind": "cps3", "is_cps": True},
        }
        topic = f"cpsfleet/v1/hosts/{host_id}/events"
        infos.append(client.publish(topic, json.dumps(document), qos=1))
    for info in infos:
        info.wait_for_publish(timeout=60)
    client.loop_stop()
    client.disconnect()


def test_controller_killed_in_a_burst_of_5000_stores_each_message_exactly_once(
    fleet: Fleet, own_broker
) -> None:
    controller = fleet.controller()
    # Its session starts with its subscription: what was published before is not for it.
    wait_for(lambda: "subscribed to the fleet" in controller.logs(), 15, "the subscription")
    sender = threading.Thread(target=burst, args=(own_broker.port, fleet.host_id, 5000))
    sender.start()
    wait_for(lambda: len(events_stored(fleet)) >= 500, timeout=60, what="500 stored")
    controller.stop(signal.SIGKILL)
    killed_at = len(events_stored(fleet))
    sender.join(timeout=120)
    fleet.controller()
    deadline = time.monotonic() + 120
    while len(events_stored(fleet)) < 5000 and time.monotonic() < deadline:
        time.sleep(0.2)
    seqs = sorted(seq for seq, _ in events_stored(fleet))
    missing = sorted(set(range(1, 5001)) - set(seqs))
    assert seqs == list(range(1, 5001)), (
        f"killed after {killed_at} stored; {len(missing)} missing, from {missing[:5]} "
        f"to {missing[-5:]}; {fleet.query('select * from counters')}"
    )
    assert killed_at < 5000
