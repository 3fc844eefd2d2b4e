"""The roster, readiness and forecast commands on a real database, through Typer's runner."""

from __future__ import annotations

import copy
import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner, Result

from cpsfleet.controller.cli.readiness import register
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.intake.roster import COLUMNS
from cpsfleet.controller.rules.findings import Thresholds
from cpsfleet.controller.rules.readiness import REPORT_FIELDS
from cpsfleet.controller.rules.words import day
from cpsfleet.i18n import medium_date
from cpsfleet.schemas import validate

EXAMPLES = Path(__file__).parent.parent / "cpsfleet" / "schemas" / "examples"
SAMPLE = Path(__file__).parent.parent / "docs" / "roster-sample.csv"
NOW = datetime.now(UTC)
DAY = timedelta(days=1)


def local(moment: datetime) -> date:
    """The day of ``moment`` in the fleet's time zone, as the listings tell days (from 23:00
    UTC in winter, Paris is already the next day)."""
    return moment.astimezone(Thresholds().zone).date()


LYON = "Lyon Part-Dieu"

app = typer.Typer()
register(app)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def with_dates(card: dict[str, Any], not_before: datetime, not_after: datetime) -> None:
    for certificate in card["certificates"]:
        certificate["not_before"], certificate["not_after"] = stamp(not_before), stamp(not_after)
        certificate["days_left"] = (not_after - NOW).days
        certificate["expired"] = not_after <= NOW


def lyon() -> dict[str, Any]:
    """The four-readers example with dates around now: the doctor's card valid for 200 days,
    the nurse's for 20, the ADELI card expired five days ago, and a Vitale card."""
    document: dict[str, Any] = json.loads((EXAMPLES / "status-four-readers.json").read_text())
    doctor, nurse, expired, _ = (reader["card"] for reader in document["readers"])
    with_dates(doctor, NOW - 100 * DAY, NOW + 200 * DAY)
    with_dates(nurse, NOW - 100 * DAY, NOW + 20 * DAY)
    with_dates(expired, NOW - 1000 * DAY, NOW - 5 * DAY)
    return validate(document)


def grenoble() -> dict[str, Any]:
    """A Grenoble workstation without reader nor Cryptolib."""
    document = copy.deepcopy(lyon())
    document["host"] |= {"id": "8d2e44a0c1b94f07", "hostname": "ws-gre-01", "site": "Grenoble"}
    document["readers"] = []
    document["cryptolib"] |= {"installed": False, "version": None, "evidence": []}
    document["cryptolib"] |= {"pkcs11_library": None, "pkcs11_library_present": False}
    document["cryptolib"]["cps_gestion"] = False
    return validate(document)


@pytest.fixture
def fleet(database: str) -> str:
    """The database with the statuses of Lyon's and Grenoble's workstations."""
    with Store(database) as store:
        store.record_status(lyon(), NOW)
        store.record_status(grenoble(), NOW)
    return database


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def imported(database: str, roster: Path = SAMPLE) -> str:
    result = run("roster", "import", str(roster), "--database", str(database))
    assert result.exit_code == 0, result.output
    return database


def readiness(database: str, *args: str) -> dict[str, dict[str, Any]]:
    result = run("readiness", "--database", str(database), "--json", *args)
    assert result.exit_code == 0, result.output
    return {row["surname"]: row for row in json.loads(result.stdout)}


def write(path: Path, *rows: str) -> Path:
    path.write_text("\n".join((",".join(COLUMNS), *rows)) + "\n", encoding="utf-8")
    return path


def commands(group: TyperGroup, prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((f"{prefix}{name}", command))
        if isinstance(command, TyperGroup):
            found += commands(command, f"{prefix}{name} ")
    return found


def test_every_command_has_help() -> None:
    found = commands(typer.main.get_command(app))  # type: ignore[arg-type]
    names = [name for name, _ in found]
    assert names == ["forecast", "readiness", "roster", "roster import", "roster list"]
    for name, command in found:
        assert command.help and command.help.strip(), f"{name} has no help"


# --- roster -------------------------------------------------------------------------------


def test_import_the_sample_and_list_it(fleet: str) -> None:
    result = run("roster", "import", str(SAMPLE), "--database", fleet)
    assert result.exit_code == 0, result.output
    assert result.stdout == "imported 4 professionals (the roster had 0)\n"
    listed = run("roster", "list", "--database", fleet, "--json")
    rows = json.loads(listed.stdout)
    assert [row["id_nat"] for row in rows] == [
        "0381234567",
        "810003456789",
        "810002813839",
        "810100452278",
    ]
    table = run("roster", "list", "--database", fleet).stdout
    assert "DONNAT-GADY" in table and "810002813839" in table


def test_a_bad_roster_imports_nothing_and_names_each_line(fleet: str, tmp_path: Path) -> None:
    imported(fleet)
    bad = write(
        tmp_path / "bad.csv",
        "DUPONT,Jean,médecin,10009999999,,Lyon,oui,oui,oui",
        "DURAND,Anne,médecin,1234,,Lyon,,,",
        "LEROY,Marc,kiné,10008888888,,Lyon,,,",
    )
    result = run("roster", "import", str(bad), "--database", fleet)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {bad}: nothing imported:\n")
    assert "  line 3: rpps '1234' must be 11 digits\n" in result.stderr
    assert "  line 4: profession 'kiné' is not known" in result.stderr
    listed = run("roster", "list", "--database", fleet, "--json")
    assert len(json.loads(listed.stdout)) == 4


def test_a_reimport_replaces_the_roster(fleet: str, tmp_path: Path) -> None:
    imported(fleet)
    one = write(tmp_path / "one.csv", "DUPONT,Jean,médecin,10009999999,,Lyon,oui,oui,oui")
    result = run("roster", "import", str(one), "--database", fleet)
    assert result.stdout == "imported 1 professional (the roster had 4)\n"
    listed = run("roster", "list", "--database", fleet, "--json")
    assert [row["surname"] for row in json.loads(listed.stdout)] == ["DUPONT"]


def test_import_takes_the_database_from_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "controller.toml"
    config.write_text(f'database = "{tmp_path / "configured.db"}"\n')
    result = run("roster", "import", str(SAMPLE), "--config", str(config))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "configured.db").is_file()


# --- readiness ----------------------------------------------------------------------------


def test_readiness_json(fleet: str) -> None:
    rows = readiness(imported(fleet))
    states = {surname: row["state"] for surname, row in rows.items()}
    assert states == {
        "DONNAT-GADY": "ready",
        "MARTIN": "ready",  # a working card, no e-CPS: advised, not required
        "ROUSSEAU": "no_card",
        "BERNARD": "no_card",
    }
    expires = {surname: row["card_expires"] for surname, row in rows.items()}
    assert expires == {
        "DONNAT-GADY": local(NOW + 200 * DAY).isoformat(),
        "MARTIN": local(NOW + 20 * DAY).isoformat(),
        "ROUSSEAU": None,
        "BERNARD": None,
    }
    assert "; advised too: e-CPS" in rows["MARTIN"]["next_step"]
    assert "mobile number and a valid e-mail" in rows["MARTIN"]["next_step"]  # no e-mail on file
    doctor = rows["DONNAT-GADY"]
    assert (doctor["last_seen_host"], doctor["card_present"]) == ("ws-lyon-07", True)
    assert doctor["last_seen_at"] == stamp(NOW)
    assert "form 201" in rows["BERNARD"]["next_step"]
    assert "Ordre des médecins" in rows["ROUSSEAU"]["next_step"]


def test_readiness_csv(fleet: str) -> None:
    result = run("readiness", "--database", str(imported(fleet)), "--csv")
    assert result.exit_code == 0, result.output
    reader = csv.DictReader(io.StringIO(result.stdout))
    rows = list(reader)
    assert tuple(reader.fieldnames or ()) == REPORT_FIELDS
    assert len(rows) == 4
    doctor = next(row for row in rows if row["surname"] == "DONNAT-GADY")
    assert (doctor["state"], doctor["card_present"]) == ("ready", "true")
    nurse = next(row for row in rows if row["surname"] == "BERNARD")
    assert nurse["card_serial"] == ""


def test_readiness_site_filter(fleet: str) -> None:
    rows = readiness(imported(fleet), "--site", "grenoble")
    assert sorted(rows) == ["BERNARD", "ROUSSEAU"]
    result = run("readiness", "--database", fleet, "--csv", "--site", LYON)
    assert [row["surname"] for row in csv.DictReader(io.StringIO(result.stdout))] == [
        "DONNAT-GADY",
        "MARTIN",
    ]


def test_readiness_table(fleet: str) -> None:
    result = run("readiness", "--database", str(imported(fleet)))
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0].split()
    assert header[-3:] == ["detail", "card", "expires"]  # "card expires": words, not keys
    assert "DONNAT-GADY" in result.stdout
    assert medium_date(local(NOW + 200 * DAY)) in result.stdout  # "Jun 21, 2027"
    empty = run("readiness", "--database", fleet, "--site", "Vienne")
    assert empty.stdout == "no professional at site 'Vienne'\n"


def test_a_nurse_whose_card_ends_in_ten_days_is_told_to_renew_it_first(database: str) -> None:
    document = lyon()
    nurse = document["readers"][1]["card"]
    with_dates(nurse, NOW - 100 * DAY, NOW + 10 * DAY)
    with Store(database) as store:
        store.record_status(validate(document), NOW)
    martin = readiness(imported(database))["MARTIN"]
    ends = local(NOW + 10 * DAY).isoformat()
    assert (martin["state"], martin["card_expires"]) == ("renew_soon", ends)
    assert martin["next_step"] == (
        f"renew the CPS card before it expires on {day(date.fromisoformat(ends))}: ask the "
        "Ordre national des infirmiers"
    )
    warned = run("readiness", "--database", database, "--severity", "warning")
    shown = medium_date(date.fromisoformat(ends))
    assert "Card expiring soon" in warned.stdout and shown in warned.stdout  # as words
    assert "DONNAT-GADY" not in warned.stdout


def test_e_cps_stands_in_for_a_missing_reader(fleet: str, tmp_path: Path) -> None:
    roster = write(tmp_path / "ecps.csv", "ROUSSEAU,Paul,médecin,10003456789,,Grenoble,oui,oui,oui")
    rousseau = readiness(imported(fleet, roster))["ROUSSEAU"]
    assert rousseau["state"] == "ready_ecps"
    assert rousseau["next_step"].startswith(
        "none for SI-DEP and the services behind Pro Santé Connect, with e-CPS; to use the card "
        "as well, buy a single-slot PC/SC card reader"
    )
    ready = run("readiness", "--database", fleet, "--severity", "critical")
    assert ready.stdout == "no professional\n"


def test_readiness_thresholds_come_from_the_configuration(fleet: str, tmp_path: Path) -> None:
    config = tmp_path / "controller.toml"
    config.write_text(
        f'database = "{imported(fleet)}"\n[thresholds]\nmin_cryptolib_version = "6.0"\n'
    )
    result = run("readiness", "--config", str(config), "--json")
    rows = {row["surname"]: row for row in json.loads(result.stdout)}
    assert rows["MARTIN"]["state"] == "install_cryptolib"
    assert "5.2.2 is older than 6.0" in rows["MARTIN"]["detail"]
    assert rows["DONNAT-GADY"]["state"] == "ready_ecps"  # e-CPS activated per the roster
    assert "5.2.2 is older than 6.0" in rows["DONNAT-GADY"]["detail"]
    config.write_text(f'database = "{fleet}"\n[thresholds]\nexpiring_critical_days = 25\n')
    result = run("readiness", "--config", str(config), "--json")
    rows = {row["surname"]: row for row in json.loads(result.stdout)}
    assert rows["MARTIN"]["state"] == "renew_soon"  # 20 days left


def test_json_and_csv_exclude_each_other(fleet: str) -> None:
    result = run("readiness", "--database", fleet, "--json", "--csv")
    assert result.exit_code == 2
    assert "--json and --csv" in result.stderr


def test_a_missing_database_is_a_one_line_error(tmp_path: Path) -> None:
    for command in (["readiness"], ["forecast"], ["roster", "list"]):
        result = run(*command, "--database", str(tmp_path / "absent.db"))
        assert result.exit_code == 2
        assert result.stderr.startswith("error: no controller database at")


# --- forecast -----------------------------------------------------------------------------


def test_forecast_json(fleet: str) -> None:
    result = run("forecast", "--database", fleet, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {row["site"] for row in rows} == {LYON}  # Grenoble has no card
    assert [row["month"] for row in rows][0] == local(NOW).strftime("%Y-%m")
    assert len(rows) == 12
    expiring = {local(NOW + 20 * DAY).strftime("%Y-%m"), local(NOW + 200 * DAY).strftime("%Y-%m")}
    assert {row["month"] for row in rows if row["cards"]} == expiring
    assert sum(row["cards"] for row in rows) == 2  # the expired card is left out


def test_forecast_table_and_site_filter(fleet: str) -> None:
    table = run("forecast", "--database", fleet).stdout
    header = table.splitlines()[0]
    assert "site" in header and NOW.strftime("%Y-%m") in header
    assert LYON in table
    other = run("forecast", "--database", fleet, "--site", "Grenoble")
    assert other.stdout == "no CPS card seen at site 'Grenoble'\n"
    rows = json.loads(run("forecast", "--database", fleet, "--json", "--site", LYON).stdout)
    assert len(rows) == 12


def test_a_card_taken_out_of_its_reader_is_still_known(fleet: str) -> None:
    """The doctor takes her card home: readiness and the forecast still know it."""
    document = lyon()
    doctor = document["readers"][0]
    doctor["state"], doctor["card"] = "empty", None
    with Store(fleet) as store:
        store.record_status(validate(document), NOW + DAY)
    rows = readiness(imported(fleet))
    assert rows["DONNAT-GADY"]["card_serial"] == "99213845"
    assert rows["DONNAT-GADY"]["card_present"] is False
    assert rows["DONNAT-GADY"]["state"] != "no_card"
    months = json.loads(run("forecast", "--database", fleet, "--json").stdout)
    assert sum(row["cards"] for row in months if row["site"] == LYON) == 2
