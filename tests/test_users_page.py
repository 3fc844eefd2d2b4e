"""People managed from the dashboard: admins add, change, disable and remove users on /users,
each user makes and revokes their own API tokens on /tokens; a real uvicorn server on a real
database (SQLite or PostgreSQL), signed in through /login like a browser, every change in the
audit trail.
"""

from __future__ import annotations

from collections.abc import Iterator
from html import unescape
from urllib.parse import urlencode

import pytest

from cpsfleet.controller.db.people import People
from cpsfleet.controller.db.store import Store
from tests.test_dashboard import (
    GRENOBLE_HOST,
    LYON_HOST,
    PASSWORD,
    PASSWORD_HASH,
    Reply,
    build_fleet,
    csrf_of,
    login,
    request,
    serving,
    session_cookie,
)
from tests.test_readiness_cli import NOW

LYON = "Lyon Part-Dieu"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
NEW_PASSWORD = "a long enough password"


class Browser:
    """One signed-in session: its cookie, and the CSRF token of its pages."""

    def __init__(self, url: str, secret: str, user: str = "") -> None:
        self.url = url
        reply = login(url, secret, "/", user=user)
        assert reply.status == 303, reply.text
        self.cookie = {"Cookie": session_cookie(reply)}
        self.csrf = csrf_of(self.get("/").text)

    def get(self, path: str) -> Reply:
        return request(self.url, path, headers=self.cookie)

    def post(self, path: str, csrf: bool = True, **fields: str) -> Reply:
        body = fields | ({"csrf": self.csrf} if csrf else {})
        headers = self.cookie | FORM
        return request(self.url, path, "POST", headers, urlencode(body).encode())


@pytest.fixture
def database(database: str) -> str:
    build_fleet(database)
    with Store(database) as store:  # a named admin beside the configured password's
        People(store.database).add_user("ada", "admin", None, NOW, PASSWORD_HASH)
    return database


@pytest.fixture
def url(database: str) -> Iterator[str]:
    with serving(database) as address:
        yield address


def audit(database: str, action: str) -> list[tuple[str, str, str]]:
    with Store(database) as store:
        entries = People(store.database).audit(action=action)
    return [(entry.actor, entry.target, entry.outcome) for entry in entries]


def add_lea(admin: Browser) -> Reply:
    return admin.post(
        "/users",
        name="lea",
        role="operator",
        sites=LYON,
        display_name="Léa Martin",
        email="lea@ssti.example",
        password=NEW_PASSWORD,
        password_again=NEW_PASSWORD,
    )


def test_an_admin_adds_a_site_operator_who_signs_in_and_keeps_to_her_site(
    url: str, database: str
) -> None:
    admin = Browser(url, PASSWORD)  # the configured password: admin of every site
    reply = add_lea(admin)
    assert reply.status == 303 and reply.headers["location"] == "/users?done=user_added"
    page = unescape(admin.get("/users?done=user_added").text)
    assert "The user is added." in page and 'data-user="lea" data-role="operator"' in page
    assert "Léa Martin" in page and LYON in page
    lea = Browser(url, NEW_PASSWORD, user="lea")
    assert lea.get(f"/hosts/{LYON_HOST}").status == 200
    assert lea.get(f"/hosts/{GRENOBLE_HOST}").status == 403
    assert lea.get("/users").status == 403 and lea.get("/api/v1/users").status == 403
    assert 'href="/users"' not in lea.get("/").text  # not offered either
    assert audit(database, "user.add") == [("admin", "lea", "ok")]
    users = request(url, "/api/v1/users", headers=admin.cookie).json()
    assert {user["name"]: user["sites"] for user in users} == {"ada": None, "lea": [LYON]}
    assert all("password_hash" not in user for user in users)


def test_an_admin_changes_a_role_and_sites_and_disables_then_removes_a_user(
    url: str, database: str
) -> None:
    admin = Browser(url, PASSWORD, user="ada")
    add_lea(admin)
    lea = Browser(url, NEW_PASSWORD, user="lea")
    changed = admin.post("/users/lea", role="viewer", sites="Grenoble, grenoble", state="active")
    assert changed.status == 303
    with Store(database) as store:
        user = People(store.database).user("lea")
    assert user is not None and (user.role, user.sites) == ("viewer", ("Grenoble",))
    assert lea.get(f"/hosts/{GRENOBLE_HOST}").status == 200  # her session, her new rights
    assert lea.get(f"/hosts/{LYON_HOST}").status == 403
    admin.post("/users/lea", role="viewer", sites="", state="disabled")
    assert lea.get("/").status in (302, 303, 401)  # her session closed with the account
    assert login(url, NEW_PASSWORD, user="lea").status == 401
    assert admin.post("/users/lea/remove").status == 303
    with Store(database) as store:
        assert People(store.database).user("lea") is None
    assert [entry[2] for entry in audit(database, "user.set")] == ["ok", "ok"]
    assert audit(database, "user.remove") == [("ada", "lea", "ok")]


def test_a_new_password_closes_the_user_s_sessions(url: str, database: str) -> None:
    admin = Browser(url, PASSWORD)
    add_lea(admin)
    lea = Browser(url, NEW_PASSWORD, user="lea")
    other = "another long password"
    reply = admin.post("/users/lea/password", password=other, password_again=other)
    assert reply.status == 303
    assert lea.get("/").status in (302, 303, 401)
    assert login(url, NEW_PASSWORD, user="lea").status == 401
    assert login(url, other, user="lea").status == 303
    assert audit(database, "user.password") == [("admin", "lea", "ok")]


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"name": "", "role": "viewer"}, 400, "user name"),
        ({"name": "x" * 129, "role": "viewer"}, 400, "user name"),
        ({"name": "bad\nname", "role": "viewer"}, 400, "user name"),
        ({"name": "zoe", "role": "root"}, 400, "unknown role"),
        ({"name": "zoe", "role": "viewer", "sites": "," + "s" * 129}, 400, "site name"),
        (
            {"name": "zoe", "role": "viewer", "password": "short", "password_again": "short"},
            400,
            "12 to 256",
        ),
        (
            {"name": "zoe", "role": "viewer", "password": NEW_PASSWORD, "password_again": "x"},
            400,
            "differ",
        ),
        ({"name": "ada", "role": "viewer"}, 409, "exists already"),
        ({"name": "zoe", "role": "viewer", "email": "a\x00b"}, 400, "printable"),
    ],
    ids=["empty", "long", "control", "role", "site", "short", "differ", "duplicate", "email"],
)
def test_a_user_that_cannot_be_added_is_refused_with_why_and_nothing_changes(
    url: str, database: str, fields: dict[str, str], status: int, message: str
) -> None:
    admin = Browser(url, PASSWORD)
    reply = admin.post("/users", **fields)
    assert reply.status == status and message in unescape(reply.text), reply.text
    with Store(database) as store:
        assert [user.name for user in People(store.database).users()] == ["ada"]
    assert audit(database, "user.add")[0][2] == "failed"


def test_nobody_changes_their_own_account_here(url: str, database: str) -> None:
    ada = Browser(url, PASSWORD, user="ada")
    for path, fields in (
        ("/users/ada", {"role": "viewer"}),
        ("/users/ada/password", {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD}),
        ("/users/ada/remove", {}),
    ):
        reply = ada.post(path, **fields)
        assert reply.status == 403 and "another admin" in reply.text
    with Store(database) as store:
        user = People(store.database).user("ada")
    assert user is not None and user.role == "admin"
    assert ada.post("/users/nobody/remove").status == 404


def test_user_changes_need_the_csrf_token_and_the_manage_right(url: str, database: str) -> None:
    admin = Browser(url, PASSWORD)
    assert admin.post("/users", csrf=False, name="zoe", role="viewer").status == 403
    add_lea(admin)
    lea = Browser(url, NEW_PASSWORD, user="lea")
    assert lea.post("/users", name="zoe", role="admin").status == 403
    assert lea.post("/users/ada/remove").status == 403
    with Store(database) as store:
        assert [user.name for user in People(store.database).users()] == ["ada", "lea"]
    refused = [entry for entry in audit(database, "user") if entry[2] == "refused"]
    assert len(refused) == 3 and ("lea", "", "refused") in refused


def test_a_user_makes_a_token_seen_once_that_acts_with_her_rights_until_revoked(
    url: str, database: str
) -> None:
    admin = Browser(url, PASSWORD)
    add_lea(admin)
    lea = Browser(url, NEW_PASSWORD, user="lea")
    made = lea.post("/tokens", label="nightly export", days="30")
    assert made.status == 200 and made.headers["cache-control"] == "no-store"
    token = unescape(made.text).split('<code id="new-token">', 1)[1].split("<", 1)[0]
    assert token.startswith("cpsf_")
    assert token not in lea.get("/tokens").text  # shown once
    bearer = {"Authorization": f"Bearer {token}"}
    assert request(url, f"/api/v1/hosts/{LYON_HOST}", headers=bearer).status == 200
    assert request(url, f"/api/v1/hosts/{GRENOBLE_HOST}", headers=bearer).status == 403
    with Store(database) as store:
        (record,) = People(store.database).tokens("lea")
    assert record.expires_at is not None and (record.expires_at - record.created_at).days == 30
    assert (
        "nightly export" in lea.get("/tokens").text and "nightly export" in admin.get("/users").text
    )
    assert lea.post(f"/tokens/{record.id}/revoke").status == 303
    assert request(url, "/api/v1/hosts", headers=bearer).status == 401
    assert audit(database, "token.add") == [("lea", f"token/{record.id}", "ok")]
    assert audit(database, "token.revoke") == [("lea", f"token/{record.id}", "ok")]


def test_tokens_are_one_s_own_unless_one_manages_people(url: str, database: str) -> None:
    admin = Browser(url, PASSWORD, user="ada")
    add_lea(admin)
    lea = Browser(url, NEW_PASSWORD, user="lea")
    made = admin.post("/tokens", label="ada's script")
    assert made.status == 200
    with Store(database) as store:
        (ada_token,) = People(store.database).tokens("ada")
    assert lea.post(f"/tokens/{ada_token.id}/revoke").status == 404  # not hers, not told
    assert lea.post("/tokens", label="").status == 400
    assert lea.post("/tokens", label="x", days="0").status == 400
    assert lea.post("/tokens", label="x", days="99999").status == 400
    lea_token = lea.post("/tokens", label="lea's")
    assert lea_token.status == 200
    with Store(database) as store:
        (mine,) = People(store.database).tokens("lea")
    assert admin.post(f"/tokens/{mine.id}/revoke", back="/users").headers["location"] == (
        "/users?done=token_revoked"
    )
    configured = Browser(url, PASSWORD)  # the configured admin has no account of its own
    assert "no API tokens of its own" in configured.get("/tokens").text
    assert configured.post("/tokens", label="x").status == 403
