"""The dashboard's defences, against a real server over a real socket.

It answers only the host names it is configured for (DNS rebinding); sign-in is
throttled per source address and per account with a lockout, Bearer tokens per
source; the session cookie is HttpOnly, SameSite=Lax, and Secure behind TLS; a session
ends with its hours, a disabled user and a revoked token sign nobody in; failed sign-ins
are in the audit trail; a redirect never echoes a long path. Lockouts and session ends are
timed by clocks the test moves, never by sleeping.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from cpsfleet.controller.db.people import People
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.settings import ControllerSettings, SettingsError, load_settings
from cpsfleet.controller.web.app import create_app
from cpsfleet.controller.web.auth import (
    DashboardConfigError,
    DashboardSettings,
    Gate,
    allowed_hosts,
    hash_secret,
    host_allowed,
    new_user_token,
    parse_host,
)
from cpsfleet.controller.web.server import DashboardServer
from cpsfleet.controller.web.throttle import Throttle, Throttled
from tests.conftest import Broker, Service
from tests.fleet import Fleet
from tests.test_dashboard import (
    PASSWORD,
    PASSWORD_HASH,
    TOKEN,
    TOKEN_HASH,
    Reply,
    csrf_of,
    fetch,
    login,
    request,
    self_signed,
    session_cookie,
)

LOCKOUT_S = 900


class Moment:
    """The time of day sessions and tokens are checked at, moved only by the test."""

    def __init__(self) -> None:
        self.moment = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


class Ticks:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


@pytest.fixture(scope="module")
def migrated(module_database: str) -> str:
    with Store(module_database):
        pass  # migrated, and empty: the pages only need to answer
    return module_database


@contextmanager
def serving(
    database: Path | str, ticks: Ticks | None = None, clock: Moment | None = None, **dashboard: Any
) -> Iterator[str]:
    """A DashboardServer on a free port, its gate's throttle on ``ticks`` and its sessions
    and tokens on ``clock``, the password and the token configured; yields its URL."""
    secrets = {"password_hash": PASSWORD_HASH, "token_hash": TOKEN_HASH}
    settings = ControllerSettings(
        database=str(database),
        dashboard=DashboardSettings(**{"listen": "127.0.0.1:0"} | secrets | dashboard),
    )
    gate = Gate(
        settings.dashboard, settings.database, now=ticks or Ticks(), clock=clock or Moment()
    )
    server = DashboardServer(settings.dashboard, create_app(settings, gate=gate))
    server.start()
    try:
        yield server.url.replace("0.0.0.0", "127.0.0.1")
    finally:
        server.stop()


@contextmanager
def guarded(database: Path | str, ticks: Ticks, **dashboard: Any) -> Iterator[str]:
    """On every address (loopback too: a sign-in is required on each alike)."""
    with serving(database, ticks, listen="0.0.0.0:0", **dashboard) as url:
        yield url


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def from_source(address: str) -> dict[str, str]:
    """As the reverse proxy on this machine says who it serves (uvicorn trusts it there)."""
    return {"X-Forwarded-For": address}


def bearer(url: str, token: str, source: str | None = None) -> Reply:
    headers = {"Authorization": f"Bearer {token}"} | (from_source(source) if source else {})
    return request(url, "/api/v1/hosts", headers=headers)


def sign_in(url: str, secret: str, source: str | None = None, target: str = "/hosts") -> Reply:
    body = urlencode({"secret": secret, "next": target}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return request(url, "/login", "POST", headers | (from_source(source) if source else {}), body)


# --- host names ---------------------------------------------------------------------------


FOREIGN_HOSTS = (
    "rebind.attacker.example",
    "rebind.attacker.example:{port}",
    "localhost.attacker.example",
    "127.0.0.1.attacker.example:{port}",
    "10.0.0.5",
    "0.0.0.0:{port}",
)
EVERY_KIND_OF_PATH = (
    ("GET", "/"),
    ("GET", "/api/v1/hosts"),
    ("GET", "/metrics"),
    ("GET", "/export/cards.csv"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/static/style.css"),
    ("GET", "/no-such-page"),
)


def test_a_loopback_dashboard_refuses_a_foreign_host_name_before_anything_else(
    migrated: str,
) -> None:
    """DNS rebinding: a page of rebind.attacker.example, its name pointed at 127.0.0.1, sends
    its own name; the loopback dashboard answers it with 400 and a short plain text, the
    right token or not."""
    with serving(migrated) as url:
        assert fetch(url, "/api/v1/hosts").status == 200
        for host in (name.format(port=port_of(url)) for name in FOREIGN_HOSTS):
            for method, path in EVERY_KIND_OF_PATH:
                reply = fetch(url, path, method, headers={"Host": host})
                assert reply.status == 400, (host, path)
                assert reply.headers["content-type"].startswith("text/plain")
                assert "allowed_hosts" in reply.text and len(reply.body) < 100
                assert "set-cookie" not in reply.headers


def test_a_guarded_dashboard_refuses_a_foreign_host_name_before_the_login(
    migrated: str,
) -> None:
    with guarded(migrated, Ticks()) as url:
        for method, path in EVERY_KIND_OF_PATH:
            reply = request(url, path, method, headers={"Host": "rebind.attacker.example"})
            assert reply.status == 400, path
        right = {"Host": "rebind.attacker.example", "Authorization": f"Bearer {TOKEN}"}
        assert request(url, "/api/v1/hosts", headers=right).status == 400
        assert bearer(url, TOKEN).status == 200


def test_malformed_host_headers_are_refused(migrated: str) -> None:
    with serving(migrated) as url:
        for host in ("", "[::1", "local host", "127.0.0.1:99999", "[127.0.0.1]", "a:b:c:d"):
            assert request(url, "/", headers={"Host": host}).status == 400, host


def test_the_loopback_names_are_answered_with_or_without_the_port(migrated: str) -> None:
    with serving(migrated) as url:
        port = port_of(url)
        for host in (
            "127.0.0.1",
            f"127.0.0.1:{port}",
            "localhost",
            f"LocalHost:{port}",
            "localhost.",
            "[::1]",
            f"[::1]:{port}",
            f"[0:0:0:0:0:0:0:1]:{port}",
        ):
            assert fetch(url, "/api/v1/sites", headers={"Host": host}).status == 200, host


def test_the_listen_address_and_the_configured_names_are_answered(migrated: str) -> None:
    with serving(
        migrated,
        listen="127.0.0.2:0",
        allowed_hosts=["dashboard.ssti.example", "10.0.0.5:8443", "fd00::5"],
    ) as url:
        port = port_of(url)
        answered = (
            f"127.0.0.2:{port}",
            "127.0.0.2",
            "dashboard.ssti.example",
            f"Dashboard.SSTI.example:{port}",
            "10.0.0.5:8443",
            "[fd00::5]:8080",
            "[fd00:0::5]",
            "localhost",
        )
        for host in answered:
            assert fetch(url, "/api/v1/sites", headers={"Host": host}).status == 200, host
        refused = (
            "127.0.0.3",
            "10.0.0.5",
            "10.0.0.5:8080",
            "ssti.example",
            "evil.dashboard.ssti.example",
            "dashboard.ssti.example.attacker.example",
        )
        for host in refused:
            assert fetch(url, "/api/v1/sites", headers={"Host": host}).status == 400, host


def test_an_ipv6_loopback_dashboard_answers_its_own_address(migrated: str) -> None:
    with serving(migrated, listen="[::1]:0") as url:
        assert url.startswith("http://[::1]:")
        assert fetch(url, "/api/v1/sites").status == 200  # Host: [::1]:port
        assert request(url, "/api/v1/sites").status == 401  # no token: loopback or not
        assert fetch(url, "/", headers={"Host": "rebind.attacker.example"}).status == 400


def test_the_host_names_of_a_configuration() -> None:
    names = allowed_hosts(DashboardSettings(listen="10.0.0.5:8443", password_hash=PASSWORD_HASH))
    assert names == {
        ("localhost", None),
        ("127.0.0.1", None),
        ("::1", None),
        ("10.0.0.5", None),
    }
    everywhere = DashboardSettings(
        listen="[::]:8443", allowed_hosts=["[FD00::5]:8443"], token_hash=TOKEN_HASH
    )
    assert allowed_hosts(everywhere) - names == {("fd00::5", 8443)}
    assert ("::", None) not in allowed_hosts(everywhere)
    assert parse_host("Dashboard.SSTI.example.:8443") == ("dashboard.ssti.example", 8443)
    assert parse_host("[::ffff:7f00:1]") == ("::ffff:7f00:1", None)
    assert not host_allowed(None, names) and not host_allowed("", names)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"allowed_hosts": "dashboard.ssti.example"}, "allowed_hosts must be a list of host names"),
        (
            {"allowed_hosts": ["https://dashboard.ssti.example/"]},
            "allowed_hosts: 'https://dashboard.ssti.example/' is not a host name or an IP "
            "address with an optional :port, such as dashboard.ssti.example",
        ),
        ({"allowed_hosts": ["*"]}, "allowed_hosts: '*' is not a host name"),
        ({"allowed_hosts": ["*.ssti.example"]}, "allowed_hosts: '*.ssti.example' is not"),
        ({"allowed_hosts": ["dashboard:99999"]}, "allowed_hosts: 'dashboard:99999' is not"),
        ({"allowed_hosts": ["[10.0.0.5]"]}, "allowed_hosts: '[10.0.0.5]' is not"),
        ({"allowed_hosts": ["-dashboard"]}, "allowed_hosts: '-dashboard' is not"),
        ({"allowed_hosts": [8443]}, "allowed_hosts: 8443 is not a host name"),
        ({"cookie_secure": "yes"}, "cookie_secure must be true, false or \"auto\": 'yes'"),
        ({"cookie_secure": 1}, 'cookie_secure must be a true, false or "auto"'),
        ({"login_failures_per_source": 0}, "login_failures_per_source must be at least 1"),
        ({"login_failures_per_account": 0}, "login_failures_per_account must be at least 1"),
        ({"login_window_s": 0}, "login_window_s must be at least 1"),
        ({"login_lockout_s": "15m"}, "login_lockout_s must be a whole number"),
    ],
)
def test_bad_security_settings_are_refused(table: dict[str, Any], message: str) -> None:
    with pytest.raises(DashboardConfigError, match=re.escape(message)):
        DashboardSettings(**table)


# --- the throttle, on a clock of its own --------------------------------------------------


def failing(throttle: Throttle, key: str, times: int) -> None:
    for _ in range(times):
        throttle.charge(key)
        throttle.settle(key, failed=True)


def test_a_key_is_locked_out_after_its_failures_within_the_window() -> None:
    ticks = Ticks()
    throttle = Throttle(limit=3, window_s=60, lockout_s=LOCKOUT_S, now=ticks)
    failing(throttle, "192.0.2.7", 3)
    ticks.advance(100)
    with pytest.raises(Throttled) as locked:
        throttle.charge("192.0.2.7")
    assert locked.value.retry_after == LOCKOUT_S - 100 and locked.value.minutes == 14
    throttle.charge("198.51.100.9")  # another key is not concerned
    ticks.advance(LOCKOUT_S - 100)
    failing(throttle, "192.0.2.7", 3)  # over: three tries again, then locked again
    with pytest.raises(Throttled):
        throttle.charge("192.0.2.7")


def test_failures_older_than_the_window_are_forgotten() -> None:
    ticks = Ticks()
    throttle = Throttle(limit=3, window_s=60, lockout_s=LOCKOUT_S, now=ticks)
    failing(throttle, "192.0.2.7", 2)
    ticks.advance(60)
    failing(throttle, "192.0.2.7", 2)
    throttle.charge("192.0.2.7")


def test_tries_still_running_count_against_the_limit() -> None:
    throttle = Throttle(limit=3, window_s=60, lockout_s=LOCKOUT_S, now=Ticks())
    for _ in range(3):
        throttle.charge("192.0.2.7")
    with pytest.raises(Throttled) as locked:
        throttle.charge("192.0.2.7")
    assert locked.value.retry_after == LOCKOUT_S


def test_a_success_gives_its_try_back() -> None:
    throttle = Throttle(limit=3, window_s=60, lockout_s=LOCKOUT_S, now=Ticks())
    failing(throttle, "192.0.2.7", 2)
    for _ in range(10):
        throttle.charge("192.0.2.7")
        throttle.settle("192.0.2.7", failed=False)
    failing(throttle, "192.0.2.7", 1)
    with pytest.raises(Throttled):
        throttle.charge("192.0.2.7")


def test_sources_rotated_by_an_attacker_do_not_grow_the_table() -> None:
    ticks = Ticks()
    throttle = Throttle(limit=3, window_s=60, lockout_s=LOCKOUT_S, now=ticks, capacity=100)
    for number in range(5000):
        failing(throttle, f"10.{number // 256}.{number % 256}.1", 1)
        assert len(throttle) <= 100
    ticks.advance(60)
    failing(throttle, "192.0.2.7", 1)
    assert len(throttle) == 1  # the others' windows are over: forgotten


# --- sign-in throttled, over a real socket ------------------------------------------------


def test_sign_in_from_one_source_is_locked_out_with_429_and_retry_after(migrated: str) -> None:
    ticks = Ticks()
    with guarded(migrated, ticks, login_failures_per_source=3) as url:
        for attempt in range(3):
            assert sign_in(url, f"wrong {attempt}").status == 401
        locked = sign_in(url, PASSWORD)  # right, but refused unchecked
        assert locked.status == 429 and locked.headers["retry-after"] == str(LOCKOUT_S)
        assert "set-cookie" not in locked.headers
        message = unescape(locked.text)
        assert "Too many failed sign-ins" in message and "locked for 15 minutes" in message
        assert sign_in(url, PASSWORD, source="192.0.2.7").status == 303
        ticks.advance(LOCKOUT_S - 1)
        assert sign_in(url, PASSWORD).headers["retry-after"] == "1"
        ticks.advance(1)
        assert sign_in(url, PASSWORD).status == 303


def test_the_password_login_is_locked_out_whatever_the_source(migrated: str) -> None:
    """The login form has no user names: its one account is the password login."""
    ticks = Ticks()
    with guarded(migrated, ticks, login_failures_per_account=3) as url:
        for source in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
            assert sign_in(url, "wrong", source).status == 401
        assert sign_in(url, PASSWORD, "198.51.100.4").status == 429
        assert sign_in(url, TOKEN, "198.51.100.5").status == 429
        assert bearer(url, TOKEN, "198.51.100.5").status == 200  # scripts are not an account
        ticks.advance(LOCKOUT_S)
        assert sign_in(url, PASSWORD, "198.51.100.4").status == 303


def test_a_burst_of_tries_sent_at_once_is_held_to_the_limit(migrated: str) -> None:
    with guarded(migrated, Ticks(), login_failures_per_source=3) as url:
        with ThreadPoolExecutor(max_workers=20) as pool:
            replies = list(pool.map(lambda n: sign_in(url, f"guess {n}").status, range(20)))
    assert sorted(replies) == [401] * 3 + [429] * 17


def test_wrong_bearer_tokens_from_a_source_are_throttled(migrated: str) -> None:
    ticks = Ticks()
    with guarded(migrated, ticks, login_failures_per_source=3) as url:
        for attempt in range(3):
            assert bearer(url, f"guess-{attempt}").status == 401
        locked = bearer(url, TOKEN)
        assert locked.status == 429 and locked.headers["retry-after"] == str(LOCKOUT_S)
        assert locked.json()["detail"].startswith("too many failed sign-ins")
        for path in ("/metrics", "/export/cards.csv"):
            headers = {"Authorization": "Bearer guess"}
            assert request(url, path, headers=headers).status == 429
        page = request(url, "/hosts", headers={"Authorization": "Bearer guess"})
        assert page.status == 429 and page.headers["content-type"].startswith("text/html")
        assert sign_in(url, PASSWORD).status == 429  # the same source, the same tries
        assert bearer(url, TOKEN, source="192.0.2.7").status == 200
        # Now verified, the token goes on working from behind the locked source; guesses don't.
        assert bearer(url, TOKEN).status == 200
        assert bearer(url, "guess-4").status == 429
        ticks.advance(LOCKOUT_S)
        assert bearer(url, "guess-5").status == 401


def test_a_session_goes_on_working_while_sign_in_is_locked(migrated: str) -> None:
    with guarded(migrated, Ticks(), login_failures_per_account=2) as url:
        opened = sign_in(url, PASSWORD)
        cookie = {"Cookie": opened.headers["set-cookie"].split(";", 1)[0]}
        for _ in range(2):
            assert sign_in(url, "wrong", "192.0.2.9").status == 401
        assert sign_in(url, PASSWORD).status == 429
        assert request(url, "/hosts", headers=cookie).status == 200


def test_a_controller_process_answers_its_names_and_throttles_sign_in(
    tmp_path: Path, broker: Broker, services: Callable[..., Service]
) -> None:
    """`cpsfleet controller run`, with its default settings (no secret configured, no user
    yet): nobody is let in, and five failed sign-ins lock out."""
    fleet = Fleet(tmp_path, broker, services)
    fleet.controller()
    url = fleet.dashboard_url()
    assert request(url, "/api/v1/sites").status == 401
    assert request(url, "/healthz").status == 200
    assert request(url, "/", headers={"Host": "rebind.attacker.example"}).status == 400
    for attempt in range(5):
        assert sign_in(url, f"wrong {attempt}").status == 401
    locked = sign_in(url, "wrong again")
    assert locked.status == 429 and locked.headers["retry-after"] == str(LOCKOUT_S)


# --- the cookie ---------------------------------------------------------------------------


def set_cookie(url: str, **options: Any) -> str:
    reply = login(url, PASSWORD, **options)
    assert reply.status == 303
    return str(reply.headers["set-cookie"])


def cookie_flags(url: str, **options: Any) -> str:
    return set_cookie(url, **options).lower()


def test_the_cookie_is_secure_behind_a_tls_proxy(migrated: str) -> None:
    with guarded(migrated, Ticks(), cookie_secure=True) as url:
        sent = set_cookie(url)
        flags = sent.lower()
        assert "; secure" in flags and "httponly" in flags and "samesite=lax" in flags
        cookie = {"Cookie": sent.split(";", 1)[0]}
        csrf = csrf_of(request(url, "/hosts", headers=cookie).text)
        logout = request(url, "/logout", "POST", headers=cookie | {"X-CSRF-Token": csrf})
        assert logout.status == 303 and "; secure" in logout.headers["set-cookie"].lower()
    with guarded(migrated, Ticks(), cookie_secure="auto") as url:
        assert "secure" not in cookie_flags(url)


def test_the_cookie_can_be_sent_in_clear_even_over_tls(migrated: str, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    trusting = ssl.create_default_context(cafile=str(cert))
    tls = {"tls_cert": str(cert), "tls_key": str(key)}
    with guarded(migrated, Ticks(), cookie_secure=False, **tls) as url:
        assert "secure" not in cookie_flags(url, context=trusting)
    with guarded(migrated, Ticks(), **tls) as url:
        flags = cookie_flags(url, context=trusting)
        assert "; secure" in flags and "httponly" in flags and "samesite=lax" in flags


# --- redirects ----------------------------------------------------------------------------


def test_a_long_path_is_never_echoed_into_the_login_redirect(migrated: str) -> None:
    with guarded(migrated, Ticks()) as url:
        longest = "/hosts/" + "h" * (1024 - len("/hosts/"))
        reply = request(url, longest)
        assert reply.status == 303
        assert reply.headers["location"] == f"/login?{urlencode({'next': longest})}"
        for path in (longest + "h", "/hosts/" + "h" * 10_000):
            reply = request(url, path)
            assert reply.status == 303 and reply.headers["location"] == "/login?next=%2F"


def hidden_next(html: str) -> str:
    found = re.search(r'name="next" value="([^"]*)"', html)
    assert found is not None
    return unescape(found.group(1))


def test_the_login_form_bounds_its_next_target(migrated: str) -> None:
    longest = "/cards?" + "q" * (1024 - len("/cards?"))
    with guarded(migrated, Ticks()) as url:
        form = request(url, f"/login?{urlencode({'next': longest})}")
        assert hidden_next(form.text) == longest
        form = request(url, f"/login?{urlencode({'next': longest + 'q'})}")
        assert hidden_next(form.text) == "/"
        assert login(url, PASSWORD, longest + "q").headers["location"] == "/"
        assert login(url, PASSWORD, "//evil.example/" + "x" * 2000).headers["location"] == "/"
        assert login(url, PASSWORD, longest).headers["location"] == longest
        failed = login(url, "wrong", longest + "q")
        assert failed.status == 401 and hidden_next(failed.text) == "/"


def test_the_settings_read_from_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "controller.toml"
    path.write_text(
        '[dashboard]\nallowed_hosts = ["dashboard.ssti.example", "[fd00::5]:8443"]\n'
        "cookie_secure = true\nlogin_failures_per_source = 3\nlogin_lockout_s = 60\n"
    )
    dashboard = load_settings(path, {}).dashboard
    assert dashboard.allowed_hosts == ("dashboard.ssti.example", "[fd00::5]:8443")
    assert dashboard.secure_cookie and not dashboard.tls
    assert (dashboard.login_failures_per_source, dashboard.login_lockout_s) == (3, 60)
    path.write_text('[dashboard]\nallowed_hosts = ["dashboard.ssti.example/"]\n')
    with pytest.raises(SettingsError, match="controller.toml: allowed_hosts: 'dashboard.ssti"):
        load_settings(path, {})
    defaults = DashboardSettings()
    assert defaults.allowed_hosts == () and defaults.cookie_secure == "auto"
    assert (defaults.login_failures_per_source, defaults.login_failures_per_account) == (5, 20)
    assert (defaults.login_window_s, defaults.login_lockout_s) == (900, 900)


def test_a_sign_in_form_larger_than_a_secret_needs_is_refused_unread(migrated: str) -> None:
    form = {"secret": PASSWORD, "next": "/"}
    with guarded(migrated, Ticks()) as url:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        padded = urlencode(form | {"pad": "x" * 100_000}).encode()
        reply = request(url, "/login", "POST", headers, padded)
        assert reply.status == 413 and "too large" in reply.text
        assert login(url, PASSWORD, "/").status == 303  # a form of the usual size still works


# --- sessions, users and their tokens -----------------------------------------------------


@pytest.fixture
def people_database(database: str) -> str:
    """An empty fleet of its own: these tests add users."""
    with Store(database):
        pass
    return database


@contextmanager
def people(database: str) -> Iterator[People]:
    with Store(database) as store:
        yield People(store.database)


CAMILLE_SECRET = "camille's own passphrase"


def with_camille(database: str, moment: datetime, **options: Any) -> None:
    """An operator of Lyon who signs in with her own password."""
    with people(database) as tables:
        tables.add_user(
            "camille", "operator", ["Lyon"], moment, password_hash=hash_secret(CAMILLE_SECRET)
        )
        if options:
            tables.update_user("camille", moment, **options)


def sign_ins(database: str) -> list[tuple[str, str]]:
    """The audit trail's sign-ins, oldest first: (who, outcome)."""
    with people(database) as tables:
        entries = tables.audit(action="sign_in")
    return [(entry.actor, entry.outcome) for entry in reversed(entries)]


def test_a_session_ends_with_its_hours(people_database: str) -> None:
    clock = Moment()
    with serving(people_database, clock=clock, session_hours=2) as url:
        cookie = {"Cookie": session_cookie(login(url, PASSWORD))}
        clock.advance(hours=2, seconds=-1)
        assert request(url, "/hosts", headers=cookie).status == 200
        clock.advance(seconds=1)
        ended = request(url, "/hosts", headers=cookie)
        assert ended.status == 303 and ended.headers["location"] == "/login?next=%2Fhosts"
        assert request(url, "/api/v1/hosts", headers=cookie).status == 401
        assert login(url, PASSWORD).status == 303  # signing in again opens a new one


def test_a_named_users_sign_ins_are_in_the_audit_trail(people_database: str) -> None:
    clock = Moment()
    with_camille(people_database, clock())
    with serving(people_database, clock=clock) as url:
        failed = login(url, "not her password", user="camille")
        assert failed.status == 401 and "set-cookie" not in failed.headers
        assert login(url, CAMILLE_SECRET, user="nobody").status == 401
        opened = login(url, CAMILLE_SECRET, user="camille")
        assert opened.status == 303
        page = request(url, "/hosts", headers={"Cookie": session_cookie(opened)})
        assert page.status == 200 and ">camille · operator<" in page.text
    assert sign_ins(people_database) == [
        ("camille", "failed"),
        ("nobody", "failed"),
        ("camille", "ok"),
    ]
    with people(people_database) as tables:
        camille = tables.user("camille")
    assert camille is not None and camille.last_sign_in_at == clock()


def test_a_disabled_user_cannot_sign_in_and_loses_her_sessions(people_database: str) -> None:
    clock = Moment()
    with_camille(people_database, clock())
    with serving(people_database, clock=clock) as url:
        cookie = {"Cookie": session_cookie(login(url, CAMILLE_SECRET, user="camille"))}
        assert request(url, "/hosts", headers=cookie).status == 200
        with people(people_database) as tables:
            tables.update_user("camille", clock(), disabled=True)
        assert request(url, "/hosts", headers=cookie).status == 303
        refused = login(url, CAMILLE_SECRET, user="camille")
        assert refused.status == 401 and "set-cookie" not in refused.headers
        with people(people_database) as tables:
            tables.update_user("camille", clock(), disabled=False)
        assert login(url, CAMILLE_SECRET, user="camille").status == 303
    assert sign_ins(people_database)[-2:] == [("camille", "failed"), ("camille", "ok")]


def test_a_revoked_or_expired_api_token_is_refused(people_database: str) -> None:
    clock = Moment()
    with_camille(people_database, clock())
    lasting, ending = new_user_token(), new_user_token()
    with people(people_database) as tables:
        revoked = tables.add_token("camille", "scraper", lasting, clock(), None)
        tables.add_token("camille", "a week", ending, clock(), clock() + timedelta(days=7))
    with serving(people_database, clock=clock) as url:
        for token in (lasting, ending):
            assert bearer(url, token).status == 200
        with people(people_database) as tables:
            assert tables.revoke_token(revoked, clock())
        assert bearer(url, lasting).status == 401
        clock.advance(days=7, seconds=-1)
        assert bearer(url, ending).status == 200
        clock.advance(seconds=1)
        reply = bearer(url, ending)
        assert (
            reply.status == 401 and reply.headers["www-authenticate"] == 'Bearer realm="cpsfleet"'
        )
        # A disabled user's token signs nobody in either.
        with people(people_database) as tables:
            other = new_user_token()
            tables.add_token("camille", "another", other, clock(), None)
            assert bearer(url, other).status == 200
            tables.update_user("camille", clock(), disabled=True)
        assert bearer(url, other).status == 401


def test_signing_in_without_the_database_is_a_clear_503(tmp_path: Path) -> None:
    """The right password, but nowhere to keep the session (the controller has not made its
    database yet): an error page that says why, no cookie, and no crash."""
    with guarded(tmp_path / "not-yet.db", Ticks()) as url:
        reply = login(url, PASSWORD)
        assert reply.status == 503 and "set-cookie" not in reply.headers
        assert "needs the controller database" in unescape(reply.text)
        assert request(url, "/healthz").status == 503


def test_a_csrf_token_of_any_characters_is_refused_not_a_crash(migrated: str) -> None:
    """Whatever a client puts in the header or the form, a wrong token is a 403."""
    with guarded(migrated, Ticks()) as url:
        cookie = {"Cookie": session_cookie(login(url, PASSWORD))}
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for header in ("é", "\u00ff" * 43, "x" * 10_000):
            sent = cookie | {"X-CSRF-Token": header}
            assert request(url, "/logout", "POST", headers=sent).status == 403, header[:10]
        for field in ("é", "€" * 43, "\0"):
            body = urlencode({"csrf": field}).encode()
            reply = request(url, "/logout", "POST", headers=cookie | form, body=body)
            assert reply.status == 403 and "this form has expired" in reply.text
        assert request(url, "/hosts", headers=cookie).status == 200  # still signed in


def test_a_malformed_origin_is_a_foreign_one(migrated: str) -> None:
    """A state-changing request's Origin that is no URL at all is refused like another
    site's (403), never an error of the server."""
    with guarded(migrated, Ticks()) as url:
        for origin in ("http://[", "http://[zz]", "http://a]b", "null", "http://é.example"):
            reply = login(url, PASSWORD, headers={"Origin": origin})
            assert reply.status == 403 and "set-cookie" not in reply.headers, origin
        assert login(url, PASSWORD, headers={"Origin": url}).status == 303


def test_a_new_password_or_role_takes_effect_on_open_sessions(people_database: str) -> None:
    clock = Moment()
    with_camille(people_database, clock())
    with serving(people_database, clock=clock) as url:
        cookie = {"Cookie": session_cookie(login(url, CAMILLE_SECRET, user="camille"))}
        with people(people_database) as tables:
            tables.update_user("camille", clock(), role="viewer")
        page = request(url, "/hosts", headers=cookie)
        assert page.status == 200 and ">camille · viewer<" in page.text  # the next request
        with people(people_database) as tables:
            tables.update_user("camille", clock(), password_hash=hash_secret("a new one"))
        assert request(url, "/hosts", headers=cookie).status == 303  # signed out
        assert login(url, CAMILLE_SECRET, user="camille").status == 401
        assert login(url, "a new one", user="camille").status == 303


def test_a_named_account_is_locked_out_whatever_the_source(people_database: str) -> None:
    ticks, clock = Ticks(), Moment()
    with_camille(people_database, clock())
    with serving(people_database, ticks, clock, login_failures_per_account=3) as url:
        for source in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
            assert login(url, "guess", user="camille", headers=from_source(source)).status == 401
        locked = login(url, CAMILLE_SECRET, user="camille", headers=from_source("192.0.2.4"))
        assert locked.status == 429 and "set-cookie" not in locked.headers
        assert login(url, PASSWORD, headers=from_source("192.0.2.4")).status == 303  # another
        ticks.advance(LOCKOUT_S)
        assert login(url, CAMILLE_SECRET, user="camille").status == 303
    assert ("camille", "refused") in sign_ins(people_database)


def test_a_session_of_the_configured_password_ends_with_the_setting(
    people_database: str,
) -> None:
    """The recovery password taken out of the configuration: its open sessions are nobody's."""
    with serving(people_database) as url:
        cookie = {"Cookie": session_cookie(login(url, PASSWORD))}
        assert request(url, "/hosts", headers=cookie).status == 200
    with serving(people_database, password_hash="") as url:
        assert request(url, "/hosts", headers=cookie).status == 303
        assert login(url, PASSWORD).status == 401


def test_guessed_user_tokens_are_throttled_like_any_other(people_database: str) -> None:
    ticks, clock = Ticks(), Moment()
    with_camille(people_database, clock())
    token = new_user_token()
    with people(people_database) as tables:
        tables.add_token("camille", "scraper", token, clock(), None)
    with serving(people_database, ticks, clock, login_failures_per_source=3) as url:
        for _ in range(3):
            assert bearer(url, new_user_token()).status == 401
        assert bearer(url, new_user_token()).status == 429
        # A live token is looked up, not guessed: it works from the locked source too.
        assert bearer(url, token).status == 200
        ticks.advance(LOCKOUT_S)
        assert bearer(url, new_user_token()).status == 401
