"""Fleet rules: each rule, its boundary dates and versions, the order of findings, thresholds."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cpsfleet.controller.model import (
    CardView,
    CertificateView,
    Finding,
    HostView,
    ProblemView,
    ReaderView,
)
from cpsfleet.controller.rules.findings import (
    RULES,
    RulesConfigError,
    Thresholds,
    evaluate,
    evaluate_fleet,
)
from cpsfleet.schemas.times import days_left

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)  # a Friday, 11:00 in Paris: working hours
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DEFAULTS = Thresholds()


def certificate(
    not_after: datetime = NOW + 400 * DAY,
    not_before: datetime = NOW - 400 * DAY,
    role: str = "authentication",
    error: str | None = None,
) -> CertificateView:
    return CertificateView(
        role=role,
        label="Certificat d'Authentification CPS",
        id_nat="810002813839",
        surname="DONNAT-GADY",
        given_name="ISABELLE",
        profession="Médecin",
        not_before=not_before,
        not_after=not_after,
        error=error,
    )


def cps_card(
    *certificates: CertificateView,
    serial: str | None = "99213845",
    reader: str = "Virtual PCD 00 00",
    problems: tuple[ProblemView, ...] = (),
) -> CardView:
    return CardView(
        reader=reader,
        atr="3BAC00402A001225006480000310009000",
        kind="cps3",
        kind_label="CPS3 (contact, IAS-ECC)",
        is_cps=True,
        serial=serial,
        certificates=certificates or (certificate(), certificate(role="signature")),
        problems=problems,
    )


def vitale_card(reader: str = "Virtual PCD 2 00 01") -> CardView:
    return CardView(
        reader=reader,
        atr="3B751300004509EA9000",
        kind="vitale2",
        kind_label="Carte Vitale 2",
        is_cps=False,
        serial=None,
    )


def host(*cards: CardView, **changes: object) -> HostView:
    """A healthy, online workstation with one valid CPS card unless told otherwise."""
    healthy = HostView(
        id="3f9c1a7be2d04c55",
        hostname="ws-lyon-07",
        site="Lyon Part-Dieu",
        first_seen=NOW - 30 * DAY,
        last_seen=NOW,
        presence="online",
        presence_at=NOW - 30 * DAY,
        last_status_at=NOW - 60 * SECOND,
        scan_interval_s=900,
        pcsc_available=True,
        cryptolib_installed=True,
        cryptolib_version="5.2.2",
        readers=(ReaderView("Virtual PCD 00 00", "card_present"),),
        cards=cards or (cps_card(),),
    )
    return replace(healthy, **changes)  # type: ignore[arg-type]


def found(
    rule: str, subject: HostView, now: datetime = NOW, thresholds: Thresholds = DEFAULTS
) -> list[Finding]:
    return [finding for finding in evaluate(subject, now, thresholds) if finding.rule == rule]


def expiring_in(left: timedelta) -> HostView:
    return host(cps_card(certificate(not_after=NOW + left)))


def test_a_healthy_host_has_no_finding() -> None:
    assert evaluate(host(), NOW, DEFAULTS) == []


def test_the_rule_table_holds_the_contract_names() -> None:
    assert [name for name, _ in RULES] == [
        "agent_offline",
        "pcsc_unavailable",
        "no_reader",
        "cryptolib_missing",
        "cryptolib_outdated",
        "card_expired",
        "card_expiring",
        "card_not_updated",
        "pin_blocked",
        "pin_last_try",
        "non_cps_card",
        "card_left_in_reader",
        "probe_error",
        "cps_gestion_missing",
        "agent_outdated",
        "card_not_in_roster",
        "card_unseen",
    ]


# --- card_expired -----------------------------------------------------------------------


def test_an_expired_card_is_critical_since_its_expiry() -> None:
    expiry = datetime(2026, 11, 17, 20, 56, 6, tzinfo=UTC)
    (finding,) = found("card_expired", host(cps_card(certificate(not_after=expiry))))
    assert finding == Finding(
        rule="card_expired",
        severity="critical",
        host_id="3f9c1a7be2d04c55",
        subject="99213845",
        message="CPS card 99213845 of DONNAT-GADY ISABELLE (Médecin) "
        "expired on Nov 17, 2026: renew it",
        since=expiry,
    )
    assert finding.site == "Lyon Part-Dieu"


def test_a_card_expiring_exactly_now_is_expired() -> None:
    assert len(found("card_expired", expiring_in(timedelta(0)))) == 1


def test_a_card_expiring_one_second_from_now_is_not_yet_expired() -> None:
    subject = expiring_in(SECOND)
    assert found("card_expired", subject) == []
    assert [f.severity for f in found("card_expiring", subject)] == ["critical"]


def test_the_earliest_certificate_expiry_is_the_card_expiry() -> None:
    early = NOW - DAY
    card = cps_card(certificate(not_after=NOW + 300 * DAY), certificate(not_after=early))
    assert [f.since for f in found("card_expired", host(card))] == [early]


def test_a_card_without_serial_is_named_by_its_reader() -> None:
    card = cps_card(certificate(not_after=NOW - DAY), serial=None, reader="Virtual PCD 00 01")
    (finding,) = found("card_expired", host(card))
    assert finding.subject == "Virtual PCD 00 01"
    assert finding.message.startswith("CPS card of DONNAT-GADY ISABELLE (Médecin) in Virtual")


# --- card_expiring ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "severity"),
    [
        (61 * DAY, None),
        # Days are calendar days in Paris: NOW is 27 November 11:00 there.
        (60 * DAY + 12 * HOUR + 30 * MINUTE, "warning"),  # 26 January 23:30: 60 days
        (60 * DAY + 13 * HOUR + 30 * MINUTE, None),  # 27 January 00:30 in Paris: 61 days
        (60 * DAY, "warning"),
        (15 * DAY, "warning"),
        (14 * DAY, "critical"),
        (SECOND, "critical"),
    ],
)
def test_expiring_severity_at_the_boundaries(left: timedelta, severity: str | None) -> None:
    findings = found("card_expiring", expiring_in(left))
    assert [f.severity for f in findings] == ([severity] if severity else [])


def test_the_expiring_message_gives_the_date_and_the_days_left() -> None:
    (finding,) = found("card_expiring", expiring_in(19 * DAY))
    assert finding.message == (
        "CPS card 99213845 of DONNAT-GADY ISABELLE (Médecin) "
        "expires on Dec 16, 2026 (19 days left): renew it"
    )
    assert finding.subject == "99213845"


def test_days_left_are_the_calendar_days_of_the_fleets_time_zone_on_every_screen() -> None:
    # On 3 December at 16:03 in Paris, a card ending on 13 December has 10 days left: in
    # the finding (and so the notification), and in the rows the dashboard and exports show.
    now = datetime(2026, 12, 3, 15, 3, tzinfo=UTC)
    ends = datetime(2026, 12, 13, 10, 0, tzinfo=UTC)
    card = host(cps_card(certificate(not_after=ends)))
    (finding,) = found("card_expiring", card, now)
    assert "expires on Dec 13, 2026 (10 days left)" in finding.message
    assert days_left(ends, now, DEFAULTS.zone) == 10
    # 23:30 UTC is already 4 December in Paris: one day less.
    late = datetime(2026, 12, 3, 23, 30, tzinfo=UTC)
    assert "(9 days left)" in found("card_expiring", card, late)[0].message
    # A card ending at 00:30 in Paris ends on that day's date, not the UTC one.
    early = host(cps_card(certificate(not_after=datetime(2026, 12, 12, 23, 30, tzinfo=UTC))))
    assert "expires on Dec 13, 2026 (10 days left)" in found("card_expiring", early, now)[0].message


def test_an_expired_card_is_not_also_expiring() -> None:
    assert found("card_expiring", expiring_in(-DAY)) == []


def test_a_lower_warning_threshold_silences_a_card_with_45_days_left() -> None:
    thirty = Thresholds(expiring_warning_days=30)
    assert found("card_expiring", expiring_in(45 * DAY), thresholds=thirty) == []
    assert [f.severity for f in found("card_expiring", expiring_in(30 * DAY), NOW, thirty)] == [
        "warning"
    ]


# --- card_not_updated -------------------------------------------------------------------


def test_an_expired_card_is_card_expired_only_not_also_not_updated() -> None:
    # Issued four years ago, expired yesterday: one problem, one finding.
    old = cps_card(certificate(not_before=NOW - 4 * 365 * DAY, not_after=NOW - DAY))
    rules = [f.rule for f in evaluate(host(old), NOW, DEFAULTS)]
    assert rules.count("card_expired") == 1 and "card_not_updated" not in rules
    # The same card still valid: it is due for its update.
    valid = cps_card(certificate(not_before=NOW - 4 * 365 * DAY, not_after=NOW + 200 * DAY))
    assert [f.rule for f in found("card_not_updated", host(valid))] == ["card_not_updated"]


def updated_on(not_before: datetime) -> HostView:
    return host(cps_card(certificate(not_before=not_before, not_after=NOW + 400 * DAY)))


def test_a_card_updated_three_years_ago_to_the_day_is_a_warning() -> None:
    updated = NOW.replace(year=NOW.year - 3)
    (finding,) = found("card_not_updated", updated_on(updated))
    assert (finding.severity, finding.subject, finding.since) == ("warning", "99213845", NOW)
    assert "last updated on Nov 27, 2023, 3 years ago or more" in finding.message


def test_a_card_updated_three_years_less_one_day_ago_is_fine() -> None:
    assert found("card_not_updated", updated_on(NOW.replace(year=NOW.year - 3) + DAY)) == []


def test_a_leap_day_update_is_due_on_28_february() -> None:
    subject = updated_on(datetime(2024, 2, 29, 12, 0, tzinfo=UTC))
    due = datetime(2027, 2, 28, 12, 0, tzinfo=UTC)
    assert [f.since for f in found("card_not_updated", subject, now=due)] == [due]
    assert found("card_not_updated", subject, now=due - SECOND) == []


def test_the_latest_certificate_start_is_the_last_update() -> None:
    old, recent = NOW - 4 * 365 * DAY, NOW - 100 * DAY
    card = cps_card(certificate(not_before=old), certificate(not_before=recent))
    assert found("card_not_updated", host(card)) == []


def test_the_update_period_follows_the_thresholds() -> None:
    two_years = Thresholds(card_update_max_years=2)
    updated = updated_on(NOW.replace(year=NOW.year - 2))
    assert found("card_not_updated", updated) == []
    assert len(found("card_not_updated", updated, thresholds=two_years)) == 1


# --- non-CPS cards ----------------------------------------------------------------------


def test_a_vitale_card_is_reported_as_info() -> None:
    (finding,) = found("non_cps_card", host(vitale_card()))
    assert (finding.severity, finding.subject) == ("info", "Virtual PCD 2 00 01")
    assert finding.message == "a Vitale 2 card (not a CPS) is in Virtual PCD 2 00 01"


def test_an_unknown_card_is_named_with_its_label() -> None:
    card = replace(vitale_card("R"), kind="unknown", kind_label="Unknown card")
    assert [f.message for f in found("non_cps_card", host(card))] == [
        "an unknown card (not a CPS) is in R"
    ]


def test_card_rules_skip_cards_that_are_not_cps() -> None:
    old = certificate(not_before=NOW - 5 * 365 * DAY, not_after=NOW - DAY)
    card = replace(vitale_card(), certificates=(old,))
    assert [f.rule for f in evaluate(host(card), NOW, DEFAULTS)] == ["non_cps_card"]


# --- workstation: readers, PC/SC, Cryptolib ---------------------------------------------


def test_no_reader_is_a_warning_when_pcsc_works() -> None:
    (finding,) = evaluate(host(readers=(), cards=()), NOW, DEFAULTS)
    assert (finding.rule, finding.severity, finding.subject) == ("no_reader", "warning", "")


def test_pcsc_unavailable_is_critical_and_says_to_start_pcscd() -> None:
    error = "SCardEstablishContext: Service not available (0x8010001D)"
    subject = host(pcsc_available=False, pcsc_error=error, readers=(), cards=())
    (finding,) = evaluate(subject, NOW, DEFAULTS)
    assert (finding.rule, finding.severity) == ("pcsc_unavailable", "critical")
    assert error in finding.message
    assert "start the PC/SC service (pcscd)" in finding.message


def test_an_unknown_pcsc_state_gives_no_finding() -> None:
    assert evaluate(host(pcsc_available=None, readers=(), cards=()), NOW, DEFAULTS) == []


def test_a_missing_cryptolib_is_critical() -> None:
    subject = host(cryptolib_installed=False, cryptolib_version=None)
    assert [(f.rule, f.severity) for f in evaluate(subject, NOW, DEFAULTS)] == [
        ("cryptolib_missing", "critical")
    ]


def test_an_unknown_cryptolib_state_gives_no_finding() -> None:
    assert evaluate(host(cryptolib_installed=None, cryptolib_version=None), NOW, DEFAULTS) == []


@pytest.mark.parametrize(
    ("version", "outdated"),
    [
        ("5.1.9", True),
        ("5.2.0", False),
        ("5.2", False),
        ("5.2.2", False),
        ("5.10.0", False),
        ("4", True),
        (None, False),
        ("not a version", False),
    ],
)
def test_cryptolib_versions_compare_numerically(version: str | None, outdated: bool) -> None:
    findings = found("cryptolib_outdated", host(cryptolib_version=version))
    assert [f.severity for f in findings] == (["warning"] if outdated else [])


def test_the_outdated_message_names_both_versions() -> None:
    (finding,) = found("cryptolib_outdated", host(cryptolib_version="5.1.9"))
    assert "Cryptolib CPS 5.1.9 on ws-lyon-07 is older than 5.2.0" in finding.message


def test_the_minimum_cryptolib_version_follows_the_thresholds() -> None:
    newer = Thresholds(min_cryptolib_version="5.10")
    assert len(found("cryptolib_outdated", host(cryptolib_version="5.9.9"), NOW, newer)) == 1


# --- agent_offline ----------------------------------------------------------------------


def test_an_offline_presence_is_critical_since_it_went_offline() -> None:
    gone = NOW - 10 * SECOND
    (finding,) = found("agent_offline", host(presence="offline", presence_at=gone))
    assert (finding.severity, finding.subject, finding.since) == ("critical", "", gone)
    assert "ws-lyon-07" in finding.message


@pytest.mark.parametrize(
    ("interval", "allowance"),
    [(600, timedelta(seconds=2 * 600 + 300)), (None, timedelta(seconds=2 * 900 + 300))],
)
def test_silence_past_two_intervals_and_the_margin_is_offline(
    interval: int | None, allowance: timedelta
) -> None:
    last = NOW - allowance
    at_limit = host(last_status_at=last, scan_interval_s=interval)
    past_limit = host(last_status_at=last - SECOND, scan_interval_s=interval)
    assert found("agent_offline", at_limit) == []
    assert [f.since for f in found("agent_offline", past_limit)] == [NOW - SECOND]


def test_the_offline_allowance_follows_the_thresholds() -> None:
    tight = Thresholds(offline_margin_s=0)
    quiet = host(last_status_at=NOW - 1801 * SECOND, scan_interval_s=900)
    assert found("agent_offline", quiet) == []
    assert len(found("agent_offline", quiet, thresholds=tight)) == 1


def test_a_new_online_host_without_status_is_not_offline() -> None:
    newcomer = host(last_status_at=None, first_seen=NOW - 60 * SECOND, cards=(), readers=())
    assert found("agent_offline", replace(newcomer, pcsc_available=None)) == []


def test_a_host_silent_since_first_seen_is_offline() -> None:
    first = NOW - DAY
    silent = host(last_status_at=None, first_seen=first, scan_interval_s=None)
    (finding,) = found("agent_offline", silent)
    assert finding.since == first + timedelta(seconds=2100)
    assert "no status from the agent of ws-lyon-07 ever" in finding.message


def test_an_offline_and_silent_host_has_one_offline_finding() -> None:
    subject = host(presence="offline", presence_at=NOW - DAY, last_status_at=NOW - 2 * DAY)
    assert [f.since for f in found("agent_offline", subject)] == [NOW - DAY]


def test_an_offline_host_is_still_judged_on_its_last_state() -> None:
    subject = replace(expiring_in(-DAY), presence="offline", presence_at=NOW - DAY)
    assert [f.rule for f in evaluate(subject, NOW, DEFAULTS)] == ["agent_offline", "card_expired"]


# --- probe_error ------------------------------------------------------------------------


def test_every_problem_the_agent_reported_is_a_warning_where_it_happened() -> None:
    card = cps_card(
        certificate(),
        certificate(role="signature", error="not a DER certificate"),
        problems=(ProblemView("serial", "selecting 3F00D003: 6A82"),),
    )
    subject = host(
        card,
        problems=(ProblemView("pcsc", "reader list changed"),),
        cryptolib_problems=(
            ProblemView("cryptolib", "ADM 155.adm says 5.2.2 but rpm says 5.2.1"),
            ProblemView("cryptolib", "the PKCS#11 library is missing"),
        ),
        readers=(ReaderView("Virtual PCD 00 00", "unavailable", (ProblemView("card", "mute"),)),),
    )
    findings = found("probe_error", subject)
    assert {f.severity for f in findings} == {"warning"}
    assert [(f.subject, f.message) for f in findings] == [
        ("host", "pcsc: reader list changed"),
        ("cryptolib", "cryptolib: ADM 155.adm says 5.2.2 but rpm says 5.2.1"),
        ("cryptolib #2", "cryptolib: the PKCS#11 library is missing"),
        ("reader:Virtual PCD 00 00", "card: mute"),
        ("card:99213845", "serial: selecting 3F00D003: 6A82"),
        ("card:99213845 #2", "signature certificate unreadable: not a DER certificate"),
    ]


def test_problems_of_a_card_without_serial_are_placed_by_reader() -> None:
    card = replace(vitale_card("R"), problems=(ProblemView("card", "mute: reinsert it"),))
    assert [f.subject for f in found("probe_error", host(card))] == ["card:R"]


# --- order, identity, site, thresholds --------------------------------------------------


def troubled(host_id: str) -> HostView:
    expired = cps_card(certificate(not_before=NOW - 4 * 365 * DAY, not_after=NOW - DAY))
    expiring = cps_card(certificate(not_after=NOW + 10 * DAY), serial="10452278")
    return host(
        expired,
        expiring,
        vitale_card(),
        id=host_id,
        site=None,
        presence="offline",
        pcsc_available=False,
        cryptolib_version="5.1.9",
        problems=(ProblemView("pcsc", "gone"),),
    )


def test_findings_come_in_rule_table_order_then_host_order() -> None:
    assert [(f.rule, f.subject) for f in evaluate(troubled("a"), NOW, DEFAULTS)] == [
        ("agent_offline", ""),
        ("pcsc_unavailable", ""),
        ("cryptolib_outdated", ""),
        ("card_expired", "99213845"),
        ("card_expiring", "10452278"),  # 99213845, expired, is not also card_not_updated
        ("non_cps_card", "Virtual PCD 2 00 01"),
        ("probe_error", "host"),
    ]


def test_each_rule_names_its_findings_after_its_row() -> None:
    for name, rule in RULES:
        for subject in (troubled("a"), host(readers=(), cards=())):
            assert {f.rule for f in rule(subject, NOW, DEFAULTS)} <= {name}


def test_the_fleet_is_evaluated_in_host_id_order_whatever_the_input_order() -> None:
    hosts = [troubled("b"), replace(expiring_in(-DAY), id="c"), troubled("a")]
    findings = evaluate_fleet(hosts, NOW, DEFAULTS)
    assert findings == evaluate_fleet(reversed(hosts), NOW, DEFAULTS)
    assert [f.host_id for f in findings] == ["a"] * 7 + ["b"] * 7 + ["c"]


def test_every_finding_carries_its_host_site() -> None:
    sited = [replace(troubled("a"), site="Grenoble"), troubled("b")]
    assert {(f.host_id, f.site) for f in evaluate_fleet(sited, NOW, DEFAULTS)} == {
        ("a", "Grenoble"),
        ("b", None),
    }


def test_the_default_thresholds_are_the_documented_ones() -> None:
    assert Thresholds() == Thresholds(60, 14, 3, "5.2.0", 300, 900)


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"expiring_critical_days": 60}, "must be less than expiring_warning_days"),
        ({"expiring_warning_days": 10}, "must be less than expiring_warning_days"),
        ({"expiring_critical_days": 0}, "expiring_critical_days must be a positive"),
        ({"card_update_max_years": -1}, "card_update_max_years must be a positive"),
        ({"default_scan_interval_s": 0}, "default_scan_interval_s must be a positive"),
        ({"offline_margin_s": -1}, "offline_margin_s must be a non-negative"),
        ({"expiring_warning_days": True}, "not True"),
        ({"expiring_warning_days": "60"}, "not '60'"),
        ({"min_cryptolib_version": "5.2.x"}, "not a dotted version like 5.2.0"),
        ({"min_cryptolib_version": "v5.2"}, "not a dotted version"),
        ({"min_cryptolib_version": ""}, "not a dotted version"),
    ],
)
def test_inconsistent_thresholds_are_refused(changes: dict[str, object], complaint: str) -> None:
    with pytest.raises(RulesConfigError, match=complaint) as caught:
        Thresholds(**changes)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)


def test_a_zero_offline_margin_is_allowed() -> None:
    assert Thresholds(offline_margin_s=0).offline_margin_s == 0
