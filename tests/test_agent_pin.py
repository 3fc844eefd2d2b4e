"""The PIN state the agent reports, through a real pcscd, real vpcd readers and simulated cards.

Reading it must never change it: the card's own counter is checked after the scans,
and the APDUs the card saw (its debug log) hold no VERIFY with a PIN: a CPS3 is asked with
GET DATA, a CPS4 with a VERIFY without data, as the official Cryptolib asks them.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from cpsfleet.agent import pin
from cpsfleet.agent.scan import scan
from cpsfleet.agent.summary import EXIT_PROBLEMS
from cpsfleet.schemas import validate_status
from cpsfleet.schemas.documents import Pin, Status
from cpsfleet.sim.faults import Faults
from cpsfleet.sim.profile import load_profile
from tests.conftest import BASE_PORT, run_cli

SCANS = 100


def card_pin(status: Status, reader: str) -> Pin | None:
    card = next(r.card for r in status.readers if r.name == reader)
    assert card is not None
    return card.pin


def test_a_blocked_pin_is_reported_blocked_and_the_scan_says_what_to_do(insert, examples) -> None:
    played = insert(replace(load_profile(examples["doctor-cps3"]), pin_tries_left=0))
    status = scan()
    assert card_pin(status, played.reader) == Pin(tries_left=0, tries_max=3)
    document = validate_status(status.document())
    card = next(r["card"] for r in document["readers"] if r["name"] == played.reader)
    assert card["pin"] == {"tries_left": 0, "tries_max": 3, "error": None}
    result = run_cli("agent", "scan")
    assert result.returncode == EXIT_PROBLEMS
    assert "PIN: 0 of 3 tries left (BLOCKED)" in result.stdout
    assert "the PIN of card 99213845 is blocked: unblock it with the PUK in CPS Gestion" in (
        result.stdout
    )


def test_a_hundred_scans_leave_the_tries_left_as_they_were(
    insert, examples, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sim.apdu")
    played = insert(replace(load_profile(examples["doctor-cps3"]), pin_tries_left=2))
    before = played.pin.tries_left
    reported = [card_pin(scan(), played.reader) for _ in range(SCANS)]
    assert before == played.pin.tries_left == 2
    assert reported == [Pin(tries_left=2, tries_max=3)] * SCANS
    sent = [record.getMessage() for record in caplog.records if record.name == "sim.apdu"]
    # Each scan asks the PIN's state once; another PC/SC client of the machine may ask too.
    assert sum(message.startswith("APDU 00 CB 3F FF") for message in sent) >= SCANS
    assert not [message for message in sent if message.startswith("APDU 00 20")]


def test_the_last_try_is_reported_and_the_scan_still_passes(insert, examples) -> None:
    played = insert(replace(load_profile(examples["doctor-cps3"]), pin_tries_left=1))
    assert card_pin(scan(), played.reader) == Pin(tries_left=1, tries_max=3)
    result = run_cli("agent", "scan")
    assert "PIN: 1 of 3 tries left (last try)" in result.stdout


def test_a_card_without_aodf_reports_why_its_pin_state_is_unknown(insert, examples) -> None:
    profile = replace(load_profile(examples["doctor-cps3"]), faults=Faults(no_aodf=True))
    played = insert(profile, BASE_PORT + 1)
    status = scan()
    assert card_pin(status, played.reader) == Pin(error=pin.NOT_READ + pin.NO_AODF)
    card = next(r.card for r in status.readers if r.name == played.reader)
    assert card is not None and card.problems == () and card.serial == "99213845"


def test_a_cps4_reports_its_tries_as_cryptolib_reads_them_and_keeps_them(
    insert, examples, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sim.apdu")
    played = insert(replace(load_profile(examples["nurse-cps4"]), pin_tries_left=1), BASE_PORT + 2)
    assert [card_pin(scan(), played.reader) for _ in range(5)] == [Pin(1, 3)] * 5
    assert played.pin.tries_left == 1
    sent = [record.getMessage() for record in caplog.records if record.name == "sim.apdu"]
    verifies = [message for message in sent if message.startswith("APDU 01 20")]
    assert verifies == ["APDU 01 20 00 01 -> 63 C1"] * 5


def test_a_vitale_card_has_no_pin_entry(insert, examples) -> None:
    played = insert(examples["vitale"], BASE_PORT + 3)
    assert card_pin(scan(), played.reader) is None
