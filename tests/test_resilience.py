"""The agent daemon keeps running and reports correctly through pcscd restarts, unplugged
readers, broker restarts and controller restarts (real processes and services)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import BASE_PORT, READER_COUNT, wait_for
from tests.fleet import Fleet, card_serials


@pytest.fixture
def fleet(tmp_path: Path, own_broker, services, readers) -> Fleet:
    return Fleet(tmp_path, own_broker, services)


def running(fleet: Fleet, agent) -> Fleet:
    wait_for(
        lambda: (v := fleet.view()) is not None and v.last_status_at is not None,
        timeout=20,
        what="a first status",
    )
    assert agent.process is not None and agent.process.poll() is None
    return fleet


def test_pcscd_restarted(fleet: Fleet, readers, insert, examples) -> None:
    insert(examples["doctor-cps3"], BASE_PORT)
    fleet.controller()
    agent = fleet.agent()
    running(fleet, agent)
    readers.stop()
    wait_for(
        lambda: ("pcsc_unavailable", "") in fleet.findings(),
        timeout=20,
        what="PC/SC unavailable reported",
    )
    readers.start()
    wait_for(
        lambda: (
            card_serials(fleet.view()) == {"99213845"}
            and ("pcsc_unavailable", "") not in fleet.findings()
        ),
        timeout=20,
        what="the card reported again after pcscd came back",
    )
    assert agent.process.poll() is None


def test_readers_unplugged(fleet: Fleet, readers, insert, examples) -> None:
    fleet.controller()
    agent = fleet.agent()
    running(fleet, agent)
    assert len(fleet.view().readers) == READER_COUNT
    readers.stop()
    readers.start(count=2)
    try:
        wait_for(lambda: len(fleet.view().readers) == 2, timeout=20, what="two readers left")
        insert(examples["nurse-cps4"], BASE_PORT + 1)
        wait_for(
            lambda: card_serials(fleet.view()) == {"10452278"},
            timeout=20,
            what="a card in a remaining reader",
        )
    finally:
        readers.stop()
        readers.start()
    assert agent.process.poll() is None


def test_broker_restarted(fleet: Fleet, own_broker, insert, examples) -> None:
    fleet.controller()
    agent = fleet.agent()
    running(fleet, agent)
    own_broker.stop()
    insert(examples["doctor-cps3"], BASE_PORT)
    own_broker.start()
    wait_for(
        lambda: card_serials(fleet.view()) == {"99213845"},
        timeout=30,
        what="the card inserted while the broker was down",
    )
    wait_for(lambda: fleet.view().presence == "online", what="online again")
    assert agent.process.poll() is None


def test_controller_restarted(fleet: Fleet, insert, examples) -> None:
    controller = fleet.controller()
    agent = fleet.agent()
    running(fleet, agent)
    assert controller.stop() == 0
    insert(examples["nurse-cps4"], BASE_PORT + 2)
    fleet.controller()
    wait_for(
        lambda: card_serials(fleet.view()) == {"10452278"},
        timeout=30,
        what="the card inserted while the controller was down",
    )
    events = [
        row[0]
        for row in fleet.query(
            "select type from events where host_id = ? order by id", fleet.host_id
        )
    ]
    assert events[-1] == "card_inserted"
    assert agent.process.poll() is None
