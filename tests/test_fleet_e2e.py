"""The whole fleet on one machine: real Mosquitto, real pcscd + vpcd with simulated cards,
the agent daemon and the controller as real processes."""

from __future__ import annotations

import json
import re
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cpsfleet.controller.db.store import Store
from cpsfleet.sim.pki import Holder, issue_card_certificates, load_or_create_ca
from tests.conftest import BASE_PORT, run_cli, wait_for
from tests.fleet import WILL_DELAY, Fleet, card_serials


@pytest.fixture
def fleet(tmp_path: Path, database: str, broker, services, readers, webhook) -> Fleet:
    built = Fleet(tmp_path, broker, services, webhook[1], database)
    built.webhook = webhook[0]  # type: ignore[attr-defined]
    return built


def test_host_appears_with_its_cards_and_findings(fleet, insert, examples) -> None:
    insert(examples["doctor-cps3"], BASE_PORT)
    insert(examples["expired-cps3"], BASE_PORT + 1)
    insert(examples["vitale"], BASE_PORT + 2)
    fleet.controller()
    fleet.agent()
    wait_for(
        lambda: card_serials(fleet.view()) == {"99213845", "20991234", None},
        timeout=15,
        what="the host's three cards in the controller",
    )
    view = fleet.view()
    assert view.site == "Lyon" and view.presence == "online" and len(view.readers) == 4
    wait_for(lambda: {("card_expired", "20991234")} <= fleet.findings(), what="card_expired")
    rules = {rule for rule, _ in fleet.findings()}
    assert "non_cps_card" in rules and "card_expiring" not in rules
    hosts = json.loads(
        run_cli("controller", "hosts", "--json", "--database", fleet.database).stdout
    )
    assert [h["id"] for h in hosts if h["id"] == fleet.host_id] == [fleet.host_id]


def test_removed_card_disappears_and_the_event_is_stored(fleet, insert, examples) -> None:
    played = insert(examples["doctor-cps3"], BASE_PORT)
    fleet.controller()
    fleet.agent()
    wait_for(lambda: card_serials(fleet.view()) == {"99213845"}, timeout=15, what="the card")
    played.remove()
    wait_for(lambda: card_serials(fleet.view()) == set(), timeout=5, what="the card gone")
    store = Store.open_readonly(fleet.database)
    events = [e["type"] for e in store.events(fleet.host_id)]
    store.close()
    assert events[0] == "card_removed"


def test_killed_agent_is_marked_offline_after_the_will_delay(fleet) -> None:
    fleet.controller()
    agent = fleet.agent()
    wait_for(
        lambda: (v := fleet.view()) is not None and v.presence == "online",
        timeout=15,
        what="the agent online",
    )
    agent.stop(signal.SIGKILL)
    wait_for(
        lambda: fleet.view().presence == "offline", timeout=WILL_DELAY + 10, what="the Last Will"
    )
    wait_for(lambda: ("agent_offline", "") in fleet.findings(), what="agent_offline finding")


def test_stopped_agent_says_offline_at_once(fleet) -> None:
    fleet.controller()
    agent = fleet.agent()
    wait_for(
        lambda: (v := fleet.view()) is not None and v.last_status_at is not None,
        timeout=15,
        what="a status",
    )
    assert agent.stop() == 0
    wait_for(lambda: fleet.view().presence == "offline", timeout=5, what="offline")


def test_restarted_controller_keeps_all_it_knew(fleet, insert, examples) -> None:
    insert(examples["nurse-cps4"], BASE_PORT)
    controller = fleet.controller()
    fleet.agent()
    wait_for(lambda: card_serials(fleet.view()) == {"10452278"}, timeout=15, what="the card")
    wait_for(lambda: ("card_expiring", "10452278") in fleet.findings(), what="card_expiring")
    before = fleet.view()
    assert controller.stop() == 0
    fleet.controller()
    after = fleet.view()
    assert after.first_seen == before.first_seen and card_serials(after) == {"10452278"}
    assert ("card_expiring", "10452278") in fleet.findings()


def test_invalid_messages_are_rejected_counted_and_survived(fleet, broker) -> None:
    fleet.controller()
    fleet.agent()
    wait_for(lambda: fleet.view() is not None, timeout=15, what="the host")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    topic = f"cpsfleet/v1/hosts/{fleet.host_id}/status"
    client.publish(topic, b"not json", qos=1).wait_for_publish(5)
    spoof = {
        "schema": "cpsfleet.presence",
        "version": 1,
        "host_id": "someone-else",
        "state": "offline",
        "at": "2026-01-01T00:00:00Z",
        "reason": "shutdown",
        "agent_version": "0",
    }
    client.publish(
        f"cpsfleet/v1/hosts/{fleet.host_id}/presence", json.dumps(spoof), qos=1
    ).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()

    def rejected() -> int:
        store = Store.open_readonly(fleet.database)
        try:
            return store.counter("messages_rejected")
        finally:
            store.close()

    wait_for(lambda: rejected() >= 2, what="two rejected messages")
    assert fleet.view().presence == "online"


def test_card_events_reach_the_broker_each_once_in_order(fleet, broker, insert, examples) -> None:
    """Insertions and removals each reach the broker once, in order. How soon is measured by
    ``python -m tests.bench_agent`` (card events), not asserted here."""
    import queue

    received: queue.Queue[dict] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: received.put(json.loads(m.payload))
    client.connect("127.0.0.1", broker.port)
    client.subscribe(f"cpsfleet/v1/hosts/{fleet.host_id}/events", qos=1)
    client.loop_start()
    try:
        agent = fleet.agent()
        wait_for(lambda: "status published" in agent.logs(), timeout=15, what="the first status")
        seen = []
        for _ in range(3):
            played = insert(examples["doctor-cps3"], BASE_PORT)
            seen.append(received.get(timeout=10))
            played.remove()
            seen.append(received.get(timeout=10))
        assert [e["type"] for e in seen] == ["card_inserted", "card_removed"] * 3
        assert all(e["card"]["kind"] == "cps3" for e in seen if e["type"] == "card_inserted")
        # As many as the agent saw: none lost, none twice.
        logs = agent.logs()
        assert logs.count("card_inserted in") == logs.count("card_removed in") == 3, logs
    finally:
        client.loop_stop()
        client.disconnect()


def test_an_expired_card_is_notified_once_and_resolved_once_renewed(
    fleet, insert, examples, tmp_path
) -> None:
    """The card goes home at night: its alert holds (no RESOLVED, and no second NEW when it
    comes back). Renewed (the same card with new certificates), it resolves once, saying so."""
    played = insert(examples["expired-cps3"], BASE_PORT)
    controller = fleet.controller()
    fleet.agent()

    def posts_about(word: str) -> list[dict]:
        return [
            p for p in fleet.webhook.posts if "20991234" in p["message"] and word in p["message"]
        ]

    def resolutions() -> list[dict]:
        """The messages resolving the card's card_expired alert (out of working hours, the
        card left in its reader is another alert of the card, which resolves as it leaves)."""
        return [p for p in posts_about("RESOLVED") if EXPIRED_RESOLVED.search(p["message"])]

    def evaluated_twice_more() -> None:
        before = controller.logs().count("evaluated ")
        wait_for(lambda: controller.logs().count("evaluated ") >= before + 2, what="evaluations")

    wait_for(lambda: posts_about("card_expired"), timeout=20, what="the alert's message")
    played.remove()
    wait_for(lambda: "20991234" not in card_serials(fleet.view()), what="the card gone home")
    evaluated_twice_more()
    assert ("card_expired", "20991234") in fleet.findings() and resolutions() == []
    played = insert(examples["expired-cps3"], BASE_PORT)  # back the next morning
    wait_for(lambda: "20991234" in card_serials(fleet.view()), what="the card back")
    played.remove()
    insert(renewed_expired_card(examples["expired-cps3"], tmp_path), BASE_PORT)
    wait_for(resolutions, timeout=20, what="the resolution's message")
    evaluated_twice_more()  # nothing is sent again
    (resolved,) = resolutions()
    assert "renewed: its certificates are valid until" in resolved["message"]
    firing = [p for p in posts_about("card_expired") if "RESOLVED" not in p["message"]]
    assert len(firing) == 1, [p["message"] for p in fleet.webhook.posts]


# A resolved card_expired line of a notification: "[card_expired, critical, firing since ...,
# resolved ...]".
EXPIRED_RESOLVED = re.compile(r"\[card_expired, [^\]]*, resolved ")


def renewed_expired_card(expired: Path, directory: Path) -> Path:
    """The expired example card (its serial, its holder) with certificates valid 400 days,
    from the examples' test CA."""
    now = datetime.now(UTC).replace(microsecond=0)
    holder = Holder(
        "00B7010446",
        "MASSEUR1044",
        "HONORE",
        "Masseur-Kinésithérapeute",
        now - timedelta(days=1),
        now + timedelta(days=400),
    )
    issued = issue_card_certificates(load_or_create_ca(expired.parent / "ca"), holder, directory)
    profile = directory / "renewed-cps3.toml"
    profile.write_text(
        f'kind = "cps3"\nserial = "20991234"\nauth_cert = "{issued.authentication}"\n'
        f'sign_cert = "{issued.signature}"\n',
        encoding="utf-8",
    )
    return profile
