"""``cpsfleet controller rescan`` end to end: real Mosquitto, pcscd + vpcd with a simulated card,
the agent and the controller as real processes.

The card's contents change while it stays in its reader, as when a CPS card's certificates
are renewed in place: PC/SC reports no event, so only a rescan shows it before the next
scheduled inventory.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cpsfleet.schemas.commands import new_command
from cpsfleet.schemas.topics import command_topic, topic
from cpsfleet.sim import vpcd
from cpsfleet.sim.cards import build_card
from cpsfleet.sim.profile import load_profile
from tests.conftest import BASE_PORT, Readers, reader_state, run_cli, wait_for
from tests.fleet import WILL_DELAY, Fleet, card_serials

DOCTOR, OTHER = "99213845", "20991234"
EXAMPLES = Path(__file__).parent.parent / "cpsfleet" / "schemas" / "examples"


class RewritableCard:
    """A simulated card whose files can be replaced while it stays in the reader."""

    def __init__(self, card: vpcd.Card) -> None:
        self.card = card

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def reset(self) -> None:
        self.card.reset()

    def process(self, apdu: bytes) -> bytes:
        return self.card.process(apdu)


@pytest.fixture
def card(readers: Readers, examples: dict[str, Path]) -> Iterator[RewritableCard]:
    """The doctor's CPS3 in the first reader, until the test ends."""
    played = RewritableCard(build_card(load_profile(examples["doctor-cps3"])))
    stop = threading.Event()
    thread = threading.Thread(
        target=vpcd.play, args=(played, "127.0.0.1", BASE_PORT, stop), daemon=True
    )
    thread.start()
    reader = readers.name(BASE_PORT)
    wait_for(lambda: reader_state(reader) == "card_present", what=f"a card in {reader}")
    yield played
    stop.set()
    thread.join(timeout=5)
    wait_for(lambda: reader_state(reader) == "empty", what=f"{reader} empty")


@pytest.fixture
def fleet(tmp_path: Path, broker, services) -> Fleet:
    return Fleet(tmp_path, broker, services)


def rescan(fleet: Fleet, *args: str):
    return run_cli("controller", "rescan", *args, "--config", str(fleet.controller_conf))


def history_rows(fleet: Fleet) -> int:
    rows = fleet.query("select count(*) from status_history where host_id = ?", fleet.host_id)
    return int(rows[0][0]) if rows else 0


def published(log: str) -> list[int]:
    """The outbox numbers of the statuses the broker acknowledged, as the agent logs them."""
    return [int(seq) for seq in re.findall(r"status published \(#(\d+)\)", log)]


def answered_by(log: str, command_id: str) -> int | None:
    """The outbox number of the acknowledged status answering this command, if any."""
    found = re.findall(rf"status published \(#(\d+)\): [^\n]*answering {command_id}", log)
    return int(found[0]) if found else None


def answers_stored(fleet: Fleet) -> list[list[str]]:
    sql = "select document ->> '$.answers' from status_history where host_id = ? order by id"
    return [json.loads(answers) for (answers,) in fleet.query(sql, fleet.host_id) if answers]


def test_a_card_changed_in_its_reader_shows_after_a_rescan_within_seconds(
    fleet, card, readers, examples
) -> None:
    fleet.controller()
    agent = fleet.agent()
    wait_for(lambda: card_serials(fleet.view()) == {DOCTOR}, timeout=15, what="the card")
    wait_for(lambda: published(agent.logs()) == [1], what="the start-up status")
    other = load_profile(examples["expired-cps3"])
    card.card = build_card(replace(other, atr=card.atr))
    result = rescan(fleet, fleet.host_id, "--timeout", "20")
    assert result.returncode == 0, result.stderr
    reader = readers.name(BASE_PORT)
    assert result.stdout.splitlines() == [
        f"{fleet.host_id}: 1 change",
        f"  card replaced in {reader}: cps3 {DOCTOR} -> cps3 {OTHER}",
    ]
    assert f"{fleet.host_id}: fresh status after" in result.stderr
    assert card_serials(fleet.view()) == {OTHER}
    [command_id] = re.findall(r"command ([0-9a-f]{32}): rescan", agent.logs())
    # PC/SC saw no change: the one status after the start-up one is the rescan's answer.
    wait_for(lambda: answered_by(agent.logs(), command_id) == 2, what="the answer acknowledged")
    assert published(agent.logs()) == [1, 2]
    assert "command " in agent.logs() and "rescan, from cpsfleet controller rescan" in agent.logs()


def test_a_site_is_rescanned_and_an_unchanged_host_says_so(fleet, card) -> None:
    # The session's broker keeps other tests' hosts (retained statuses): a site of its own.
    site = f"Site {fleet.host_id}"
    fleet.agent_conf.write_text(fleet.agent_conf.read_text().replace('"Lyon"', f'"{site}"'))
    fleet.controller()
    agent = fleet.agent()
    wait_for(lambda: card_serials(fleet.view()) == {DOCTOR}, timeout=15, what="the card")
    wait_for(lambda: "status published" in agent.logs(), what="the start-up status")
    result = rescan(fleet, "--site", site, "--json")
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert row["host_id"] == fleet.host_id and row["answered"] and row["changes"] == []
    assert answers_stored(fleet) == [[row["command_id"]]]


def test_the_agent_ignores_commands_not_for_it_or_expired(fleet, broker) -> None:
    fleet.controller()
    agent = fleet.agent()
    wait_for(lambda: published(agent.logs()) == [1], timeout=15, what="the start-up status")
    wait_for(lambda: history_rows(fleet) == 1, what="the status stored")
    topic = f"cpsfleet/v1/hosts/{fleet.host_id}/command"
    now = datetime.now(UTC)
    forged = [
        new_command("ws-elsewhere", "rescan", now, timedelta(minutes=1), "tests").document(),
        new_command(
            fleet.host_id, "rescan", now - timedelta(days=7), timedelta(minutes=1), "t"
        ).document(),
    ]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for document in forged:
            client.publish(topic, json.dumps(document), qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()
    wait_for(lambda: agent.logs().count("command ignored") == 2, what="both commands ignored")
    assert "is for host 'ws-elsewhere'" in agent.logs() and "expired" in agent.logs()
    # A command the agent takes, after those: its answer is the one status they are followed by.
    result = rescan(fleet, fleet.host_id, "--timeout", "20", "--json")
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    wait_for(lambda: answered_by(agent.logs(), row["command_id"]) == 2, what="the answer")
    assert published(agent.logs()) == [1, 2]
    assert history_rows(fleet) == 2 and answers_stored(fleet) == [[row["command_id"]]]


def test_statuses_that_do_not_answer_the_command_are_not_taken_for_its_answer(
    fleet, broker
) -> None:
    """A stand-in agent takes the command, then publishes what a real one could meanwhile: a
    scheduled inventory (no ``answers``) and the answer to another command."""
    fleet.controller()
    document = json.loads((EXAMPLES / "status-four-readers.json").read_text("utf-8"))
    document["host"] |= {"id": fleet.host_id, "site": f"Site {fleet.host_id}"}
    status_topic = topic(fleet.host_id, "status")
    taken: list[str] = []

    def answer_otherwise(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        taken.append(json.loads(message.payload)["id"])
        scheduled = {**document, "scanned_at": "2026-11-27T21:10:00Z"}  # a new inventory
        client.publish(status_topic, json.dumps(scheduled), qos=1)
        client.publish(status_topic, json.dumps({**document, "answers": ["0" * 32]}), qos=1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = answer_otherwise
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.subscribe(command_topic(fleet.host_id), qos=1)
        client.publish(status_topic, json.dumps(document), qos=1).wait_for_publish(5)
        wait_for(lambda: history_rows(fleet) == 1, what="the host known")
        result = rescan(fleet, fleet.host_id, "--timeout", "3", "--json")
        wait_for(lambda: history_rows(fleet) == 3, what="both statuses stored")
    finally:
        client.loop_stop()
        client.disconnect()
    assert result.returncode == 1, result.stderr
    [row] = json.loads(result.stdout)
    assert row["agent_connected"] and not row["answered"]
    assert taken == [row["command_id"]]
    assert answers_stored(fleet) == [["0" * 32]]


def test_an_offline_agent_is_reported_at_once_and_the_exit_code_says_so(fleet, broker) -> None:
    fleet.controller()
    agent = fleet.agent()
    wait_for(lambda: fleet.view() is not None, timeout=15, what="the host")
    assert agent.stop() == 0
    # Until the broker expires its session (will_delay later), the session takes the command
    # for the agent's return.
    expired = f"Expiring client cpsfleet-agent-{fleet.host_id} due to timeout"
    broker_log = broker.home / "mosquitto.log"
    wait_for(lambda: expired in broker_log.read_text(errors="replace"), WILL_DELAY + 10, expired)
    result = rescan(fleet, fleet.host_id, "--timeout", "30")
    assert result.returncode == 1
    assert result.stdout.strip() == f"{fleet.host_id}: no answer within 30 s (no agent connected)"
    # Reported at once: no host was left to wait for.
    assert "no agent connected to take the command" in result.stderr
    assert "waiting for" not in result.stderr, result.stderr


def test_unknown_hosts_and_empty_sites_are_usage_errors(fleet) -> None:
    fleet.controller()
    fleet.agent()
    wait_for(lambda: fleet.view() is not None, timeout=15, what="the host")
    result = rescan(fleet, "ws-nowhere", fleet.host_id)
    assert result.returncode == 2
    assert "error: unknown host(s): ws-nowhere" in result.stderr
    result = rescan(fleet, "--site", "Atlantis")
    assert (result.returncode, result.stderr) == (2, "error: no host in site 'Atlantis'\n")
    result = rescan(fleet)
    assert result.returncode == 2 and "name at least one host" in result.stderr
