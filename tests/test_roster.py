"""The roster CSV: its format, every bad row reported by line, and an import that replaces all."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cpsfleet.controller.db.store import Store
from cpsfleet.controller.filters import same_site
from cpsfleet.controller.intake.roster import (
    COLUMNS,
    PROFESSIONS,
    Professional,
    RosterError,
    import_roster,
    load_professionals,
    parse_roster,
    read_roster,
)

SAMPLE = Path(__file__).parent.parent / "docs" / "roster-sample.csv"
NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
HEADER = ",".join(COLUMNS)
DOCTOR_ROW = "DONNAT-GADY,Isabelle,médecin,10002813839,,Lyon,oui,oui,oui"
NURSE_ROW = "MARTIN,Claire,infirmière,,691234567,Lyon,non,yes,"
DOCTOR = Professional(
    surname="DONNAT-GADY",
    given_name="Isabelle",
    profession="doctor",
    site="Lyon",
    rpps="10002813839",
    ecps_activated=True,
    mobile_on_file=True,
    email_on_file=True,
)
NURSE = Professional(
    surname="MARTIN",
    given_name="Claire",
    profession="nurse",
    site="Lyon",
    adeli="691234567",
    mobile_on_file=True,
)


def roster(*rows: str, header: str = HEADER) -> str:
    return "\n".join((header, *rows)) + "\n"


def problems(text: str) -> tuple[str, ...]:
    with pytest.raises(RosterError) as caught:
        parse_roster(text)
    return caught.value.problems


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    with Store(database) as opened:
        yield opened


# --- valid rosters ------------------------------------------------------------------------


def test_rows_become_professionals_with_their_id_nat() -> None:
    assert parse_roster(roster(DOCTOR_ROW, NURSE_ROW)) == [DOCTOR, NURSE]
    assert DOCTOR.id_nat == "810002813839"
    assert NURSE.id_nat == "0691234567"


def test_semicolons_bom_crlf_and_any_column_order_are_accepted() -> None:
    columns = list(reversed(COLUMNS))
    header = ";".join(column.upper() for column in columns)
    values = dict(zip(COLUMNS, DOCTOR_ROW.split(","), strict=True))
    row = ";".join(values[column] for column in columns)
    text = "\ufeff" + header + "\r\n" + row + "\r\n"
    assert parse_roster(text) == [DOCTOR]


def test_blank_lines_and_empty_rows_are_skipped() -> None:
    assert parse_roster(roster("", DOCTOR_ROW, ",,,,,,,,", "  ", NURSE_ROW, "")) == [DOCTOR, NURSE]


@pytest.mark.parametrize("spelling", sorted(PROFESSIONS))
def test_every_profession_spelling_maps_to_its_kind(spelling: str) -> None:
    row = DOCTOR_ROW.replace("médecin", spelling.upper())
    assert parse_roster(roster(row))[0].profession == PROFESSIONS[spelling]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("oui", True), ("YES", True), ("true", True), ("1", True)]
    + [("non", False), ("No", False), ("false", False), ("0", False), ("", False)],
)
def test_booleans(text: str, expected: bool) -> None:
    row = f"DONNAT-GADY,Isabelle,médecin,10002813839,,Lyon,{text},{text},{text}"
    professional = parse_roster(roster(row))[0]
    assert professional.ecps_activated is professional.mobile_on_file is expected
    assert professional.email_on_file is expected


def test_adeli_letters_are_upper_cased() -> None:
    row = "MASSEUR,Honoré,nurse,,0b7010446,Lyon,,,"
    assert parse_roster(roster(row))[0].id_nat == "00B7010446"


def test_the_sample_imports(store: Store) -> None:
    professionals = read_roster(SAMPLE)
    assert {p.profession for p in professionals} == {"doctor", "nurse"}
    assert any(p.adeli for p in professionals) and any(p.rpps for p in professionals)
    assert import_roster(store.database, professionals, NOW) == (len(professionals), 0)
    assert load_professionals(store.database) == sorted(
        professionals, key=lambda p: (p.site, p.surname, p.given_name)
    )


# --- bad rows -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (",Isabelle,médecin,10002813839,,Lyon,,,", "surname is empty"),
        ("DONNAT,,médecin,10002813839,,Lyon,,,", "given_name is empty"),
        ("DONNAT,Isabelle,médecin,10002813839,,,,,", "site is empty"),
        ("DONNAT,Isabelle,dentiste,10002813839,,Lyon,,,", "profession 'dentiste' is not known"),
        ("DONNAT,Isabelle,médecin,1234,,Lyon,,,", "rpps '1234' must be 11 digits"),
        ("DONNAT,Isabelle,médecin,1000281383A,,Lyon,,,", "rpps '1000281383A' must be 11 digits"),
        ("MARTIN,Claire,nurse,,69-123456,Lyon,,,", "adeli '69-123456' must be 9 letters or digits"),
        ("MARTIN,Claire,nurse,,69123456,Lyon,,,", "may have dropped a leading zero"),
        ("MARTIN,Claire,nurse,10002813839,691234567,Lyon,,,", "exactly one of rpps and adeli"),
        ("MARTIN,Claire,nurse,,,Lyon,,,", "give exactly one of rpps and adeli (found neither)"),
        ("MARTIN,Claire,nurse,,691234567,Lyon,peut-être,,", "ecps_activated 'peut-être' must be"),
        ("MARTIN,Claire,nurse,,691234567,Lyon,,x,", "mobile_on_file 'x' must be oui/non"),
        ("MARTIN,Claire,nurse,,691234567,Lyon,,,2", "email_on_file '2' must be"),
        ("MARTIN,Claire,nurse,,691234567,Lyon", "6 fields where the header has 9"),
        ("MARTIN,Claire,nurse,,691234567,Lyon,,,,", "10 fields where the header has 9"),
    ],
)
def test_a_bad_row_is_reported_with_its_line_number(row: str, message: str) -> None:
    (problem,) = problems(roster(DOCTOR_ROW, "", row))
    assert problem.startswith("line 4: ")
    assert message in problem


def test_every_fault_of_every_bad_row_is_reported_in_line_order() -> None:
    text = roster(
        "DONNAT,Isabelle,médecin,1234,,Lyon,,,",
        DOCTOR_ROW,
        '"MARTIN\nCLAIRE",Claire,dentiste,,,,,,',  # a quoted field spans lines 4 and 5
        NURSE_ROW,
        "X,Y,nurse,,691234567,Lyon,,,maybe",
    )
    found = problems(text)
    assert [problem.split(":")[0] for problem in found] == ["line 2", *["line 4"] * 3, "line 7"]
    assert any("profession 'dentiste'" in problem for problem in found)
    assert any("site is empty" in problem for problem in found)
    assert (
        "line 7: email_on_file 'maybe' must be oui/non, yes/no, true/false, 1/0 or empty" in found
    )


def test_a_professional_listed_twice_is_a_bad_row() -> None:
    found = problems(roster(DOCTOR_ROW, NURSE_ROW, DOCTOR_ROW.replace("Isabelle", "Isa")))
    assert found == ("line 4: RPPS 10002813839 is already on line 2",)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (HEADER.replace(",site", ""), "line 1: column 'site' is missing"),
        (HEADER + ",notes", "line 1: column 'notes' is not known"),
        (HEADER + ",rpps", "line 1: column 'rpps' appears more than once"),
    ],
)
def test_a_bad_header_is_reported_on_line_1(header: str, message: str) -> None:
    found = problems(roster(DOCTOR_ROW, header=header))
    assert found[0].startswith(message)
    assert HEADER in found[0]  # says what the header must be


@pytest.mark.parametrize("text", ["", "\n\n", ";;;\n"])
def test_a_file_without_header_is_refused(text: str) -> None:
    assert problems(text)[0].startswith("line 1: no header")


def test_a_header_without_rows_is_refused_rather_than_emptying_the_roster() -> None:
    assert "no professional" in problems(roster())[0]


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(roster(DOCTOR_ROW, NURSE_ROW).encode("latin-1"))
    with pytest.raises(RosterError) as caught:
        read_roster(path)
    assert caught.value.problems[0].startswith("line 2: not UTF-8")


def test_a_missing_file_is_a_roster_error(tmp_path: Path) -> None:
    with pytest.raises(RosterError, match="cannot read"):
        read_roster(tmp_path / "absent.csv")


# --- the professionals table --------------------------------------------------------------


def test_reimport_replaces_the_roster(store: Store) -> None:
    import_roster(store.database, [DOCTOR, NURSE], NOW)
    other = Professional("ROUSSEAU", "Paul", "doctor", "Grenoble", rpps="10003456789")
    assert import_roster(store.database, [other], NOW) == (1, 2)
    assert load_professionals(store.database) == [other]
    row = store.database.execute("select id_nat, imported_at from professionals").fetchone()
    assert row == ("810003456789", "2026-11-27T10:00:00Z")


def test_a_failing_import_leaves_the_previous_roster(store: Store) -> None:
    import_roster(store.database, [DOCTOR], NOW)
    with pytest.raises(sqlite3.IntegrityError):
        import_roster(store.database, [NURSE, NURSE], NOW)  # same primary key twice
    assert load_professionals(store.database) == [DOCTOR]


def test_a_bad_file_writes_nothing(store: Store, tmp_path: Path) -> None:
    import_roster(store.database, [DOCTOR], NOW)
    path = tmp_path / "bad.csv"
    path.write_text(roster(NURSE_ROW, "X,Y,nurse,,1,Lyon,,,"), encoding="utf-8")
    with pytest.raises(RosterError):
        import_roster(store.database, read_roster(path), NOW)
    assert load_professionals(store.database) == [DOCTOR]


def test_load_professionals_by_site(store: Store) -> None:
    other = Professional("ROUSSEAU", "Paul", "doctor", "Grenoble", rpps="10003456789")
    import_roster(store.database, [DOCTOR, NURSE, other], NOW)
    assert load_professionals(store.database, "grenoble") == [other]
    assert load_professionals(store.database, "Lyon") == [DOCTOR, NURSE]


@pytest.mark.parametrize(
    ("roster_site", "host_site", "same"),
    [
        ("Lyon Part-Dieu", "Lyon Part-Dieu", True),
        ("lyon  part-dieu ", "LYON Part-Dieu", True),
        ("Lyon", "Lyon Part-Dieu", False),
        ("Lyon", None, False),
        ("saint-etienne", "Saint-Étienne", True),
        ("SAINT-ÉTIENNE", "Saint-Étienne", True),
        ("Saint-E\u0301tienne", "Saint-Étienne", True),  # é as e and a combining accent
        ("Saint-Etienne", "Saint-Estève", False),
        ("annecy", "Annecy", True),
    ],
)
def test_site_names_match_whatever_the_case_accents_and_spacing(
    roster_site: str, host_site: str | None, same: bool
) -> None:
    assert same_site(roster_site, host_site) is same
