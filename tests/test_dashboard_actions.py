"""Acting from the dashboard: acknowledge an alert, silence it, end the silence, ask a host or
a site for a rescan, from the pages (sessions and their CSRF token) and from ``/api/v1`` (API
tokens); a real uvicorn server on a real database (SQLite or PostgreSQL), a real Mosquitto
for the rescans.

The fleet is test_dashboard's: Lyon Part-Dieu (a host with alerts about its cards) and
Grenoble (a host with no reader and no Cryptolib, its ``no_reader`` alert silenced). Its
people: an admin, an operator of Lyon Part-Dieu and a viewer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from html import unescape
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cpsfleet.controller.alerts.book import AlertBook
from cpsfleet.controller.db.people import AuditEntry, People
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.people import Role
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.controller.web.app import create_app
from cpsfleet.controller.web.auth import DashboardSettings, new_user_token
from cpsfleet.controller.web.server import DashboardServer
from cpsfleet.schemas.commands import COMMAND_SCHEMA
from cpsfleet.schemas.times import format_utc
from cpsfleet.schemas.topics import command_topic
from tests.conftest import Broker, free_port, wait_for
from tests.test_dashboard import (
    EXPIRED,
    GRENOBLE_HOST,
    LYON_HOST,
    NURSE,
    PASSWORD,
    PASSWORD_HASH,
    TOKEN_HASH,
    Reply,
    build_fleet,
    csrf_of,
    login,
    request,
    session_cookie,
)
from tests.test_readiness_cli import NOW

LYON, GRENOBLE = "Lyon Part-Dieu", "Grenoble"
# Alerts of the fleet, as (rule, host, subject).
EXPIRING = ("card_expiring", LYON_HOST, NURSE)
EXPIRED_CARD = ("card_expired", LYON_HOST, EXPIRED)
READER_CARD = ("non_cps_card", LYON_HOST, "Virtual PCD 2 00 01")
NO_READER = ("no_reader", GRENOBLE_HOST, "")
NO_CRYPTOLIB = ("cryptolib_missing", GRENOBLE_HOST, "")
# The silence of Grenoble's no_reader alert.
GRENOBLE_SILENCE = 1
# What the database keeps of the dashboard's clock: whole seconds.
SECOND = NOW.replace(microsecond=0)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Person:
    name: str
    role: Role
    sites: tuple[str, ...] | None
    token: str = field(default_factory=new_user_token)


ADMIN = Person("ada", "admin", None)
OPERATOR = Person("lea", "operator", (LYON,))
VIEWER = Person("victor", "viewer", None)
PEOPLE = (ADMIN, OPERATOR, VIEWER)


def add_people(database: str) -> None:
    """The people, each with the tests' password and an API token of their own."""
    with Store(database) as store:
        people = People(store.database)
        for person in PEOPLE:
            people.add_user(person.name, person.role, person.sites, NOW, PASSWORD_HASH)
            people.add_token(person.name, "tests", person.token, NOW, None)


@pytest.fixture
def database(database: str) -> str:
    """The fleet and its people in a new database for each test: the actions change it."""
    build_fleet(database)
    add_people(database)
    return database


@contextmanager
def serving(database: str, broker: str | None = None) -> Iterator[str]:
    """The dashboard of ``database`` on a free port; its commands go to ``broker`` (by
    default, a port where nobody listens)."""
    settings = ControllerSettings(
        broker=broker or f"mqtt://127.0.0.1:{free_port()}",
        database=str(database),
        dashboard=DashboardSettings(
            listen="127.0.0.1:0", password_hash=PASSWORD_HASH, token_hash=TOKEN_HASH
        ),
    )
    server = DashboardServer(settings.dashboard, create_app(settings, clock=lambda: NOW))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def url(database: str) -> Iterator[str]:
    with serving(database) as address:
        yield address


@dataclass
class Client:
    """Someone signed in: by a session (its cookie and CSRF token) or an API token."""

    url: str
    headers: dict[str, str]
    csrf: str | None = None

    def get(self, path: str) -> Reply:
        return request(self.url, path, headers=self.headers)

    def form(self, path: str, fields: dict[str, str], csrf: bool = True, **headers: str) -> Reply:
        """POST ``fields`` as the page's form does (with the session's CSRF token, unless
        told not to)."""
        sent = {"csrf": self.csrf} if csrf and self.csrf else {}
        body = urlencode(sent | fields).encode()
        return self.post(path, body, FORM | headers)

    def json(self, path: str, document: Any = None, **headers: str) -> Reply:
        body = json.dumps({} if document is None else document).encode()
        return self.post(path, body, JSON | headers)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        return request(self.url, path, "POST", self.headers | headers, body)


def by_token(url: str, person: Person) -> Client:
    return Client(url, {"Authorization": f"Bearer {person.token}"})


def by_session(url: str, person: Person) -> Client:
    """``person`` signed in with the login form, with the CSRF token of their pages."""
    reply = login(url, PASSWORD, user=person.name)
    assert reply.status == 303, reply.text
    cookie = {"Cookie": session_cookie(reply)}
    page = request(url, "/hosts", headers=cookie)
    assert page.status == 200, page.text
    return Client(url, cookie, csrf_of(page.text))


def alert_path(rule: str, host_id: str, subject: str) -> str:
    return f"/alerts/{rule}/{host_id}/{quote(subject)}"


def alert_fields(key: tuple[str, str, str], **more: str) -> dict[str, str]:
    rule, host_id, subject = key
    return {"rule": rule, "host": host_id, "subject": subject, **more}


def key_text(key: tuple[str, str, str]) -> str:
    return "/".join(key)


def done_of(reply: Reply) -> tuple[str, str]:
    """The page a form's 303 goes back to, and its ``done``."""
    assert reply.status == 303, reply.text
    parts = urlsplit(reply.headers["location"])
    return parts.path, parse_qs(parts.query)["done"][0]


# --- what the database holds ------------------------------------------------------------------


def book_state(database: str) -> tuple[Any, ...]:
    """The alerts (their acknowledgements) and every silence: what an action may change."""
    with Store.open_readonly(database) as store:
        book = AlertBook(store.database)
        alerts = [(alert.key, alert.acknowledgement) for alert in book.alerts()]
        return tuple(alerts), tuple(book.silences(NOW, include_expired=True))


def alert_of(database: str, key: tuple[str, str, str]) -> Any:
    with Store.open_readonly(database) as store:
        [found] = [alert for alert in AlertBook(store.database).alerts() if alert.key == key]
    return found


def silences(database: str) -> dict[int, Any]:
    with Store.open_readonly(database) as store:
        found = AlertBook(store.database).silences(NOW, include_expired=True)
    return {silence.id: silence for silence in found}


ACTIONS = ("alert.", "silence.", "host.", "site.")


def audit(database: str, action: str | None = None) -> list[AuditEntry]:
    """The audit trail's entries of actions (not the sign-ins, imports...), newest first."""
    with Store.open_readonly(database) as store:
        entries = People(store.database).audit(action=action)
    return [entry for entry in entries if entry.action.startswith(ACTIONS)]


def last_entry(database: str) -> AuditEntry:
    return audit(database)[0]


# --- acknowledging, silencing and ending a silence ----------------------------------------------


def test_an_operator_acknowledges_an_alert_of_their_site_with_a_note(
    url: str, database: str
) -> None:
    lea = by_session(url, OPERATOR)
    page = lea.get(alert_path(*EXPIRING))
    assert page.status == 200 and 'id="acknowledge-form"' in page.text
    assert "Nobody acted on this alert from the dashboard." in page.text
    note = "Card renewal ordered from the ANS, arrives Monday"
    reply = lea.form("/alerts/acknowledge", alert_fields(EXPIRING, note=note))
    assert done_of(reply) == (alert_path(*EXPIRING), "acknowledged")
    acknowledged = alert_of(database, EXPIRING).acknowledgement
    assert (acknowledged.by, acknowledged.reason, acknowledged.at) == ("lea", note, SECOND)
    entry = last_entry(database)
    assert (entry.actor, entry.at, entry.source) == ("lea", SECOND, "127.0.0.1")
    assert (entry.action, entry.target, entry.outcome) == (
        "alert.acknowledge",
        key_text(EXPIRING),
        "ok",
    )
    assert entry.detail == {"note": note}
    after = lea.get(reply.headers["location"])
    assert 'data-done="acknowledged"' in after.text and "The alert is acknowledged." in after.text
    assert "by lea on" in unescape(after.text) and note in unescape(after.text)
    history = after.text.split('id="alert-history-table"', 1)[1]
    assert 'data-action="alert.acknowledge"' in history and note in unescape(history)


def test_an_operator_silences_an_alert_for_a_while_then_ends_the_silence(
    url: str, database: str
) -> None:
    lea = by_session(url, OPERATOR)
    before = set(silences(database))
    fields = alert_fields(EXPIRED_CARD, scope="alert", duration="4h", reason="card in the post")
    reply = lea.form("/alerts/silence", fields)
    assert done_of(reply) == (alert_path(*EXPIRED_CARD), "silenced")
    [new] = set(silences(database)) - before
    made = silences(database)[new]
    assert (made.rule, made.host_id, made.subject) == EXPIRED_CARD
    assert (made.until, made.reason, made.created_by) == (
        SECOND + timedelta(hours=4),
        "card in the post",
        "lea",
    )
    assert made.active(NOW)
    entry = last_entry(database)
    assert (entry.actor, entry.action, entry.target, entry.outcome) == (
        "lea",
        "alert.silence",
        key_text(EXPIRED_CARD),
        "ok",
    )
    assert entry.detail == {
        "silence": new,
        "until": format_utc(NOW + timedelta(hours=4)),
        "reason": "card in the post",
    }
    page = lea.get(reply.headers["location"])
    assert "The silence is in force." in page.text
    assert f'<tr data-silence="{new}">' in page.text
    assert f'action="/silences/{new}/expire"' in page.text
    # Un-silence: the page's End button.
    back = alert_path(*EXPIRED_CARD)
    reply = lea.form(f"/silences/{new}/expire", {"back": back})
    assert done_of(reply) == (back, "silence_ended")
    ended = silences(database)[new]
    assert ended.expired_at == SECOND and not ended.active(NOW)
    entry = last_entry(database)
    assert (entry.actor, entry.action, entry.target, entry.outcome) == (
        "lea",
        "silence.expire",
        f"silence/{new}",
        "ok",
    )
    page = lea.get(reply.headers["location"])
    assert "The silence has ended." in page.text
    assert f'action="/silences/{new}/expire"' not in page.text
    history = page.text.split('id="alert-history-table"', 1)[1]
    assert 'data-action="alert.silence"' in history
    assert 'data-action="silence.expire"' in history


def test_a_silence_of_a_rule_on_a_host_covers_its_alerts(url: str, database: str) -> None:
    lea = by_session(url, OPERATOR)
    fields = alert_fields(EXPIRED_CARD, scope="host", duration="1d", reason="reader swap")
    assert done_of(lea.form("/alerts/silence", fields))[1] == "silenced"
    made = max(silences(database).values(), key=lambda silence: silence.id)
    assert (made.rule, made.host_id, made.subject) == ("card_expired", LYON_HOST, None)
    assert made.until == SECOND + timedelta(days=1)
    assert last_entry(database).target == f"card_expired/{LYON_HOST}/*"


def test_a_silence_until_a_date_of_the_dashboards_time_zone(url: str, database: str) -> None:
    lea = by_session(url, OPERATOR)
    local = (NOW + timedelta(days=3)).astimezone(ZoneInfo(DashboardSettings().timezone))
    until = local.strftime("%Y-%m-%dT%H:%M")
    fields = alert_fields(EXPIRING, duration="custom", until=until, reason="holiday")
    assert done_of(lea.form("/alerts/silence", fields))[1] == "silenced"
    made = max(silences(database).values(), key=lambda silence: silence.id)
    assert made.until == local.replace(second=0, microsecond=0)


def test_the_json_twins_answer_the_same(url: str, database: str) -> None:
    lea = by_token(url, OPERATOR)
    fields = {"rule": EXPIRING[0], "host": LYON_HOST, "subject": NURSE, "note": "ordered"}
    reply = lea.json("/api/v1/alerts/acknowledge", fields)
    assert reply.status == 200, reply.text
    assert reply.json() == {"acknowledged": key_text(EXPIRING)}
    assert alert_of(database, EXPIRING).acknowledgement.reason == "ordered"
    reply = lea.json(
        "/api/v1/silences",
        {"rule": "card_expired", "host": LYON_HOST, "duration": "1w", "reason": "away"},
    )
    assert reply.status == 200, reply.text
    made = reply.json()
    until = SECOND + timedelta(weeks=1)
    assert made == {"id": made["id"], "until": format_utc(until)}
    silence = silences(database)[made["id"]]
    assert (silence.rule, silence.host_id, silence.subject, silence.until) == (
        "card_expired",
        LYON_HOST,
        None,
        until,
    )
    reply = lea.json(f"/api/v1/silences/{made['id']}/expire")
    assert reply.status == 200 and reply.json() == {"expired": made["id"]}
    assert silences(database)[made["id"]].expired_at == SECOND
    entries = [(entry.actor, entry.action, entry.outcome) for entry in audit(database)]
    assert entries == [
        ("lea", "silence.expire", "ok"),
        ("lea", "alert.silence", "ok"),
        ("lea", "alert.acknowledge", "ok"),
    ]


def test_a_silence_until_a_date_through_the_api(url: str, database: str) -> None:
    until = NOW + timedelta(days=2)
    document = {"rule": EXPIRING[0], "host": LYON_HOST, "subject": NURSE, "reason": "r"}
    reply = by_token(url, OPERATOR).json(
        "/api/v1/silences", document | {"until": format_utc(until)}
    )
    assert reply.status == 200, reply.text
    assert silences(database)[reply.json()["id"]].until == until.replace(microsecond=0)


def test_an_admin_silences_a_rule_on_every_host(url: str, database: str) -> None:
    ada = by_session(url, ADMIN)
    page = ada.get(alert_path(*EXPIRING))
    assert '<option value="rule">' in page.text
    fields = alert_fields(EXPIRING, scope="rule", duration="1h", reason="known issue")
    assert done_of(ada.form("/alerts/silence", fields))[1] == "silenced"
    made = max(silences(database).values(), key=lambda silence: silence.id)
    assert (made.rule, made.host_id, made.subject, made.created_by) == (
        "card_expiring",
        None,
        None,
        "ada",
    )


# --- refusals --------------------------------------------------------------------------------

# Each action on Grenoble, as a form (path, fields) and as its JSON twin (path, document).
GRENOBLE_FORMS = {
    "alert.acknowledge": ("/alerts/acknowledge", alert_fields(NO_CRYPTOLIB, note="mine")),
    "alert.silence": (
        "/alerts/silence",
        alert_fields(NO_CRYPTOLIB, duration="1h", reason="mine"),
    ),
    "silence.expire": (f"/silences/{GRENOBLE_SILENCE}/expire", {}),
    "host.rescan": (f"/hosts/{GRENOBLE_HOST}/rescan", {}),
    "site.rescan": ("/sites/rescan", {"site": GRENOBLE}),
}
GRENOBLE_API = {
    "alert.acknowledge": ("/api/v1/alerts/acknowledge", alert_fields(NO_CRYPTOLIB, note="x")),
    "alert.silence": (
        "/api/v1/silences",
        {"rule": "cryptolib_missing", "host": GRENOBLE_HOST, "duration": "1h", "reason": "x"},
    ),
    "silence.expire": (f"/api/v1/silences/{GRENOBLE_SILENCE}/expire", {}),
    "host.rescan": (f"/api/v1/hosts/{GRENOBLE_HOST}/rescan", {}),
    "site.rescan": (f"/api/v1/sites/{quote(GRENOBLE)}/rescan", {}),
}
# The same actions on Lyon Part-Dieu, which the operator may do.
LYON_FORMS = {
    "alert.acknowledge": ("/alerts/acknowledge", alert_fields(EXPIRING, note="mine")),
    "alert.silence": ("/alerts/silence", alert_fields(EXPIRING, duration="1h", reason="r")),
    "silence.expire": (f"/silences/{GRENOBLE_SILENCE}/expire", {}),
    "host.rescan": (f"/hosts/{LYON_HOST}/rescan", {}),
    "site.rescan": ("/sites/rescan", {"site": LYON}),
}


def refused(reply: Reply, why: str) -> None:
    assert reply.status == 403, reply.text
    assert why in unescape(reply.text)


@pytest.mark.parametrize("action", list(GRENOBLE_FORMS))
def test_an_operator_may_not_act_on_another_site(url: str, database: str, action: str) -> None:
    before = book_state(database)
    path, fields = GRENOBLE_FORMS[action]
    refused(by_session(url, OPERATOR).form(path, fields), "your rights do not cover")
    entry = last_entry(database)
    assert (entry.actor, entry.action, entry.outcome) == ("lea", action, "refused")
    assert entry.detail["status"] == 403
    path, document = GRENOBLE_API[action]
    reply = by_token(url, OPERATOR).json(path, document)
    assert reply.status == 403 and "your rights do not cover" in reply.json()["detail"]
    assert [entry.outcome for entry in audit(database, action)] == ["refused", "refused"]
    assert book_state(database) == before


def test_the_operator_sees_no_form_on_another_sites_pages(url: str) -> None:
    lea = by_session(url, OPERATOR)
    assert lea.get(alert_path(*NO_READER)).status == 403
    assert lea.get(f"/hosts/{GRENOBLE_HOST}").status in (403, 404)
    lyon = lea.get(f"/hosts/{LYON_HOST}")
    assert 'id="rescan-form"' in lyon.text
    hosts = lea.get("/hosts")
    assert 'id="site-rescan-form"' in hosts.text
    assert f"<option>{GRENOBLE}</option>" not in hosts.text
    # The silence of Grenoble is not theirs to end.
    alerts = lea.get("/alerts")
    assert f'action="/silences/{GRENOBLE_SILENCE}/expire"' not in alerts.text


@pytest.mark.parametrize("action", list(LYON_FORMS))
def test_a_viewer_may_not_act(url: str, database: str, action: str) -> None:
    before = book_state(database)
    victor = by_session(url, VIEWER)
    path, fields = LYON_FORMS[action]
    refused(victor.form(path, fields), "your role does not allow this")
    entry = last_entry(database)
    assert (entry.actor, entry.action, entry.outcome) == ("victor", action, "refused")
    reply = by_token(url, VIEWER).json(*GRENOBLE_API[action])
    assert reply.status == 403 and reply.json()["detail"] == "your role does not allow this"
    assert book_state(database) == before


def test_a_viewer_sees_no_action_form(url: str) -> None:
    victor = by_session(url, VIEWER)
    page = victor.get(alert_path(*EXPIRING))
    assert page.status == 200
    for form in ('id="acknowledge-form"', 'id="silence-form"', "/expire"):
        assert form not in page.text
    assert 'id="rescan-form"' not in victor.get(f"/hosts/{LYON_HOST}").text
    assert 'id="site-rescan-form"' not in victor.get("/hosts").text


@pytest.mark.parametrize("action", list(LYON_FORMS))
def test_a_session_without_its_csrf_token_may_not_act(url: str, database: str, action: str) -> None:
    before = book_state(database)
    lea = by_session(url, OPERATOR)
    path, fields = LYON_FORMS[action]
    refused(lea.form(path, fields, csrf=False), "this form has expired")
    refused(lea.form(path, fields | {"csrf": "0" * 43}, csrf=False), "this form has expired")
    refused(lea.form(path, fields, csrf=False, **{"X-CSRF-Token": "wrong"}), "expired")
    outcomes = [(entry.actor, entry.outcome) for entry in audit(database, action)]
    assert outcomes == [("lea", "refused")] * 3
    assert book_state(database) == before


def test_a_session_may_use_the_json_twins_with_the_csrf_header(url: str, database: str) -> None:
    lea = by_session(url, OPERATOR)
    document = alert_fields(EXPIRING, note="from a script in the page")
    assert lea.json("/api/v1/alerts/acknowledge", document).status == 403
    assert alert_of(database, EXPIRING).acknowledgement is None
    assert lea.csrf is not None
    reply = lea.json("/api/v1/alerts/acknowledge", document, **{"X-CSRF-Token": lea.csrf})
    assert reply.status == 200, reply.text
    assert alert_of(database, EXPIRING).acknowledgement.by == "lea"


@pytest.mark.parametrize("action", list(LYON_FORMS))
def test_a_form_from_another_site_is_refused(url: str, database: str, action: str) -> None:
    before = book_state(database)
    lea = by_session(url, OPERATOR)
    path, fields = LYON_FORMS[action]
    refused(lea.form(path, fields, Origin="https://evil.example"), "another site")
    refused(by_token(url, OPERATOR).form(path, fields, Origin="https://evil.example"), "site")
    assert book_state(database) == before
    assert audit(database) == []  # refused before it reached the action
    # Refused before anyone is known to have sent it: a browser sends no session cookie
    # with another site's form.
    with Store.open_readonly(database) as store:
        entries = People(store.database).audit(action="cross_site")
    assert [(entry.actor, entry.target, entry.outcome) for entry in entries] == [
        ("", path, "refused")
    ] * 2
    assert entries[0].detail == {"origin": "https://evil.example"}
    assert entries[0].source == "127.0.0.1"


# --- bad input -------------------------------------------------------------------------------


def unchanged(database: str, before: tuple[Any, ...], reply: Reply, status: int, why: str) -> None:
    assert reply.status == status, reply.text
    assert why in unescape(reply.text), reply.text
    assert book_state(database) == before


@pytest.mark.parametrize(
    ("fields", "status", "why"),
    [
        (alert_fields(("card_expiring", LYON_HOST, "nobody"), note="n"), 404, "no alert"),
        (alert_fields(("no_such_rule", LYON_HOST, ""), note="n"), 404, "no alert"),
        (alert_fields(("card_expiring", "ffffffffffffffff", NURSE), note="n"), 404, "no "),
        (alert_fields(EXPIRING, note=""), 400, "the note is empty"),
        (alert_fields(EXPIRING, note="   "), 400, "the note is empty"),
        (alert_fields(EXPIRING), 400, "the note is empty"),
        (alert_fields(EXPIRING, note="x" * 2001), 400, "2001 characters long: at most 2000"),
        ({"note": "no alert named"}, 404, "no alert"),
    ],
)
def test_a_bad_acknowledgement_is_refused_and_changes_nothing(
    url: str, database: str, fields: dict[str, str], status: int, why: str
) -> None:
    before = book_state(database)
    lea = by_session(url, OPERATOR)
    unchanged(database, before, lea.form("/alerts/acknowledge", fields), status, why)
    entry = last_entry(database)
    assert (entry.action, entry.outcome) == ("alert.acknowledge", "failed")
    reply = by_token(url, OPERATOR).json("/api/v1/alerts/acknowledge", fields)
    unchanged(database, before, reply, status, why)


def test_a_note_of_exactly_the_limit_is_taken(url: str, database: str) -> None:
    note = "é" * 2000
    reply = by_session(url, OPERATOR).form("/alerts/acknowledge", alert_fields(EXPIRING, note=note))
    assert done_of(reply)[1] == "acknowledged"
    assert alert_of(database, EXPIRING).acknowledgement.reason == note


@pytest.mark.parametrize(
    ("fields", "status", "why"),
    [
        ({"duration": "0"}, 400, "choose a duration"),
        ({"duration": "0s"}, 400, "choose a duration"),
        ({"duration": ""}, 400, "choose a duration"),
        ({"duration": "custom"}, 400, "choose a duration"),
        ({"duration": "custom", "until": "tomorrow"}, 400, "is not a date and time"),
        ({"duration": "custom", "until": format_utc(NOW)}, 400, "has already passed"),
        ({"duration": "custom", "until": "2001-01-01T00:00"}, 400, "has already passed"),
        ({"duration": "custom", "until": "9999-12-31T23:59"}, 400, "at most"),
        ({"duration": "custom", "until": "2400-01-01"}, 400, "at most"),
        ({"duration": "1h", "reason": ""}, 400, "the reason is empty"),
        ({"duration": "1h", "reason": "r" * 2001}, 400, "at most 2000"),
        ({"duration": "1h", "scope": "everything"}, 400, "scope"),
        ({"duration": "1h", "subject": "nobody"}, 400, "is about 'nobody'"),
        ({"duration": "1h", "rule": "no_such_rule"}, 400, "unknown rule"),
        ({"duration": "1h", "host": "ffffffffffffffff"}, 404, "no host"),
    ],
)
def test_a_bad_silence_is_refused_and_changes_nothing(
    url: str, database: str, fields: dict[str, str], status: int, why: str
) -> None:
    before = book_state(database)
    sent = alert_fields(EXPIRING, reason="because") | fields
    lea = by_session(url, OPERATOR)
    unchanged(database, before, lea.form("/alerts/silence", sent), status, why)
    entry = last_entry(database)
    assert (entry.action, entry.outcome) == ("alert.silence", "failed")


@pytest.mark.parametrize(
    ("document", "status", "why"),
    [
        ({"duration": "0"}, 400, "choose a duration"),
        ({"until": format_utc(NOW - timedelta(minutes=1))}, 400, "has already passed"),
        ({"until": "9999-12-31T23:59:59Z"}, 400, "at most"),
        ({"until": 1700000000}, 400, "until must be a string"),
        ({"duration": "1h", "reason": 7}, 400, "reason must be a string"),
        ({"duration": "1h", "reason": None}, 400, "reason must be a string"),
        ({"duration": "1h", "rule": ["card_expiring"]}, 400, "rule must be a string"),
    ],
)
def test_a_bad_silence_through_the_api_is_refused(
    url: str, database: str, document: dict[str, Any], status: int, why: str
) -> None:
    before = book_state(database)
    sent = {"rule": EXPIRING[0], "host": LYON_HOST, "reason": "r"} | document
    reply = by_token(url, OPERATOR).json("/api/v1/silences", sent)
    unchanged(database, before, reply, status, why)


def test_ending_a_silence_that_is_not_there_or_over(url: str, database: str) -> None:
    before = book_state(database)
    ada = by_token(url, ADMIN)
    unchanged(database, before, ada.json("/api/v1/silences/999/expire"), 404, "no silence 999")
    reply = ada.json("/api/v1/silences/not-a-number/expire")
    assert reply.status == 422 and book_state(database) == before
    assert ada.json(f"/api/v1/silences/{GRENOBLE_SILENCE}/expire").status == 200
    ended = book_state(database)
    again = ada.json(f"/api/v1/silences/{GRENOBLE_SILENCE}/expire")
    unchanged(database, ended, again, 400, "already ended")


def test_an_unknown_alerts_page_is_a_404(url: str) -> None:
    ada = by_session(url, ADMIN)
    reply = ada.get(alert_path("card_expiring", LYON_HOST, "nobody"))
    assert reply.status == 404 and "no alert card_expiring/" in unescape(reply.text)
    assert ada.get(alert_path(*READER_CARD)).status == 200  # a subject with spaces
    assert ada.get(alert_path(*NO_READER)).status == 200  # the host's own alert: no subject


@pytest.mark.parametrize(
    ("body", "headers", "status", "why"),
    [
        (b'{"rule": "card_expiring"}', JSON, 415, "send a form"),
        (b"rule=card_expiring", {}, 415, "send a form"),
        (b"\xff\xfe\x00garbage=%%%&&&==", FORM, 400, "the note is empty"),
        (b"rule=%ZZ&host=%&subject&note=n", FORM, 404, "no alert"),
        (b"x" * (65 * 1024), FORM, 413, "too large"),
        (b"note=" + b"x" * (1024 * 1024), FORM, 413, "too large"),
    ],
)
def test_malformed_form_bodies_are_refused(
    url: str, database: str, body: bytes, headers: dict[str, str], status: int, why: str
) -> None:
    before = book_state(database)
    reply = by_token(url, OPERATOR).post("/alerts/acknowledge", body, headers)
    unchanged(database, before, reply, status, why)


def test_a_sessions_form_too_large_is_refused_unread(url: str, database: str) -> None:
    before = book_state(database)
    lea = by_session(url, OPERATOR)
    body = urlencode({"csrf": lea.csrf or ""}).encode() + b"&note=" + b"x" * (65 * 1024)
    unchanged(database, before, lea.post("/alerts/acknowledge", body, FORM), 413, "too large")
    entry = last_entry(database)
    assert (entry.actor, entry.action, entry.outcome) == ("lea", "alert.acknowledge", "failed")
    assert entry.detail["status"] == 413


@pytest.mark.parametrize(
    ("body", "status", "why"),
    [
        (b"not json", 400, "the body is not JSON"),
        (b"\xff\xfe", 400, "the body is not JSON"),
        (b"[1, 2]", 400, "not a JSON object"),
        (b'"text"', 400, "not a JSON object"),
        (b'{"rule": "card_expiring", "host": 3}', 400, "host must be a string"),
        (b'{"a": ' * 100_000, 413, "too large"),
        (b'{"note": "' + b"x" * (1024 * 1024) + b'"}', 413, "too large"),
    ],
)
def test_malformed_json_bodies_are_refused(
    url: str, database: str, body: bytes, status: int, why: str
) -> None:
    before = book_state(database)
    reply = by_token(url, OPERATOR).post("/api/v1/alerts/acknowledge", body, JSON)
    unchanged(database, before, reply, status, why)


def test_a_form_goes_back_only_to_a_page_of_the_dashboard(url: str, database: str) -> None:
    lea = by_session(url, OPERATOR)
    for back in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        fields = alert_fields(EXPIRING, note="n", back=back)
        assert done_of(lea.form("/alerts/acknowledge", fields))[0] == alert_path(*EXPIRING)
    # A browser reads a backslash as a slash, and drops tabs and line breaks.
    for back in ("/\\evil.example/x", "/\t/evil.example/x", "/\n/evil.example"):
        fields = alert_fields(EXPIRING, note="n", back=back)
        assert done_of(lea.form("/alerts/acknowledge", fields))[0] == alert_path(*EXPIRING)
    fields = alert_fields(EXPIRING, note="n", back="/alerts?site=Lyon")
    reply = lea.form("/alerts/acknowledge", fields)
    assert reply.headers["location"] == "/alerts?site=Lyon&done=acknowledged"


# --- rescans ---------------------------------------------------------------------------------


class Agents:
    """A stand-in for the agents on the broker: the command messages their topics receive."""

    def __init__(self, broker: Broker, *host_ids: str) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe([(command_topic(host_id), 1) for host_id in host_ids])
        assert self.subscribed.wait(10), "the broker did not acknowledge the subscription"

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.received.append((message.topic, json.loads(message.payload)))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def agents(own_broker: Broker) -> Iterator[Agents]:
    listening = Agents(own_broker, LYON_HOST, GRENOBLE_HOST)
    yield listening
    listening.close()


def commands_for(agents: Agents, count: int) -> list[tuple[str, dict[str, Any]]]:
    wait_for(lambda: len(agents.received) >= count, what=f"{count} command(s)")
    return list(agents.received)


def test_an_operator_asks_a_host_of_their_site_for_a_rescan(
    database: str, own_broker: Broker, agents: Agents
) -> None:
    with serving(database, own_broker.url) as address:
        lea = by_session(address, OPERATOR)
        refused(lea.form(f"/hosts/{GRENOBLE_HOST}/rescan", {}), "your rights do not cover")
        reply = lea.form(f"/hosts/{LYON_HOST}/rescan", {})
        assert done_of(reply) == (f"/hosts/{LYON_HOST}", "rescan_sent")
        [(topic, command)] = commands_for(agents, 1)
        assert topic == command_topic(LYON_HOST)
        assert command["schema"] == COMMAND_SCHEMA and command["action"] == "rescan"
        assert command["host_id"] == LYON_HOST and "lea" in command["issued_by"]
        page = lea.get(reply.headers["location"])
        assert 'data-done="rescan_sent"' in page.text
        reply = by_token(address, OPERATOR).json(f"/api/v1/hosts/{LYON_HOST}/rescan")
        assert reply.status == 200 and reply.json() == {"sent": [LYON_HOST], "no_agent": []}
        assert [topic for topic, _ in commands_for(agents, 2)] == [command_topic(LYON_HOST)] * 2
    entries = [(entry.action, entry.target, entry.outcome) for entry in audit(database)]
    assert entries == [
        ("host.rescan", LYON_HOST, "ok"),
        ("host.rescan", LYON_HOST, "ok"),
        ("host.rescan", GRENOBLE_HOST, "refused"),
    ]
    assert audit(database)[0].detail == {"sent": [LYON_HOST], "no_agent": []}


def test_an_operator_asks_their_site_for_a_rescan(
    database: str, own_broker: Broker, agents: Agents
) -> None:
    with serving(database, own_broker.url) as address:
        lea = by_session(address, OPERATOR)
        refused(lea.form("/sites/rescan", {"site": GRENOBLE}), "your rights do not cover")
        reply = lea.form("/sites/rescan", {"site": " lyon  PART-DIEU "})  # as filters name it
        path, done = done_of(reply)
        assert (path, done) == ("/hosts", "rescan_sent")
        [(topic, command)] = commands_for(agents, 1)
        assert topic == command_topic(LYON_HOST) and command["action"] == "rescan"
        reply = by_token(address, OPERATOR).json(f"/api/v1/sites/{quote(LYON)}/rescan")
        assert reply.status == 200 and reply.json() == {"sent": [LYON_HOST], "no_agent": []}
        commands_for(agents, 2)
        reply = by_token(address, OPERATOR).json("/api/v1/sites/Atlantis/rescan")
        assert reply.status == 403  # a site the operator's rights do not cover, known or not
        reply = by_token(address, ADMIN).json("/api/v1/sites/Atlantis/rescan")
        assert reply.status == 404 and "no host in site 'Atlantis'" in reply.json()["detail"]
        everything = by_token(address, ADMIN).json(f"/api/v1/sites/{GRENOBLE}/rescan")
        assert everything.status == 200
        assert [topic for topic, _ in commands_for(agents, 3)][2] == command_topic(GRENOBLE_HOST)
    assert [entry.target for entry in audit(database, "site.rescan")][-2:] == [
        " lyon  PART-DIEU ",
        GRENOBLE,
    ]


def test_a_host_whose_agent_is_not_connected_is_named(database: str, own_broker: Broker) -> None:
    with serving(database, own_broker.url) as address:
        reply = by_session(address, OPERATOR).form(f"/hosts/{LYON_HOST}/rescan", {})
        assert done_of(reply)[1] == "rescan_no_agent"
        page = by_session(address, OPERATOR).get(reply.headers["location"])
        assert "some agents were not connected" in page.text
        reply = by_token(address, OPERATOR).json(f"/api/v1/hosts/{LYON_HOST}/rescan")
        assert reply.json() == {"sent": [LYON_HOST], "no_agent": [LYON_HOST]}


def test_a_rescan_without_a_broker_is_a_clear_503(url: str, database: str) -> None:
    reply = by_token(url, OPERATOR).json(f"/api/v1/hosts/{LYON_HOST}/rescan")
    assert reply.status == 503
    assert reply.json()["detail"].startswith("the rescan could not be sent: cannot reach")
    entry = last_entry(database)
    assert (entry.action, entry.outcome) == ("host.rescan", "failed")


def test_a_rescan_of_an_unknown_host_or_no_site(url: str, database: str) -> None:
    ada = by_token(url, ADMIN)
    reply = ada.json("/api/v1/hosts/ffffffffffffffff/rescan")
    assert reply.status == 404 and "no host 'ffffffffffffffff'" in reply.json()["detail"]
    reply = by_session(url, ADMIN).form("/sites/rescan", {"site": "  "})
    assert reply.status == 400 and "choose a site" in reply.text


# --- in French ---------------------------------------------------------------------------------

FRENCH = {"Accept-Language": "fr"}


def test_the_alerts_page_and_its_answers_in_french(url: str, database: str) -> None:
    lea = by_session(url, OPERATOR)
    lea.headers |= FRENCH
    page = unescape(lea.get(alert_path(*EXPIRING)).text)
    for words in ("Acquitter", "Mettre en silence", "1 heure", "1 semaine", "Silences sur"):
        assert words in page, words
    assert "Personne n'a agi sur cette alerte depuis le tableau de bord." in page
    reply = lea.form("/alerts/acknowledge", alert_fields(EXPIRING, note="commandée"))
    after = unescape(lea.get(reply.headers["location"]).text)
    assert "L'alerte est acquittée." in after and "par lea le" in after
    assert "<td>fait</td>" in after  # the history's outcome
    refused(lea.form(*GRENOBLE_FORMS["alert.silence"]), "vos droits ne couvrent pas")
    reply = lea.form("/alerts/silence", alert_fields(EXPIRING, duration="0", reason="r"))
    assert reply.status == 400 and "choisissez une durée (1h, 4h, 1d, 1w)" in unescape(reply.text)
    # The machine paths keep to English.
    reply = by_token(url, OPERATOR).json("/api/v1/silences", {"duration": "0"}, **FRENCH)
    assert reply.status == 400 and reply.json()["detail"].startswith("choose a duration")
