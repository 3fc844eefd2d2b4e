"""The controller's intake of a batch: one transaction for the batch, and a message whose
storing fails rolled back alone, the others stored (a real SQLite store, no broker)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from cpsfleet.controller.alerts.book import AlertBook
from cpsfleet.controller.db.store import Recorded, Store
from cpsfleet.controller.intake import batch as intake_batch
from cpsfleet.controller.service import Controller, Message
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.schemas import STATUS_SCHEMA
from cpsfleet.schemas.topics import topic
from cpsfleet.sim.fleet.documents import status_document
from cpsfleet.sim.fleet.model import generate_fleet

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def batch() -> list[Message]:
    hosts = generate_fleet(5, seed=3)
    return [
        Message(topic(h.id, "status"), json.dumps(status_document(h, 1, NOW)).encode(), NOW)
        for h in hosts
    ]


def stored_hosts(store: Store) -> set[str]:
    return {row["id"] for row in store.database.query("select id from hosts")}


@pytest.fixture
def intake(database: str) -> Iterator[tuple[Controller, Store]]:
    controller = Controller(ControllerSettings(database=database))
    with Store(database) as store:
        controller.book = AlertBook(store.database, controller.settings.alerts)
        yield controller, store


def test_a_batch_is_stored_and_its_hosts_evaluated(intake: tuple[Controller, Store]) -> None:
    controller, store = intake
    messages = batch()
    controller.handle_batch(store, messages)
    assert stored_hosts(store) == {json.loads(m.payload)["host"]["id"] for m in messages}
    assert store.counter("messages_accepted") == 5
    assert store.database.table("status_history").count == 5
    assert controller.last_evaluated is None  # only the hosts were, not the whole fleet
    evaluated = {row["host_id"] for row in store.database.query("select host_id from findings")}
    assert evaluated <= stored_hosts(store) and evaluated


def test_a_message_that_fails_to_store_is_rolled_back_alone(
    intake: tuple[Controller, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    controller, store = intake
    messages = batch()
    broken = json.loads(messages[2].payload)["host"]["id"]
    record = intake_batch.RECORDERS[STATUS_SCHEMA]

    def fails_for_one(store: Store, document: dict[str, Any], *args: Any) -> Recorded:
        recorded = record(store, document, *args)  # written, then the failure: rolled back
        if recorded.host_id == broken:
            raise RuntimeError("disk trouble")
        return recorded

    monkeypatch.setitem(intake_batch.RECORDERS, STATUS_SCHEMA, fails_for_one)
    controller.handle_batch(store, messages)
    expected = {json.loads(m.payload)["host"]["id"] for m in messages} - {broken}
    assert stored_hosts(store) == expected
    assert store.counter("messages_accepted") == 4
    assert store.counter("messages_failed") == 1
    assert store.database.table("status_history").count == 4


def test_a_topic_that_was_not_utf8_is_rejected_and_logged_as_text_a_log_file_can_hold(
    intake: tuple[Controller, Store], caplog: pytest.LogCaptureFixture
) -> None:
    controller, store = intake
    # paho hands over a topic whose bytes were not UTF-8 with lone surrogates in it.
    odd = Message("cpsfleet/v1/ws-\udcff/status", batch()[0].payload, NOW)
    with caplog.at_level("WARNING", logger="cpsfleet.controller.intake.batch"):
        controller.handle_batch(store, [odd])
    assert store.counter("messages_rejected") == 1
    (line,) = [record.getMessage() for record in caplog.records]
    assert "ws-\\udcff" in line
    line.encode("utf-8")  # a log file or the journal can hold it
