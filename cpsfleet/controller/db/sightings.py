"""Cards remembered after they leave the reader.

A professional takes their card out at the end of the day: the host's
inventory forgets it, but readiness and the expiry forecast must not. Each
status document updates one row per CPS card serial: its holder's idNat, its
dates, its PIN's tries, and where and when it was last seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cpsfleet.controller.db.connect import Database
from cpsfleet.controller.model import CARD_RULES

Row = dict[str, Any]
TABLE = "card_sightings"


@dataclass(frozen=True)
class Remembered:
    """What remembering a status's cards changed beyond its own host."""

    superseded: frozenset[str] = frozenset()  # the hosts where the cards superseded were seen
    moved: tuple[tuple[str, str], ...] = ()  # (card serial, the host it was seen on before)


def remember_cards(db: Database, document: Row, received: str) -> Remembered:
    """Upsert the CPS cards of a status document (inside the caller's transaction).

    A card seen on another host than before takes its findings, alerts, acknowledgements
    and deliveries with it: they are the card's, and a card moving from one workstation to
    another is not a problem solved and a new one; a status scanned before the one a card
    was last seen in (replayed by the broker) leaves the card where it is. A card of a
    holder (idNat) seen for the first time supersedes the holder's cards first seen before it.
    """
    rows = [
        _sighting(document, reader["name"], card, received) | {"first_seen": received}
        for reader in document["readers"]
        if (card := reader["card"]) and card["is_cps"] and card["serial"]
    ]
    if not rows:
        return Remembered()
    host_id, scanned = document["host"]["id"], document["scanned_at"]
    serials = json.dumps([row["serial"] for row in rows])
    moved = [
        (serial, was)
        for serial, was, was_scanned in db.conn.execute(PREVIOUS_SQL, [serials]).fetchall()
        if was != host_id and (was_scanned is None or scanned >= was_scanned)
    ]
    db.conn.executemany(UPSERT_SQL, rows)
    for serial, was in moved:
        _move_card_rows(db, serial, was, host_id)
    superseded: set[str] = set()
    for row in rows:
        if row["id_nat"] is not None:
            found = db.conn.execute(SUPERSEDE_SQL, {**row, "at": received}).fetchall()
            superseded.update(host for (host,) in found)
    return Remembered(frozenset(superseded - {host_id}), tuple(moved))


# Wire times sort as text (four-digit years, whole seconds, Z).
PREVIOUS_SQL = (
    f"select serial, host_id, scanned_at from {TABLE} "
    "where serial in (select value from json_each(?))"
)
# A card of the same holder first seen before this one, not yet superseded.
SUPERSEDE_SQL = f"""
update {TABLE} set superseded_by = :serial, superseded_at = :at
where id_nat = :id_nat and serial != :serial and superseded_by is null
  and first_seen < (select first_seen from {TABLE} where serial = :serial)
returning host_id
"""
# The tables whose rows of the card rules (``cpsfleet.controller.model.CARD_RULES``) follow
# the card from host to host.
MOVED_TABLES = ("findings", "alerts", "acknowledgements", "deliveries")


def _move_card_rows(db: Database, serial: str, was: str, to: str) -> None:
    """The card rules' rows about ``serial`` on ``was``, the host it was last seen on, move
    to ``to``; rows of the same rule (and channel) there, left by an earlier visit, give way.
    Rows on a third host (left by a controller older than version 13) stay: that host's next
    evaluation ends them, the card being seen elsewhere."""
    for table in MOVED_TABLES:
        key = "channel, rule" if table == "deliveries" else "rule"
        params = {"serial": serial, "was": was, "to": to, "rules": json.dumps(CARD_RULES)}
        about = "subject = :serial and rule in (select value from json_each(:rules))"
        db.conn.execute(
            f"delete from {table} where host_id = :to and {about} and ({key}) in "
            f"(select {key} from {table} where host_id = :was and {about})",
            params,
        )
        db.conn.execute(
            f"update {table} set host_id = :to where host_id = :was and {about}", params
        )


def _upsert_sql() -> str:
    columns = (
        *("serial", "id_nat", "kind", "not_before", "not_after", "host_id", "site", "reader"),
        *("pin_tries_left", "pin_tries_max", "surname", "given_name", "profession"),
        *("certificates_json", "scanned_at", "last_seen", "first_seen"),
    )
    updated = ", ".join(f"{name} = excluded.{name}" for name in columns[1:-1])
    return (
        f"insert into {TABLE} ({', '.join(columns)}) "
        f"values ({', '.join(':' + name for name in columns)}) "
        f"on conflict (serial) do update set {updated} "  # first_seen stays
        f"where excluded.scanned_at >= coalesce({TABLE}.scanned_at, '')"
    )


UPSERT_SQL = _upsert_sql()
CERTIFICATE_FIELDS = (
    *("role", "label", "id_nat", "surname", "given_name", "profession"),
    *("not_before", "not_after"),
)


def _sighting(document: Row, reader: str, card: Row, received: str) -> Row:
    certificates = [c for c in card["certificates"] if not c["error"]]
    holder: Row = next((c for c in certificates if c["surname"] or c["id_nat"]), {})
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
        "surname": holder.get("surname"),
        "given_name": holder.get("given_name"),
        "profession": holder.get("profession"),
        "certificates_json": json.dumps(
            [{name: c.get(name) for name in CERTIFICATE_FIELDS} for c in certificates]
        ),
        "scanned_at": document["scanned_at"],
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
