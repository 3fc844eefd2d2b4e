"""What Mosquitto does with the messages of a shared subscription in flight to a member that
dies: what the controllers of a share group rely on (docs/controller.md, "Several
controllers"). Two members with persistent MQTT 5 sessions, as the controllers' receiving
processes open them; one acknowledges nothing and is killed with SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Broker, wait_for

MEMBER = """
import sys
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

port, client_id, acknowledges = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "ack"
client = mqtt.Client(
    CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
)

def on_connect(client, userdata, flags, code, properties):
    print("connected", flags.session_present, flush=True)
    client.subscribe([("$share/fleet/t/#", 1)])

def on_subscribe(*args):
    print("subscribed", flush=True)

def on_message(client, userdata, message):
    print("message", message.payload.decode(), message.dup, flush=True)
    if acknowledges:
        client.ack(message.mid, message.qos)

client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
properties = Properties(PacketTypes.CONNECT)
properties.SessionExpiryInterval = 3600
properties.ReceiveMaximum = 2000
client.connect("127.0.0.1", port, clean_start=False, properties=properties)
client.loop_forever()
"""


class Member:
    def __init__(self, home: Path, port: int, client_id: str, acknowledges: bool) -> None:
        self.out = home / f"{client_id}.out"
        self.args = [sys.executable, "-c", MEMBER, str(port), client_id]
        self.args.append("ack" if acknowledges else "keep")
        self.process = self.start()

    def start(self) -> subprocess.Popen[bytes]:
        with open(self.out, "ab") as out:
            self.process = subprocess.Popen(self.args, stdout=out)
        return self.process

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def payloads(self) -> list[int]:
        return [int(line.split()[1]) for line in self.lines() if line.startswith("message")]

    def said(self, text: str) -> int:
        return self.lines().count(text)


def gone(log: Path, client_id: str) -> bool:
    """Whether the broker's log says ``client_id``'s connection ended."""
    return any(
        client_id in line and ("closed its connection" in line or "disconnect" in line)
        for line in log.read_text().splitlines()
    )


@pytest.fixture
def members(own_broker: Broker, tmp_path: Path) -> Iterator[tuple[Member, Member]]:
    found = (
        Member(tmp_path, own_broker.port, "member-a", acknowledges=True),
        Member(tmp_path, own_broker.port, "member-b", acknowledges=False),
    )
    yield found
    for member in found:
        member.process.kill()
        member.process.wait()


def test_a_dead_members_messages_wait_for_it_and_its_share_goes_on_queueing(
    own_broker: Broker, members: tuple[Member, Member]
) -> None:
    """Mosquitto (2.0.11 here) gives the messages of a shared subscription in turn to each
    member. Those in flight to a member killed with SIGKILL stay in its session: not given
    to the other; and while it is away, it keeps getting its turn (queued). Started again
    with its client id, it gets all of them: nothing is lost, provided it comes back
    before its session expires."""
    first, second = members
    wait_for(lambda: all(m.said("subscribed") for m in members), 10, "both subscribed")
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, "publisher", protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", own_broker.port)
    publisher.loop_start()
    for number in range(400):
        publisher.publish(f"t/{number}", str(number), qos=1)
    wait_for(lambda: len(first.payloads()) + len(second.payloads()) == 400, 20, "400 received")
    kept = set(second.payloads())
    assert len(kept) == 200 == len(first.payloads())  # in turn
    second.process.send_signal(signal.SIGKILL)
    second.process.wait()
    log = own_broker.home / "mosquitto.log"
    wait_for(lambda: gone(log, "member-b"), 10, "the broker seeing B gone")
    for number in range(400, 420):
        publisher.publish(f"t/{number}", str(number), qos=1)
    wait_for(lambda: len([n for n in first.payloads() if n >= 400]) >= 10, 10, "A's turns")
    assert not kept & set(first.payloads())  # B's were not given to A
    later = [n for n in first.payloads() if n >= 400]
    assert len(later) == 10  # every other one: B's turns were queued for B

    second.start()
    wait_for(lambda: len(second.payloads()) == 200 + 210, 20, "B's messages again")
    assert second.said("connected True") == 1  # its session, kept
    again = second.payloads()[200:]
    assert set(again) == kept | (set(range(400, 420)) - set(later))
    assert set(first.payloads()) | set(second.payloads()) == set(range(420))
    publisher.disconnect()
    publisher.loop_stop()
