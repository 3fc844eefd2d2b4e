"""What people read of the findings, readiness and notifications, in French: the default
language, and what a controller configured with ``language = "fr"`` speaks. The rules' names,
severities, JSON keys and the MQTT alert documents stay English tokens."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller as SmtpController

from cpsfleet import i18n
from cpsfleet.controller.alerts.book import AlertSettings, Batch
from cpsfleet.controller.alerts.notify import alert_document, render
from cpsfleet.controller.db.connect import connect
from cpsfleet.controller.rules.findings import Thresholds, card_resolution
from cpsfleet.controller.rules.readiness import profession_title, readiness_rows, state_label
from cpsfleet.controller.rules.words import day, local_moment
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.controller.web.auth import DashboardSettings
from cpsfleet.schemas.topics import topic
from tests import test_readiness as readiness
from tests.conftest import Broker, free_port, wait_for
from tests.test_alert_delivery import HOST, SERIAL, expiring_status, publish, stop
from tests.test_notify import NOW as EVENING
from tests.test_notify import Inbox, alert
from tests.test_rules import NOW, certificate, cps_card, expiring_in, found, host
from tests.test_supervision import start

# apprise's e-mail plugin imports the standard imghdr module, deprecated since Python 3.11.
pytestmark = pytest.mark.filterwarnings(
    "ignore:'imghdr' is deprecated and slated for removal in Python 3.13:DeprecationWarning"
)

DAY = timedelta(days=1)
PARIS = Thresholds().zone


@pytest.fixture
def french() -> Iterator[None]:
    with i18n.use("fr"):
        yield


# --- dates --------------------------------------------------------------------------------


def test_dates_are_written_as_people_write_them_in_each_language() -> None:
    when = datetime(2026, 12, 13, 9, 30, tzinfo=UTC)
    assert day(when.date()) == "Dec 13, 2026"
    assert local_moment(when, PARIS) == "Dec 13, 2026 10:30"  # the fleet's time zone
    with i18n.use("fr"):
        assert day(when.date()) == "13 déc. 2026"
        assert local_moment(when, PARIS) == "13 déc. 2026 10:30"


# --- findings -----------------------------------------------------------------------------


@pytest.mark.usefixtures("french")
def test_finding_messages_are_french() -> None:
    (expiring,) = found("card_expiring", expiring_in(19 * DAY))
    assert expiring.message == (
        "la carte CPS 99213845 de DONNAT-GADY ISABELLE (Médecin) expire le 16 déc. 2026 "
        "(encore 19 jours) : renouvelez-la"
    )
    assert (expiring.rule, expiring.severity) == ("card_expiring", "warning")  # tokens
    (one_day,) = found("card_expiring", expiring_in(DAY))
    assert "(encore 1 jour)" in one_day.message
    (expired,) = found("card_expired", expiring_in(-10 * DAY))
    assert expired.message.endswith("a expiré le 17 nov. 2026 : renouvelez-la")
    updated = host(cps_card(certificate(not_before=NOW - 3 * 366 * DAY)))
    (old,) = found("card_not_updated", updated)
    assert "actualisée pour la dernière fois le" in old.message
    assert "depuis moins de 3 ans" in old.message
    (unplugged,) = found("no_reader", host(readers=(), cards=()))
    assert (
        unplugged.message == "aucun lecteur de carte sur ws-lyon-07 : branchez un lecteur de carte"
    )
    (missing,) = found("cryptolib_missing", host(cryptolib_installed=False))
    assert missing.message.startswith("Cryptolib CPS n’est pas installée sur ws-lyon-07")
    broken = host(cps_card(certificate(), certificate(role="signature", error="not a DER")))
    (unreadable,) = found("probe_error", broken)
    assert unreadable.message == "certificat de signature illisible : not a DER"
    (offline,) = found("agent_offline", host(last_status_at=NOW - 2 * DAY))
    assert offline.message.startswith(
        "aucun état reçu de l’agent de ws-lyon-07 depuis le 25 nov. 2026 11:00"
    )


@pytest.mark.usefixtures("french")
def test_pin_findings_and_resolutions_are_french() -> None:
    from cpsfleet.controller.model import PinView

    blocked = host(replace(cps_card(), pin=PinView(tries_left=0, tries_max=3)))
    (finding,) = found("pin_blocked", blocked)
    assert finding.message == (
        "le code porteur de la carte CPS 99213845 de DONNAT-GADY ISABELLE (Médecin) est bloqué "
        "(aucun essai restant sur 3) : débloquez le code porteur avec le code de déblocage "
        "(PUK) dans CPS Gestion (ou demandez un nouveau courrier de codes)"
    )
    renewed = card_resolution(host(), "card_expiring", "99213845", NOW, Thresholds())
    assert renewed == "renouvelée : ses certificats sont valides jusqu’au 1 janv. 2028"


# --- readiness ----------------------------------------------------------------------------


@pytest.mark.usefixtures("french")
def test_readiness_next_steps_use_the_words_of_the_activation_guide() -> None:
    doctor = readiness.judge(readiness.DOCTOR, readiness.host())
    assert doctor.state == "no_card"  # the token
    assert doctor.next_step.startswith(
        "faites une demande de carte CPS auprès de l’Ordre des médecins"
    )
    assert doctor.detail == "aucune carte CPS d’idNat 810002813839 dans les lecteurs du parc"
    nurse = readiness.judge(readiness.NURSE, readiness.host())
    assert "formulaire 201" in nurse.next_step
    assert "sur le site de l’Ordre national des infirmiers" in nurse.next_step

    unverified = replace(readiness.NURSE, mobile_on_file=False)
    ready = readiness.judge(unverified, readiness.host(readiness.card(unverified.id_nat)))
    assert ready.next_step.startswith(
        "aucune : prêt pour SI-DEP et les services raccordés à Pro Santé Connect ; "
        "conseillé aussi : la carte e-CPS"
    )
    for words in ("espace privé", "numéro de téléphone portable", "adresse mail valide"):
        assert words in ready.next_step
    assert ready.detail.endswith("aucun numéro de téléphone portable enregistré (selon la liste)")

    no_reader = readiness.judge(
        readiness.DOCTOR, readiness.host(readiness.card(readiness.DOCTOR.id_nat), readers=0)
    )
    assert no_reader.state == "no_reader"
    assert no_reader.next_step.startswith("faites acheter un lecteur de carte CPS")
    assert "lecteur monofente" in no_reader.next_step

    cryptolib = readiness.judge(
        readiness.DOCTOR, readiness.host(readiness.card(readiness.DOCTOR.id_nat), cryptolib=None)
    )
    assert cryptolib.state == "install_cryptolib"
    assert "Cryptolib CPS" in cryptolib.next_step and "CPS Gestion" in cryptolib.next_step

    soon = readiness.judge(
        readiness.DOCTOR,
        readiness.host(readiness.card(readiness.DOCTOR.id_nat, not_after=NOW + 10 * DAY)),
    )
    assert soon.next_step == (
        "renouvelez la carte CPS avant son expiration le 7 déc. 2026 auprès de l’Ordre des médecins"
    )


def test_states_and_professions_are_words_in_both_languages() -> None:
    assert (state_label("ready"), profession_title("doctor")) == ("Ready", "Doctor")
    with i18n.use("fr"):
        assert state_label("ready") == "Prêt"
        assert state_label("no_card") == "Pas de carte CPS"
        assert profession_title("doctor") == "Médecin"
        assert profession_title("nurse") == "Infirmier/Infirmière"
        (row,) = readiness_rows([readiness.NURSE], [readiness.host()], NOW, Thresholds())
    assert (row["state"], row["profession"]) == ("no_card", "nurse")  # the tokens stay
    assert (row["state_label"], row["profession_title"]) == (
        "Pas de carte CPS",
        "Infirmier/Infirmière",
    )


# --- notifications ------------------------------------------------------------------------


@pytest.mark.usefixtures("french")
def test_a_notification_is_french_and_its_mqtt_document_keeps_english_keys() -> None:
    batch = Batch(
        fired=(alert("A1"), alert("A2", severity="critical", rule="card_expired")),
        repeated=(alert("A3", last_notified_at=EVENING, notifications=1),),
        resolved=(alert("A4", state="resolved", resolved_at=EVENING + timedelta(hours=1)),),
    )
    title, body = render(batch, PARIS)
    assert title == "alertes cpsfleet : 2 nouvelles, 1 toujours active, 1 résolue"
    sections = [part.splitlines()[0] for part in body.split("\n\n")]
    assert sections[1:4] == ["CRITIQUE (1)", "AVERTISSEMENT (2)", "RÉSOLUES (1)"]
    assert "[card_expired, nouvelle]" in body
    assert "active depuis le 27 nov. 2026" in body
    assert "résolue le 27 nov. 2026 23:00" in body  # 22:00 UTC in Paris
    assert body.endswith("mettez en silence avec `cpsfleet controller silence add`.")
    document = alert_document(batch.fired[0])
    assert {"rule", "severity", "host_id", "subject", "message", "started_at"} <= set(document)
    assert (document["state"], document["severity"]) == ("firing", "warning")


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, str]]:
    """A local SMTP server (no TLS, no authentication) and the apprise URL that reaches it."""
    inbox, port = Inbox(), free_port()
    server = SmtpController(inbox, hostname="127.0.0.1", port=port)
    server.start()
    url = f"mailto://127.0.0.1:{port}?mode=insecure&from=alerts@cpsfleet.test&to=ssti@cpsfleet.test"
    yield inbox, url
    server.stop()


def test_a_controller_configured_in_french_mails_its_alerts_in_french(
    database: str, own_broker: Broker, smtp: tuple[Inbox, str]
) -> None:
    """A real controller (language = "fr", while the test itself reads English) stores its
    findings in French and mails them in French from its sender thread."""
    inbox, url = smtp
    settings = ControllerSettings(
        broker=own_broker.url,
        database=database,
        evaluate_every=1,
        language="fr",
        # Working hours all week: the card in its reader is left there at no hour of the run.
        thresholds=Thresholds(working_hours="00:00-24:00", working_days="mon-sun"),
        dashboard=DashboardSettings(listen="127.0.0.1:0"),
        alerts=AlertSettings(channels=(url,), retry_after_s=1, retry_max_s=2),
    )
    assert settings.spoken == "fr" and i18n.current() == "en"
    now = datetime.now(UTC)
    running = start(settings)
    try:
        publish(own_broker, topic(HOST, "status"), expiring_status(now))
        wait_for(lambda: bool(inbox.messages), 90, "the French e-mail")
    finally:
        stop(running)
    message = inbox.messages[0]
    assert message["Subject"] == "alertes cpsfleet : 1 nouvelle"
    text = inbox.texts()[0]
    with i18n.use("fr"):
        ends = day((now + 10 * DAY).astimezone(PARIS).date())
    assert "1 nouvelle." in text and "CRITIQUE (1)" in text
    assert f"la carte CPS {SERIAL}" in text
    assert (
        f"expire le {ends} (encore " in text and "renouvelez-la [card_expiring, nouvelle]" in text
    )
    assert "Acquittez avec `cpsfleet controller ack`" in text
    assert i18n.current() == "en"  # the test's own language is untouched
    db = connect(database, readonly=True)
    try:
        rows = db.execute("select rule, severity, message from findings").fetchall()
    finally:
        db.close()
    stored = {rule: (severity, message) for rule, severity, message in rows}
    severity, said = stored["card_expiring"]  # the rule and severity stay tokens
    assert severity == "critical" and f"expire le {ends}" in said
