"""What every ``cpsfleet controller`` command shares: options, errors, output, opening the store.

The feature modules (``readiness``, ``alerts``, ``exports``, ``rescan``) and ``app``
import from here,
so none of them has to import another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
from tabulate import tabulate

from cpsfleet.controller.db.store import Store, StoreError
from cpsfleet.controller.settings import (
    DEFAULT_PATH,
    ControllerSettings,
    SettingsError,
    load_settings,
)

EXIT_USAGE = 2
CONFIG_HELP = f"Configuration file (TOML; default {DEFAULT_PATH} if it exists)."
DATABASE_HELP = "SQLite database (default: from the configuration)."
JSON_HELP = "Print JSON instead of a table."


def fail(message: str) -> typer.Exit:
    """A one-line error on stderr; raise what this returns (exit code 2)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


def settings_or_exit(config: Path | None) -> ControllerSettings:
    try:
        return load_settings(config)
    except SettingsError as error:
        raise fail(str(error)) from None


def database_path(config: Path | None, database: Path | None) -> Path:
    return database or Path(settings_or_exit(config).database)


def open_store(path: Path, readonly: bool = True) -> Store:
    try:
        return Store.open_readonly(path) if readonly else Store(path)
    except StoreError as error:
        raise fail(str(error)) from None


def emit(
    rows: list[dict[str, Any]],
    as_json: bool,
    empty: str,
    columns: tuple[str, ...] | None = None,
    wrap: Mapping[str, int] | None = None,
) -> None:
    """JSON, or a table of ``columns`` (all by default) with the given columns wrapped."""
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
    elif rows:
        shown = [{key: row[key] for key in columns or row} for row in rows]
        widths = [(wrap or {}).get(column) for column in shown[0]]
        typer.echo(tabulate(shown, headers="keys", maxcolwidths=widths))
    else:
        typer.echo(empty)
