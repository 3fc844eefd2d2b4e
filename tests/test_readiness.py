"""Readiness: each row of the activation decision table, their order, and the facts they read.

DOCTOR and NURSE have a mobile number and an e-mail on file but no e-CPS: e-CPS is advised to
them, never required, and only an activated e-CPS stands in for a reader."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cpsfleet.controller.intake.roster import KINDS, Professional
from cpsfleet.controller.model import CardView, CertificateView, HostView, PinView, ReaderView
from cpsfleet.controller.rules.findings import Thresholds
from cpsfleet.controller.rules.readiness import (
    DECISIONS,
    LABEL_FIELDS,
    READY_STEP,
    REPORT_FIELDS,
    Readiness,
    card_sightings,
    decide,
    facts_for,
    readiness_rows,
)
from cpsfleet.controller.web.data import readiness_severity

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
DEFAULTS = Thresholds()
DOCTOR = Professional(
    surname="DONNAT-GADY",
    given_name="Isabelle",
    profession="doctor",
    site="Lyon Part-Dieu",
    rpps="10002813839",
    ecps_activated=False,
    mobile_on_file=True,
    email_on_file=True,
)
NURSE = Professional(
    surname="MARTIN",
    given_name="Claire",
    profession="nurse",
    site="Lyon Part-Dieu",
    adeli="0B7010446",
    ecps_activated=False,
    mobile_on_file=True,
    email_on_file=True,
)
BOTH = pytest.mark.parametrize("professional", [DOCTOR, NURSE], ids=["doctor", "nurse"])


def certificate(
    id_nat: str, role: str, not_before: datetime, not_after: datetime
) -> CertificateView:
    return CertificateView(
        role=role,
        label=None,
        id_nat=id_nat,
        surname="X",
        given_name="Y",
        profession=None,
        not_before=not_before,
        not_after=not_after,
    )


def card(
    id_nat: str,
    serial: str = "99213845",
    not_before: datetime = NOW - 400 * DAY,
    not_after: datetime = NOW + 400 * DAY,
) -> CardView:
    return CardView(
        reader="Reader 0",
        atr="3BAC00402A001225006480000310009000",
        kind="cps3",
        kind_label="CPS3 (contact, IAS-ECC)",
        is_cps=True,
        serial=serial,
        certificates=(
            certificate(id_nat, "authentication", not_before, not_after),
            # The signature certificate of an updated card may start later and end sooner.
            certificate(id_nat, "signature", not_before - DAY, not_after + DAY),
        ),
    )


def host(
    *cards: CardView,
    name: str = "ws-lyon-07",
    site: str | None = "Lyon Part-Dieu",
    readers: int = 1,
    cryptolib: str | None = "5.2.2",
    gestion: bool | None = True,
    last_status_at: datetime = NOW - 60 * SECOND,
) -> HostView:
    return HostView(
        id=f"id-{name}",
        hostname=name,
        site=site,
        first_seen=NOW - 30 * DAY,
        last_seen=last_status_at,
        presence="online",
        last_status_at=last_status_at,
        scan_interval_s=900,
        pcsc_available=True,
        cryptolib_installed=cryptolib is not None,
        cryptolib_version=cryptolib,
        cps_gestion=gestion if cryptolib is not None else False,
        readers=tuple(ReaderView(f"Reader {n}", "empty") for n in range(readers)),
        cards=cards,
    )


def judge(
    professional: Professional,
    *hosts: HostView,
    now: datetime = NOW,
    thresholds: Thresholds = DEFAULTS,
) -> Readiness:
    facts = facts_for(professional, card_sightings(hosts, now, thresholds), hosts)
    return decide(professional, facts, now, thresholds)


def state(professional: Professional, *hosts: HostView, thresholds: Thresholds = DEFAULTS) -> str:
    return judge(professional, *hosts, thresholds=thresholds).state


# --- the table itself ---------------------------------------------------------------------


def test_the_rows_follow_the_flowchart_order() -> None:
    assert [decision.state for decision in DECISIONS] == [
        "no_card",
        "renew_card",
        "renew_soon",
        "unblock_pin",
        "ready_ecps",
        "no_reader",
        "install_cryptolib",
        "install_cps_gestion",
        "ready",
    ]


def test_every_row_has_a_next_step_for_every_kind() -> None:
    for decision in DECISIONS:
        assert set(decision.next_step) == set(KINDS), decision.state
        assert all(text.strip() for text in decision.next_step.values())


# --- each row, for a doctor and a nurse -----------------------------------------------------


@BOTH
def test_ready(professional: Professional) -> None:
    with_ecps = replace(professional, ecps_activated=True)
    readiness = judge(with_ecps, host(card(professional.id_nat)))
    assert readiness.state == "ready"
    assert readiness.next_step == READY_STEP
    assert readiness.detail == (
        "card 99213845 valid until Jan 1, 2028; reader, Cryptolib CPS and CPS Gestion on "
        "ws-lyon-07; e-CPS activated (per the roster)"
    )


def test_no_card_a_doctor_asks_the_ordre_des_medecins() -> None:
    readiness = judge(DOCTOR, host())
    assert readiness.state == "no_card"
    assert "Ordre des médecins" in readiness.next_step
    assert "810002813839" in readiness.detail


def test_no_card_a_nurse_fills_form_201() -> None:
    readiness = judge(NURSE, host())
    assert readiness.state == "no_card"
    assert "form 201" in readiness.next_step
    assert "Ordre national des infirmiers" in readiness.next_step


@BOTH
def test_an_expired_card_needs_renewal(professional: Professional) -> None:
    expired = card(professional.id_nat, not_after=NOW - DAY)
    readiness = judge(professional, host(expired))
    assert readiness.state == "renew_card"
    assert "renew" in readiness.next_step
    assert "expired on Nov 26, 2026" in readiness.detail


def test_renewal_goes_through_each_professions_ordre() -> None:
    expired = judge(DOCTOR, host(card(DOCTOR.id_nat, not_after=NOW))).next_step
    assert "Ordre des médecins" in expired
    expired = judge(NURSE, host(card(NURSE.id_nat, not_after=NOW))).next_step
    assert "Ordre national des infirmiers" in expired


@BOTH
def test_a_card_not_updated_for_three_years_needs_renewal(professional: Professional) -> None:
    updated = datetime(2023, 11, 27, 10, 0, 0, tzinfo=UTC)  # three years before NOW, to the second
    old = card(professional.id_nat, not_before=updated, not_after=NOW + 300 * DAY)
    readiness = judge(professional, host(old))
    assert readiness.state == "renew_card"
    assert "last updated on Nov 27, 2023, 3 years ago" in readiness.detail
    recent = card(professional.id_nat, not_before=updated + SECOND, not_after=NOW + 300 * DAY)
    assert state(professional, host(recent)) == "ready"


def test_the_update_age_follows_the_threshold() -> None:
    updated = card(DOCTOR.id_nat, not_before=NOW - 800 * DAY)
    assert state(DOCTOR, host(updated)) == "ready"
    two_years = replace(DEFAULTS, card_update_max_years=2)
    assert state(DOCTOR, host(updated), thresholds=two_years) == "renew_card"


@BOTH
def test_a_card_seen_but_no_reader_at_their_site(professional: Professional) -> None:
    lyon = host(name="ws-lyon-01", readers=0)
    grenoble = host(card(professional.id_nat), name="ws-gre-01", site="Grenoble")
    readiness = judge(professional, lyon, grenoble)
    assert readiness.state == "no_reader"
    assert "single-slot" in readiness.next_step and "10–20 €" in readiness.next_step
    assert "ws-lyon-01" in readiness.detail


def test_no_workstation_at_their_site_means_no_reader() -> None:
    grenoble = host(card(DOCTOR.id_nat), name="ws-gre-01", site="Grenoble")
    readiness = judge(DOCTOR, grenoble)
    assert readiness.state == "no_reader"
    assert "no workstation of site 'Lyon Part-Dieu'" in readiness.detail


@BOTH
def test_a_reader_without_cryptolib(professional: Professional) -> None:
    readiness = judge(professional, host(card(professional.id_nat), cryptolib=None))
    assert readiness.state == "install_cryptolib"
    assert "Cryptolib CPS" in readiness.next_step
    assert readiness.detail == "ws-lyon-07: Cryptolib CPS is not installed"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("5.1.9", "install_cryptolib"),
        ("5.1", "install_cryptolib"),
        ("5.2", "ready"),
        ("5.2.0", "ready"),
        ("5.10", "ready"),
    ],
)
def test_cryptolib_too_old_or_recent_enough(version: str, expected: str) -> None:
    readiness = judge(NURSE, host(card(NURSE.id_nat), cryptolib=version))
    assert readiness.state == expected
    if expected == "install_cryptolib":
        assert readiness.detail == f"ws-lyon-07: Cryptolib CPS {version} is older than 5.2.0"


def test_the_minimum_cryptolib_follows_the_threshold() -> None:
    newer = replace(DEFAULTS, min_cryptolib_version="6.0")
    assert state(DOCTOR, host(card(DOCTOR.id_nat)), thresholds=newer) == "install_cryptolib"


@BOTH
def test_a_working_card_is_ready_without_ecps_which_is_advised(professional: Professional) -> None:
    readiness = judge(professional, host(card(professional.id_nat)))
    assert readiness.state == "ready"
    assert readiness.next_step == (
        f"{READY_STEP}; advised too: e-CPS on their smartphone, which needs no reader (install "
        "the e-CPS app and follow its steps)"
    )
    assert readiness.detail.endswith("; e-CPS not activated (per the roster)")


@BOTH
@pytest.mark.parametrize(
    ("mobile", "email", "missing"),
    [
        (False, True, "no mobile number on file"),
        (True, False, "no e-mail on file"),
        (False, False, "no mobile number nor e-mail on file"),
    ],
)
def test_missing_contact_details_are_advice_for_e_cps_not_a_step(
    professional: Professional, mobile: bool, email: bool, missing: str
) -> None:
    unverified = replace(professional, mobile_on_file=mobile, email_on_file=email)
    readiness = judge(unverified, host(card(professional.id_nat)))
    assert readiness.state == "ready"
    assert readiness.next_step.startswith(f"{READY_STEP}; advised too: e-CPS")
    assert "private space (espace privé)" in readiness.next_step
    assert "mobile number and a valid e-mail: e-CPS needs both" in readiness.next_step
    assert readiness.detail.endswith(f"; {missing} (per the roster)")


def test_contact_details_live_in_each_professions_ordre() -> None:
    doctor = replace(DOCTOR, email_on_file=False)
    nurse = replace(NURSE, email_on_file=False)
    assert "Ordre des médecins's site" in judge(doctor, host(card(DOCTOR.id_nat))).next_step
    nurse_step = judge(nurse, host(card(NURSE.id_nat))).next_step
    assert "Ordre national des infirmiers's site" in nurse_step


@BOTH
def test_with_ecps_the_card_route_is_not_needed(professional: Professional) -> None:
    with_ecps = replace(professional, ecps_activated=True)
    readiness = judge(with_ecps, host(card(professional.id_nat), readers=0))
    assert readiness.state == "ready_ecps"
    assert readiness.next_step == (
        "none for SI-DEP and the services behind Pro Santé Connect, with e-CPS; to use the card "
        "as well, buy a single-slot PC/SC card reader (lecteur monofente, about 10–20 € TTC) "
        "for a workstation of their site"
    )
    assert readiness.detail == (
        "e-CPS activated (per the roster); no card reader on the workstations of site "
        "'Lyon Part-Dieu': ws-lyon-07"
    )


@pytest.mark.parametrize(
    ("equipment", "step"),
    [
        ({"cryptolib": None}, "install or update Cryptolib CPS"),
        ({"gestion": False}, "install CPS Gestion on a workstation"),
        ({}, "insert their card in a reader of a monitored workstation of their site"),
    ],
    ids=["no cryptolib", "no cps gestion", "card never seen"],
)
def test_with_ecps_the_next_step_names_what_the_card_still_needs(
    equipment: dict[str, Any], step: str
) -> None:
    with_ecps = replace(NURSE, ecps_activated=True)
    cards = () if not equipment else (card(NURSE.id_nat),)
    readiness = judge(with_ecps, host(*cards, **equipment))
    assert readiness.state == "ready_ecps"
    assert f"; to use the card as well, {step}" in readiness.next_step
    assert "advised too" not in readiness.next_step


def test_with_ecps_a_card_never_seen_is_no_request_for_a_card() -> None:
    with_ecps = replace(DOCTOR, ecps_activated=True)
    readiness = judge(with_ecps, host())
    assert readiness.state == "ready_ecps"
    assert "Ordre des médecins" not in readiness.next_step
    assert readiness.detail == (
        "e-CPS activated (per the roster); no CPS card with idNat 810002813839 in the fleet's "
        "readers"
    )


@BOTH
def test_without_ecps_nor_reader_e_cps_is_advised_with_the_reader(
    professional: Professional,
) -> None:
    readiness = judge(professional, host(card(professional.id_nat), readers=0))
    assert readiness.state == "no_reader"
    assert readiness.next_step.startswith("buy a single-slot PC/SC card reader")
    assert "; advised too: e-CPS on their smartphone, which needs no reader" in (
        readiness.next_step
    )


@BOTH
def test_cryptolib_without_cps_gestion(professional: Professional) -> None:
    readiness = judge(professional, host(card(professional.id_nat), gestion=False))
    assert readiness.state == "install_cps_gestion"
    assert readiness.next_step.startswith(
        "install CPS Gestion on a workstation with a reader and Cryptolib CPS (reinstall "
        "Cryptolib CPS from the Agence du Numérique en Santé: its installer includes CPS "
        "Gestion), insert the card and activate it with CPS Gestion; advised too: e-CPS"
    )
    assert readiness.detail == (
        "CPS Gestion is missing where a reader and Cryptolib CPS are: ws-lyon-07"
    )


def test_cps_gestion_never_reported_is_not_known_to_be_there() -> None:
    assert state(DOCTOR, host(card(DOCTOR.id_nat), gestion=None)) == "install_cps_gestion"


def test_cps_gestion_counts_only_with_a_reader_and_a_working_cryptolib() -> None:
    without = host(card(DOCTOR.id_nat), name="ws-lyon-01", gestion=False)
    no_reader = host(name="ws-lyon-02", readers=0)
    old_cryptolib = host(name="ws-lyon-03", cryptolib="5.1")
    assert state(DOCTOR, without, no_reader, old_cryptolib) == "install_cps_gestion"
    readiness = judge(DOCTOR, without, no_reader, old_cryptolib, host(name="ws-lyon-04"))
    assert readiness.state == "ready"
    assert "reader, Cryptolib CPS and CPS Gestion on ws-lyon-04;" in readiness.detail


@BOTH
def test_a_card_ending_within_the_critical_days_is_renewed_first(
    professional: Professional,
) -> None:
    ending = card(professional.id_nat, not_after=NOW + 10 * DAY)
    unverified = replace(professional, email_on_file=False)
    readiness = judge(unverified, host(ending))
    assert readiness.state == "renew_soon"
    ordre = "Ordre des médecins" if professional is DOCTOR else "Ordre national des infirmiers"
    assert readiness.next_step == (
        f"renew the CPS card before it expires on Dec 7, 2026: ask the {ordre}"
    )
    assert readiness.detail == "card 99213845 expires on Dec 7, 2026 (10 days left)"


def test_the_renewal_window_follows_expiring_critical_days() -> None:
    def on(days: timedelta, thresholds: Thresholds = DEFAULTS) -> str:
        return state(DOCTOR, host(card(DOCTOR.id_nat, not_after=NOW + days)), thresholds=thresholds)

    assert on(14 * DAY) == "renew_soon"
    assert on(15 * DAY) == "ready"
    assert on(SECOND) == "renew_soon"
    wider = replace(DEFAULTS, expiring_critical_days=30)
    assert on(30 * DAY, wider) == "renew_soon"


def test_renewing_soon_comes_before_every_other_advice() -> None:
    ending = card(DOCTOR.id_nat, not_after=NOW + 3 * DAY, serial="11111111")
    blocked = replace(ending, pin=PinView(0, 3))
    assert state(DOCTOR, host(blocked)) == "renew_soon"
    assert state(DOCTOR, host(ending, readers=0, cryptolib=None)) == "renew_soon"
    with_ecps = replace(DOCTOR, ecps_activated=True)
    assert state(with_ecps, host(ending, readers=0)) == "renew_soon"
    expired = card(DOCTOR.id_nat, not_after=NOW - DAY)
    assert state(DOCTOR, host(expired)) == "renew_card"


def test_an_expired_card_is_renewed_even_with_ecps() -> None:
    with_ecps = replace(NURSE, ecps_activated=True)
    expired = card(NURSE.id_nat, not_after=NOW - DAY)
    assert state(with_ecps, host(expired, readers=0)) == "renew_card"


@pytest.mark.parametrize(
    ("state_name", "severity"),
    [
        ("renew_soon", "warning"),
        ("install_cps_gestion", "critical"),
        ("no_reader", "critical"),
        ("ready_ecps", None),
        ("ready", None),
    ],
)
def test_readiness_severity(state_name: str, severity: str | None) -> None:
    assert readiness_severity(state_name) == severity


def test_every_state_has_a_severity_decision() -> None:
    ready = {"ready", "ready_ecps"}
    for decision in DECISIONS:
        assert (readiness_severity(decision.state) is None) == (decision.state in ready)


# --- the order of the rows ----------------------------------------------------------------


def test_renewal_comes_before_a_missing_reader() -> None:
    expired = card(DOCTOR.id_nat, not_after=NOW - DAY)
    elsewhere = host(expired, name="ws-gre-01", site="Grenoble")
    assert state(DOCTOR, elsewhere, host(name="ws-lyon-01", readers=0)) == "renew_card"


def test_no_card_comes_before_a_missing_reader() -> None:
    assert state(NURSE, host(readers=0, cryptolib=None)) == "no_card"


def test_a_missing_reader_comes_before_cryptolib() -> None:
    elsewhere = host(card(DOCTOR.id_nat), name="ws-gre-01", site="Grenoble")
    assert state(DOCTOR, elsewhere, host(name="ws-lyon-01", readers=0, cryptolib=None)) == (
        "no_reader"
    )


def test_cryptolib_comes_before_contacts_and_ecps() -> None:
    nobody = replace(NURSE, mobile_on_file=False, ecps_activated=False)
    assert state(nobody, host(card(NURSE.id_nat), cryptolib="4.0")) == "install_cryptolib"


def test_cryptolib_comes_before_cps_gestion() -> None:
    assert state(DOCTOR, host(card(DOCTOR.id_nat), cryptolib="4.0", gestion=False)) == (
        "install_cryptolib"
    )


# --- matching cards and hosts to the professional -------------------------------------------


def test_cards_match_by_rpps_id_nat() -> None:
    assert state(DOCTOR, host(card("810002813839"))) == "ready"
    assert state(DOCTOR, host(card("010002813839"))) == "no_card"  # same digits, ADELI prefix
    assert state(DOCTOR, host(card("810002813830"))) == "no_card"


def test_cards_match_by_adeli_id_nat() -> None:
    assert state(NURSE, host(card("00B7010446"))) == "ready"
    assert state(NURSE, host(card("80B7010446"))) == "no_card"


def test_a_card_seen_at_another_site_still_counts() -> None:
    lyon = host(name="ws-lyon-01")
    grenoble = host(card(DOCTOR.id_nat), name="ws-gre-01", site="Grenoble")
    assert state(DOCTOR, lyon, grenoble) == "ready"


def test_a_reader_at_another_site_does_not_count() -> None:
    lyon = host(card(DOCTOR.id_nat), name="ws-lyon-01", readers=0)
    grenoble = host(name="ws-gre-01", site="Grenoble", readers=2)
    assert state(DOCTOR, lyon, grenoble) == "no_reader"


def test_cryptolib_at_another_site_does_not_count() -> None:
    lyon = host(card(DOCTOR.id_nat), name="ws-lyon-01", cryptolib=None)
    grenoble = host(name="ws-gre-01", site="Grenoble")
    assert state(DOCTOR, lyon, grenoble) == "install_cryptolib"


def test_the_reader_and_cryptolib_must_be_on_one_workstation() -> None:
    reader_only = host(card(DOCTOR.id_nat), name="ws-lyon-01", cryptolib=None)
    cryptolib_only = host(name="ws-lyon-02", readers=0)
    assert state(DOCTOR, reader_only, cryptolib_only) == "install_cryptolib"
    assert state(DOCTOR, reader_only, cryptolib_only, host(name="ws-lyon-03")) == "ready"


def test_site_names_match_whatever_the_case() -> None:
    assert state(DOCTOR, host(card(DOCTOR.id_nat), site="LYON part-dieu")) == "ready"


def test_the_newest_card_decides() -> None:
    old = card(DOCTOR.id_nat, "11111111", not_before=NOW - 1200 * DAY, not_after=NOW - DAY)
    new = card(DOCTOR.id_nat, "22222222", not_before=NOW - 10 * DAY, not_after=NOW + 1000 * DAY)
    readiness = judge(DOCTOR, host(new, name="ws-lyon-01"), host(old, name="ws-lyon-02"))
    assert readiness.state == "ready"
    assert "card 22222222" in readiness.detail


# --- sightings and the report -------------------------------------------------------------


def test_a_card_is_seen_where_it_was_last_reported() -> None:
    doctor = card(DOCTOR.id_nat)
    earlier = host(doctor, name="ws-lyon-01", last_status_at=NOW - 5 * DAY)
    later = host(doctor, name="ws-lyon-02", last_status_at=NOW - 60 * SECOND)
    (sighting,) = card_sightings([later, earlier], NOW, DEFAULTS)
    assert (sighting.host, sighting.seen_at, sighting.present) == (
        "ws-lyon-02",
        later.last_status_at,
        True,
    )
    assert sighting.expires == NOW + 400 * DAY  # the authentication certificate ends first
    assert sighting.updated == NOW - 400 * DAY  # the latest start


def test_a_card_on_a_silent_host_is_seen_but_not_present() -> None:
    silent = host(card(DOCTOR.id_nat), last_status_at=NOW - 2 * DAY)
    (sighting,) = card_sightings([silent], NOW, DEFAULTS)
    assert sighting.present is False
    assert state(DOCTOR, silent) == "ready"


def test_only_cps_cards_are_sightings() -> None:
    vitale = replace(card(DOCTOR.id_nat), is_cps=False, certificates=())
    assert card_sightings([host(vitale)], NOW, DEFAULTS) == []


def test_report_rows_say_where_the_card_was_last_seen() -> None:
    silent = host(card(DOCTOR.id_nat), last_status_at=NOW - 2 * DAY)
    doctor, nurse = readiness_rows([DOCTOR, NURSE], [silent], NOW, DEFAULTS)
    assert tuple(doctor) == (*REPORT_FIELDS, *LABEL_FIELDS)
    assert (doctor["profession_title"], doctor["state_label"]) == ("Doctor", "Ready")
    assert doctor["id_nat"] == "810002813839"
    assert doctor["state"] == "ready"
    assert doctor["card_serial"] == "99213845"
    assert doctor["card_expires"] == (NOW + 400 * DAY).date().isoformat() == "2028-01-01"
    assert doctor["last_seen_host"] == "ws-lyon-07"
    assert doctor["last_seen_at"] == "2026-11-25T10:00:00Z"
    assert doctor["card_present"] is False
    assert nurse["state"] == "no_card"
    assert nurse["last_seen_host"] is nurse["card_serial"] is nurse["card_present"] is None
