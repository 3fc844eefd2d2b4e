"""The agent's inventory against a real pcscd, real vpcd readers and simulated cards."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cpsfleet.agent.scan import scan
from cpsfleet.agent.summary import EXIT_PCSC_UNAVAILABLE, EXIT_PROBLEMS
from cpsfleet.schemas import validate_status
from cpsfleet.schemas.documents import Reader, Status
from cpsfleet.sim.faults import Faults
from cpsfleet.sim.profile import load_profile
from cpsfleet.sim.readers import running_pcscd
from tests.conftest import BASE_PORT, run_cli, wait_for


def reader(status: Status, name: str) -> Reader:
    return next(r for r in status.readers if r.name == name)


def test_cps3_serial_and_both_certificates_are_read(insert, examples, readers) -> None:
    played = insert(examples["doctor-cps3"])
    card = reader(scan(), played.reader).card
    assert card is not None and card.kind == "cps3" and card.is_cps
    assert card.serial == "99213845"
    assert [(c.role, c.label) for c in card.certificates] == [
        ("authentication", "Certificat d'Authentification CPS"),
        ("signature", "Certificat de Signature CPS"),
    ]
    auth = card.certificates[0]
    assert (auth.id_nat, auth.id_type, auth.surname, auth.given_name, auth.profession) == (
        "810002813839",
        "rpps",
        "DONNAT-GADY",
        "ISABELLE",
        "Médecin",
    )
    assert auth.issuer_cn == "AC IGC-SANTE FORT PERSONNES"
    assert auth.expired is False and auth.days_left is not None and 395 <= auth.days_left <= 400
    assert card.problems == ()


def test_cps4_is_read_on_logical_channel_one(insert, examples) -> None:
    played = insert(examples["nurse-cps4"], BASE_PORT + 1)
    card = reader(scan(), played.reader).card
    assert card is not None and card.kind == "cps4"
    assert card.serial == "10452278"
    assert [c.role for c in card.certificates] == ["authentication", "signature"]
    assert (
        card.certificates[1].surname == "MARTIN" and card.certificates[1].profession == "Infirmier"
    )


def test_each_card_kind_is_classified(insert, examples) -> None:
    doctor = load_profile(examples["doctor-cps3"])
    kinds = {"cps3-contactless": "cps3-contactless", "vitale": "vitale2", "generic": "unknown"}
    played = {
        insert(replace(doctor, kind=profile_kind), port).reader: expected
        for port, (profile_kind, expected) in enumerate(kinds.items(), start=BASE_PORT)
    }
    status = scan()
    assert {name: reader(status, name).card.kind for name in played} == played  # type: ignore[union-attr]
    vitale = next(r.card for r in status.readers if r.card and r.card.kind == "vitale2")
    assert vitale.is_cps is False and vitale.serial is None and vitale.certificates == ()


def test_expired_certificate_is_reported_expired(insert, examples) -> None:
    played = insert(examples["expired-cps3"])
    status = scan()
    card = reader(status, played.reader).card
    assert card is not None and all(c.expired for c in card.certificates)
    assert card.certificates[0].days_left is not None and card.certificates[0].days_left < 0
    assert card.certificates[0].id_type == "adeli"
    result = run_cli("agent", "scan")
    assert result.returncode == EXIT_PROBLEMS
    assert "certificate of card 20991234 expired" in result.stdout


def test_card_removed_and_inserted_between_two_scans(insert, examples) -> None:
    first = insert(examples["doctor-cps3"])
    assert reader(scan(), first.reader).card is not None
    first.remove()
    assert reader(scan(), first.reader).state == "empty"
    assert reader(scan(), first.reader).card is None
    insert(examples["nurse-cps4"])
    card = reader(scan(), first.reader).card
    assert card is not None and card.serial == "10452278"


def test_two_readers_with_two_cards(insert, examples) -> None:
    a = insert(examples["doctor-cps3"], BASE_PORT)
    b = insert(examples["nurse-cps4"], BASE_PORT + 3)
    status = scan()
    assert reader(status, a.reader).card.serial == "99213845"  # type: ignore[union-attr]
    assert reader(status, b.reader).card.serial == "10452278"  # type: ignore[union-attr]
    assert [r.state for r in status.readers].count("empty") == 2


def test_json_output_is_the_published_status_document(insert, examples) -> None:
    insert(examples["doctor-cps3"])
    result = run_cli("agent", "scan", "--json", "--site", "Lyon")
    document = json.loads(result.stdout)
    validate_status(document)
    assert document["host"]["site"] == "Lyon"
    cards = [r["card"] for r in document["readers"] if r["card"]]
    assert cards[0]["serial"] == "99213845"


def test_scan_without_pcsc_service_reports_it_and_exits_3(tmp_path: Path) -> None:
    result = run_cli("agent", "scan", "--json", env={"PCSCLITE_CSOCK_NAME": str(tmp_path / "none")})
    assert result.returncode == EXIT_PCSC_UNAVAILABLE
    document = json.loads(result.stdout)
    assert document["pcsc"] == {
        "available": False,
        "error": "SCardEstablishContext: Service not available (0x8010001D)",
    }
    assert document["readers"] == [] and document["cryptolib"]["installed"] in (True, False)


def test_card_pulled_out_mid_read_becomes_a_problem_and_the_rest_is_reported(insert, examples):
    pulled = replace(load_profile(examples["doctor-cps3"]), faults=Faults(remove_after_apdus=6))
    good = insert(examples["nurse-cps4"], BASE_PORT + 1)
    played = insert(pulled, BASE_PORT)
    status = scan()
    card = reader(status, played.reader).card
    assert card is not None and card.kind == "cps3"
    assert [p.message for p in card.problems] == [
        "the card gave no answer: it was removed or stopped responding"
    ]
    assert reader(status, good.reader).card.serial == "10452278"  # type: ignore[union-attr]
    validate_status(status.document())


def test_card_answering_garbage_becomes_a_problem(insert, examples) -> None:
    played = insert(replace(load_profile(examples["doctor-cps3"]), faults=Faults(garbage=True)))
    card = reader(scan(), played.reader).card
    assert card is not None and card.serial is None and card.certificates == ()
    assert {p.where for p in card.problems} == {"serial", "certificates"}


def test_broken_certificate_becomes_an_error_on_that_certificate(insert, examples) -> None:
    profile = load_profile(examples["doctor-cps3"])
    played = insert(replace(profile, faults=Faults(corrupt_certificates=True)))
    status = scan()
    card = reader(status, played.reader).card
    assert card is not None and card.serial == "99213845"
    assert [c.label for c in card.certificates] == [
        "Certificat d'Authentification CPS",
        "Certificat de Signature CPS",
    ]
    assert all(c.error and c.not_after is None for c in card.certificates)
    validate_status(status.document())


def test_scan_of_four_cards_takes_well_under_a_second(insert, examples) -> None:
    for offset, name in enumerate(("doctor-cps3", "nurse-cps4", "expired-cps3", "doctor-cps3")):
        insert(examples[name], BASE_PORT + offset)
    status = scan(now=datetime.now(UTC) + timedelta(days=1))
    assert sum(len(r.card.certificates) for r in status.readers if r.card) == 8
    print(f"scan of 4 CPS cards: {status.duration_ms} ms")


def test_pcscd_stopped_then_restarted_and_the_card_comes_back(insert, examples, readers) -> None:
    played = insert(examples["doctor-cps3"])
    assert readers.stop() == 0
    assert running_pcscd() is None
    down = scan()
    assert down.pcsc.available is False and "Service not available" in (down.pcsc.error or "")
    readers.start()
    wait_for(
        lambda: (
            (r := reader(scan(), played.reader)).card is not None and r.card.serial == "99213845"
        ),
        what="the card to reconnect after the pcscd restart",
    )


def test_card_held_exclusively_by_another_program_is_in_use(insert, examples) -> None:
    from smartcard import scard

    played = insert(examples["doctor-cps3"])
    _, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    code, handle, _ = scard.SCardConnect(
        context, played.reader, scard.SCARD_SHARE_EXCLUSIVE, scard.SCARD_PROTOCOL_T0
    )
    assert code == scard.SCARD_S_SUCCESS
    try:
        entry = reader(scan(), played.reader)
    finally:
        scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
        scard.SCardReleaseContext(context)
    assert entry.state == "in_use"
    assert entry.card is not None and entry.card.kind == "cps3" and entry.card.serial is None
    assert [p.where for p in entry.card.problems] == ["card"]
    assert "Sharing violation" in entry.card.problems[0].message


def test_reader_gone_between_listing_and_reading_becomes_a_problem(readers) -> None:
    from cpsfleet.agent.pcsc import PcscContext, ReaderStatus
    from cpsfleet.agent.scan import inventory_reader

    vanished = ReaderStatus(
        "Unplugged Reader 00 00",
        "card_present",
        bytes.fromhex("3BAC00402A001225006480000310009000"),
        mute=False,
    )
    with PcscContext() as context:
        entry = inventory_reader(context, vanished, datetime.now(UTC))
    assert entry.card is not None and entry.card.kind == "cps3" and entry.card.serial is None
    assert entry.card.problems[0].where == "card"
    assert "SCardConnect: Unknown reader specified" in entry.card.problems[0].message
