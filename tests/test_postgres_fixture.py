"""The tests' PostgreSQL fixtures: a fresh database per test, in the C collation and UTF-8,
dropped after it; the ``database`` twins, SQLite in the fast tier and PostgreSQL in the full."""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import free_port
from tests.postgres import PREFIX, Postgres, database_name

THIS_FILE = Path(__file__)
TWIN = "test_database_is_a_file_or_a_server_that_answers"


def run_pytest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=THIS_FILE.parents[1],
        env={**os.environ, **(env or {})},
    )


def test_a_new_database_sorts_text_byte_by_byte_in_utf8(postgres: Postgres) -> None:
    url = postgres.create_database()
    try:
        with psycopg.connect(url) as conn:
            settings = conn.execute(
                "select datcollate, datctype, pg_encoding_to_char(encoding) from pg_database"
                " where datname = current_database()"
            ).fetchone()
            # In the C collation "B" (0x42) sorts before "a" (0x61), as in SQLite; a
            # language's collation puts "a" first.
            words = conn.execute(
                "select word from (values ('a'), ('B'), ('é'), ('z')) as t(word) order by word"
            ).fetchall()
            assert conn.execute("show lc_collate").fetchone() == ("C",)
    finally:
        postgres.drop_database(url)
    assert settings == ("C", "C", "UTF8")
    assert [word for (word,) in words] == ["B", "a", "z", "é"]


def test_each_database_is_new_and_named_for_the_tests(postgres: Postgres) -> None:
    first, second = postgres.create_database(), postgres.create_database()
    try:
        assert first != second
        assert database_name(first).startswith(PREFIX)
        assert {database_name(first), database_name(second)} <= set(postgres.databases())
    finally:
        postgres.drop_database(first)
        postgres.drop_database(second)


def test_drop_database_ends_the_connections_left_open(postgres: Postgres) -> None:
    url = postgres.create_database()
    left_open = psycopg.connect(url, autocommit=True)
    try:
        postgres.drop_database(url)
        assert database_name(url) not in postgres.databases()
        with pytest.raises(psycopg.OperationalError):
            left_open.execute("select 1")
    finally:
        left_open.close()


def test_database_is_a_file_or_a_server_that_answers(
    database: str, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["database"] == "sqlite":
        assert Path(database).name == "controller.db" and Path(database).parent.is_dir()
        with sqlite3.connect(database) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        return
    with psycopg.connect(database) as conn:
        assert conn.execute("select 1, current_database()").fetchone() == (
            1,
            database_name(database),
        )
    # For test_the_database_is_dropped_after_its_test, which runs this test in a pytest of
    # its own with -s and reads which database it had.
    print(f"\ndatabase {database}")


def collected(tier: str) -> list[str]:
    run = run_pytest("--collect-only", "-q", "-m", tier, str(THIS_FILE))
    assert run.returncode == 0, run.stdout + run.stderr
    return [line.partition("::")[2] for line in run.stdout.splitlines() if "::" in line]


def test_sqlite_twin_is_in_the_fast_tier_and_postgresql_in_the_full() -> None:
    fast, slow = collected("not slow"), collected("slow")
    assert f"{TWIN}[sqlite]" in fast and f"{TWIN}[postgresql]" not in fast
    assert f"{TWIN}[postgresql]" in slow and f"{TWIN}[sqlite]" not in slow
    # scripts/lowest.sh's selection: the fast tier and what is slow only for PostgreSQL; not
    # a test marked slow by its author, even on PostgreSQL.
    lowest = collected("not slow or postgresql")
    assert f"{TWIN}[postgresql]" in lowest and f"{TWIN}[sqlite]" in lowest
    assert "test_a_new_database_sorts_text_byte_by_byte_in_utf8" in lowest
    assert "test_no_server_fails_the_postgresql_tests_and_says_what_to_do" in slow
    assert "test_no_server_fails_the_postgresql_tests_and_says_what_to_do" not in lowest


def test_the_database_is_dropped_after_its_test_and_old_ones_at_the_start(
    postgres: Postgres,
) -> None:
    # What a run that crashed a day ago left: the next session's postgres fixture drops it.
    abandoned = f"{PREFIX}1000_{secrets.token_hex(6)}"
    with postgres.admin() as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(abandoned)))
    try:
        run = run_pytest("-q", "-s", f"{THIS_FILE}::{TWIN}[postgresql]")
        assert run.returncode == 0, run.stdout + run.stderr
        used = [line.split()[1] for line in run.stdout.splitlines() if line.startswith("database ")]
        assert len(used) == 1 and database_name(used[0]).startswith(PREFIX)
        assert database_name(used[0]) not in postgres.databases()
        assert abandoned not in postgres.databases()
    finally:
        postgres.drop(abandoned)


@pytest.mark.slow  # a pytest of its own, which waits for a server that is not there
def test_no_server_fails_the_postgresql_tests_and_says_what_to_do() -> None:
    nowhere = f"postgresql://cpsfleet_test:cpsfleet_test@127.0.0.1:{free_port()}/postgres"
    run = run_pytest(
        "-q", f"{THIS_FILE}::{TWIN}[postgresql]", env={"CPSFLEET_TEST_POSTGRES": nowhere}
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 error" in run.stdout and "skipped" not in run.stdout
    assert f"no PostgreSQL answers at {nowhere}" in run.stdout
    assert "scripts/test.sh" in run.stdout and "CPSFLEET_TEST_POSTGRES" in run.stdout
