"""The ``professionals`` table: the roster as last imported (``cpsfleet.controller.intake.roster``
reads the file and turns rows into professionals)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cpsfleet.controller.db.connect import Database

Row = dict[str, Any]


def replace(db: Database, rows: list[Row]) -> int:
    """Make ``rows`` the whole table in one transaction; how many rows it held before."""
    table = db.table("professionals")
    with db.atomic():
        replaced = table.count
        table.delete_where()
        table.insert_all(rows)
    return replaced


def rows(db: Database) -> Iterator[Row]:
    """Every professional, by site, then name, then idNat."""
    return db.query("select * from professionals order by site, surname, given_name, id_nat")
