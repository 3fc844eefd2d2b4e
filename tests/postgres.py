"""The tests' PostgreSQL: a database of its own for each test that asks, on a real server.

scripts/test.sh (through scripts/postgres.sh) makes sure a server answers and exports
``CPSFLEET_TEST_POSTGRES``, the URL of a role that may create databases. Each database is
``cpsfleet_test_<seconds since the epoch>_<random>``, in the C collation and UTF-8 (text
then sorts byte by byte, as in SQLite), and is dropped when its test ends; the time in its
name lets a later run drop what a crashed one left.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

URL_VARIABLE = "CPSFLEET_TEST_POSTGRES"
DEFAULT_URL = "postgresql://cpsfleet_test:cpsfleet_test@127.0.0.1:5432/postgres"
PREFIX = "cpsfleet_test_"
NAME = re.compile(rf"{PREFIX}(\d+)_[0-9a-f]+")
# A database lives as long as its test (stopped after 120 s by pytest-timeout), a run of the
# whole suite far less than this: one this old is a crashed run's, no run going on uses it.
LEFTOVER_AGE = 3 * 3600


class PostgresUnreachable(Exception):
    """No PostgreSQL answers at the URL the tests were given."""


def database_url(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name``."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


@dataclass
class Postgres:
    """A server where the tests create and drop databases, through its admin ``url``."""

    url: str
    created: set[str] = field(default_factory=set)

    @classmethod
    def from_environment(cls) -> Postgres:
        return cls(os.environ.get(URL_VARIABLE) or DEFAULT_URL)

    @contextmanager
    def admin(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """A connection to the admin URL, out of any transaction (CREATE DATABASE needs it)."""
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as error:
            raise PostgresUnreachable(
                f"no PostgreSQL answers at {self.url} ({error}); run the tests with "
                f"scripts/test.sh, which starts one, or set {URL_VARIABLE} to the URL of a "
                "role that may create databases"
            ) from error
        with conn:
            yield conn

    def create_database(self) -> str:
        """A new, empty database (C collation, UTF-8) and its URL."""
        name = f"{PREFIX}{int(time.time())}_{secrets.token_hex(6)}"
        statement = sql.SQL(
            "create database {} template template0 encoding 'UTF8' lc_collate 'C' lc_ctype 'C'"
        )
        with self.admin() as conn:
            conn.execute(statement.format(sql.Identifier(name)))
        self.created.add(name)
        return database_url(self.url, name)

    def drop_database(self, url: str) -> None:
        """Drop the database at ``url``, ending the connections still open to it."""
        self.drop(database_name(url))

    def drop(self, *names: str) -> None:
        with self.admin() as conn:
            for name in names:
                statement = sql.SQL("drop database if exists {} with (force)")
                conn.execute(statement.format(sql.Identifier(name)))
                self.created.discard(name)

    def databases(self) -> list[str]:
        """The names of the tests' databases on the server, whichever run created them."""
        with self.admin() as conn:
            rows = conn.execute(
                "select datname from pg_database where starts_with(datname, %s) order by 1",
                [PREFIX],
            ).fetchall()
        return [str(name) for (name,) in rows]

    def leftovers(self) -> list[str]:
        """The tests' databases old enough to have been left by a crashed run."""
        too_old = time.time() - LEFTOVER_AGE
        return [
            name
            for name in self.databases()
            if (found := NAME.fullmatch(name)) and int(found[1]) < too_old
        ]
