"""Several controllers on one PostgreSQL database: one leads, and takes over when it dies;
storing one host's documents side by side waits instead of clashing. On a real server."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cpsfleet.controller.cluster import LEADER_LOCK, Leadership, hosts_locked, transient
from cpsfleet.controller.db.postgres import PgDatabase
from cpsfleet.controller.settings import SettingsError, load_settings
from cpsfleet.schemas.topics import SUBSCRIPTIONS, shared
from tests.conftest import wait_for
from tests.postgres import Postgres


@pytest.fixture
def url(postgres: Postgres) -> Iterator[str]:
    created = postgres.create_database()
    yield created
    postgres.drop_database(created)


def leaders(url: str) -> list[str]:
    """The application names of the sessions holding the leader's lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "select a.application_name from pg_locks l join pg_stat_activity a using (pid) "
            "where l.locktype = 'advisory' and l.granted and l.database = "
            "(select oid from pg_database where datname = current_database()) "
            "and (l.classid::bigint << 32) + l.objid::bigint = %s",
            [LEADER_LOCK],
        ).fetchall()
    return [str(name) for (name,) in rows]


def end_sessions_of(url: str, node: str) -> None:
    """The server ends ``node``'s lock connection, as when its network or machine fails."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where application_name = %s",
            [f"cpsfleet-controller {node}"],
        )


def test_one_of_two_leads_and_the_other_takes_over_when_its_connection_fails(url: str) -> None:
    first, second = Leadership(url, "a", check_every=0), Leadership(url, "b", check_every=0)
    try:
        assert first.check() and not second.check()
        assert not second.check()  # tried again: still held
        assert leaders(url) == ["cpsfleet-controller a"]
        end_sessions_of(url, "a")
        assert not first.check()  # the leader sees it at once, and stops
        assert second.check()
        assert leaders(url) == ["cpsfleet-controller b"]
        assert not first.check()  # back, it follows
    finally:
        first.close()
        second.close()


def test_a_leader_that_closes_hands_over(url: str) -> None:
    first, second = Leadership(url, "a", check_every=0), Leadership(url, "b", check_every=0)
    assert first.check()
    first.close()
    assert not first.leading
    assert second.check()
    second.close()
    assert leaders(url) == []


HOLDER = """
import sys, time
from cpsfleet.controller.cluster import Leadership
leadership = Leadership(sys.argv[1], "killed", check_every=0)
print(leadership.check(), flush=True)
time.sleep(600)
"""


def test_a_killed_leaders_lock_is_free_at_once(url: str, tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
            other = Leadership(url, "b", check_every=0)
            assert not other.check()
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            wait_for(other.check, 10, "the lock freed by the killed leader's connection")
            other.close()
        finally:
            holder.kill()


def test_on_sqlite_the_only_controller_leads(tmp_path: Path) -> None:
    leadership = Leadership(str(tmp_path / "controller.db"), "alone")
    assert leadership.check()
    leadership.close()
    assert leadership.check()


def test_storing_one_host_waits_for_the_other_controllers_transaction(url: str) -> None:
    first, second = PgDatabase(url), PgDatabase(url)
    entered = threading.Event()
    try:
        with hosts_locked(first, ["ws-1", "ws-2"]):
            waiter = threading.Thread(target=lambda: _enter(second, ["ws-2"], entered))
            waiter.start()
            wait_for(lambda: _waiting_on_advisory(url), 10, "the second transaction waiting")
            assert not entered.is_set()
        waiter.join(10)
        assert entered.is_set()
        with hosts_locked(first, ["ws-3"]):  # another host: no wait
            _enter(second, ["ws-4"], entered)
    finally:
        first.close()
        second.close()


def _enter(db: PgDatabase, hosts: list[str], entered: threading.Event) -> None:
    with hosts_locked(db, hosts):
        entered.set()


def _waiting_on_advisory(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from pg_locks where locktype = 'advisory' and not granted "
            "and database = (select oid from pg_database where datname = current_database())"
        ).fetchone()
    return row is not None and row[0] == 1


def test_a_deadlock_between_controllers_is_transient(url: str) -> None:
    """Two transactions each holding a row the other wants: PostgreSQL aborts one, as the
    store raises it (sqlite3.DatabaseError from psycopg's), and it is worth trying again."""
    setup = PgDatabase(url)
    setup.execute("create table t (id integer primary key, v integer)")
    setup.execute("insert into t values (1, 0), (2, 0)")
    setup.close()
    first, second = PgDatabase(url), PgDatabase(url)
    raised: list[BaseException] = []
    both = threading.Barrier(2)

    def cross(db: PgDatabase, mine: int, theirs: int) -> None:
        try:
            with db.atomic():
                db.execute("update t set v = v + 1 where id = ?", [mine])
                both.wait(10)
                db.execute("update t set v = v + 1 where id = ?", [theirs])
        except sqlite3.Error as error:
            raised.append(error)

    threads = [
        threading.Thread(target=cross, args=(first, 1, 2)),
        threading.Thread(target=cross, args=(second, 2, 1)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    first.close()
    second.close()
    (error,) = raised
    assert isinstance(error, sqlite3.DatabaseError) and "deadlock" in str(error)
    assert transient(error)
    assert not transient(sqlite3.IntegrityError("UNIQUE constraint failed"))


def test_a_share_group_needs_postgresql(tmp_path: Path) -> None:
    conf = tmp_path / "controller.toml"
    conf.write_text(f'database = "{tmp_path / "c.db"}"\nshare_group = "fleet"\n')
    with pytest.raises(SettingsError, match="share_group needs a PostgreSQL database"):
        load_settings(conf, environ={})


def test_each_member_has_its_own_client_id_and_shared_topics(tmp_path: Path) -> None:
    conf = tmp_path / "controller.toml"
    conf.write_text('database = "postgresql://127.0.0.1/fleet"\nshare_group = "fleet"\n')
    named = load_settings(conf, environ={"CPSFLEET_NODE_NAME": "ctl-2"})
    assert named.client_id == "cpsfleet-controller-ctl-2"
    assert shared(named.share_group) == tuple(f"$share/fleet/{t}" for t in SUBSCRIPTIONS)
    by_host = load_settings(conf, environ={})
    assert by_host.client_id.startswith("cpsfleet-controller-") and by_host.node
    lone = tmp_path / "lone.toml"
    lone.write_text(f'database = "{tmp_path / "c.db"}"\n')
    assert load_settings(lone, environ={}).client_id == "cpsfleet-controller"
    assert shared(None) == SUBSCRIPTIONS
    with pytest.raises(SettingsError, match="share_group must be"):
        load_settings(conf, environ={"CPSFLEET_SHARE_GROUP": "a/b"})


def test_without_the_server_a_controller_does_not_lead(
    free_postgres_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    leadership = Leadership(f"postgresql://127.0.0.1:{free_postgres_port}/none", "x", 0)
    assert not leadership.check() and not leadership.check()
    said = [r.message for r in caplog.records if "cannot try to lead" in r.message]
    assert len(said) == 1  # said once, not at every try


@pytest.fixture
def free_postgres_port() -> int:
    from tests.conftest import free_port

    return free_port()
