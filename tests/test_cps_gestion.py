"""CPS Gestion, the flowchart's last step: the rule that flags a workstation with Cryptolib CPS
but without CPS Gestion, what the store keeps of it, and the readiness step it decides.

The store tests run on real SQLite files; the document is the schema's example with CPS
Gestion reported missing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cpsfleet.controller.db.connect import is_postgres
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.rules.readiness import readiness_rows
from cpsfleet.schemas import validate_status
from tests import test_readiness as readiness
from tests.postgres import Postgres
from tests.test_rules import NOW, found, host
from tests.test_schemas import example

MISSING = (
    "CPS Gestion is missing on ws-lyon-07, where Cryptolib CPS is installed: reinstall "
    "Cryptolib CPS from the ANS site (its installer includes CPS Gestion), which holders need "
    "to activate their card and to unblock a PIN"
)

# --- the rule -------------------------------------------------------------------------------


def test_cryptolib_without_cps_gestion_is_a_warning_for_the_workstation() -> None:
    (finding,) = found("cps_gestion_missing", host(cps_gestion=False))
    assert (finding.severity, finding.subject, finding.site) == ("warning", "", "Lyon Part-Dieu")
    assert finding.message == MISSING


@pytest.mark.parametrize(
    ("installed", "gestion"),
    [(True, True), (True, None), (False, False), (None, None)],
    ids=["both", "gestion not reported", "no cryptolib", "no status yet"],
)
def test_no_finding_unless_cryptolib_is_there_and_cps_gestion_is_not(
    installed: bool | None, gestion: bool | None
) -> None:
    subject = host(cryptolib_installed=installed, cps_gestion=gestion)
    assert found("cps_gestion_missing", subject) == []


def test_a_missing_cryptolib_is_its_own_finding_not_this_one() -> None:
    subject = host(cryptolib_installed=False, cryptolib_version=None, cps_gestion=False)
    assert [f.rule for f in found("cryptolib_missing", subject)] == ["cryptolib_missing"]
    assert found("cps_gestion_missing", subject) == []


# --- the store ------------------------------------------------------------------------------


def status(gestion: bool) -> dict[str, Any]:
    document = copy.deepcopy(example("status-four-readers"))
    document["cryptolib"]["cps_gestion"] = gestion
    if not gestion:
        evidence = document["cryptolib"]["evidence"]
        document["cryptolib"]["evidence"] = [e for e in evidence if "CPS Gestion" not in e]
    return validate_status(document)


@pytest.mark.parametrize("gestion", [True, False])
def test_the_store_keeps_what_the_agent_said_of_cps_gestion(database: str, gestion: bool) -> None:
    with Store(database) as store:
        host_id = store.record_status(status(gestion), NOW).host_id
        view = store.host_view(host_id)
    assert view is not None
    assert view.cps_gestion is gestion
    rules = [f.rule for f in found("cps_gestion_missing", view)]
    assert rules == ([] if gestion else ["cps_gestion_missing"])


@pytest.fixture
def other_database(database: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A second, empty database of the same kind as ``database``."""
    if not is_postgres(database):
        yield str(tmp_path / "other.db")
        return
    server: Postgres = request.getfixturevalue("postgres")
    url = server.create_database()
    yield url
    server.drop_database(url)


def test_readiness_from_the_store_asks_for_cps_gestion(database: str, other_database: str) -> None:
    with Store(database) as store:
        store.record_status(status(False), NOW)
        hosts = store.host_views()
    doctor = readiness.DOCTOR
    (row,) = readiness_rows([doctor], hosts, NOW, readiness.DEFAULTS)
    assert row["state"] == "install_cps_gestion"
    assert row["next_step"].startswith("install CPS Gestion on a workstation")
    with Store(other_database) as store:
        store.record_status(status(True), NOW)
        (row,) = readiness_rows([doctor], store.host_views(), NOW, readiness.DEFAULTS)
    assert row["state"] == "ready"
