"""The SSTI's roster of health professionals: a CSV file in, the ``professionals`` table out.

The file is UTF-8 (a byte-order mark is fine), comma- or semicolon-separated
(whichever the header line uses), with a header row naming these columns in
any order, each exactly once::

    surname,given_name,profession,rpps,adeli,site,ecps_activated,mobile_on_file,email_on_file

- ``profession``: médecin / medecin / médecin du travail / doctor, or infirmier /
  infirmière / infirmier en santé au travail / nurse (any case). Other
  professions are refused: the activation path is only known for these two.
- ``rpps`` (11 digits) or ``adeli`` (9 letters or digits): exactly one of them.
  The professional's idNat, which their card's certificates carry, is "8" + RPPS
  or "0" + ADELI.
- ``site``: where they work, spelt as the agents' ``site`` label (case and
  spacing do not matter).
- ``ecps_activated``, ``mobile_on_file``, ``email_on_file``: oui/non, yes/no,
  true/false, 1/0; empty means no.

Blank lines are skipped. Every bad row is reported with its line number before
anything is written, and an import replaces the whole roster in one
transaction: the file is the truth, so someone who left disappears with it.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from cpsfleet.controller.db import professionals as professionals_table
from cpsfleet.controller.db.connect import Database
from cpsfleet.controller.filters import same_site
from cpsfleet.schemas.times import format_utc

Kind = Literal["doctor", "nurse"]
KINDS: tuple[Kind, ...] = ("doctor", "nurse")

COLUMNS = (
    *("surname", "given_name", "profession", "rpps", "adeli", "site"),
    *("ecps_activated", "mobile_on_file", "email_on_file"),
)

# Spellings of the two professions the activation flowchart knows, after casefold().
PROFESSIONS: dict[str, Kind] = {
    "médecin": "doctor",
    "medecin": "doctor",
    "médecin du travail": "doctor",
    "medecin du travail": "doctor",
    "doctor": "doctor",
    "infirmier": "nurse",
    "infirmière": "nurse",
    "infirmiere": "nurse",
    "infirmier en santé au travail": "nurse",
    "infirmière en santé au travail": "nurse",
    "nurse": "nurse",
}
BOOLEANS = {
    **dict.fromkeys(("oui", "yes", "true", "1"), True),
    **dict.fromkeys(("non", "no", "false", "0", ""), False),
}
RPPS = re.compile(r"[0-9]{11}")
ADELI = re.compile(r"[0-9A-Z]{9}")
ID_NAT_PREFIX = {"rpps": "8", "adeli": "0"}


class RosterError(ValueError):
    """The roster cannot be imported; ``problems`` lists every fault, each with its line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Professional:
    """A doctor or nurse of the SSTI, as the roster describes them."""

    surname: str
    given_name: str
    profession: Kind
    site: str
    rpps: str | None = None
    adeli: str | None = None
    ecps_activated: bool = False
    mobile_on_file: bool = False
    email_on_file: bool = False

    @property
    def id_nat(self) -> str:
        """The national identifier their card's certificates carry: "8" + RPPS or "0" + ADELI."""
        if self.rpps:
            return ID_NAT_PREFIX["rpps"] + self.rpps
        return ID_NAT_PREFIX["adeli"] + (self.adeli or "")


class ImportResult(NamedTuple):
    imported: int
    replaced: int


def _fold(text: str) -> str:
    """A profession as typed, case-, accent-form- and spacing-insensitive: "Médecin  du travail"."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


# --- reading the CSV ---------------------------------------------------------------------


def read_roster(path: Path) -> list[Professional]:
    """The professionals of the CSV file at ``path``; RosterError lists every bad row."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise RosterError([f"cannot read {path}: {error.strerror or error}"]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise RosterError(
            [f"line {line}: not UTF-8 ({error.reason}): save the file as CSV UTF-8"]
        ) from None
    return parse_roster(text)


def parse_roster(text: str) -> list[Professional]:
    """The professionals of a roster's text; RosterError lists every bad row."""
    records = _records(text.removeprefix("\ufeff"))
    if not records:
        raise RosterError([f"line 1: no header: the first line must name the columns {_names()}"])
    (_, header), rows = records[0], records[1:]
    parsed, faults = _parse_rows(rows, _columns(header))
    if faults:
        in_order = sorted(faults, key=lambda fault: fault[0])
        raise RosterError([f"line {line}: {fault}" for line, fault in in_order])
    if not parsed:
        raise RosterError(["the roster has a header but no professional: nothing to import"])
    return [professional for _, professional in parsed]


Numbered = tuple[int, str]


def _parse_rows(
    rows: list[tuple[int, list[str]]], columns: list[str]
) -> tuple[list[tuple[int, Professional]], list[Numbered]]:
    """(line, professional) of the good rows, (line, fault) of every fault found."""
    parsed, faults = [], []
    for line, cells in rows:
        professional, problems = _parse_row(cells, columns)
        faults += [(line, problem) for problem in problems]
        if professional is not None:
            parsed.append((line, professional))
    return parsed, faults + _duplicates(parsed)


def _records(text: str) -> list[tuple[int, list[str]]]:
    """(first line, cells) of each non-blank record; a quoted field may span lines."""
    first_line = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";" if ";" in first_line else ",")
    records, line = [], 1
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                records.append((line, cells))
            line = reader.line_num + 1
    except csv.Error as error:
        raise RosterError([f"line {reader.line_num}: not valid CSV: {error}"]) from None
    return records


def _names() -> str:
    return ",".join(COLUMNS)


def _columns(header: list[str]) -> list[str]:
    columns = [cell.strip().casefold() for cell in header]
    missing = [name for name in COLUMNS if name not in columns]
    unknown = [name for name in columns if name not in COLUMNS]
    twice = sorted({name for name in columns if columns.count(name) > 1})
    faults = [
        *(f"column {name!r} is missing" for name in missing),
        *(f"column {name!r} is not known" for name in unknown),
        *(f"column {name!r} appears more than once" for name in twice),
    ]
    if faults:
        raise RosterError([f"line 1: {fault}; the header must be {_names()}" for fault in faults])
    return columns


# --- one row -----------------------------------------------------------------------------


class _Invalid(ValueError):
    pass


def _required(name: str, value: str) -> str:
    if not value:
        raise _Invalid(f"{name} is empty")
    return value


def _profession(name: str, value: str) -> Kind:
    kind = PROFESSIONS.get(_fold(value))
    if kind is None:
        raise _Invalid(
            f"profession {value!r} is not known: use médecin (or doctor) or infirmier / "
            "infirmière (or nurse)"
        )
    return kind


def _rpps(name: str, value: str) -> str | None:
    if value and not RPPS.fullmatch(value):
        raise _Invalid(f"rpps {value!r} must be 11 digits")
    return value or None


def _adeli(name: str, value: str) -> str | None:
    if value and not ADELI.fullmatch(value.upper()):
        hint = " (a spreadsheet may have dropped a leading zero)" if value.isdigit() else ""
        raise _Invalid(f"adeli {value!r} must be 9 letters or digits{hint}")
    return value.upper() or None


def _boolean(name: str, value: str) -> bool:
    answer = BOOLEANS.get(value.casefold())
    if answer is None:
        raise _Invalid(f"{name} {value!r} must be oui/non, yes/no, true/false, 1/0 or empty")
    return answer


FIELDS: dict[str, Callable[[str, str], Any]] = {
    "surname": _required,
    "given_name": _required,
    "profession": _profession,
    "rpps": _rpps,
    "adeli": _adeli,
    "site": _required,
    "ecps_activated": _boolean,
    "mobile_on_file": _boolean,
    "email_on_file": _boolean,
}


def _parse_row(cells: list[str], columns: list[str]) -> tuple[Professional | None, list[str]]:
    if len(cells) != len(columns):
        return None, [f"{len(cells)} fields where the header has {len(columns)}"]
    values = {name: cell.strip() for name, cell in zip(columns, cells, strict=True)}
    parsed: dict[str, Any] = {}
    faults = []
    for name, parse in FIELDS.items():
        try:
            parsed[name] = parse(name, values[name])
        except _Invalid as fault:
            faults.append(str(fault))
    faults += _identifier_faults(values)
    return (None, faults) if faults else (Professional(**parsed), [])


def _identifier_faults(values: dict[str, str]) -> list[str]:
    given = [name for name in ("rpps", "adeli") if values[name]]
    if len(given) == 1:
        return []
    found = "both" if given else "neither"
    return [f"give exactly one of rpps and adeli (found {found})"]


def _duplicates(professionals: Iterable[tuple[int, Professional]]) -> list[Numbered]:
    first: dict[str, int] = {}
    faults = []
    for line, professional in professionals:
        id_nat = professional.id_nat
        if id_nat in first:
            faults.append((line, f"{_identifier(professional)} is already on line {first[id_nat]}"))
        first.setdefault(id_nat, line)
    return faults


def _identifier(professional: Professional) -> str:
    return f"RPPS {professional.rpps}" if professional.rpps else f"ADELI {professional.adeli}"


# --- the professionals table -------------------------------------------------------------


def import_roster(
    db: Database, professionals: Sequence[Professional], now: datetime
) -> ImportResult:
    """Replace the roster with ``professionals`` in one transaction."""
    stamp = format_utc(now)
    rows = [_row(professional, stamp) for professional in professionals]
    replaced = professionals_table.replace(db, rows)
    return ImportResult(imported=len(rows), replaced=replaced)


def _row(professional: Professional, stamp: str) -> dict[str, Any]:
    return {
        "id_nat": professional.id_nat,
        **{name: getattr(professional, name) for name in COLUMNS},
        "imported_at": stamp,
    }


def load_professionals(db: Database, site: str | None = None) -> list[Professional]:
    """The roster, by site then name; with ``site``, only the professionals of that site."""
    professionals = [_professional(row) for row in professionals_table.rows(db)]
    return [p for p in professionals if site is None or same_site(site, p.site)]


def _professional(row: dict[str, Any]) -> Professional:
    return Professional(
        surname=row["surname"],
        given_name=row["given_name"],
        profession=PROFESSIONS[row["profession"]],
        site=row["site"],
        rpps=row["rpps"],
        adeli=row["adeli"],
        ecps_activated=bool(row["ecps_activated"]),
        mobile_on_file=bool(row["mobile_on_file"]),
        email_on_file=bool(row["email_on_file"]),
    )
