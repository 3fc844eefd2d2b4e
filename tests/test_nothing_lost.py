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

from cpsfleet.sim import vpcd
from cpsfleet.sim.cards import build_card
from cpsfleet.sim.iso import IsoCard
from cpsfleet.sim.profile import load_profile
from tests.conftest import BASE_PORT, Service, reader_state, wait_for
from tests.fleet import Fleet

# Two readers of two vpcd driver instances (one instance serves its two slots one at a time):
# 2 readers x 50 insertions and removals = 200 card events.
PORTS = (BASE_PORT, BASE_PORT + 2)
CYCLES_PER_READER = 50


@pytest.fixture
def fleet(tmp_path: Path, own_broker, services, readers) -> Fleet:
    return Fleet(tmp_path, own_broker, services)


# The test agent's longest wait between two tries to reach the broker (300 s by default).
RECONNECT_CAP_S = 5


def events_stored(fleet: Fleet) -> list[tuple[int, int]]:
    return [
        (int(seq), int(late or 0))
        for seq, late in fleet.query(
            "select seq, late from events where host_id = ?", fleet.host_id
        )
    ]


def card_events(fleet: Fleet, reader: str) -> list[tuple[str, str | None]]:
    """A reader's stored events in the agent's order: (type, the card's ATR or None)."""
    rows = fleet.query(
        "select type, card_json from events where host_id = ? and reader = ? order by seq",
        fleet.host_id,
        reader,
    )
    return [(kind, card and json.loads(card)["atr"]) for kind, card in rows]


def changes_logged(agent: Service) -> int:
    logs = agent.logs()
    return logs.count(" card_inserted in ") + logs.count(" card_removed in ")


def test_two_hundred_card_events_during_a_broker_outage_arrive_exactly_once(
    fleet: Fleet, own_broker, insert, examples
) -> None:
    """Each insertion and removal arrives once, in order. A card the agent was too busy to
    see (it came and went between two of its looks) arrives as an insertion and a removal
    with no card: pcsc-lite counted them, and the agent cannot know more."""
    with fleet.agent_conf.open("a") as conf:
        conf.write(f"reconnect_max = {RECONNECT_CAP_S}\n")
    fleet.controller()
    agent = fleet.agent()
    wait_for(lambda: fleet.view() is not None, timeout=15, what="the host")
    own_broker.stop()
    played: dict[str, list[str]] = {}  # each reader's cards, in the order they were played

    def play(port: int) -> None:
        for _ in range(CYCLES_PER_READER):
            card = insert(examples["doctor-cps3"], port)
            played.setdefault(card.reader, []).append(card.card.atr.hex().upper())
            card.remove()

    threads = [threading.Thread(target=play, args=(port,)) for port in PORTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    expected = 2 * sum(len(atrs) for atrs in played.values())
    assert expected == 2 * len(PORTS) * CYCLES_PER_READER
    wait_for(lambda: changes_logged(agent) >= expected, timeout=120, what="the agent's events")
    assert changes_logged(agent) == expected
    connections = agent.logs().count("connected to ")
    own_broker.start()
    # The agent comes back after its jittered backoff, which an outage this long has grown to
    # its cap (RECONNECT_CAP_S here): wait for it to say so, then for the events.
    wait_for(
        lambda: agent.logs().count("connected to ") > connections,
        timeout=RECONNECT_CAP_S + 30,
        what="the agent back on the broker",
    )
    wait_for(lambda: len(events_stored(fleet)) >= expected, timeout=60, what="all events")
    stored = events_stored(fleet)
    seqs = [seq for seq, _ in stored]
    assert len(stored) == expected == len(set(seqs))
    assert all(late for _, late in stored)
    assert seqs == sorted(seqs), "delivered in order"
    for reader, atrs in played.items():
        events = card_events(fleet, reader)
        # Each card played is one insertion then one removal, both naming the card, or both
        # without one when the agent did not see it.
        assert len(events) == 2 * len(atrs), events
        seen = [card is not None for _, card in events[::2]]
        assert events == [
            event for atr, known in zip(atrs, seen, strict=True) for event in cycle(atr, known)
        ]


def cycle(atr: str, known: bool) -> list[tuple[str, str | None]]:
    card = atr if known else None
    return [("card_inserted", card), ("card_removed", card)]


class HeldCard:
    """A card that answers its first command only when the test lets it: the agent's
    inventory, and the watcher that started it, wait on it meanwhile."""

    def __init__(self, card: IsoCard) -> None:
        self.card, self.atr = card, card.atr
        self.asked, self.released = threading.Event(), threading.Event()

    def reset(self) -> None:
        self.card.reset()

    def process(self, apdu: bytes) -> bytes:
        self.asked.set()
        self.released.wait(60)
        return self.card.process(apdu)


def test_a_card_that_came_and_went_while_the_agent_was_busy_is_reported_without_a_card(
    fleet: Fleet, insert, examples, readers
) -> None:
    """pcsc-lite counted the insertion and the removal; the agent, busy with an inventory,
    did not see the card: both events arrive, in order, with no card."""
    fleet.controller()
    agent = fleet.agent()
    wait_for(lambda: fleet.view() is not None, timeout=15, what="the host")
    held_port, quick_port = PORTS[1], PORTS[0]  # two driver instances: neither waits on the other
    held = HeldCard(build_card(load_profile(examples["doctor-cps3"])))
    stop = threading.Event()
    threading.Thread(
        target=vpcd.play, args=(held, "127.0.0.1", held_port, stop), daemon=True
    ).start()
    try:
        wait_for(lambda: f"card_inserted in {readers.name(held_port)}" in agent.logs(), 30)
        wait_for(held.asked.is_set, 30, "the inventory reading the held card")
        insert(examples["doctor-cps3"], quick_port).remove()
    finally:
        held.released.set()
        stop.set()
    quick = readers.name(quick_port)
    unseen = [("card_inserted", None), ("card_removed", None)]
    wait_for(lambda: card_events(fleet, quick) == unseen, 60, "both events without a card")
    assert f"card_removed in {quick} (a card that came and went unseen)" in agent.logs()
    wait_for(lambda: reader_state(readers.name(held_port)) == "empty", what="the held card out")


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
