"""Single sign-on through a real OpenID Connect provider (oidc-provider-mock, an Authlib
server in a thread, whose users' claims each test sets) and the real dashboard over HTTP:
the whole authorization code flow, who the groups make a person, and every refusal, each
seen in the audit trail."""

from __future__ import annotations

import base64
import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

from cpsfleet import i18n
from cpsfleet.controller.db.connect import connect
from cpsfleet.controller.db.people import AuditEntry, People
from cpsfleet.controller.settings import ControllerSettings, SettingsError, load_settings
from cpsfleet.controller.web.app import create_app
from cpsfleet.controller.web.auth import DashboardSettings
from cpsfleet.controller.web.oidc import SignOnFailed, SingleSignOn
from cpsfleet.controller.web.oidc_client import Flows
from cpsfleet.controller.web.oidc_settings import NotGranted, OidcConfigError, OidcSettings, grant
from cpsfleet.controller.web.server import DashboardServer
from tests.conftest import free_port
from tests.test_dashboard import (
    GRENOBLE_HOST,
    LYON_HOST,
    NOW,
    PASSWORD_HASH,
    TOKEN_HASH,
    build_fleet,
    request,
)

with warnings.catch_warnings():
    # The provider imports Authlib's modules that Authlib itself marks as deprecated.
    warnings.simplefilter("ignore", DeprecationWarning)
    import oidc_provider_mock

# The provider, in its thread, calls an Authlib server interface that Authlib deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")

LYON, GRENOBLE = "Lyon Part-Dieu", "Grenoble"
CLIENT_ID = "cpsfleet-dashboard"
ROLES = {
    "cpsfleet-admins": "admin",
    "cpsfleet-operators": "operator",
    "cpsfleet-viewers": "viewer",
}
SITES = {"site-lyon": [LYON], "site-grenoble": [GRENOBLE], "direction": ["*"]}
LYON_OPERATOR = ["cpsfleet-operators", "site-lyon", "staff"]


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    with oidc_provider_mock.run_server_in_thread(require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


def oidc_table(issuer: str, base_url: str, **changes: Any) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": "a-client-secret",
        "base_url": base_url,
        "provider_name": "Keycloak SSTI",
        "roles": ROLES,
        "sites": SITES,
        **changes,
    }


@contextmanager
def dashboard(database: Path | str, issuer: str, **changes: Any) -> Iterator[str]:
    """The dashboard of ``database`` signing in through ``issuer`` (and the configured
    password and token, as ``tests.test_dashboard.serving``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = ControllerSettings(
        database=str(database),
        dashboard=DashboardSettings(
            listen=f"127.0.0.1:{port}", password_hash=PASSWORD_HASH, token_hash=TOKEN_HASH
        ),
        oidc=OidcSettings(**oidc_table(issuer, url, **changes)),  # type: ignore[arg-type]
    )
    server = DashboardServer(settings.dashboard, create_app(settings, clock=lambda: NOW))
    server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def fleet(database: str) -> str:
    return build_fleet(database)


@pytest.fixture
def url(fleet: str, provider: str) -> Iterator[str]:
    with dashboard(fleet, provider) as address:
        yield address


def person(provider: str, sub: str, groups: list[str], **claims: Any) -> None:
    """Tell the provider who ``sub`` is: their name, e-mail, groups and any other claim (one
    that the provider puts in the ID token as given: ``aud``, ``nonce``, ``exp``...)."""
    body = {
        "preferred_username": sub,
        "name": f"{sub.title()} Martin",
        "email": f"{sub}@ssti.example",
        "groups": groups,
        **claims,
    }
    reply = requests.put(f"{provider}/users/{quote(sub)}", json=body, timeout=10)
    assert reply.status_code == 204, reply.text


@dataclass
class Browser:
    """What a browser keeps of one dashboard: its cookies."""

    url: str
    cookies: dict[str, str]

    def get(self, path: str) -> Any:
        cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        reply = request(self.url, path, headers={"Cookie": cookie} if cookie else {})
        for header in reply.headers.get_all("set-cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return reply


def start(url: str, target: str = "/hosts") -> tuple[Browser, str]:
    """A new browser asks the dashboard to sign in: the provider's address it is sent to."""
    browser = Browser(url, {})
    reply = browser.get(f"/oidc/login?next={quote(target)}")
    assert reply.status == 303, reply.text
    assert "cpsfleet_oidc" in browser.cookies
    return browser, reply.headers["location"]


def authorize(location: str, sub: str, deny: bool = False) -> str:
    """The person at the provider's page: the callback path and query it sends them back to."""
    data = {"action": "deny"} if deny else {"sub": sub}
    reply = requests.post(location, data=data, allow_redirects=False, timeout=10)
    assert reply.status_code == 302, reply.text
    back = urlsplit(reply.headers["location"])
    assert back.path == "/oidc/callback"
    return f"{back.path}?{back.query}"


def sign_on(url: str, provider: str, sub: str, target: str = "/hosts") -> tuple[Browser, Any]:
    browser, location = start(url, target)
    reply = browser.get(authorize(location, sub))
    return browser, reply


@contextmanager
def people_of(database: Path | str) -> Iterator[People]:
    db = connect(database, must_exist=True)
    try:
        yield People(db)
    finally:
        db.close()


def audit(database: Path | str, action: str = "") -> list[AuditEntry]:
    with people_of(database) as people:
        return people.audit(action=action or None)


def last_sign_in(database: str) -> AuditEntry:
    return audit(database, "sign_in")[0]


# --- signing in -----------------------------------------------------------------------------


def test_a_lyon_operator_signs_in_through_the_provider_and_keeps_to_lyon(
    url: str, provider: str, fleet: str
) -> None:
    person(provider, "lea", LYON_OPERATOR)
    browser, location = start(url, "/hosts?site=")
    query = parse_qs(urlsplit(location).query)
    assert location.startswith(f"{provider}/oauth2/authorize?")
    assert query["client_id"] == [CLIENT_ID] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == [f"{url}/oidc/callback"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["scope"] == ["openid profile email"]
    assert query["state"][0] and query["nonce"][0] and query["state"] != query["nonce"]
    landed = browser.get(authorize(location, "lea"))
    assert landed.status == 303, landed.text
    assert landed.headers["location"] == "/hosts?site="
    assert "cpsfleet_session" in browser.cookies
    hosts = browser.get("/hosts")
    assert hosts.status == 200 and ">lea · operator<" in hosts.text
    assert LYON_HOST in hosts.text and GRENOBLE_HOST not in hosts.text
    assert browser.get(f"/hosts/{LYON_HOST}").status == 200
    assert browser.get(f"/hosts/{GRENOBLE_HOST}").status == 403
    assert browser.get(f"/api/v1/hosts/{GRENOBLE_HOST}").status == 403
    # The exports keep to the user's sites; Grenoble or a Grenoble host asked by name: 403.
    assert browser.get("/export/hosts.csv?site=Grenoble").status == 403
    own = browser.get("/export/hosts.csv")
    assert LYON_HOST in own.text and GRENOBLE_HOST not in own.text
    assert browser.get(f"/export/hosts.csv?host={GRENOBLE_HOST}").status == 403
    refused = [entry for entry in audit(fleet, "read") if entry.actor == "lea"]
    assert [entry.outcome for entry in refused] == ["refused"] * 4
    assert browser.get("/audit").status == 403
    with people_of(fleet) as people:
        user = people.user("lea")
    assert user is not None and user.source == "oidc" and user.role == "operator"
    assert user.sites == (LYON,) and user.display_name == "Lea Martin"
    assert user.email == "lea@ssti.example" and user.last_sign_in_at is not None
    added = audit(fleet, "user.add")[0]
    assert added.target == "lea" and added.detail["sites"] == [LYON]
    assert added.detail["groups"] == LYON_OPERATOR
    signed = last_sign_in(fleet)
    assert (signed.actor, signed.outcome, signed.detail) == ("lea", "ok", {"via": "oidc"})


def test_an_admin_group_gives_admin_over_every_site(url: str, provider: str) -> None:
    person(provider, "marc", ["cpsfleet-viewers", "cpsfleet-admins"])
    browser, landed = sign_on(url, provider, "marc", "/audit")
    assert landed.status == 303 and landed.headers["location"] == "/audit"
    page = browser.get("/audit")
    assert page.status == 200 and ">marc · admin<" in page.text
    hosts = browser.get("/hosts").text
    assert LYON_HOST in hosts and GRENOBLE_HOST in hosts


def test_the_groups_are_read_again_at_each_sign_in(url: str, provider: str, fleet: str) -> None:
    person(provider, "ines", ["cpsfleet-viewers", "site-grenoble"])
    assert sign_on(url, provider, "ines")[1].status == 303
    person(provider, "ines", ["cpsfleet-operators", "direction"])
    browser, landed = sign_on(url, provider, "ines")
    assert landed.status == 303
    assert ">ines · operator<" in browser.get("/hosts").text
    changed = audit(fleet, "user.set")[0]
    assert changed.target == "ines" and changed.detail["role"] == "operator"
    assert changed.detail["sites"] is None


def test_next_stays_on_the_dashboard(url: str, provider: str) -> None:
    person(provider, "paul", ["cpsfleet-viewers", "site-lyon"])
    for target in ("https://evil.example/", "//evil.example/x", "hosts"):
        assert sign_on(url, provider, "paul", target)[1].headers["location"] == "/"


# --- refusals -------------------------------------------------------------------------------


def refused(reply: Any, status: int, words: str) -> None:
    assert reply.status == status, reply.text
    assert words in reply.text
    assert "cpsfleet_session" not in (reply.headers.get("set-cookie") or "")


def test_groups_that_give_no_role_are_refused(url: str, provider: str, fleet: str) -> None:
    person(provider, "zoe", ["marketing", "site-lyon"])
    browser, reply = sign_on(url, provider, "zoe")
    refused(reply, 403, "none of your groups gives a role on this dashboard")
    assert browser.get("/hosts").status == 303  # to the login page
    entry = last_sign_in(fleet)
    assert (entry.actor, entry.outcome) == ("zoe", "refused")
    assert entry.detail["reason"] == "none of your groups gives a role on this dashboard"
    with people_of(fleet) as people:
        assert people.user("zoe") is None


def test_an_operator_given_no_site_is_refused(url: str, provider: str, fleet: str) -> None:
    person(provider, "noe", ["cpsfleet-operators"])
    refused(sign_on(url, provider, "noe")[1], 403, "none of your groups gives a site")
    assert last_sign_in(fleet).outcome == "refused"


def test_a_disabled_user_is_refused(url: str, provider: str, fleet: str) -> None:
    person(provider, "eva", LYON_OPERATOR)
    assert sign_on(url, provider, "eva")[1].status == 303
    with people_of(fleet) as people:
        people.update_user("eva", NOW, disabled=True)
    refused(sign_on(url, provider, "eva")[1], 403, "Your account is disabled")
    assert last_sign_in(fleet).detail["reason"] == "user disabled"


def test_a_local_user_of_the_same_name_is_not_taken_over(
    url: str, provider: str, fleet: str
) -> None:
    with people_of(fleet) as people:
        people.add_user("claire", "viewer", [LYON], NOW, password_hash=PASSWORD_HASH)
    person(provider, "claire", ["cpsfleet-admins"])
    refused(sign_on(url, provider, "claire")[1], 403, "signs in with a password here")
    assert last_sign_in(fleet).detail["reason"] == "a local user of this name exists"


def test_the_configured_accounts_names_are_reserved(url: str, provider: str) -> None:
    person(provider, "admin", ["cpsfleet-admins"])
    refused(sign_on(url, provider, "admin")[1], 403, "reserved for the configured accounts")


def test_the_provider_refusing_is_a_page_and_an_entry(url: str, provider: str, fleet: str) -> None:
    browser, location = start(url)
    reply = browser.get(authorize(location, "", deny=True))
    refused(reply, 403, "The identity provider refused the sign-in (access_denied")
    entry = last_sign_in(fleet)
    assert entry.outcome == "refused" and entry.detail["reason"].startswith("provider: access")


def test_a_forged_state_is_refused(url: str, provider: str, fleet: str) -> None:
    person(provider, "lea", LYON_OPERATOR)
    browser, location = start(url)
    callback = authorize(location, "lea")
    forged = callback.replace("state=", "state=forged")
    refused(browser.get(forged), 400, "This sign-in is unknown or has expired")
    assert last_sign_in(fleet).detail["reason"] == "unknown or expired state"


def test_a_replayed_callback_is_refused(url: str, provider: str, fleet: str) -> None:
    person(provider, "lea", LYON_OPERATOR)
    browser, location = start(url)
    callback = authorize(location, "lea")
    assert browser.get(callback).status == 303
    refused(browser.get(callback), 400, "This sign-in is unknown or has expired")
    outcomes = [(e.outcome, e.detail.get("reason")) for e in audit(fleet, "sign_in")[:2]]
    assert outcomes == [("failed", "unknown or expired state"), ("ok", None)]


def test_a_code_the_provider_no_longer_honours_is_refused(
    url: str, provider: str, fleet: str
) -> None:
    person(provider, "lea", LYON_OPERATOR)
    first, location = start(url)
    callback = authorize(location, "lea")
    assert first.get(callback).status == 303
    used = parse_qs(urlsplit(callback).query)["code"][0]
    second, other = start(url)
    state = parse_qs(urlsplit(other).query)["state"][0]
    reply = second.get(f"/oidc/callback?{urlencode({'state': state, 'code': used})}")
    refused(reply, 400, "did not accept this sign-in")
    reason = last_sign_in(fleet).detail["reason"]
    assert reason.startswith("the token endpoint refused the code: invalid_grant")


def test_a_callback_in_another_browser_is_refused(url: str, provider: str, fleet: str) -> None:
    person(provider, "lea", LYON_OPERATOR)
    _, location = start(url)
    callback = authorize(location, "lea")
    refused(Browser(url, {}).get(callback), 400, "started in another browser")
    assert last_sign_in(fleet).detail["reason"] == "state of another browser"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "another-application"}, "'aud'"),
        ({"nonce": "a-nonce-of-another-sign-in"}, "'nonce'"),
        ({"iss": "https://another-provider.example"}, "'iss'"),
        ({"exp": 1_000_000_000}, "expired"),
        ({"aud": [CLIENT_ID, "another-application"]}, "azp"),
    ],
    ids=["audience", "nonce", "issuer", "expired", "several-audiences-no-azp"],
)
def test_an_id_token_that_does_not_check_out_is_refused(
    url: str, provider: str, fleet: str, claims: dict[str, Any], reason: str
) -> None:
    person(provider, "lea", LYON_OPERATOR, **claims)
    refused(sign_on(url, provider, "lea")[1], 401, "could not be verified")
    entry = last_sign_in(fleet)
    assert entry.outcome == "failed" and reason in entry.detail["reason"]
    with people_of(fleet) as people:
        assert people.user("lea") is None


def test_a_token_signed_by_another_key_is_refused(provider: str) -> None:
    sso = SingleSignOn(
        OidcSettings(**oidc_table(provider, "http://127.0.0.1:8080")),  # type: ignore[arg-type]
        lambda: NOW,
    )
    now = int(time.time())
    claims = {"iss": provider, "aud": CLIENT_ID, "sub": "lea", "iat": now, "exp": now + 60}
    forged = jwt.encode({"alg": "RS256"}, claims | {"nonce": "n"}, RSAKey.generate_key(2048))
    with pytest.raises(SignOnFailed) as failure:
        sso.provider.verified({"id_token": forged}, "n")
    assert failure.value.status == 401 and "bad_signature" in failure.value.reason
    parts = ({"alg": "none"}, claims | {"nonce": "n"})
    unsigned = ".".join(base64url(json.dumps(part).encode()) for part in parts) + "."
    with pytest.raises(SignOnFailed):
        sso.provider.verified({"id_token": unsigned}, "n")


def test_a_provider_out_of_reach_is_a_page_not_a_crash(fleet: str) -> None:
    with dashboard(fleet, f"http://127.0.0.1:{free_port()}") as url:
        reply = Browser(url, {}).get("/oidc/login")
        assert reply.status == 502 and "cannot be reached" in reply.text
        assert last_sign_in(fleet).outcome == "failed"


def test_odd_callbacks_get_a_page_and_too_many_lock_the_address_out(url: str, fleet: str) -> None:
    for query in ("", "?state=", "?code=x", "?state=" + "s" * 5_000):
        assert Browser(url, {}).get("/oidc/callback" + query).status == 400
    assert Browser(url, {}).get("/oidc/callback?error=x&state=y").status == 403
    # Five sign-ins that did not go through from this address (login_failures_per_source):
    # the next is refused unchecked, and says when to try again.
    locked = Browser(url, {}).get("/oidc/callback?error=x")
    assert locked.status == 429 and int(locked.headers["retry-after"]) > 0
    assert last_sign_in(fleet).detail == {"via": "oidc", "locked": True}


# --- the login page and the settings --------------------------------------------------------


def test_the_login_page_offers_the_provider(url: str) -> None:
    english = Browser(url, {}).get("/login?next=/cards")
    assert 'href="/oidc/login?next=/cards"' in english.text
    assert "Sign in with Keycloak SSTI" in english.text
    french = request(url, "/login", headers={"Accept-Language": "fr"})
    assert "Se connecter avec Keycloak SSTI" in french.text


def test_without_a_provider_there_is_no_single_sign_on(fleet: str) -> None:
    settings = ControllerSettings(
        database=fleet,
        dashboard=DashboardSettings(listen="127.0.0.1:0", password_hash=PASSWORD_HASH),
    )
    server = DashboardServer(settings.dashboard, create_app(settings, clock=lambda: NOW))
    server.start()
    try:
        address = server.url
        assert "/oidc/login" not in request(address, "/login").text
        assert request(address, "/oidc/login").status == 404
        assert request(address, "/oidc/callback?state=x").status == 404
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"issuer": "http://sso.ssti.example"}, "issuer must be an https:// URL"),
        ({"base_url": "https://dashboard.ssti.example/cpsfleet"}, "without a path"),
        ({"client_id": ""}, "client_id is required"),
        ({"client_secret_file": "/etc/x"}, "give the client secret once"),
        ({"roles": {}}, "must give a role to at least one group"),
        ({"roles": {"g": "superuser"}}, "unknown role 'superuser'"),
        ({"sites": {"g": []}}, "are a list of site names"),
        ({"scopes": ["profile"]}, "scopes must include openid"),
        ({"token_auth_method": "private_key_jwt"}, "token_auth_method must be one of"),
        ({"timeout_s": "10"}, "timeout_s must be a whole number"),
        ({"secret": "x"}, "unknown key(s) secret"),
        ({"ca_file": "/nowhere/ca.pem"}, "ca_file: no such file /nowhere/ca.pem"),
    ],
)
def test_bad_oidc_settings_are_refused_by_name(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    table = oidc_table("https://sso.ssti.example/realms/ssti", "https://dashboard.ssti.example")
    path = tmp_path / "controller.toml"
    path.write_text(toml({"oidc": table | changes}), encoding="utf-8")
    with pytest.raises(SettingsError, match=r"controller.toml: oidc: ") as error:
        load_settings(path, environ={})
    assert message in str(error.value)


def test_the_oidc_table_of_the_configuration(tmp_path: Path) -> None:
    secret = tmp_path / "oidc-secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    table = oidc_table("https://sso.ssti.example/realms/ssti", "https://dashboard.ssti.example/")
    del table["client_secret"]
    path = tmp_path / "controller.toml"
    path.write_text(toml({"oidc": table | {"client_secret_file": str(secret)}}), encoding="utf-8")
    oidc = load_settings(path, environ={}).oidc
    assert oidc.enabled and oidc.client_secret == "s3cret"
    assert oidc.redirect_uri == "https://dashboard.ssti.example/oidc/callback"
    assert oidc.sites["site-lyon"] == (LYON,)
    assert not ControllerSettings().oidc.enabled


def test_a_bad_setting_is_told_in_french() -> None:
    with i18n.use("fr"), pytest.raises(OidcConfigError) as error:
        OidcSettings(
            issuer="https://sso.example",
            base_url="https://dashboard.example",
            client_id="x",
            client_secret="y",
        )
    assert "au moins un groupe" in str(error.value)


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def toml(tables: dict[str, dict[str, Any]]) -> str:
    """A small TOML writer for the tables these tests write (strings, numbers, lists, tables)."""
    lines: list[str] = []

    def value(item: Any) -> str:
        if isinstance(item, str):
            return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(item, list):
            return "[" + ", ".join(value(x) for x in item) + "]"
        return str(item).lower() if isinstance(item, bool) else str(item)

    for name, table in tables.items():
        nested = {key: item for key, item in table.items() if isinstance(item, dict)}
        lines.append(f"[{name}]")
        lines += [f"{key} = {value(item)}" for key, item in table.items() if key not in nested]
        for key, inner in nested.items():
            lines.append(f"[{name}.{key}]")
            lines += [f"{value(k)} = {value(v)}" for k, v in inner.items()]
    return "\n".join(lines) + "\n"


# --- who the claims make a person, and the sign-ins under way (no service) -----------------


def settings_of(**changes: Any) -> OidcSettings:
    table = oidc_table("https://sso.ssti.example", "https://dashboard.ssti.example")
    return OidcSettings(**table | changes)


def claims_of(groups: Any, **more: Any) -> dict[str, Any]:
    return {"sub": "42", "preferred_username": "lea", "groups": groups, **more}


def test_the_highest_role_of_a_persons_groups_wins() -> None:
    groups = ["cpsfleet-viewers", "cpsfleet-operators", "x", "site-lyon", "site-grenoble"]
    granted = grant(settings_of(), claims_of(groups, name="Léa Martin", email="lea@x.fr"))
    assert (granted.role, granted.sites) == ("operator", (LYON, GRENOBLE))
    assert (granted.display_name, granted.email) == ("Léa Martin", "lea@x.fr")


def test_sites_come_from_groups_a_claim_or_every_site() -> None:
    national = grant(settings_of(), claims_of(["cpsfleet-viewers", "direction", "site-lyon"]))
    assert national.sites is None
    claimed = grant(
        settings_of(sites_claim="cps.sites"),
        claims_of(["cpsfleet-viewers"], cps={"sites": ["Annecy", " Annecy "]}),
    )
    assert claimed.sites == ("Annecy",)
    admin = grant(settings_of(), claims_of(["cpsfleet-admins", "site-lyon"]))
    assert (admin.role, admin.sites) == ("admin", (LYON,))
    with pytest.raises(NotGranted, match="gives a site"):
        grant(settings_of(), claims_of(["cpsfleet-viewers"]))


def test_groups_may_be_a_nested_claim_or_a_single_name() -> None:
    nested = settings_of(groups_claim="realm_access.roles")
    granted = grant(
        nested, {"preferred_username": "lea", "realm_access": {"roles": ["cpsfleet-admins"]}}
    )
    assert granted.role == "admin" and granted.groups == ("cpsfleet-admins",)
    single = grant(settings_of(), claims_of("cpsfleet-admins"))
    assert single.role == "admin"
    with pytest.raises(NotGranted, match="gives a role"):
        grant(settings_of(), claims_of({"not": "a list"}))


def test_a_person_without_a_usable_name_is_refused() -> None:
    for claims in (
        {"groups": ["cpsfleet-admins"]},
        claims_of(["cpsfleet-admins"], preferred_username="a\x00b"),
    ):
        with pytest.raises(NotGranted):
            grant(settings_of(), claims)
    assert (
        grant(settings_of(name_claim="email"), claims_of(["cpsfleet-admins"], email="l@x.fr")).name
        == "l@x.fr"
    )


def test_a_sign_in_under_way_is_taken_once_and_only_in_time() -> None:
    moment = [0.0]
    flows = Flows(now=lambda: moment[0], lifetime=600, capacity=2)
    state, flow = flows.start("browser", "/hosts")
    assert flows.take(state) == flow and flows.take(state) is None
    late, _ = flows.start("browser", "/")
    moment[0] = 600.0
    assert flows.take(late) is None
    first, _ = flows.start("b", "/")
    flows.start("b", "/")
    flows.start("b", "/")
    assert len(flows) == 2 and flows.take(first) is None
