"""`cpsfleet controller export`: hosts, cards and readiness as CSV and JSON, on real SQLite
and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner, Result

from cpsfleet.controller.cli.exports import register
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.rules.readiness import REPORT_FIELDS
from cpsfleet.controller.web import exports
from cpsfleet.controller.web.exports import CARD_COLUMNS, HOST_COLUMNS, READINESS_COLUMNS
from cpsfleet.schemas import validate
from tests.test_readiness_cli import LYON, NOW, commands, grenoble, imported, lyon, stamp

app = typer.Typer()
register(app)

DOCTOR, NURSE, EXPIRED = "99213845", "10452278", "20991234"


@pytest.fixture
def database(database: str) -> str:
    """Lyon and Grenoble in the database fixture's new database."""
    with Store(database) as store:
        store.record_status(lyon(), NOW)
        store.record_status(grenoble(), NOW)
    return database


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def exported(what: str, database: str, *args: str) -> Result:
    result = run("export", what, "--database", str(database), *args)
    assert result.exit_code == 0, result.output
    return result


def as_csv(what: str, database: str, *args: str) -> tuple[tuple[str, ...], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(exported(what, database, *args).stdout))
    rows = list(reader)
    return tuple(reader.fieldnames or ()), rows


def as_json(what: str, database: str, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        exported(what, database, "--format", "json", *args).stdout
    )
    return rows


def test_every_export_command_has_help() -> None:
    found = commands(typer.main.get_command(app))  # type: ignore[arg-type]
    assert [name for name, _ in found] == [
        "export",
        "export cards",
        "export hosts",
        "export readiness",
    ]
    for name, command in found:
        assert command.help and command.help.strip(), f"{name} has no help"


# --- hosts --------------------------------------------------------------------------------


def test_hosts_csv(database: str) -> None:
    columns, rows = as_csv("hosts", database)
    assert columns == HOST_COLUMNS
    assert [row["hostname"] for row in rows] == ["ws-gre-01", "ws-lyon-07"]  # by site
    gre, lyon_host = rows
    assert (lyon_host["site"], lyon_host["readers"], lyon_host["cards"]) == (LYON, "4", "4")
    assert (lyon_host["pcsc_available"], lyon_host["last_status_at"]) == ("true", stamp(NOW))
    assert (gre["readers"], gre["cryptolib_version"], gre["presence"]) == ("0", "", "")


def test_csv_is_rfc_4180_utf_8(database: str) -> None:
    output = exported("cards", database).stdout_bytes
    assert output.startswith(b"serial,kind,surname,given_name,id_nat,profession,expires,")
    assert output.count(b"\r\n") == 5  # the header and four cards
    assert "Masseur-Kinésithérapeute".encode() in output


def test_hosts_json_of_one_site(database: str) -> None:
    rows = as_json("hosts", database, "--site", "lyon  PART-DIEU")
    assert [list(row) for row in rows] == [list(HOST_COLUMNS)]
    assert rows[0]["id"] == "3f9c1a7be2d04c55"
    assert (rows[0]["pcsc_available"], rows[0]["last_seen"]) == (True, stamp(NOW))
    assert as_json("hosts", database, "--site", "Vienne") == []


# --- cards --------------------------------------------------------------------------------


def test_cards_csv(database: str) -> None:
    columns, rows = as_csv("cards", database)
    assert columns == CARD_COLUMNS
    assert [row["serial"] for row in rows] == [EXPIRED, NURSE, DOCTOR, ""]  # soonest expiry first
    doctor = rows[2]
    assert {key: doctor[key] for key in ("surname", "given_name", "id_nat", "profession")} == {
        "surname": "DONNAT-GADY",
        "given_name": "ISABELLE",
        "id_nat": "810002813839",
        "profession": "Médecin",
    }
    assert (doctor["expires"], doctor["days_left"]) == (stamp(NOW + timedelta(days=200)), "200")
    assert (doctor["in_reader"], doctor["host"], doctor["site"]) == ("true", "ws-lyon-07", LYON)
    assert (doctor["reader"], doctor["last_seen"]) == ("Virtual PCD 00 00", stamp(NOW))
    assert int(rows[0]["days_left"]) < 0
    vitale = rows[3]
    assert (vitale["kind"], vitale["surname"], vitale["expires"]) == ("vitale2", "", "")


def test_cards_json_of_one_site(database: str) -> None:
    rows = as_json("cards", database, "--site", LYON)
    assert [list(row) for row in rows] == [list(CARD_COLUMNS)] * 4
    assert rows[0]["in_reader"] is True and rows[3]["days_left"] is None
    assert as_json("cards", database, "--site", "Grenoble") == []  # no reader there


def test_a_card_taken_out_of_its_reader_is_still_exported(database: str) -> None:
    """The doctor takes her card home: the export keeps it, where it was last seen."""
    document = lyon()
    doctor = document["readers"][0]
    doctor["state"], doctor["card"] = "empty", None
    with Store(database) as store:
        store.record_status(validate(document), NOW + timedelta(hours=1))
    rows = {row["serial"]: row for row in as_json("cards", database)}
    assert rows[DOCTOR] | {"days_left": None} == {
        "serial": DOCTOR,
        "kind": "cps3",
        "surname": "DONNAT-GADY",  # remembered from the certificates it had in the reader
        "given_name": "ISABELLE",
        "id_nat": "810002813839",
        "profession": "Médecin",
        "expires": stamp(NOW + timedelta(days=200)),
        "days_left": None,
        "pin_tries_left": 3,  # as the agent last read them
        "pin_tries_max": 3,
        "in_reader": False,
        "host": "ws-lyon-07",
        "host_id": "3f9c1a7be2d04c55",
        "site": LYON,
        "reader": "Virtual PCD 00 00",
        "last_seen": stamp(NOW),
        "status": "active",
        "superseded_by": None,
    }
    assert rows[NURSE]["in_reader"] is True
    assert rows[NURSE]["last_seen"] == stamp(NOW + timedelta(hours=1))
    _, remembered = as_csv("cards", database, "--site", LYON)
    assert [(r["serial"], r["in_reader"]) for r in remembered][2] == (DOCTOR, "false")


# --- readiness ----------------------------------------------------------------------------


def test_readiness_csv_and_json(database: str) -> None:
    columns, rows = as_csv("readiness", imported(database))
    assert columns == READINESS_COLUMNS == REPORT_FIELDS
    assert {row["surname"]: row["state"] for row in rows} == {
        "DONNAT-GADY": "ready",
        "MARTIN": "ready",
        "ROUSSEAU": "no_card",
        "BERNARD": "no_card",
    }
    rows_json = as_json("readiness", database)
    assert [row["surname"] for row in rows_json] == ["BERNARD", "ROUSSEAU", "DONNAT-GADY", "MARTIN"]
    doctor = rows_json[2]
    assert list(doctor) == list(REPORT_FIELDS)
    assert (doctor["state"], doctor["card_present"]) == ("ready", True)
    assert doctor["last_seen_at"] == stamp(NOW)
    expires = {row["surname"]: row["card_expires"] for row in rows}
    assert expires["MARTIN"] == (NOW + timedelta(days=20)).date().isoformat()
    assert expires["BERNARD"] == ""  # no card seen: unknown, empty as every unknown value


def test_readiness_of_one_site(database: str) -> None:
    _, rows = as_csv("readiness", imported(database), "--site", "grenoble")
    assert [(row["surname"], row["card_serial"]) for row in rows] == [
        ("BERNARD", ""),
        ("ROUSSEAU", ""),
    ]


def test_readiness_without_a_roster_is_a_header_only(database: str) -> None:
    assert exported("readiness", database).stdout == ",".join(REPORT_FIELDS) + "\n"


# --- output -------------------------------------------------------------------------------


def test_output_replaces_the_file_whole(database: str, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "cards.csv"
    target.write_text("an older export\n")
    result = exported("cards", database, "--output", str(target))
    assert result.stdout == ""
    assert [path.name for path in folder.iterdir()] == ["cards.csv"]  # no temporary file left
    with target.open(encoding="utf-8", newline="") as stream:
        assert [row["serial"] for row in csv.DictReader(stream)] == [EXPIRED, NURSE, DOCTOR, ""]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # names and idNats


def test_an_export_failing_midway_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "hosts.json"
    target.write_text("[]\n")
    with pytest.raises(KeyError):
        exports.save([{"id": "a"}], ("id", "site"), "json", target)
    assert target.read_text() == "[]\n"
    assert [path.name for path in tmp_path.iterdir()] == ["hosts.json"]


def test_output_into_a_missing_folder_is_a_one_line_error(database: str, tmp_path: Path) -> None:
    target = tmp_path / "absent" / "hosts.csv"
    result = run("export", "hosts", "--database", str(database), "--output", str(target))
    assert result.exit_code == 2
    assert result.stderr == f"error: cannot write {target}: No such file or directory\n"


def test_an_unknown_format_is_refused_before_anything_is_written(
    database: str, tmp_path: Path
) -> None:
    target = tmp_path / "cards.xml"
    for what in ("hosts", "cards", "readiness"):
        args = ("--database", str(database), "--format", "xml", "--output", str(target))
        result = run("export", what, *args)
        assert result.exit_code == 2
        formats = "csv, csv-excel, xlsx, json"
        assert result.stderr == f"error: --format must be one of {formats}, not 'xml'\n"
    assert not target.exists()


def test_a_missing_database_is_a_one_line_error(tmp_path: Path) -> None:
    for what in ("hosts", "cards", "readiness"):
        result = run("export", what, "--database", str(tmp_path / "absent.db"))
        assert result.exit_code == 2
        assert result.stderr.startswith("error: no controller database at")
        assert result.stderr.count("\n") == 1


# --- writers ------------------------------------------------------------------------------


def test_write_csv_values() -> None:
    paris = timezone(timedelta(hours=1))
    row = {"name": 'A, "B"\nC', "ok": False, "at": datetime(2026, 1, 2, 4, 5, 6, tzinfo=paris)}
    stream = io.StringIO(newline="")
    exports.write_csv([row | {"none": None}], ("at", "name", "ok", "none"), stream)
    assert stream.getvalue() == 'at,name,ok,none\r\n2026-01-02T03:05:06Z,"A, ""B""\nC",false,\r\n'


def test_write_json_values() -> None:
    stream = io.StringIO()
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    exports.write_json([{"at": at, "ok": True, "none": None, "name": "é"}], stream)
    assert json.loads(stream.getvalue()) == [
        {"at": "2026-01-02T03:04:05Z", "ok": True, "none": None, "name": "é"}
    ]
