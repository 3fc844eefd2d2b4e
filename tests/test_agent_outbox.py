"""The agent's outbox: sequence numbers, supersession, bounds, order, late marking."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from cpsfleet.agent.outbox import Entry, Forwarder, Outbox


def event(n: int) -> dict:
    return {"schema": "cpsfleet.event", "n": n}


def status(n: int) -> dict:
    return {"schema": "cpsfleet.status", "n": n}


def drain(outbox: Outbox) -> list[Entry]:
    taken = []
    while (entry := outbox.first(timeout=0)) is not None:
        taken.append(entry)
        outbox.done(entry.seq)
    return taken


def test_sequence_numbers_grow_and_survive_a_restart(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    assert [outbox.put("events", event(n), late=False) for n in range(3)] == [1, 2, 3]
    outbox.close()
    again = Outbox(tmp_path / "o.db")
    assert again.put("events", event(3), late=False) == 4
    assert [json.loads(e.payload)["seq"] for e in drain(again)] == [1, 2, 3, 4]


def test_a_new_status_supersedes_the_pending_ones_and_events_keep_their_order(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "o.db")
    outbox.put("events", event(1), late=False)
    outbox.put("status", status(1), late=False)
    outbox.put("events", event(2), late=False)
    outbox.put("status", status(2), late=False)
    delivered = [(e.channel, json.loads(e.payload)["n"]) for e in drain(outbox)]
    assert delivered == [("events", 1), ("events", 2), ("status", 2)]


def test_a_status_that_supersedes_others_answers_their_commands_too(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    a, b, c = "a" * 32, "b" * 32, "c" * 32
    outbox.put("status", status(1) | {"answers": [a]}, late=True)
    outbox.put("status", status(2), late=True)  # a scheduled inventory, while offline
    outbox.put("status", status(3) | {"answers": [b, a]}, late=True)
    outbox.put("status", status(4) | {"answers": [c]}, late=True)
    (entry,) = drain(outbox)
    assert json.loads(entry.payload)["answers"] == [a, b, c]
    outbox.put("status", status(5), late=False)  # nothing pending: answers nothing
    (entry,) = drain(outbox)
    assert "answers" not in json.loads(entry.payload)


def test_a_full_outbox_drops_its_oldest_events(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", limit=5)
    for n in range(8):
        outbox.put("events", event(n), late=True)
    assert [json.loads(e.payload)["n"] for e in drain(outbox)] == [3, 4, 5, 6, 7]


def test_documents_queued_offline_are_delivered_marked_late(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    outbox.put("events", event(1), late=True)
    outbox.put("events", event(2), late=False)
    first, second = drain(outbox)
    assert json.loads(first.payload)["late"] is True
    assert "late" not in json.loads(second.payload)


def test_the_forwarder_delivers_in_order_and_retries_what_the_broker_did_not_take(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "o.db")
    for n in range(5):
        outbox.put("events", event(n), late=False)
    taken: list[int] = []
    refusals = iter([True, False, True])  # the second delivery attempt fails once
    done = threading.Event()

    def deliver(entry: Entry) -> bool:
        if next(refusals, False):
            return False
        taken.append(entry.seq)
        if len(taken) == 5:
            done.set()
        return True

    forwarder = Forwarder(outbox, deliver, retry_s=0.01)
    forwarder.start()
    assert done.wait(5)
    forwarder.stop()
    forwarder.join(5)
    assert taken == [1, 2, 3, 4, 5] and outbox.pending() == 0
