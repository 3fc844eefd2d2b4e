"""Who is missing: cards outside the roster, roster cards unseen for days, outdated agents."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cpsfleet.controller.alerts.book import AlertBook
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.intake.roster import Professional, import_roster
from cpsfleet.controller.model import CardView, CertificateView, HostView, ReaderView
from cpsfleet.controller.rules.findings import (
    RulesConfigError,
    Thresholds,
    agent_outdated,
    card_not_in_roster,
    card_unseen,
    evaluate,
)
from cpsfleet.controller.rules.readiness import decide, facts_for
from cpsfleet.controller.rules.sightings import CardSighting
from cpsfleet.controller.service import Controller
from cpsfleet.controller.settings import ControllerSettings, SettingsError, load_settings
from cpsfleet.schemas.privacy import pseudonym

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)
DEFAULTS = Thresholds()
ID_NAT = "810002813839"


def cps_card(
    id_nat: str = ID_NAT, serial: str = "99213845", last_seen: datetime | None = None
) -> CardView:
    certificate = CertificateView(
        role="authentication",
        label=None,
        id_nat=id_nat,
        surname="DONNAT-GADY",
        given_name="ISABELLE",
        profession="Médecin",
        not_before=NOW - 400 * DAY,
        not_after=NOW + 400 * DAY,
    )
    return CardView(
        reader="Reader 0",
        atr="3BAC00402A001225006480000310009000",
        kind="cps3",
        kind_label="CPS3 (contact, IAS-ECC)",
        is_cps=True,
        serial=serial,
        certificates=(certificate,),
        last_seen=last_seen,
    )


def host(
    *cards: CardView,
    remembered: tuple[CardView, ...] = (),
    roster: frozenset[str] | None = frozenset({ID_NAT}),
    agent_version: str | None = "0.1.0",
) -> HostView:
    return HostView(
        id="id-ws-lyon-07",
        hostname="ws-lyon-07",
        site="Lyon",
        first_seen=NOW - 100 * DAY,
        last_seen=NOW,
        presence="online",
        last_status_at=NOW,
        pcsc_available=True,
        cryptolib_installed=True,
        cryptolib_version="5.2.2",
        cps_gestion=True,
        readers=(ReaderView("Reader 0", "present"),),
        cards=cards,
        remembered=remembered,
        agent_version=agent_version,
        roster=roster,
    )


def four_readers() -> dict[str, Any]:
    """The contract's example status: a Lyon host with four readers."""
    examples = Path(__file__).parent.parent / "cpsfleet" / "schemas" / "examples"
    document: dict[str, Any] = json.loads((examples / "status-four-readers.json").read_text())
    return document


def martin() -> Professional:
    """A roster's nurse whose card none of the tests' hosts holds."""
    return Professional(
        surname="MARTIN",
        given_name="Claire",
        profession="nurse",
        site="Lyon",
        adeli="0B7010446",
        ecps_activated=False,
        mobile_on_file=True,
        email_on_file=True,
    )


def rules(view: HostView, thresholds: Thresholds = DEFAULTS) -> list[str]:
    return [finding.rule for finding in evaluate(view, NOW, thresholds)]


# --- a card whose holder is not in the roster ---------------------------------------------


def test_a_card_outside_the_roster_is_an_info_finding_naming_its_idnat() -> None:
    (finding,) = card_not_in_roster(host(cps_card("899700000000")), NOW, DEFAULTS)
    assert (finding.severity, finding.subject) == ("info", "99213845")
    assert "899700000000" in finding.message and "roster" in finding.message


def test_a_card_of_the_roster_is_no_finding() -> None:
    assert "card_not_in_roster" not in rules(host(cps_card()))


def test_without_a_roster_no_card_is_outside_it() -> None:
    assert "card_not_in_roster" not in rules(host(cps_card("899700000000"), roster=None))


def test_a_pseudonymised_idnat_is_not_judged() -> None:
    assert not list(card_not_in_roster(host(cps_card("p:" + "0" * 24)), NOW, DEFAULTS))


def test_a_remembered_card_outside_the_roster_is_reported_too() -> None:
    out = cps_card("899700000000", last_seen=NOW - 2 * DAY)
    assert "card_not_in_roster" in rules(host(remembered=(out,)))


# --- a roster professional's card unseen for days -----------------------------------------


def test_a_roster_card_unseen_for_card_unseen_days_is_a_warning_since_then() -> None:
    seen = NOW - 30 * DAY
    (finding,) = card_unseen(host(remembered=(cps_card(last_seen=seen),)), NOW, DEFAULTS)
    assert (finding.rule, finding.severity, finding.subject) == (
        "card_unseen",
        "warning",
        "99213845",
    )
    assert finding.since == NOW
    assert "30 days" in finding.message and "ws-lyon-07" in finding.message


def test_a_card_seen_a_second_later_is_not_unseen_yet() -> None:
    card = cps_card(last_seen=NOW - 30 * DAY + timedelta(seconds=1))
    assert not list(card_unseen(host(remembered=(card,)), NOW, DEFAULTS))


def test_the_unseen_days_follow_the_threshold() -> None:
    card = cps_card(last_seen=NOW - 8 * DAY)
    assert list(card_unseen(host(remembered=(card,)), NOW, replace(DEFAULTS, card_unseen_days=7)))
    assert not list(card_unseen(host(remembered=(card,)), NOW, DEFAULTS))


@pytest.mark.parametrize(
    "card",
    [
        cps_card("899700000000", last_seen=NOW - 40 * DAY),  # not a roster professional's
        replace(cps_card(last_seen=NOW - 40 * DAY), superseded_by="99999999"),
        cps_card(last_seen=NOW - 90 * DAY),  # retired: the fleet no longer watches it
    ],
    ids=["outside-roster", "superseded", "retired"],
)
def test_unseen_is_only_for_watched_roster_cards(card: CardView) -> None:
    assert not list(card_unseen(host(remembered=(card,)), NOW, DEFAULTS))


def test_a_card_in_a_reader_is_never_unseen() -> None:
    assert "card_unseen" not in rules(host(cps_card()))


def test_without_a_roster_nobody_is_missed() -> None:
    card = cps_card(last_seen=NOW - 40 * DAY)
    assert not list(card_unseen(host(remembered=(card,), roster=None), NOW, DEFAULTS))


def test_the_professionals_readiness_tells_their_card_is_unseen() -> None:
    professional = Professional(
        surname="DONNAT-GADY",
        given_name="Isabelle",
        profession="doctor",
        site="Lyon",
        rpps="10002813839",
        ecps_activated=True,
        mobile_on_file=True,
        email_on_file=True,
    )
    sighting = CardSighting(
        id_nat=ID_NAT,
        serial="99213845",
        expires=NOW + 400 * DAY,
        updated=NOW - 400 * DAY,
        host="ws-lyon-07",
        site="Lyon",
        seen_at=NOW - 31 * DAY,
        present=False,
    )
    facts = facts_for(professional, [sighting], [host()])
    assert "card 99213845 not seen since" in decide(professional, facts, NOW, DEFAULTS).detail
    fresh = facts_for(professional, [replace(sighting, seen_at=NOW - DAY)], [host()])
    assert "not seen since" not in decide(professional, fresh, NOW, DEFAULTS).detail


# --- agents older than min_agent_version --------------------------------------------------


@pytest.mark.parametrize(
    ("version", "outdated"),
    [("0.1.0", True), ("0.1.9.dev3", True), ("0.2", False), ("0.2.0rc1", False), ("1.0", False)],
)
def test_an_agent_older_than_the_minimum_needs_the_new_package(
    version: str, outdated: bool
) -> None:
    thresholds = replace(DEFAULTS, min_agent_version="0.2.0")
    found = list(agent_outdated(host(agent_version=version), NOW, thresholds))
    assert bool(found) is outdated
    if found:
        assert found[0].severity == "warning"
        assert "ws-lyon-07" in found[0].message and "package" in found[0].message


@pytest.mark.parametrize("version", [None, "", "dev", "unknown"])
def test_an_unreadable_agent_version_is_not_judged(version: str | None) -> None:
    thresholds = replace(DEFAULTS, min_agent_version="0.2.0")
    assert not list(agent_outdated(host(agent_version=version), NOW, thresholds))


def test_without_a_minimum_no_agent_is_outdated() -> None:
    assert "agent_outdated" not in rules(host(agent_version="0.0.1"))


# --- the settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"card_unseen_days": 0},
        {"card_unseen_days": True},
        {"card_unseen_days": 3651},  # beyond ten years, dates overflow
        {"min_agent_version": "latest"},
        {"min_agent_version": 2},
    ],
)
def test_inconsistent_settings_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(RulesConfigError):
        Thresholds(**values)  # type: ignore[arg-type]


def test_the_settings_file_sets_both(tmp_path: Path) -> None:
    path = tmp_path / "controller.toml"
    path.write_text('[thresholds]\ncard_unseen_days = 14\nmin_agent_version = "0.2.0"\n')
    thresholds = load_settings(path, {}).thresholds
    assert (thresholds.card_unseen_days, thresholds.min_agent_version) == (14, "0.2.0")
    path.write_text("[thresholds]\ncard_unseen_days = 4000\n")
    with pytest.raises(SettingsError, match="card_unseen_days"):
        load_settings(path, {})


def test_the_defaults_report_after_thirty_days_and_compare_no_agent() -> None:
    assert (DEFAULTS.card_unseen_days, DEFAULTS.min_agent_version) == (30, None)


# --- what the store gives the rules -------------------------------------------------------


def test_the_store_gives_each_view_the_roster_and_the_agent_version(database: str) -> None:
    document = four_readers()
    professional = martin()
    with Store(database) as store:
        store.record_status(document, NOW)
        (before,) = store.host_views()
        import_roster(store.database, [professional], NOW)
        (after,) = store.host_views()
    assert before.roster is None
    assert before.agent_version == document["host"]["agent_version"]
    assert after.roster == frozenset({professional.id_nat})
    assert "card_not_in_roster" in rules(replace(after, last_status_at=NOW, presence="online"))


# --- agents that pseudonymise ---------------------------------------------------------------

KEY = b"k" * 32


def test_a_pseudonymised_idnat_is_judged_when_the_controller_has_the_key() -> None:
    roster = frozenset({ID_NAT, pseudonym(KEY, ID_NAT)})
    known = host(cps_card(pseudonym(KEY, ID_NAT)), roster=roster)
    stranger = host(cps_card(pseudonym(KEY, "899700000000")), roster=roster)
    assert not list(card_not_in_roster(replace(known, roster_pseudonyms=True), NOW, DEFAULTS))
    (finding,) = card_not_in_roster(replace(stranger, roster_pseudonyms=True), NOW, DEFAULTS)
    assert pseudonym(KEY, "899700000000") in finding.message


def test_an_unseen_pseudonymised_card_of_the_roster_is_missed() -> None:
    roster = frozenset({ID_NAT, pseudonym(KEY, ID_NAT)})
    gone = cps_card(pseudonym(KEY, ID_NAT), last_seen=NOW - 40 * DAY)
    view = replace(host(remembered=(gone,), roster=roster), roster_pseudonyms=True)
    assert [finding.rule for finding in card_unseen(view, NOW, DEFAULTS)] == ["card_unseen"]


def test_the_store_adds_the_roster_s_pseudonyms_with_the_key(database: str) -> None:
    document = four_readers()
    professional = martin()
    with Store(database) as store:
        store.record_status(document, NOW)
        import_roster(store.database, [professional], NOW)
        (plain,) = store.host_views()
        store.pseudonym_key = KEY
        (keyed,) = store.host_views()
    assert (plain.roster, plain.roster_pseudonyms) == (frozenset({professional.id_nat}), False)
    assert keyed.roster == frozenset({professional.id_nat, pseudonym(KEY, professional.id_nat)})
    assert keyed.roster_pseudonyms


# --- a roster imported between two periodic runs ---------------------------------------------


def test_a_roster_import_is_judged_on_every_host_at_the_next_periodic_run(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing else changes: no host is due by time, yet who is missing changed everywhere."""
    controller = Controller(ControllerSettings(database=database))
    monkeypatch.setattr(controller.notifier, "publish", lambda changed: None)
    document = four_readers()
    nobody = martin()
    with Store(database) as store:
        store.record_status(document, datetime.now(UTC))
        controller.book = AlertBook(store.database, controller.settings.alerts)
        controller.evaluate(store)
        assert not [f for f in store.findings() if f.rule == "card_not_in_roster"]
        controller.evaluate_due(store)  # nothing imported: nothing new
        assert not [f for f in store.findings() if f.rule == "card_not_in_roster"]
        import_roster(store.database, [nobody], datetime.now(UTC))
        controller.evaluate_due(store)
        outside = [f for f in store.findings() if f.rule == "card_not_in_roster"]
    assert len(outside) >= 2 and {f.host_id for f in outside} == {document["host"]["id"]}
