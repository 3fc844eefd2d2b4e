"""The agent daemon's logic without a broker: change detection, events, backoff, schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cpsfleet.agent.config import AgentConfig
from cpsfleet.agent.daemon import AgentDaemon, change_event
from cpsfleet.agent.mqtt import jittered_backoff
from cpsfleet.agent.outbox import Outbox
from cpsfleet.agent.watcher import Change, Slot, changes
from cpsfleet.schemas import validate

CPS3_ATR = bytes.fromhex("3BAC00402A001225006480000310009000")
VITALE_ATR = bytes.fromhex("3B751300004509EA9000")


def test_insertion_and_removal_are_seen() -> None:
    empty, full = Slot(False, b"", 0), Slot(True, CPS3_ATR, 1)
    assert changes({"r": empty}, {"r": full}) == [Change("card_inserted", "r", CPS3_ATR)]
    assert changes({"r": full}, {"r": Slot(False, b"", 2)}) == [
        Change("card_removed", "r", CPS3_ATR)
    ]
    assert changes({"r": full}, {"r": full}) == []


def test_a_card_swapped_between_two_waits_is_a_removal_then_an_insertion() -> None:
    before, after = Slot(True, CPS3_ATR, 1), Slot(True, VITALE_ATR, 3)
    assert changes({"r": before}, {"r": after}) == [
        Change("card_removed", "r", CPS3_ATR),
        Change("card_inserted", "r", VITALE_ATR),
    ]
    same_card_again = Slot(True, CPS3_ATR, 3)
    assert [c.type for c in changes({"r": before}, {"r": same_card_again})] == [
        "card_removed",
        "card_inserted",
    ]


def test_an_atr_read_after_the_card_was_seen_is_not_a_new_card() -> None:
    assert changes({"r": Slot(True, b"", 1)}, {"r": Slot(True, CPS3_ATR, 1)}) == []


def test_readers_plugged_and_unplugged_with_their_cards() -> None:
    before = {"a": Slot(True, CPS3_ATR, 1)}
    after = {"b": Slot(True, VITALE_ATR, 1)}
    assert changes(before, after) == [
        Change("card_removed", "a", CPS3_ATR),
        Change("reader_removed", "a"),
        Change("reader_added", "b"),
        Change("card_inserted", "b", VITALE_ATR),
    ]


def test_event_documents_follow_the_contract() -> None:
    at = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    card = change_event("ws-1", Change("card_inserted", "Reader 0", VITALE_ATR), at).document()
    assert validate(card)["card"] == {
        "atr": VITALE_ATR.hex().upper(),
        "kind": "vitale2",
        "is_cps": False,
    }
    reader = change_event("ws-1", Change("reader_removed", "Reader 0"), at).document()
    assert validate(reader)["card"] is None


@pytest.mark.parametrize("attempt", [0, 1, 5, 20, 100])
def test_backoff_grows_exponentially_up_to_the_cap_with_full_jitter(attempt: int) -> None:
    ceiling = min(300.0, 1.0 * 2**attempt)
    assert jittered_backoff(attempt, 1.0, 300.0, lambda: 1.0) == ceiling
    assert jittered_backoff(attempt, 1.0, 300.0, lambda: 0.0) == 0.0
    assert jittered_backoff(attempt, 1.0, 300.0, lambda: 0.5) == ceiling / 2


class RecordingPublisher:
    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.on_connected = lambda session_present: None

    def start(self, outbox: object) -> None: ...

    def publish_status(self, document: dict[str, Any]) -> None:
        self.statuses.append(document)

    def publish_event(self, document: dict[str, Any]) -> None:
        self.events.append(document)

    def stop(self, timeout: float = 5) -> None: ...


def test_first_inventory_comes_within_the_splay_then_every_interval() -> None:
    daemon = AgentDaemon(AgentConfig(interval=600, splay=120), RecordingPublisher())
    now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    first = daemon.schedule(now)
    job = daemon.scheduler.get_job("inventory")
    assert now <= first <= now + timedelta(seconds=120)
    assert job.trigger.interval == timedelta(seconds=600)
    assert job.coalesce is True and job.misfire_grace_time is None


def test_a_change_publishes_events_then_a_fresh_status() -> None:
    publisher = RecordingPublisher()
    daemon = AgentDaemon(AgentConfig(host_id="ws-1", interval=600), publisher)
    daemon.on_changes([Change("card_inserted", "Reader 0", CPS3_ATR)])
    assert [e["type"] for e in publisher.events] == ["card_inserted"]
    assert len(publisher.statuses) == 1
    status = validate(publisher.statuses[0])
    assert status["host"]["id"] == "ws-1" and status["scan_interval_s"] == 600


def test_pcsc_failing_before_the_first_inventory_is_left_to_it() -> None:
    publisher = RecordingPublisher()
    daemon = AgentDaemon(AgentConfig(interval=600), publisher)
    daemon.on_changes([])  # what the watcher says when PC/SC fails or comes back
    assert publisher.statuses == []
    daemon.scan_and_publish()
    daemon.on_changes([])
    assert len(publisher.statuses) == 2


def connected_daemon(tmp_path: Path) -> AgentDaemon:
    daemon = AgentDaemon(AgentConfig(interval=600, splay=0), RecordingPublisher())
    daemon.outbox = Outbox(tmp_path / "outbox.db")
    return daemon


def test_a_connection_asks_for_an_inventory_only_when_the_broker_may_have_lost_the_status(
    tmp_path: Path,
) -> None:
    daemon = connected_daemon(tmp_path)
    daemon.on_connected(session_present=False)
    assert daemon.scheduler.get_job("rescan") is None, "at start: the first run is to come"
    daemon.scan_and_publish()
    daemon.on_connected(session_present=True)
    assert daemon.scheduler.get_job("rescan") is None, "a resumed session: a blip"
    daemon.on_connected(session_present=False)
    assert daemon.scheduler.get_job("rescan") is not None, "the broker lost our session"


def test_a_status_waiting_in_the_outbox_is_the_fresh_one(tmp_path: Path) -> None:
    daemon = connected_daemon(tmp_path)
    daemon.scan_and_publish()
    assert daemon.outbox is not None
    daemon.outbox.put("status", {"readers": []}, late=True)
    daemon.on_connected(session_present=False)
    assert daemon.scheduler.get_job("rescan") is None
