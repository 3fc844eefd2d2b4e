"""Cards remembered after they leave the reader.

A professional takes their card out at the end of the day: the host's
inventory forgets it, but readiness and the expiry forecast must not. Each
status document updates one row per CPS card serial: its holder's idNat, its
dates, its PIN's tries, and where and when it was last seen.
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

Row = dict[str, Any]
TABLE = "card_sightings"


def remember_cards(db: Database, document: Row, received: str) -> None:
    """Upsert the CPS cards of a status document (inside the caller's transaction)."""
    rows = [
        _sighting(document, reader["name"], card, received) | {"first_seen": received}
        for reader in document["readers"]
        if (card := reader["card"]) and card["is_cps"] and card["serial"]
    ]
    if rows:
        db.conn.executemany(UPSERT_SQL, rows)


def _upsert_sql() -> str:
    columns = (
        *("serial", "id_nat", "kind", "not_before", "not_after", "host_id", "site", "reader"),
        *("pin_tries_left", "pin_tries_max", "last_seen", "first_seen"),
    )
    updated = ", ".join(f"{name} = excluded.{name}" for name in columns[1:-1])
    return (
        f"insert into {TABLE} ({', '.join(columns)}) "
        f"values ({', '.join(':' + name for name in columns)}) "
        f"on conflict (serial) do update set {updated}"  # first_seen stays
    )


UPSERT_SQL = _upsert_sql()


def _sighting(document: Row, reader: str, card: Row, received: str) -> Row:
    certificates = [c for c in card["certificates"] if not c["error"]]
    return {
        "serial": card["serial"],
        "id_nat": next((c["id_nat"] for c in certificates if c["id_nat"]), None),
        "kind": card["kind"],
        "not_before": max((c["not_before"] for c in certificates if c["not_before"]), default=None),
        "not_after": min((c["not_after"] for c in certificates if c["not_after"]), default=None),
        "host_id": document["host"]["id"],
        "site": document["host"]["site"],
        "reader": reader,
        "pin_tries_left": (card.get("pin") or {}).get("tries_left"),
        "pin_tries_max": (card.get("pin") or {}).get("tries_max"),
        "last_seen": received,
    }


def load_sightings(db: Database) -> list[Row]:
    """Every card ever seen, with the host's name where it was last seen."""
    return list(
        db.query(
            f"select s.*, coalesce(h.hostname, s.host_id) as host from {TABLE} s "
            "left join hosts h on h.id = s.host_id order by s.serial"
        )
    )
