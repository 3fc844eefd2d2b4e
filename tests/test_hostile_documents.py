"""Documents the contract accepts, or nearly: none may stop the controller, now or at restart.

Each case is published with ``mosquitto_pub -q 1`` on a real Mosquitto to a real controller
process, as an attacker holding one workstation's certificate (or an agent reading an odd
but lawful certificate) would. After each, the controller must still run, its periodic
evaluation must go on, and a restart on the same database must start and evaluate.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cpsfleet.controller.db import migrations
from cpsfleet.controller.db.connect import connect
from cpsfleet.controller.db.store import Store, StoreError
from cpsfleet.schemas.topics import PREFIX
from tests.conftest import Broker, Service, run_cli, wait_for
from tests.test_dashboard import TOKEN_HASH, fetch

EXAMPLES = Path(__file__).parent.parent / "cpsfleet" / "schemas" / "examples"
NO_EXPIRY = "9999-12-31T23:59:59Z"
Document = dict[str, Any]


def status(host_id: str, **changes: Any) -> Document:
    document: Document = json.loads((EXAMPLES / "status-four-readers.json").read_text("utf-8"))
    document["host"]["id"] = host_id
    return document | changes


def with_doctor_dates(document: Document, not_before: str, not_after: str) -> Document:
    """``document`` with the doctor's card (first reader) dated so."""
    changed = copy.deepcopy(document)
    for certificate in changed["readers"][0]["card"]["certificates"]:
        certificate["not_before"], certificate["not_after"] = not_before, not_after
    return changed


class Stack:
    """A controller process on its own broker and database; mosquitto_pub to publish."""

    def __init__(
        self, home: Path, database: str, broker: Broker, services: Callable[..., Service]
    ) -> None:
        self.home, self.broker, self.services = home, broker, services
        self.database = database
        self.log = home / "controller.log"
        self.config = home / "controller.toml"
        self.config.write_text(
            f'broker = "{broker.url}"\ndatabase = "{self.database}"\nevaluate_every = 1\n'
            f'[dashboard]\nlisten = "127.0.0.1:0"\ntoken_hash = "{TOKEN_HASH}"\n'
        )
        self.controller: Service | None = None

    def start(self) -> Service:
        """Start the controller; return once it has subscribed and evaluated every host."""
        said = self._count("subscribed to the fleet's topics"), self._count(r"\(every host\)")
        self.controller = self.services(self.log, "controller", "run", "--config", str(self.config))
        wait_for(
            lambda: (
                self._count("subscribed to the fleet's topics") > said[0]
                and self._count(r"\(every host\)") > said[1]
            ),
            timeout=30,
            what=f"the controller started and evaluated the fleet\n{self.logs()}",
        )
        return self.controller

    def restart(self) -> None:
        assert self.controller is not None and self.controller.stop() == 0, self.logs()
        self.start()

    def periodic_runs(self) -> int:
        return self._count(r"\(the hosts due\)")

    def assert_running_and_evaluating(self) -> None:
        """The controller lives, and two more periodic evaluations have run since now."""
        runs = self.periodic_runs()
        wait_for(lambda: self.periodic_runs() >= runs + 2, timeout=30, what="periodic runs")
        assert self.controller is not None and self.controller.process is not None
        assert self.controller.process.poll() is None, self.logs()
        assert "Traceback" not in self.logs()

    def publish(self, topic: str, payload: Document | bytes, retain: bool = False) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        command = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.broker.port), "-q", "1"]
        command += ["-t", topic, "-s"] + (["-r"] if retain else [])
        subprocess.run(command, input=body, check=True, timeout=10)

    def send_status(self, document: Document, retain: bool = True) -> None:
        self.publish(f"{PREFIX}/{document['host']['id']}/status", document, retain)

    def counter(self, name: str) -> int:
        with Store.open_readonly(self.database) as store:
            return store.counter(name)

    def wait_counter(self, name: str, value: int) -> None:
        wait_for(lambda: self.counter(name) >= value, timeout=15, what=f"{name} = {value}")

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with Store.open_readonly(self.database) as store:
            return list(store.database.execute(sql, params).fetchall())

    def findings(self, host_id: str) -> dict[tuple[str, str], dict[str, Any]]:
        result = run_cli("controller", "findings", "--json", "--database", self.database)
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        return {(f["rule"], f["subject"]): f for f in rows if f["host_id"] == host_id}

    def dashboard(self) -> str:
        found = re.findall(r"dashboard on (http\S+)", self.logs())
        assert found, self.logs()
        return str(found[-1])

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.logs()))


@pytest.fixture
def stack(
    tmp_path: Path, database: str, own_broker: Broker, services: Callable[..., Service]
) -> Stack:
    return Stack(tmp_path, database, own_broker, services)


def new_host() -> str:
    return f"ws-{uuid.uuid4().hex[:8]}"


def test_a_certificate_without_expiry_is_stored_evaluated_shown_and_kept_at_restart(
    stack: Stack,
) -> None:
    stack.start()
    host = new_host()
    stack.send_status(with_doctor_dates(status(host), NO_EXPIRY, NO_EXPIRY))
    stack.wait_counter("messages_accepted", 1)
    stack.assert_running_and_evaluating()
    assert ("card_expiring", "99213845") not in stack.findings(host)
    assert ("card_not_updated", "99213845") not in stack.findings(host)
    cards = json.loads(
        run_cli("controller", "cards", "--json", "--database", str(stack.database)).stdout
    )
    doctor = next(card for card in cards if card["serial"] == "99213845")
    assert doctor["expires"] == NO_EXPIRY and doctor["days_left"] is None
    page = fetch(stack.dashboard(), f"/hosts/{host}")
    assert page.status == 200 and "no expiry" in page.text
    for path in ("/cards", "/readiness", "/", f"/api/v1/hosts/{host}", "/metrics"):
        assert fetch(stack.dashboard(), path).status == 200, path

    stack.restart()
    stack.assert_running_and_evaluating()
    assert fetch(stack.dashboard(), f"/hosts/{host}").status == 200


def test_the_first_instant_of_year_one_is_stored_as_it_came_and_read_back(stack: Stack) -> None:
    stack.start()
    host = new_host()
    stack.send_status(
        with_doctor_dates(status(host), "0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z")
    )
    stack.wait_counter("messages_accepted", 1)
    wait_for(lambda: ("card_expired", "99213845") in stack.findings(host), what="card_expired")
    assert stack.findings(host)[("card_expired", "99213845")]["since"] == "0001-01-01T00:00:00Z"
    assert stack.query(
        "select started_at from alerts where host_id = ? and subject = ? and rule = ?",
        host,
        "99213845",
        "card_expired",
    ) == [("0001-01-01T00:00:00Z",)]
    stack.assert_running_and_evaluating()
    stack.restart()
    stack.assert_running_and_evaluating()
    assert ("evaluation_failed", "") not in stack.findings(host)


IMPOSSIBLE = (
    "2027-02-31T00:00:00Z",  # no 31 February
    "2027-02-29T00:00:00Z",  # 2027 is a common year
    "2027-13-01T00:00:00Z",
    "2027-01-01T25:00:00Z",
    "2027-01-01T00:60:00Z",
    "2027-01-01T00:00:60Z",  # a leap second: RFC 3339 has it, Python's datetime does not
    "0000-01-01T00:00:00Z",
)


def test_impossible_dates_anywhere_are_rejected_with_a_reason_and_nothing_stops(
    stack: Stack,
) -> None:
    stack.start()
    host = new_host()
    sent = 0
    for text in IMPOSSIBLE:
        stack.send_status(with_doctor_dates(status(host), "2024-01-01T00:00:00Z", text))
        stack.send_status(status(host, scanned_at=text))
        event: Document = json.loads((EXAMPLES / "event-card-inserted.json").read_text("utf-8"))
        stack.publish(f"{PREFIX}/{host}/events", event | {"host_id": host, "at": text})
        presence: Document = json.loads((EXAMPLES / "presence-last-will.json").read_text("utf-8"))
        stack.publish(f"{PREFIX}/{host}/presence", presence | {"host_id": host, "at": text})
        sent += 4
    stack.wait_counter("messages_rejected", sent)
    assert stack.counter("messages_accepted") == 0 and stack.counter("messages_failed") == 0
    assert stack.query("select count(*) from hosts") == [(0,)]
    assert "is not a 'date-time'" in stack.logs() and "does not match" in stack.logs()
    stack.assert_running_and_evaluating()
    stack.restart()  # the broker still holds the retained statuses: rejected again
    stack.assert_running_and_evaluating()


@pytest.mark.parametrize("host", [".", ".."])
def test_dot_host_ids_are_refused(stack: Stack, host: str) -> None:
    stack.start()
    stack.send_status(status(host))
    stack.wait_counter("messages_rejected", 1)
    assert stack.query("select id from hosts") == []
    scan = run_cli("agent", "scan", "--json", env={"CPSFLEET_HOST_ID": host})
    assert scan.returncode == 2 and "not '.' or '..'" in scan.stderr, scan.stderr


def test_a_status_naming_a_reader_twice_is_rejected_and_the_last_status_kept(
    stack: Stack,
) -> None:
    stack.start()
    host = new_host()
    stack.send_status(status(host))
    stack.wait_counter("messages_accepted", 1)
    twice = status(host, scanned_at="2026-11-27T21:10:00Z")
    twice["readers"][1]["name"] = twice["readers"][0]["name"]
    stack.send_status(twice)
    stack.wait_counter("messages_rejected", 1)
    assert "is named more than once" in stack.logs()
    assert stack.counter("messages_failed") == 0
    readers = stack.query("select name from readers where host_id = ? order by position", host)
    assert len(readers) == 4 and len(set(readers)) == 4
    assert stack.query("select scanned_at from hosts where id = ?", host) == [
        ("2026-11-27T20:56:10Z",)
    ]


def test_an_older_status_of_the_same_run_goes_to_history_only(stack: Stack) -> None:
    stack.start()
    host, run = new_host(), uuid.uuid4().hex
    newer = status(host, seq=5, run=run, scanned_at="2026-11-27T21:00:00Z")
    older = status(host, seq=3, run=run, scanned_at="2026-11-27T20:30:00Z")
    older["readers"][0]["state"], older["readers"][0]["card"] = "empty", None
    stack.send_status(newer)
    stack.wait_counter("messages_accepted", 1)
    stack.send_status(older)
    stack.wait_counter("messages_stale", 1)
    assert stack.query("select scanned_at, status_seq from hosts where id = ?", host) == [
        ("2026-11-27T21:00:00Z", 5)
    ]
    assert stack.query("select count(*) from cards where host_id = ?", host) == [(4,)]
    assert stack.query("select count(*) from status_history where host_id = ?", host) == [(2,)]
    # A new outbox (the agent reinstalled) numbers from 1 again: that is the new current state.
    fresh = status(host, seq=1, run=uuid.uuid4().hex, scanned_at="2026-11-27T21:05:00Z")
    fresh["readers"][0]["state"], fresh["readers"][0]["card"] = "empty", None
    stack.send_status(fresh)
    stack.wait_counter("messages_accepted", 2)
    assert stack.query("select count(*) from cards where host_id = ?", host) == [(3,)]


def test_retained_documents_replayed_at_restart_are_repeats(stack: Stack) -> None:
    stack.start()
    host = new_host()
    stack.send_status(status(host))  # as an older agent sends it: no seq, retained
    presence: Document = json.loads((EXAMPLES / "presence-last-will.json").read_text("utf-8"))
    presence |= {
        "host_id": host,
        "state": "online",
        "reason": "connected",
        "at": "2026-11-27T20:50:02Z",
    }
    stack.publish(f"{PREFIX}/{host}/presence", presence, retain=True)
    stack.wait_counter("messages_accepted", 2)
    first = stack.query("select presence_at, last_seen from hosts where id = ?", host)

    for restart in (1, 2):
        stack.restart()
        stack.wait_counter("messages_duplicate", 2 * restart)
    assert stack.query("select count(*) from status_history where host_id = ?", host) == [(1,)]
    assert stack.counter("messages_accepted") == 2
    assert stack.query("select presence_at, last_seen from hosts where id = ?", host) == first


def test_a_database_holding_what_older_controllers_stored_starts_and_evaluates(
    tmp_path: Path, own_broker: Broker, services: Callable[..., Service]
) -> None:
    """Version 9 took impossible dates and wrote year 1 without its zeros: the controller
    starts on such a database, pads what it can, and flags the host it cannot evaluate.
    SQLite only: controllers have stored in PostgreSQL since version 16."""
    stack = Stack(tmp_path, str(tmp_path / "controller.db"), own_broker, services)
    host = new_host()
    with Store(stack.database) as store:
        dated = with_doctor_dates(status(host), "2024-01-01T00:00:00Z", "2029-01-01T00:00:00Z")
        store.record_status(dated, datetime.now(UTC))
    db = connect(stack.database)
    with db.atomic():
        db.execute(
            "update certificates set not_after = '2027-02-31T00:00:00Z' where host_id = ?", [host]
        )
        db.execute(
            "insert into findings values ('card_expired', ?, 'x', 'critical', 'old', "
            "'1-01-01T00:00:00Z', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            [host],
        )
    db.close()
    _downgrade_to_version_9(stack.database)

    stack.start()
    wait_for(lambda: ("evaluation_failed", "") in stack.findings(host), what="evaluation_failed")
    message = stack.findings(host)[("evaluation_failed", "")]["message"]
    assert "2027-02-31T00:00:00Z" in message and "not a real date" in message
    metrics = fetch(stack.dashboard(), "/metrics").text
    assert re.search(r"^cpsfleet_evaluation_failures_total [1-9]", metrics, re.M), metrics
    stack.assert_running_and_evaluating()
    stack.restart()
    stack.assert_running_and_evaluating()
    # A new status from the host's agent replaces what could not be read.
    stack.send_status(status(host, scanned_at="2026-11-27T22:00:00Z"))
    wait_for(lambda: ("evaluation_failed", "") not in stack.findings(host), what="re-evaluated")


def _downgrade_to_version_9(database: str) -> None:
    """Undo migrations 10 to 16 (the tables, columns and indexes they add), as a version 9
    controller would have left the database."""
    db = connect(database)
    with db.atomic():
        db.execute("alter table card_sightings drop column scanned_at")
        db.execute("drop index idx_card_sightings_host_id")
        for column in ("surname", "given_name", "profession", "certificates_json"):
            db.execute(f"alter table card_sightings drop column {column}")
        for column in ("superseded_by", "superseded_at"):
            db.execute(f"alter table card_sightings drop column {column}")
        db.execute("alter table alerts drop column resolution")
        db.execute("drop table channels")
        db.execute("drop table deliveries")
        db.execute("alter table alerts drop column silent_resolution")
        for table in ("events", "status_history"):
            db.execute(f"drop index {table}_host_run_seq")
            db.execute(f"alter table {table} drop column run")
            db.execute(
                f"create unique index {table}_host_seq on {table} (host_id, seq) "
                "where seq is not null"
            )
        for column in ("status_seq", "status_run", "presence_sent_at"):
            db.execute(f"alter table hosts drop column {column}")
        db.execute("drop index idx_readers_model")
        for column in migrations.READER_MODEL_COLUMNS:
            db.execute(f"alter table readers drop column {column}")
        for table in ("audit", "web_sessions", "api_tokens", "users"):
            db.execute(f"drop table {table}")
        migrations.set_version(db, 9)
    db.close()
    with pytest.raises(StoreError, match="older"):
        Store.open_readonly(database)
    assert migrations.LATEST == 16
