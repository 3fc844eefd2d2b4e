"""The controller database on real SQLite files: documents in, views and listings out."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from cpsfleet.controller.db import migrations
from cpsfleet.controller.db.connect import Database as AnyDatabase
from cpsfleet.controller.db.connect import connect as open_database
from cpsfleet.controller.db.connect import on_postgres
from cpsfleet.controller.db.store import Store, StoreError
from cpsfleet.controller.model import CertificateView, Finding, ProblemView
from cpsfleet.schemas import EVENT_SCHEMA, PRESENCE_SCHEMA, validate

EXAMPLES = Path(__file__).parent.parent / "cpsfleet" / "schemas" / "examples"
NOW = datetime(2026, 11, 27, 21, 0, 0, tzinfo=UTC)
LYON = "3f9c1a7be2d04c55"
GRENOBLE = "8d2e44a0c1b94f07"


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text("utf-8"))
    return document


def four_readers() -> dict[str, Any]:
    return example("status-four-readers")


def pcscd_down() -> dict[str, Any]:
    return example("status-pcscd-down")


def presence(host_id: str, state: str = "online", reason: str = "connected") -> dict[str, Any]:
    return validate(
        {
            "schema": PRESENCE_SCHEMA,
            "version": 1,
            "host_id": host_id,
            "state": state,
            "at": "2026-11-27T20:00:00Z",
            "reason": reason,
            "agent_version": "0.1.0",
        }
    )


def event(host_id: str, kind: str = "card_inserted", reader: str = "R") -> dict[str, Any]:
    card = {"atr": "3BAC00402A001225006480000310009000", "kind": "cps3", "is_cps": True}
    return validate(
        {
            "schema": EVENT_SCHEMA,
            "version": 1,
            "host_id": host_id,
            "at": "2026-11-27T20:56:09.250Z",
            "type": kind,
            "reader": reader,
            "card": card if kind.startswith("card") else None,
        }
    )


def connect(path: Path) -> Database:
    return Database(sqlite3.connect(path), execute_plugins=False)


def indexes(db: AnyDatabase, table: str) -> set[str]:
    """The indexes of a table in either store."""
    if on_postgres(db):
        found = db.execute("select indexname from pg_indexes where tablename = ?", [table])
        return {row[0] for row in found}
    return {index.name for index in db.table(table).indexes}


def tables(db: AnyDatabase) -> set[str]:
    """The tables of either store."""
    if on_postgres(db):
        found = db.execute("select tablename from pg_tables where schemaname = 'public'")
        return {row[0] for row in found}
    return set(db.table_names())


def pragma(path: Path, name: str) -> Any:
    with connect(path) as db:
        return db.execute(f"PRAGMA {name}").fetchone()[0]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "controller.db"


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    with Store(database) as opened:
        yield opened


def test_status_reads_back_as_a_host_view(store: Store) -> None:
    document = four_readers()
    document["problems"] = [{"where": "scan", "message": "slow"}]
    document["readers"][1]["problems"] = [{"where": "pcsc", "message": "flaky"}]
    document["readers"][0]["card"]["problems"] = [{"where": "serial", "message": "unreadable"}]
    document["cryptolib"]["problems"] = [{"where": "cryptolib", "message": "old"}]

    assert store.record_status(document, NOW).host_id == LYON
    view = store.host_view(LYON)

    assert view is not None
    assert (view.hostname, view.site, view.scan_interval_s) == ("ws-lyon-07", "Lyon Part-Dieu", 900)
    assert view.first_seen == view.last_seen == view.last_status_at == NOW
    assert view.pcsc_available is True and view.pcsc_error is None
    assert (view.cryptolib_installed, view.cryptolib_version) == (True, "5.2.2")
    assert view.cryptolib_problems == (ProblemView("cryptolib", "old"),)
    assert view.problems == (ProblemView("scan", "slow"),)
    assert [reader.name for reader in view.readers] == [r["name"] for r in document["readers"]]
    assert view.readers[1].problems == (ProblemView("pcsc", "flaky"),)
    assert [card.kind for card in view.cards] == ["cps3", "cps4", "cps3", "vitale2"]
    first = view.cards[0]
    assert (first.reader, first.serial, first.is_cps) == ("Virtual PCD 00 00", "99213845", True)
    assert first.problems == (ProblemView("serial", "unreadable"),)
    assert [c.role for c in first.certificates] == ["authentication", "signature"]
    assert first.certificates[0] == CertificateView(
        role="authentication",
        label="Certificat d'Authentification CPS",
        id_nat="810002813839",
        surname="DONNAT-GADY",
        given_name="ISABELLE",
        profession="Médecin",
        not_before=datetime(2025, 1, 1, 20, 56, 6, tzinfo=UTC),
        not_after=datetime(2028, 1, 1, 20, 56, 6, tzinfo=UTC),
    )
    assert view.cards[3].is_cps is False and view.cards[3].certificates == ()
    assert store.host_view("unknown") is None


def test_a_second_status_replaces_readers_and_cards(store: Store) -> None:
    store.record_status(four_readers(), NOW)
    later = four_readers()
    removed = later["readers"][0]
    removed["state"], removed["card"] = "empty", None
    del later["readers"][3]

    store.record_status(later, NOW + timedelta(minutes=15))
    view = store.host_view(LYON)

    assert view is not None
    assert [reader.name for reader in view.readers] == [r["name"] for r in later["readers"]]
    assert view.readers[0].state == "empty"
    assert [card.reader for card in view.cards] == ["Virtual PCD 00 01", "Virtual PCD 2 00 00"]
    assert all(len(card.certificates) == 2 for card in view.cards)
    assert store.status_history_count(LYON) == 2


def test_a_status_repeating_the_inventory_moves_only_the_times(store: Store) -> None:
    assert store.record_status(four_readers(), NOW).changed
    again = four_readers() | {"seq": 99, "scanned_at": "2026-11-27T09:15:00Z"}
    again["answers"] = ["ab" * 16]  # answering a rescan changes no inventory
    assert not store.record_status(again, NOW + timedelta(minutes=15)).changed
    view = store.host_view(LYON)
    assert view is not None and view.last_status_at == NOW + timedelta(minutes=15)
    assert store.status_history_count(LYON) == 2
    changed = four_readers()
    changed["readers"][0]["state"], changed["readers"][0]["card"] = "empty", None
    assert store.record_status(changed, NOW + timedelta(minutes=30)).changed


def test_presence_before_any_status_creates_the_host(store: Store) -> None:
    assert store.record_presence(presence(GRENOBLE), NOW).host_id == GRENOBLE
    view = store.host_view(GRENOBLE)

    assert view is not None
    assert (view.presence, view.presence_at, view.first_seen, view.last_seen) == (
        "online",
        NOW,
        NOW,
        NOW,
    )
    assert view.hostname is None and view.last_status_at is None and view.readers == ()
    assert view.pcsc_available is None


def test_first_seen_is_kept_and_last_seen_follows_every_message(store: Store) -> None:
    store.record_presence(presence(GRENOBLE), NOW)
    store.record_status(pcscd_down(), NOW + timedelta(seconds=5))
    store.record_event(event(GRENOBLE, "reader_added"), NOW + timedelta(seconds=6))
    store.record_presence(
        presence(GRENOBLE, "offline", "connection_lost"), NOW + timedelta(seconds=9)
    )
    view = store.host_view(GRENOBLE)

    assert view is not None
    assert view.first_seen == NOW
    assert view.last_seen == NOW + timedelta(seconds=9)
    assert view.last_status_at == NOW + timedelta(seconds=5)
    assert (view.presence, view.presence_at) == ("offline", NOW + timedelta(seconds=9))
    assert view.pcsc_available is False
    assert view.pcsc_error == "SCardEstablishContext: Service not available (0x8010001D)"


def test_a_last_will_without_a_time_is_stored_at_reception_and_its_replay_is_a_duplicate(
    store: Store,
) -> None:
    will = validate({**presence(GRENOBLE, "offline", "connection_lost"), "at": None})
    store.record_presence(presence(GRENOBLE), NOW)
    lost = NOW + timedelta(minutes=3)
    assert store.record_presence(will, lost).outcome == "accepted"
    assert store.record_presence(will, lost + timedelta(hours=1)).outcome == "duplicate"
    view = store.host_view(GRENOBLE)
    assert view is not None and (view.presence, view.presence_at) == ("offline", lost)


def test_events_are_listed_newest_first(store: Store) -> None:
    store.record_event(event(LYON, "card_inserted", "A"), NOW)
    store.record_event(event(GRENOBLE, "reader_removed", "B"), NOW + timedelta(seconds=1))
    store.record_event(event(LYON, "card_removed", "C"), NOW + timedelta(seconds=2))

    listed = store.events()
    assert [e["reader"] for e in listed] == ["C", "B", "A"]
    assert listed[0]["received_at"] == "2026-11-27T21:00:02Z"
    assert listed[0]["at"] == "2026-11-27T20:56:09.250Z"
    assert listed[0]["card"] == {
        "atr": "3BAC00402A001225006480000310009000",
        "kind": "cps3",
        "is_cps": True,
    }
    assert listed[1]["card"] is None
    assert [e["reader"] for e in store.events(LYON)] == ["C", "A"]
    assert [e["reader"] for e in store.events(limit=1)] == ["C"]


def test_history_older_than_the_kept_days_is_pruned(store: Store) -> None:
    old = NOW - timedelta(days=10)
    store.record_status(four_readers(), old)
    store.record_event(event(LYON), old)
    store.record_status(
        four_readers() | {"scanned_at": "2026-11-25T21:00:00Z"}, NOW - timedelta(days=2)
    )
    store.record_event(event(LYON), NOW - timedelta(days=2))

    assert store.prune_history(7, NOW) == 2
    assert store.status_history_count(LYON) == 1
    assert len(store.events()) == 1
    assert store.host_view(LYON) is not None
    assert store.prune_history(7, NOW) == 0


def finding(rule: str, host_id: str = LYON, **changes: Any) -> Finding:
    fields: dict[str, Any] = {"severity": "warning", "subject": "", "message": rule} | changes
    return Finding(rule=rule, host_id=host_id, **fields)


def test_replacing_findings_keeps_persisting_ones_and_resolves_the_rest(store: Store) -> None:
    store.record_status(four_readers(), NOW)
    expiry = datetime(2026, 12, 17, 20, 56, 6, tzinfo=UTC)
    first = [finding("offline"), finding("expiring", subject="Virtual PCD 00 01", since=expiry)]
    added, resolved = store.replace_findings(first, NOW)
    assert (added, resolved) == (first, [])

    later = NOW + timedelta(hours=1)
    second = [finding("offline", message="still offline"), finding("cryptolib_old")]
    added, resolved = store.replace_findings(second, later)

    assert added == [finding("cryptolib_old")]
    assert [(f.rule, f.subject, f.since) for f in resolved] == [
        ("expiring", "Virtual PCD 00 01", expiry)
    ]
    by_rule = {f.rule: f for f in store.findings()}
    assert set(by_rule) == {"offline", "cryptolib_old"}
    assert by_rule["offline"].since == NOW
    assert by_rule["offline"].message == "still offline"
    assert by_rule["cryptolib_old"].since == later
    row = store.database.execute(
        "select first_seen, last_seen from findings where rule = ? and host_id = ? and subject = ?",
        ["offline", LYON, ""],
    ).fetchone()
    assert tuple(row) == ("2026-11-27T21:00:00Z", "2026-11-27T22:00:00Z")


def test_replacing_findings_for_some_hosts_leaves_the_others(store: Store) -> None:
    store.record_status(four_readers(), NOW)
    store.record_status(pcscd_down(), NOW)
    store.replace_findings([finding("a", LYON), finding("b", GRENOBLE)], NOW)

    added, resolved = store.replace_findings([], NOW, host_ids=[GRENOBLE])

    assert (added, [f.rule for f in resolved]) == ([], ["b"])
    assert [f.rule for f in store.findings()] == ["a"]
    with pytest.raises(ValueError, match=LYON):
        store.replace_findings([finding("a", LYON)], NOW, host_ids=[GRENOBLE])


def test_findings_filter_by_severity_and_host_most_severe_first(store: Store) -> None:
    store.record_status(four_readers(), NOW)
    store.record_status(pcscd_down(), NOW)
    store.replace_findings(
        [
            finding("z_info", LYON, severity="info"),
            finding("pcsc_down", GRENOBLE, severity="critical"),
            finding("expired", LYON, severity="critical"),
            finding("b_warn", LYON),
            finding("a_warn", LYON),
        ],
        NOW,
    )

    everything = store.findings()
    assert [(f.severity, f.rule) for f in everything] == [
        ("critical", "expired"),
        ("critical", "pcsc_down"),
        ("warning", "a_warn"),
        ("warning", "b_warn"),
        ("info", "z_info"),
    ]
    assert everything[1].site == "Grenoble"
    assert [f.rule for f in store.findings("critical", host_id=LYON)] == ["expired"]
    assert [f.rule for f in store.findings(host_id=GRENOBLE)] == ["pcsc_down"]
    assert store.findings("warning", host_id=GRENOBLE) == []
    with pytest.raises(StoreError, match="unknown severity"):
        store.findings("fatal")


def test_hosts_listing_counts_readers_cards_and_findings(store: Store) -> None:
    store.record_status(four_readers(), NOW)
    store.record_status(pcscd_down(), NOW)
    store.record_presence(presence(LYON), NOW)
    store.replace_findings(
        [finding("a", LYON, severity="critical"), finding("b", LYON), finding("c", LYON)], NOW
    )

    grenoble, lyon = store.hosts()
    assert [view.id for view in store.host_views()] == [LYON, GRENOBLE]

    assert lyon == {
        "id": LYON,
        "hostname": "ws-lyon-07",
        "site": "Lyon Part-Dieu",
        "presence": "online",
        "last_seen": "2026-11-27T21:00:00Z",
        "last_status_at": "2026-11-27T21:00:00Z",
        "readers": 4,
        "cards": 4,
        "cryptolib_version": "5.2.2",
        "pcsc_available": True,
        "critical": 1,
        "warning": 2,
        "info": 0,
    }
    assert (grenoble["readers"], grenoble["pcsc_available"], grenoble["presence"]) == (
        0,
        False,
        None,
    )


def test_counters_start_at_zero_and_add_up(store: Store) -> None:
    assert store.counter("messages_accepted") == 0
    store.increment("messages_accepted")
    store.increment("messages_accepted", 4)
    assert store.counter("messages_accepted") == 5


def test_a_document_of_the_wrong_kind_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="expected a cpsfleet.status document"):
        store.record_status(presence(LYON), NOW)


def test_the_database_is_in_wal_mode(path: Path) -> None:
    Store(path).close()
    assert pragma(path, "journal_mode") == "wal"


def test_a_write_waits_for_another_writer_instead_of_failing(path: Path) -> None:
    store = Store(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, other.execute, ["COMMIT"])
    release.start()
    try:
        store.increment("messages_accepted")
    finally:
        release.join()
        other.close()
    assert store.counter("messages_accepted") == 1
    store.close()


def test_a_restarted_controller_keeps_everything(database: str) -> None:
    with Store(database) as first:
        first.record_status(four_readers(), NOW)
        first.record_event(event(LYON), NOW)
        first.replace_findings([finding("offline")], NOW)
        first.increment("messages_accepted", 3)
        before = first.host_view(LYON)

    with Store(database) as second:
        assert second.host_view(LYON) == before
        assert [f.rule for f in second.findings()] == ["offline"]
        assert len(second.events()) == 1
        assert second.counter("messages_accepted") == 3


def test_a_readonly_store_reads_beside_the_writer(store: Store, database: str) -> None:
    store.record_status(four_readers(), NOW)
    with Store.open_readonly(database) as reader:
        assert [host["id"] for host in reader.hosts()] == [LYON]
        store.record_status(pcscd_down(), NOW)
        assert len(reader.hosts()) == 2
        with pytest.raises(sqlite3.DatabaseError, match="read-?only"):
            reader.increment("messages_accepted")


def test_readonly_open_of_a_closed_database(database: str) -> None:
    with Store(database) as writer:
        writer.record_status(four_readers(), NOW)

    with Store.open_readonly(database) as reader:
        assert reader.host_view(LYON) is not None


def test_readonly_open_of_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(StoreError, match="no controller database at .*missing.db"):
        Store.open_readonly(missing)
    assert list(tmp_path.iterdir()) == []


def test_a_database_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open the database .*controller.db"):
        Store(tmp_path / "missing" / "controller.db")


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.db"
    garbage.write_text("this is not a database, " * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        Store(garbage)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        Store.open_readonly(garbage)


def version_1_database(database: str) -> None:
    db = open_database(database)
    with db.atomic():
        if on_postgres(db):
            db.prepare_functions()
        migrations.create_fleet_tables(db)
        migrations.set_version(db, 1)
        db.execute(
            "insert into hosts (id, hostname, first_seen, last_seen) values (?, ?, ?, ?)",
            [LYON, "old", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"],
        )
    db.close()


def test_an_older_database_is_migrated_and_keeps_its_data(database: str) -> None:
    version_1_database(database)
    db = open_database(database)
    assert "counters" not in tables(db)
    db.close()

    with Store(database) as store:
        view = store.host_view(LYON)
        assert view is not None
        assert view.hostname == "old"
        assert view.first_seen == datetime(2026, 1, 1, tzinfo=UTC)
        store.increment("messages_accepted")
        assert store.counter("messages_accepted") == 1

    db = open_database(database)
    assert migrations.version(db) == migrations.LATEST == len(migrations.MIGRATIONS)
    assert "idx_certificates_not_after" in indexes(db, "certificates")
    db.close()


def test_readonly_open_refuses_a_database_not_yet_migrated(database: str) -> None:
    version_1_database(database)
    with pytest.raises(StoreError, match="version 1 is older .*start the controller"):
        Store.open_readonly(database)


def test_a_failed_migration_leaves_the_database_at_its_version(database: str) -> None:
    def broken(db: AnyDatabase) -> None:
        db.create_table("half_done", {"id": int}, pk="id")
        raise RuntimeError("migration bug")

    db = open_database(database)
    with pytest.raises(RuntimeError, match="migration bug"):
        migrations.upgrade(db, [migrations.create_fleet_tables, broken])
    assert migrations.version(db) == 1
    assert "hosts" in tables(db) and "half_done" not in tables(db)
    db.close()


def test_a_newer_database_is_refused(database: str) -> None:
    Store(database).close()
    newer = migrations.LATEST + 1
    db = open_database(database)
    migrations.set_version(db, newer)
    db.close()

    message = f"database version {newer} is newer than this controller \\({migrations.LATEST}\\)"
    with pytest.raises(StoreError, match=message + ": upgrade cpsfleet"):
        Store(database)
    with pytest.raises(StoreError, match=message):
        Store.open_readonly(database)
    db = open_database(database)
    assert migrations.version(db) == newer
    db.close()
