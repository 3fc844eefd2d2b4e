"""``cpsfleet controller copy-store``: a fleet moved from SQLite to a real PostgreSQL, every
table row for row, and a second run changing nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cpsfleet.controller.alerts.book import AlertBook, ChannelRef
from cpsfleet.controller.db import professionals
from cpsfleet.controller.db.connect import StoreError, connect
from cpsfleet.controller.db.people import People
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.db.transfer import copy_store
from tests.conftest import run_cli
from tests.postgres import Postgres
from tests.test_store import GRENOBLE, LYON, NOW, event, finding, four_readers, pcscd_down

TABLES = (
    *("hosts", "readers", "cards", "certificates", "status_history", "events", "findings"),
    *("counters", "professionals", "alerts", "silences", "acknowledgements"),
    *("card_sightings", "channels", "deliveries", "users", "api_tokens", "web_sessions"),
    "audit",
)


def fleet(path: Path) -> None:
    """A SQLite database with rows in every table the migrations make."""
    with Store(path) as store:
        store.record_status(four_readers(), NOW)
        store.record_status(pcscd_down(), NOW + timedelta(minutes=1))
        store.record_event(event(LYON), NOW)
        store.increment("messages_accepted", 3)
        found = [finding("agent_offline"), finding("pcsc_unavailable", host_id=GRENOBLE)]
        store.replace_findings(found, NOW)
        book = AlertBook(store.database)
        book.register_channels([ChannelRef("c1", "channel 1 (json://...)")], NOW)
        book.update(found, NOW)
        book.delivered("c1", book.pending(NOW, "c1"), NOW)
        book.acknowledge("agent_offline", LYON, "", "alice", "on leave until Monday", NOW)
        book.add_silence(
            "pcsc_unavailable", GRENOBLE, None, NOW + timedelta(days=2), "move", "bob", NOW
        )
        roster = {"id_nat": "810012345678", "surname": "Martin", "given_name": "Claire"}
        roster |= {"profession": "médecin", "site": "Lyon", "imported_at": "2026-11-27T20:00:00Z"}
        professionals.replace(store.database, [roster])
        people = People(store.database)
        people.add_user("alice", "operator", ["Lyon"], NOW, password_hash="scrypt$x")
        people.add_token("alice", "grafana", "cpsf_secret", NOW, None)
        people.open_session("s3cret", "alice", "csrf", "127.0.0.1", NOW, NOW + timedelta(hours=1))
        people.record(NOW, "alice", "127.0.0.1", "alert.acknowledge", "offline", detail={"n": 1})


@pytest.fixture
def stores(tmp_path: Path, postgres: Postgres) -> tuple[Path, str]:
    """The filled SQLite database and a new PostgreSQL one to copy it into."""
    source = tmp_path / "controller.db"
    fleet(source)
    return source, postgres.create_database()


def rows(target: Path | str, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table``, in one order whatever the store."""
    db = connect(target, readonly=True)
    try:
        found = db.execute(f"select * from [{table}]").fetchall()
    finally:
        db.close()
    return sorted((tuple(row) for row in found), key=json.dumps)


def test_every_table_arrives_row_for_row_and_a_second_run_adds_nothing(
    stores: tuple[Path, str],
) -> None:
    source, target = stores
    assert all(rows(source, table) for table in TABLES), "the fleet fills every table"

    first = copy_store(source, target)
    assert {copied.table for copied in first} == set(TABLES)
    for table in TABLES:
        assert rows(target, table) == rows(source, table), table
    again = copy_store(source, target)
    assert [(c.table, c.source, c.target) for c in again] == [
        (c.table, c.source, c.target) for c in first
    ]
    for table in TABLES:
        assert rows(target, table) == rows(source, table), table

    with Store(source) as before, Store(target) as after:
        assert after.host_views() == before.host_views()
        assert after.findings() == before.findings()
        # The ids go on after the copied ones.
        newer = People(after.database).record(NOW, "bob", "cli", "user.add", "carol")
        assert newer > max(row[0] for row in rows(source, "audit"))


def test_a_copy_interrupted_is_finished_by_running_it_again(
    stores: tuple[Path, str],
) -> None:
    source, target = stores
    copy_store(source, target)
    db = connect(target)
    db.execute("delete from certificates where id > 1")
    db.execute("delete from status_history where host_id = ?", [GRENOBLE])
    db.execute("update hosts set hostname = 'half-copied' where id = ?", [LYON])
    db.close()

    copy_store(source, target)
    for table in ("hosts", "certificates", "status_history"):
        assert rows(target, table) == rows(source, table)


def test_only_sqlite_to_postgresql(tmp_path: Path, stores: tuple[Path, str]) -> None:
    source, target = stores
    with pytest.raises(StoreError, match="postgresql:// URL"):
        copy_store(source, str(tmp_path / "other.db"))
    with pytest.raises(StoreError, match="SQLite database file"):
        copy_store(target, target)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="no controller database"):
        copy_store(tmp_path / "missing.db", target)


def test_the_command_shows_its_progress_and_the_tables(stores: tuple[Path, str]) -> None:
    source, target = stores

    done = run_cli("controller", "copy-store", "--from", str(source), "--to", target, "--json")

    assert done.returncode == 0, done.stderr
    assert "hosts: 2 of 2 rows" in done.stderr
    assert ":***@" in done.stderr.splitlines()[0]  # the password is not shown
    copied = {row["table"]: (row["sqlite"], row["postgresql"]) for row in json.loads(done.stdout)}
    assert copied["status_history"] == (2, 2)
    assert copied["audit"] == (1, 1)
    french = run_cli(
        "controller",
        "copy-store",
        "--from",
        str(source),
        "--to",
        target,
        env={"CPSFLEET_LANG": "fr"},
    )
    assert french.returncode == 0, french.stderr
    assert "hosts : 2 sur 2 lignes" in french.stderr
