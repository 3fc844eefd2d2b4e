"""CSV, XLSX and JSON exports of the fleet: its hosts, its cards, and each professional's
readiness.

``hosts``, ``cards`` and ``readiness`` return rows: dicts whose keys are, in order,
``HOST_COLUMNS``, ``CARD_COLUMNS`` and ``READINESS_COLUMNS``. They read through the
store's queries and ``rules.readiness``; they write nothing. ``render`` turns rows into
the bytes of a file, ``write`` into text on a stream (the text formats), ``save`` into a file
that only appears once complete.

The formats (``FORMATS``):

- ``csv``: RFC 4180 (comma, CRLF, quotes where needed) in UTF-8 with a header row, booleans
  ``true`` / ``false``, unknown values empty, times ISO 8601 UTC (``2026-11-27T20:56:10Z``).
  For scripts.
- ``csv-excel``: the same values with ``;`` between them and a UTF-8 byte order mark first,
  which Excel set for France (or any locale whose list separator is ``;``) opens on a
  double-click with its columns and accents right.
- ``xlsx``: an Excel workbook of one sheet, the same columns, typed: numbers, booleans, and
  times as dates and times of the fleet's time zone (Excel has no time zone: the header of each
  time column says which one in a comment), a bold header row that stays in view.
- ``json``: a list of objects with the same keys, unknown values ``null``, times as in CSV.

Names, hostnames and sites come from the agents' documents, so a spreadsheet opening an export
must not run them as formulas: in CSV a text cell that could start one gets a leading ``'``
(see ``FORMULA_LEADS``); in XLSX every text is a text cell, and one that could start a formula
is also marked as Excel marks a text typed with a leading ``'`` (``quotePrefix``), so that
editing it keeps it text. Numbers stay numbers (days left -3 is ours, not an agent's text),
and the JSON keeps every value exactly.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import IO, Any, Literal, TextIO

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.comments import Comment
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from cpsfleet.controller.db import fleet
from cpsfleet.controller.db.queries import optional_time
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.filters import same_site
from cpsfleet.controller.intake.roster import load_professionals
from cpsfleet.controller.rules.findings import Thresholds
from cpsfleet.controller.rules.readiness import REPORT_FIELDS, readiness_rows, remembered
from cpsfleet.schemas.times import days_left, in_zone

Row = dict[str, Any]
Format = Literal["csv", "csv-excel", "xlsx", "json"]
FORMATS: tuple[Format, ...] = ("csv", "csv-excel", "xlsx", "json")
# The binary ones: not for a terminal.
BINARY_FORMATS: tuple[Format, ...] = ("xlsx",)
SUFFIXES: dict[Format, str] = {"csv": ".csv", "csv-excel": ".csv", "xlsx": ".xlsx", "json": ".json"}
MEDIA_TYPES: dict[Format, str] = {
    "csv": "text/csv; charset=utf-8",
    "csv-excel": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
}

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
# The columns of times (aware datetimes, or ISO 8601 UTC text in the readiness rows) and of
# dates (ISO 8601 text in the readiness rows, already of the fleet's time zone): the XLSX
# types their cells.
TIME_COLUMNS = frozenset({"last_seen", "last_status_at", "expires", "last_seen_at"})
DAY_COLUMNS = frozenset({"card_expires", "card_updated"})
XLSX_TIME = "yyyy-mm-dd hh:mm:ss"
XLSX_DAY = "yyyy-mm-dd"


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
    rows: Iterable[Row],
    columns: Sequence[str],
    stream: TextIO,
    lineterminator: str = "\r\n",
    delimiter: str = ",",
) -> None:
    """RFC 4180 with a header row of ``columns``; open files with ``newline=""``."""
    writer = csv.writer(stream, lineterminator=lineterminator, delimiter=delimiter)
    writer.writerow(columns)
    writer.writerows([_csv_value(row[column]) for column in columns] for row in rows)


def write_excel_csv(rows: Iterable[Row], columns: Sequence[str], stream: TextIO) -> None:
    """``write_csv`` with ``;`` separators after a byte order mark, for a UTF-8 ``stream``."""
    stream.write("\ufeff")
    write_csv(rows, columns, stream, delimiter=";")


def write_json(rows: Iterable[Row], stream: TextIO) -> None:
    """A JSON list of the rows, one key per column, times as ISO 8601 UTC text."""
    json.dump(list(rows), stream, indent=2, ensure_ascii=False, default=_json_value)
    stream.write("\n")


def write_xlsx(
    rows: Iterable[Row], columns: Sequence[str], stream: IO[bytes], zone: tzinfo, sheet: str
) -> None:
    """An Excel workbook of one sheet named ``sheet``: a bold, frozen header row of ``columns``,
    then one row per row, its times in ``zone`` (see the module's description)."""
    book = Workbook()
    table = book.active
    assert table is not None  # a new workbook has its sheet
    table.title = sheet
    bold = Font(bold=True)
    for number, column in enumerate(columns, start=1):
        heading = table.cell(row=1, column=number, value=column)
        heading.font = bold
        if column in TIME_COLUMNS:
            heading.comment = Comment(
                f"Time in {zone} (the fleet's time zone), not UTC.", "cpsfleet"
            )
    widths = [len(column) for column in columns]
    for line, row in enumerate(rows, start=2):
        for number, column in enumerate(columns, start=1):
            text = row[column]
            value, number_format = _xlsx_value(column, text, zone)
            cell = table.cell(row=line, column=number, value=value)
            if isinstance(value, str):
                cell.data_type = "s"  # never a formula, whatever it starts with
                # As the text came, before a control character became U+FFFD.
                cell.quotePrefix = neutralised(text) != text
            if number_format is not None:
                cell.number_format = number_format
            shown = len(number_format) if number_format else len(str(value or ""))
            widths[number - 1] = max(widths[number - 1], shown)
    for number, width in enumerate(widths, start=1):
        table.column_dimensions[get_column_letter(number)].width = min(width, 50) + 2
    table.freeze_panes = "A2"
    table.auto_filter.ref = table.dimensions
    book.save(stream)


def write(rows: list[Row], columns: Sequence[str], form: Format, stream: TextIO) -> None:
    """The rows as text ``form``: CSV of ``columns``, or JSON of the same keys in the same
    order. XLSX is binary: ``render`` or ``save`` write it."""
    if form == "csv":
        write_csv(rows, columns, stream)
    elif form == "csv-excel":
        write_excel_csv(rows, columns, stream)
    elif form == "json":
        write_json([{column: row[column] for column in columns} for row in rows], stream)
    else:
        raise ValueError(f"{form} is not a text format")


def render(
    rows: list[Row],
    columns: Sequence[str],
    form: Format,
    zone: tzinfo = UTC,
    sheet: str = "export",
) -> bytes:
    """The file of the rows as ``form``; text in UTF-8. ``zone`` and ``sheet``: see
    ``write_xlsx``."""
    buffer = io.BytesIO()
    _write_file(rows, columns, form, buffer, zone, sheet)
    return buffer.getvalue()


def save(
    rows: list[Row],
    columns: Sequence[str],
    form: Format,
    path: Path,
    zone: tzinfo = UTC,
    sheet: str = "export",
) -> None:
    """Write to a temporary file beside ``path``, then rename it: ``path`` is whole or untouched.

    The file is readable by its owner only: it holds names and idNats.
    """
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _cannot(path, error) from error
    temporary = Path(name)
    try:
        with open(handle, "wb") as stream:
            _write_file(rows, columns, form, stream, zone, sheet)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _cannot(path, error) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_file(
    rows: list[Row],
    columns: Sequence[str],
    form: Format,
    stream: IO[bytes],
    zone: tzinfo,
    sheet: str,
) -> None:
    if form == "xlsx":
        write_xlsx(rows, columns, stream, zone, sheet)
        return
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    try:
        write(rows, columns, form, text)
        text.flush()
    finally:
        text.detach()


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


def _xlsx_value(column: str, value: Any, zone: tzinfo) -> tuple[Any, str | None]:
    """The value of a cell and its number format (None: Excel's general one)."""
    if column in TIME_COLUMNS and isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif column in DAY_COLUMNS and isinstance(value, str):
        value = date.fromisoformat(value)
    if isinstance(value, datetime):
        local = in_zone(value, zone) if value.tzinfo is not None else value
        return local.replace(tzinfo=None), XLSX_TIME
    if isinstance(value, date):
        return value, XLSX_DAY
    if isinstance(value, str):
        # XML 1.0 cannot carry most control characters (NUL...): each becomes U+FFFD.
        return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value), None
    return value, None


def _json_value(value: Any) -> str:
    if isinstance(value, datetime):
        return _stamp(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
