"""The one way to open the controller database.

The controller's writer opens it read-write and creates it (``Store``); the CLI and the
dashboard read it from other processes, read-only, which WAL lets run beside the writer;
the alert commands write their few rows (acknowledgements, silences) into an existing one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlite_utils import Database

from cpsfleet.i18n import _

# How long a statement waits for another process's write transaction before it fails.
BUSY_TIMEOUT_S = 5.0


class StoreError(Exception):
    """The database cannot be used: missing, not SQLite, of another version, or misused."""


def connect(path: Path, readonly: bool = False, must_exist: bool = False) -> Database:
    """The database at ``path``; read-only and ``must_exist`` refuse a missing file, which
    SQLite would otherwise create (empty) at a mistyped path."""
    if (readonly or must_exist) and not path.is_file():
        raise StoreError(
            _(
                "no controller database at {path}: check the path, or start the controller first"
            ).format(path=path)
        )
    target = f"{path.resolve().as_uri()}?mode=ro" if readonly else str(path)
    try:
        connection = sqlite3.connect(target, uri=readonly, timeout=BUSY_TIMEOUT_S)
        return Database(connection, execute_plugins=False)
    except sqlite3.Error as error:
        raise StoreError(
            _("cannot open the database {path}: {error}").format(path=path, error=error)
        ) from error
