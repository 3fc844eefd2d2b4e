"""CSV and JSON exports of the fleet: its hosts, its cards, and each professional's readiness.

``hosts``, ``cards`` and ``readiness`` return rows: dicts whose keys are, in order,
``HOST_COLUMNS``, ``CARD_COLUMNS`` and ``READINESS_COLUMNS``. They read through the
store's queries and ``rules.readiness``; they write nothing. ``write`` renders rows
on a stream, ``save`` to a file that only appears once complete.

In the files: CSV is RFC 4180 (comma, CRLF, quotes where needed) in UTF-8 with a header
row, booleans ``true`` / ``false``, unknown values empty; JSON is a list of objects with
the same keys, unknown values ``null``. Times are ISO 8601 UTC (``2026-11-27T20:56:10Z``).

Names, hostnames and sites come from the agents' documents, so a spreadsheet opening the CSV
must not run them as formulas: a text cell that could start one gets a leading ``'`` (see
``FORMULA_LEADS``). Numbers stay numbers (days left -3 is ours, not an agent's text), and the
JSON keeps every value exactly.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal, TextIO

from cpsfleet.controller.db import fleet
from cpsfleet.controller.db.queries import optional_time
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.filters import same_site
from cpsfleet.controller.intake.roster import load_professionals
from cpsfleet.controller.rules.findings import Thresholds
from cpsfleet.controller.rules.readiness import REPORT_FIELDS, readiness_rows, remembered
from cpsfleet.schemas.times import days_left

Row = dict[str, Any]
Format = Literal["csv", "json"]
FORMATS: tuple[Format, ...] = ("csv", "json")

# Counts of readers, cards and open findings by severity; the two times are the host's last
# message of any kind and its last status document.
HOST_COLUMNS = (
    *("id", "hostname", "site", "presence", "last_seen", "last_status_at"),
    *("readers", "cards", "cryptolib_version", "pcsc_available", "critical", "warning", "info"),
)
# One row per card: every CPS card remembered, in a reader now (``in_reader`` true) or not,
# then the cards in a reader without a serial. ``expires`` is the earliest notAfter of its
# certificates; the PIN's tries as the agent last read them (0 left: blocked; empty: not
# reported); host, site, reader and ``last_seen`` say where it was last seen and when;
# ``status`` is active, superseded (by the card ``superseded_by``) or retired.
PIN_COLUMNS = ("pin_tries_left", "pin_tries_max")
CARD_COLUMNS = (
    *("serial", "kind", "surname", "given_name", "id_nat", "profession", "expires", "days_left"),
    *PIN_COLUMNS,
    *("in_reader", "host", "host_id", "site", "reader", "last_seen", "status", "superseded_by"),
)
# As ``rules.readiness.readiness_rows`` makes them, the ``readiness --csv`` columns.
READINESS_COLUMNS = REPORT_FIELDS
LATEST = datetime.max.replace(tzinfo=UTC)
# OWASP's "CSV Injection" page (owasp.org/www-community/attacks/CSV_Injection): a cell that
# starts with one of these may be read as a formula; ASVS 5.0 (V1.2.10) adds NUL. The page's
# other advice, that a separator or quote must not start a new cell, is RFC 4180 quoting.
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r", "\0")


class ExportError(Exception):
    """The export cannot be written where it was asked to go."""


# --- rows ---------------------------------------------------------------------------------


def hosts(store: Store, site: str | None = None) -> list[Row]:
    """Every host, by site and name; with ``site``, only that site's (any case, accents and
    spacing)."""
    rows = [_host_row(row) for row in store.hosts()]
    return [row for row in rows if site is None or same_site(site, row["site"])]


def cards(store: Store, now: datetime, thresholds: Thresholds) -> list[Row]:
    """Every card the fleet knows, soonest expiry first: each CPS card it remembers, in a
    reader now (``in_reader``) or where it was last seen, with its ``status``; then the cards
    in a reader it cannot remember (no serial: not a CPS card, or one it could not read).

    ``status``: ``active``; ``superseded`` by a newer card of its holder (``superseded_by``);
    ``retired``, unseen for ``card_retire_after_days``. Sites are where each was last seen.
    """
    current = fleet.current_cards(store.database)
    in_readers = {(row["serial"], row["host_id"]): row for row in current if row["serial"]}
    rows = []
    known = set()
    for sighting in store.card_sightings():
        known.add(sighting["serial"])
        reading = in_readers.get((sighting["serial"], sighting["host_id"]))
        rows.append(_remembered_row(sighting, reading, now, thresholds))
    for row in current:
        if row["serial"] not in known:
            rows.append(_card_row(row, now, thresholds.zone))
    return sorted(rows, key=lambda row: (row["expires"] or LATEST, row["serial"] or ""))


CARD_STATUSES = ("active", "superseded", "retired")


def readiness(
    store: Store,
    now: datetime,
    thresholds: Thresholds,
    key: bytes | None = None,
    site: str | None = None,
) -> list[Row]:
    """Each professional of the roster (of ``site``), as ``readiness_rows`` decides.

    ``key`` is the fleet's pseudonym key when agents pseudonymise idNats.
    """
    professionals = load_professionals(store.database, site)
    earlier = remembered(store.card_sightings(), now, thresholds)
    return readiness_rows(professionals, store.host_views(), now, thresholds, earlier, key)


def _host_row(row: Row) -> Row:
    times = {name: optional_time(row[name]) for name in ("last_seen", "last_status_at")}
    return {column: times.get(column, row.get(column)) for column in HOST_COLUMNS}


def _card_row(row: Row, now: datetime, zone: tzinfo) -> Row:
    expires = optional_time(row["expires"])
    return {
        **{name: row[name] for name in ("serial", "kind", "surname", "given_name", "id_nat")},
        "profession": row["profession"],
        "expires": expires,
        "days_left": days_left(expires, now, zone),
        **{name: row[name] for name in PIN_COLUMNS},
        "in_reader": True,
        **_where(
            row["host"],
            row["host_id"],
            row["site"],
            row["reader"],
            optional_time(row["last_status_at"]),
        ),
        "status": "active",
        "superseded_by": None,
    }


def _remembered_row(row: Row, reading: Row | None, now: datetime, thresholds: Thresholds) -> Row:
    """A card of ``card_sightings``; ``reading``: its row in a reader now, if it is."""
    expires, last_seen = optional_time(row["not_after"]), optional_time(row["last_seen"])
    holder = {name: row[name] for name in ("surname", "given_name", "profession")}
    if reading is not None and not any(holder.values()):  # remembered by an older controller
        holder = {name: reading[name] for name in holder}
    if reading is not None:
        last_seen = optional_time(reading["last_status_at"]) or last_seen
    status = "superseded" if row["superseded_by"] else "active"
    age = timedelta(days=thresholds.card_retire_after_days)
    if status == "active" and reading is None and last_seen is not None and now - last_seen >= age:
        status = "retired"
    return {
        **{"serial": row["serial"], "kind": row["kind"]},
        **{"surname": holder["surname"], "given_name": holder["given_name"]},
        **{"id_nat": row["id_nat"], "profession": holder["profession"], "expires": expires},
        "days_left": days_left(expires, now, thresholds.zone),
        **{name: row[name] for name in PIN_COLUMNS},
        "in_reader": reading is not None,
        **_where(row["host"], row["host_id"], row["site"], row["reader"], last_seen),
        "status": status,
        "superseded_by": row["superseded_by"],
    }


def _where(
    host: str, host_id: str, site: str | None, reader: str, last_seen: datetime | None
) -> Row:
    return dict(host=host, host_id=host_id, site=site, reader=reader, last_seen=last_seen)


# --- files --------------------------------------------------------------------------------


def write_csv(
    rows: Iterable[Row], columns: Sequence[str], stream: TextIO, lineterminator: str = "\r\n"
) -> None:
    """RFC 4180 with a header row of ``columns``; open files with ``newline=""``."""
    writer = csv.writer(stream, lineterminator=lineterminator)
    writer.writerow(columns)
    writer.writerows([_csv_value(row[column]) for column in columns] for row in rows)


def write_json(rows: Iterable[Row], stream: TextIO) -> None:
    """A JSON list of the rows, one key per column, times as ISO 8601 UTC text."""
    json.dump(list(rows), stream, indent=2, ensure_ascii=False, default=_json_value)
    stream.write("\n")


def write(rows: list[Row], columns: Sequence[str], form: Format, stream: TextIO) -> None:
    """The rows as ``form``: CSV of ``columns``, or JSON of the same keys in the same order."""
    if form == "csv":
        write_csv(rows, columns, stream)
    else:
        write_json([{column: row[column] for column in columns} for row in rows], stream)


def save(rows: list[Row], columns: Sequence[str], form: Format, path: Path) -> None:
    """Write to a temporary file beside ``path``, then rename it: ``path`` is whole or untouched.

    The file is readable by its owner only: it holds names and idNats.
    """
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _cannot(path, error) from error
    temporary = Path(name)
    try:
        with open(handle, "w", encoding="utf-8", newline="") as stream:
            write(rows, columns, form, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _cannot(path, error) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _cannot(path: Path, error: OSError) -> ExportError:
    return ExportError(f"cannot write {path}: {error.strerror or error}")


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _stamp(value)
    if isinstance(value, str):
        return neutralised(value)
    return "" if value is None else value


def neutralised(text: str) -> str:
    """``text`` as a spreadsheet shows it, never as a formula it runs: ``'`` before a lead.

    Stricter than OWASP, which looks at the first character only: a lead after leading
    whitespace counts too, since an import that trims spaces (LibreOffice's "Trim spaces")
    brings it to the front.
    """
    risky = text.startswith(FORMULA_LEADS) or text.lstrip().startswith(FORMULA_LEADS)
    return f"'{text}" if risky else text


def _json_value(value: Any) -> str:
    if isinstance(value, datetime):
        return _stamp(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
