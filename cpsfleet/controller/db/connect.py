"""The one way to open the controller database.

``database`` is a path (SQLite, the embedded default) or a ``postgresql://`` URL
(PostgreSQL, shared by several controllers; see ``cpsfleet.controller.db.postgres``).
The controller's writer opens it read-write and creates it (``Store``); the CLI and the
dashboard read it from other processes, read-only, which WAL (or PostgreSQL) lets run
beside the writer; the alert commands write their few rows (acknowledgements, silences)
into an existing one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, TypeGuard

import sqlite_utils

from cpsfleet.i18n import _

if TYPE_CHECKING:
    from cpsfleet.controller.db.postgres import PgDatabase

    Database: TypeAlias = sqlite_utils.Database | PgDatabase
else:
    Database = sqlite_utils.Database

# How long a statement waits for another process's write transaction before it fails.
BUSY_TIMEOUT_S = 5.0

POSTGRES_SCHEMES = ("postgresql:/", "postgres:/")


class StoreError(Exception):
    """The database cannot be used: missing, not SQLite, of another version, or misused."""


def is_postgres(target: Path | str) -> bool:
    """Whether ``target`` names a PostgreSQL database (a URL, also one that went through
    ``pathlib.Path``, which folds its ``//``)."""
    return str(target).startswith(POSTGRES_SCHEMES)


def on_postgres(db: Database) -> TypeGuard[PgDatabase]:
    """Whether ``db`` is a PostgreSQL database (where SQLite's pragmas have no meaning)."""
    return not isinstance(db, sqlite_utils.Database)


def on_sqlite(db: Database) -> TypeGuard[sqlite_utils.Database]:
    return isinstance(db, sqlite_utils.Database)


def location(target: Path | str) -> Path | str:
    """``target`` as ``connect`` takes it: a PostgreSQL URL as text, anything else a path."""
    if is_postgres(target):
        from cpsfleet.controller.db.postgres import url_of

        return url_of(target)
    return Path(target)


def named(target: Path | str) -> str:
    """How messages name the database: its path, or its URL without the password."""
    if is_postgres(target):
        from cpsfleet.controller.db.postgres import shown, url_of

        return shown(url_of(target))
    return str(target)


def exists(target: Path | str) -> bool:
    """Whether there is a database to open at ``target`` (a PostgreSQL one is assumed)."""
    return is_postgres(target) or Path(target).is_file()


def connect(target: Path | str, readonly: bool = False, must_exist: bool = False) -> Database:
    """The database at ``target``; read-only and ``must_exist`` refuse a missing file, which
    SQLite would otherwise create (empty) at a mistyped path."""
    if is_postgres(target):
        return _connect_postgres(str(location(target)), readonly)
    path = Path(target)
    if (readonly or must_exist) and not path.is_file():
        raise StoreError(
            _(
                "no controller database at {path}: check the path, or start the controller first"
            ).format(path=path)
        )
    uri = f"{path.resolve().as_uri()}?mode=ro" if readonly else str(path)
    try:
        connection = sqlite3.connect(uri, uri=readonly, timeout=BUSY_TIMEOUT_S)
        return sqlite_utils.Database(connection, execute_plugins=False)
    except sqlite3.Error as error:
        raise StoreError(
            _("cannot open the database {path}: {error}").format(path=path, error=error)
        ) from error


def _connect_postgres(url: str, readonly: bool) -> Database:
    try:
        from cpsfleet.controller.db.postgres import PgDatabase, shown
    except ImportError as error:  # psycopg is the controller's, not the agent's
        raise StoreError(
            _("a PostgreSQL database needs psycopg: install cpsfleet[controller] ({error})").format(
                error=error
            )
        ) from error
    try:
        return PgDatabase(url, readonly)
    except sqlite3.Error as error:
        raise StoreError(
            _("cannot open the database {path}: {error}").format(path=shown(url), error=error)
        ) from error
