"""A blocked PIN and a last try: the rules, the readiness step, and the store that keeps them.

The store tests run on real SQLite files; the documents are the schema's example with the
doctor's PIN changed.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from cpsfleet.controller.db import migrations
from cpsfleet.controller.db.connect import connect
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.model import PinView
from cpsfleet.controller.rules.readiness import readiness_rows, remembered
from cpsfleet.controller.web import data as webdata
from cpsfleet.controller.web.data import Filters
from cpsfleet.schemas import validate_status
from tests import test_readiness as readiness
from tests.test_rules import NOW, cps_card, found, host
from tests.test_schemas import example

DOCTOR_SERIAL = "99213845"
UNBLOCK = "unblock the PIN with the PUK in CPS Gestion (or ask for a new PIN mailer)"


def with_pin(tries_left: int | None, tries_max: int | None = 3, error: str | None = None) -> Any:
    return host(replace(cps_card(), pin=PinView(tries_left, tries_max, error)))


# --- rules --------------------------------------------------------------------------------


def test_a_blocked_pin_is_critical_with_the_step_to_unblock_it() -> None:
    (finding,) = found("pin_blocked", with_pin(0))
    assert (finding.severity, finding.subject) == ("critical", DOCTOR_SERIAL)
    assert finding.message == (
        "the PIN of CPS card 99213845 of DONNAT-GADY ISABELLE (Médecin) "
        f"is blocked (no try left of 3): {UNBLOCK}"
    )
    assert found("pin_last_try", with_pin(0)) == []


def test_the_last_try_is_a_warning() -> None:
    (finding,) = found("pin_last_try", with_pin(1))
    assert (finding.severity, finding.subject) == ("warning", DOCTOR_SERIAL)
    assert "has one try left of 3, and a wrong PIN blocks it" in finding.message
    assert finding.message.endswith(UNBLOCK)
    assert found("pin_blocked", with_pin(1)) == []


@pytest.mark.parametrize(
    "pin",
    [PinView(3, 3), PinView(2, 3), PinView(None, None, "not read: no AODF"), None],
    ids=["all tries", "one wrong try", "not read", "not reported"],
)
def test_other_pin_states_are_no_finding(pin: PinView | None) -> None:
    subject = host(replace(cps_card(), pin=pin))
    assert found("pin_blocked", subject) == found("pin_last_try", subject) == []


@pytest.mark.parametrize(("left", "rule"), [(0, "pin_blocked"), (1, "pin_last_try")])
def test_a_cps4_pin_gets_the_same_findings_as_a_cps3(left: int, rule: str) -> None:
    """The agent reads a CPS4's tries as Cryptolib does (VERIFY without data): same rules."""
    cps4 = replace(cps_card(), kind="cps4", kind_label="CPS4", pin=PinView(left, 3))
    (finding,) = found(rule, host(cps4))
    assert finding.subject == DOCTOR_SERIAL and finding.message.endswith(UNBLOCK)


def test_a_card_that_is_not_a_cps_has_no_pin_finding() -> None:
    vitale = replace(cps_card(), is_cps=False, pin=PinView(0, 3))
    assert found("pin_blocked", host(vitale)) == []


# --- readiness ----------------------------------------------------------------------------


def test_a_blocked_pin_keeps_the_holder_from_logging_in_until_unblocked() -> None:
    blocked = replace(readiness.card(readiness.DOCTOR.id_nat), pin=PinView(0, 3))
    judged = readiness.judge(readiness.DOCTOR, readiness.host(blocked))
    assert (judged.state, judged.next_step) == ("unblock_pin", UNBLOCK)
    assert judged.detail == "the PIN of card 99213845 is blocked (seen on ws-lyon-07)"
    assert webdata.readiness_severity(judged.state) == "critical"


def test_an_expired_card_is_renewed_before_its_pin_is_unblocked() -> None:
    expired = readiness.card(readiness.DOCTOR.id_nat, not_after=NOW - timedelta(days=1))
    subject = readiness.host(replace(expired, pin=PinView(0, 3)))
    assert readiness.state(readiness.DOCTOR, subject) == "renew_card"


def test_the_last_try_does_not_stop_a_ready_professional() -> None:
    last = replace(readiness.card(readiness.DOCTOR.id_nat), pin=PinView(1, 3))
    assert readiness.state(readiness.DOCTOR, readiness.host(last)) == "ready"


# --- the store ------------------------------------------------------------------------------


def status(doctor_pin: dict[str, Any] | None, drop: bool = False) -> dict[str, Any]:
    document = copy.deepcopy(example("status-four-readers"))
    doctor = next(r["card"] for r in document["readers"] if r["card"]["serial"] == DOCTOR_SERIAL)
    if drop:
        for reader in document["readers"]:
            if reader["card"]:
                reader["card"].pop("pin", None)
    else:
        doctor["pin"] = doctor_pin
    return validate_status(document)


def doctor_view(store: Store, host_id: str) -> Any:
    view = store.host_view(host_id)
    assert view is not None
    return next(card for card in view.cards if card.serial == DOCTOR_SERIAL)


def test_the_store_keeps_the_pin_state_of_each_card(database: str) -> None:
    with Store(database) as store:
        host_id = store.record_status(
            status({"tries_left": 0, "tries_max": 3, "error": None}), NOW
        ).host_id
        assert doctor_view(store, host_id).pin == PinView(0, 3)
        cps4 = next(card for card in store.host_views()[0].cards if card.kind == "cps4")
        assert cps4.pin == PinView(3, 3)
        store.record_status(status({"tries_left": 3, "tries_max": 3, "error": None}), NOW)
        assert doctor_view(store, host_id).pin == PinView(3, 3)


def test_a_status_without_pin_from_an_older_agent_is_stored_as_not_reported(database: str) -> None:
    with Store(database) as store:
        host_id = store.record_status(status(None, drop=True), NOW).host_id
        assert all(card.pin is None for card in store.host_views()[0].cards)
        assert doctor_view(store, host_id).pin is None


def test_a_card_taken_home_keeps_its_blocked_pin_in_readiness(database: str) -> None:
    """The sightings remember the tries of a card that left its reader."""
    document = status({"tries_left": 0, "tries_max": 3, "error": None})
    with Store(database) as store:
        store.record_status(document, NOW)
        for reader in document["readers"]:
            reader["state"], reader["card"] = "empty", None
        store.record_status(document, NOW + timedelta(hours=1))
        earlier = remembered(store.card_sightings(), NOW, readiness.DEFAULTS)
        professional = readiness.DOCTOR
        rows = readiness_rows([professional], store.host_views(), NOW, readiness.DEFAULTS, earlier)
    assert [(row["state"], row["next_step"]) for row in rows] == [("unblock_pin", UNBLOCK)]


def test_a_version_7_database_gains_the_pin_columns_and_keeps_its_cards(database: str) -> None:
    old = connect(database)
    migrations.upgrade(old, migrations.MIGRATIONS[:7])
    old.close()
    with Store(database) as store:
        host_id = store.record_status(
            status({"tries_left": 1, "tries_max": 3, "error": None}), NOW
        ).host_id
        assert doctor_view(store, host_id).pin == PinView(1, 3)
        assert migrations.version(store.database) == migrations.LATEST


# --- the dashboard's data -------------------------------------------------------------------


def test_the_cards_listing_shows_the_pin_and_a_blocked_one_is_critical(database: str) -> None:
    with Store(database) as store:
        host_id = store.record_status(
            status({"tries_left": 0, "tries_max": 3, "error": None}), NOW
        ).host_id
        rows = {r["serial"]: r for r in webdata.cards(store, NOW, readiness.DEFAULTS, Filters())}
        page = webdata.host(store, host_id, NOW, readiness.DEFAULTS)
    doctor = rows[DOCTOR_SERIAL]
    assert (doctor["pin_tries_left"], doctor["pin_tries_max"]) == (0, 3)
    assert (doctor["pin_severity"], doctor["severity"]) == ("critical", "critical")
    assert rows["20991234"]["pin_severity"] is None  # 2 of 3 left
    assert page is not None
    cards = [reader["card"] for reader in page["readers"] if reader["card"]]
    pins = {card["serial"]: card["pin"] for card in cards}
    assert pins[DOCTOR_SERIAL] == {
        "tries_left": 0,
        "tries_max": 3,
        "error": None,
        "severity": "critical",
    }
