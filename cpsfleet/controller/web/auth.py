"""Who may see the dashboard: its settings, the host names it answers, the hashed secrets,
the throttling of sign-in, and the login sessions.

Every page, the API and the exports need a signed-in user, on every address (loopback
included): a session (the login form, or single sign-on: ``cpsfleet.controller.web.oidc``)
or a Bearer token. Only ``/healthz`` answers anyone, and ``/metrics`` when
``metrics_public`` says so. Users are the database's (``cpsfleet controller user``); the
configuration may add a recovery password and a token for scrapers:

    [dashboard]
    listen = "0.0.0.0:8443"
    allowed_hosts = ["dashboard.ssti.example"]   # the names users type (loopback ones always)
    password_hash = "scrypt$16384$8$1$..."   # signs in as "admin" (recovery)
    token_hash = "scrypt$16384$8$1$..."      # reads the fleet (Bearer token, Prometheus)
    tls_cert = "/etc/cpsfleet/dashboard.pem" # both or neither: HTTPS
    tls_key = "/etc/cpsfleet/dashboard.key"
    cookie_secure = "auto"                   # true behind a TLS reverse proxy
    session_hours = 12
    metrics_public = false                   # true: /metrics without a token
    audit_days = 365                         # how long the audit trail keeps its entries
    login_failures_per_source = 5            # failed sign-ins from one address,
    login_failures_per_account = 20          # or against one account, within
    login_window_s = 900                     # this window lock them out
    login_lockout_s = 900                    # for this long

Secrets are stored as scrypt hashes (``scrypt$N$r$p$salt$hash``, salt and hash in
base64); a session is a random cookie kept in the database as its SHA-256, with the CSRF
token every form of the session must send back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cpsfleet.controller.db.connect import connect, exists
from cpsfleet.controller.db.people import People
from cpsfleet.controller.people import Principal
from cpsfleet.controller.web.throttle import Throttle, Throttled
from cpsfleet.i18n import N_, _
from cpsfleet.schemas.broker import is_loopback

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32
DEFAULT_LISTEN = "127.0.0.1:8080"
KINDS: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "str": (str,),
    "int": (int,),
    "bool | str": (bool, str),
    "tuple[str, ...]": (tuple,),
}
KIND_NAMES = {
    "bool": N_("true or false"),
    "str": N_("string"),
    "int": N_("whole number"),
    "bool | str": N_('true, false or "auto"'),
    "tuple[str, ...]": N_("list of host names"),
}
LOGIN_LIMITS = (
    "login_failures_per_source",
    "login_failures_per_account",
    "login_window_s",
    "login_lockout_s",
)
# Names a page from elsewhere cannot make a browser send: DNS rebinding needs a name of its own.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
HOST_NAME = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*")
HOST_AND_PORT = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]*)(:(?P<port>[0-9]{1,5}))?")
# The account of the login form without a user name: the configured password (or token).
PASSWORD_LOGIN = "password login"
# Who the configuration's secrets sign in as.
CONFIG_ADMIN, CONFIG_TOKEN = "admin", "token"
# A user's API token begins so: a Bearer token without it is the configured one.
TOKEN_PREFIX = "cpsf_"
# A cookie or token longer than this is nobody's.
MAX_SECRET = 256


class DashboardConfigError(ValueError):
    """A ``[dashboard]`` setting that cannot be used; the message says which and why."""


class NoSessions(RuntimeError):
    """A session cannot be opened: the controller database is missing (or not this gate's)."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def specific(self) -> bool:
        """An address of its own, not every address of the machine (0.0.0.0, ::)."""
        return self.host == "localhost" or not ipaddress.ip_address(self.host).is_unspecified

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> Listen:
    """``host:port``, ``[v6]:port``; the host is an IP address or ``localhost``."""
    host, separator, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not separator or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise DashboardConfigError(f"listen must be host:port, such as {DEFAULT_LISTEN}: {text!r}")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise DashboardConfigError(
                _("listen: {host} is not an IP address (0.0.0.0, 127.0.0.1, ::1...)").format(
                    host=repr(host)
                )
            ) from None
    return Listen(host, int(port))


@dataclass(frozen=True)
class DashboardSettings:
    """The ``[dashboard]`` table of the controller configuration."""

    enabled: bool = True
    listen: str = DEFAULT_LISTEN
    allowed_hosts: tuple[str, ...] = ()
    password_hash: str = ""
    token_hash: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    cookie_secure: bool | str = "auto"
    session_hours: int = 12
    login_failures_per_source: int = 5
    login_failures_per_account: int = 20
    login_window_s: int = 900
    login_lockout_s: int = 900
    timezone: str = "Europe/Paris"
    # Whether /metrics answers without a token (a scraper on a trusted network).
    metrics_public: bool = False
    # How long the audit trail keeps what people did.
    audit_days: int = 365

    def __post_init__(self) -> None:
        if isinstance(self.allowed_hosts, list):  # as TOML reads it
            object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        for known in fields(self):
            if type(getattr(self, known.name)) not in KINDS[str(known.type)]:
                raise DashboardConfigError(
                    _("{key} must be a {kind}").format(
                        key=known.name, kind=_(KIND_NAMES[str(known.type)])
                    )
                )
        self._check_access()
        self._check_tls()
        self._check_numbers()
        for entry in self.allowed_hosts:
            parse_host_entry(entry)
        try:
            ZoneInfo(self.timezone)
        except (ValueError, ZoneInfoNotFoundError):
            raise DashboardConfigError(
                _("timezone: unknown time zone {zone}").format(zone=repr(self.timezone))
            ) from None

    def _check_access(self) -> None:
        address = parse_listen(self.listen)
        for name in ("password_hash", "token_hash"):
            value = getattr(self, name)
            if value and not _parse_hash(value):
                raise DashboardConfigError(
                    _(
                        "{name} is not a secret hash: make one with "
                        "`cpsfleet controller dashboard-secret`"
                    ).format(name=name)
                )
        del address  # parsed for its errors: sign-in is required on every address

    def _check_tls(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise DashboardConfigError(_("tls_cert and tls_key go together: set both or neither"))
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise DashboardConfigError(
                    _("{name}: no such file {path}").format(name=name, path=path)
                )
        if self.cookie_secure not in (True, False, "auto"):
            raise DashboardConfigError(
                _('cookie_secure must be true, false or "auto": {value}').format(
                    value=repr(self.cookie_secure)
                )
            )

    def _check_numbers(self) -> None:
        if self.session_hours < 1:
            raise DashboardConfigError(_("session_hours must be at least 1"))
        if not 1 <= self.audit_days <= 36500:
            raise DashboardConfigError(_("audit_days must be from 1 to 36500"))
        for name in LOGIN_LIMITS:
            if getattr(self, name) < 1:
                raise DashboardConfigError(_("{name} must be at least 1").format(name=name))

    @property
    def address(self) -> Listen:
        return parse_listen(self.listen)

    @property
    def login_required(self) -> bool:
        """Always: only /healthz (and /metrics when public) answers without signing in."""
        return True

    @property
    def login_possible(self) -> bool:
        return bool(self.password_hash or self.token_hash)

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def secure_cookie(self) -> bool:
        """Whether the session cookie is only sent over HTTPS: ``auto`` when this serves TLS."""
        return self.tls if self.cookie_secure == "auto" else bool(self.cookie_secure)


# --- host names ---------------------------------------------------------------------------

Host = tuple[str, int | None]


def parse_host(text: str) -> Host | None:
    """A ``Host`` header or an ``allowed_hosts`` entry as (name, port or None), in one
    spelling: lower case, no final dot, an IP address compressed and without brackets."""
    if "[" not in text and text.count(":") > 1:
        text = f"[{text}]"  # a bare IPv6 address, as a setting may write it
    matched = HOST_AND_PORT.fullmatch(text)
    if matched is None:
        return None
    port = int(matched["port"]) if matched["port"] else None
    name = _host_name(matched["host"])
    if name is None or (port is not None and not 0 < port < 65536):
        return None
    return name, port


def _host_name(text: str) -> str | None:
    bracketed = text.startswith("[")
    text = text.removeprefix("[").removesuffix("]").lower()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        name = text.removesuffix(".")
        if bracketed or len(name) > 253 or not HOST_NAME.fullmatch(name):
            return None
        return name
    return None if bracketed != (address.version == 6) else str(address)


def parse_host_entry(entry: object) -> Host:
    """One ``allowed_hosts`` entry, or the error that says what is wrong with it."""
    parsed = parse_host(entry) if isinstance(entry, str) else None
    if parsed is None:
        raise DashboardConfigError(
            f"allowed_hosts: {entry!r} is not a host name or an IP address with an optional "
            ":port, such as dashboard.ssti.example, 10.0.0.5:8443 or [fd00::5]"
        )
    return parsed


def allowed_hosts(settings: DashboardSettings) -> frozenset[Host]:
    """The loopback names, the listen address when it is one, and ``allowed_hosts``."""
    names: list[Host] = [(name, None) for name in LOOPBACK_NAMES]
    address = settings.address
    if address.specific:
        names.append(parse_host_entry(address.host))
    names += [parse_host_entry(entry) for entry in settings.allowed_hosts]
    return frozenset(names)


def host_allowed(header: str | None, allowed: frozenset[Host]) -> bool:
    """Whether a request's ``Host`` names this dashboard; an entry without a port takes any."""
    parsed = parse_host(header or "")
    return parsed is not None and (parsed in allowed or (parsed[0], None) in allowed)


# --- secrets ------------------------------------------------------------------------------


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """The scrypt hash of ``secret`` to put in the configuration."""
    if not secret:
        raise ValueError("an empty secret cannot protect anything")
    salt = salt or secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    encoded = [base64.b64encode(part).decode("ascii") for part in (salt, digest)]
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), *encoded])


def verify_secret(secret: str, encoded: str) -> bool:
    """Whether ``secret`` hashes to ``encoded``; False for a malformed hash."""
    parsed = _parse_hash(encoded)
    if parsed is None or not secret:
        return False
    n, r, p, salt, expected = parsed
    return hmac.compare_digest(_scrypt(secret, salt, n, r, p), expected)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=2**26, dklen=HASH_BYTES
    )


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(x.isdigit() for x in parts[1:4]):
        return None
    try:
        salt, digest = (base64.b64decode(part, validate=True) for part in parts[4:])
    except ValueError:
        return None
    n, r, p = (int(x) for x in parts[1:4])
    if n < 2 or n & (n - 1) or not r or not p or len(digest) != HASH_BYTES:
        return None
    return n, r, p, salt, digest


# --- the gate -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    """A session just opened: the cookie's value and the CSRF token its forms carry."""

    cookie: str
    csrf: str
    principal: Principal


@dataclass(frozen=True)
class Visitor:
    """Who a request comes from: a principal, and the CSRF token of its session (None for a
    Bearer token, which a browser never sends by itself)."""

    principal: Principal
    csrf: str | None = None


class Gate:
    """Checks passwords, tokens and sessions, and throttles the tries: per source address,
    and per account for the login form.

    Users, their tokens and sessions are the database's (``cpsfleet.controller.db.people``);
    the configuration's ``password_hash`` signs in as ``admin`` (every right, every site:
    the recovery account) unless the database has a user of that name, and its
    ``token_hash`` reads the whole fleet as ``token`` (a Prometheus scraper). Verifying
    scrypt costs tens of milliseconds, so a configured token once verified is remembered
    (by its SHA-256) for the life of the process; a user's token is a random value stored
    as its SHA-256, checked in microseconds.
    """

    def __init__(
        self,
        settings: DashboardSettings,
        database: Path | str | None = None,
        now: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.settings, self.now, self.clock = settings, now, clock
        self.database = Path(database) if database is not None else None
        window, lockout = settings.login_window_s, settings.login_lockout_s
        self.sources = Throttle(settings.login_failures_per_source, window, lockout, now)
        self.accounts = Throttle(settings.login_failures_per_account, window, lockout, now)
        self._tokens: set[bytes] = set()
        self._lock = threading.Lock()

    @contextmanager
    def people(self) -> Iterator[People | None]:
        """The people tables, read-write; None without a database (a gate of secrets only)."""
        if self.database is None or not exists(self.database):
            yield None
            return
        db = connect(self.database, must_exist=True)
        try:
            yield People(db)
        finally:
            db.close()

    def sign_in(self, name: str, secret: str, source: str) -> Principal | None:
        """The login form's user name and secret from ``source``. Without a name, the secret
        is the configured password or token (as before users). Raises ``Throttled`` when
        that source or that account has no tries left."""
        account = name or PASSWORD_LOGIN
        self.sources.charge(source)
        try:
            self.accounts.charge(account)
        except Throttled:
            self.sources.settle(source, failed=False)  # refused unchecked: not a failure
            raise
        found = self._check(name, secret)
        self.sources.settle(source, failed=found is None)
        self.accounts.settle(account, failed=found is None)
        return found

    def _check(self, name: str, secret: str) -> Principal | None:
        if not name:
            if self.password(secret):
                return Principal(CONFIG_ADMIN, "admin", None, "password")
            if self.token(secret):
                return Principal(CONFIG_TOKEN, "viewer", None, "token")
            return None
        with self.people() as people:
            user = people.user(name) if people is not None else None
            if user is not None:
                hashed = user.password_hash
                if not user.active or not hashed or not verify_secret(secret, hashed):
                    return None
                people.signed_in(user.name, self.clock())  # type: ignore[union-attr]
                return user.principal("password")
        if name == CONFIG_ADMIN and self.password(secret):
            return Principal(CONFIG_ADMIN, "admin", None, "password")
        return None

    def bearer(self, token: str, source: str) -> Principal | None:
        """A Bearer token from ``source``: a user's (``cpsf_…``) or the configured one.
        Raises ``Throttled`` when that source has no tries left, unless the token was
        verified already (a scraper behind the same proxy as an attacker keeps working)."""
        if token.startswith(TOKEN_PREFIX):
            with self.people() as people:
                found = people.token_user(token, self.clock()) if people is not None else None
                if found is not None:
                    user, token_id = found
                    people.token_used(token_id, self.clock())  # type: ignore[union-attr]
                    return user.principal("token")
        elif self._known(token):
            return Principal(CONFIG_TOKEN, "viewer", None, "token")
        self.sources.charge(source)
        succeeded = not token.startswith(TOKEN_PREFIX) and self.token(token)
        self.sources.settle(source, failed=not succeeded)
        return Principal(CONFIG_TOKEN, "viewer", None, "token") if succeeded else None

    def password(self, candidate: str) -> bool:
        hashed = self.settings.password_hash
        return bool(hashed) and verify_secret(candidate, hashed)

    def token(self, candidate: str) -> bool:
        hashed = self.settings.token_hash
        if not hashed or not candidate:
            return False
        if self._known(candidate):
            return True
        if not verify_secret(candidate, hashed):
            return False
        with self._lock:
            self._tokens.add(_fingerprint(candidate))
        return True

    def _known(self, candidate: str) -> bool:
        with self._lock:
            return _fingerprint(candidate) in self._tokens

    def open_session(self, principal: Principal, source: str) -> Opened:
        """A new session for ``principal``, kept in the database (its digest)."""
        cookie, csrf = new_token(), new_token()
        now = self.clock()
        end = now + timedelta(hours=self.settings.session_hours)
        with self.people() as people:
            if people is None:
                raise NoSessions("sessions need the controller database")
            people.open_session(cookie, principal.name, csrf, source, now, end)
        return Opened(cookie, csrf, principal)

    def session(self, cookie: str | None) -> Visitor | None:
        """Who a session cookie signs in, while it lasts and its user is active."""
        if not cookie or len(cookie) > MAX_SECRET:
            return None
        with self.people() as people:
            if people is None:
                return None
            found = people.session(cookie, self.clock(), configured=self.configured())
        if found is None:
            return None
        return Visitor(found.principal, found.csrf)

    def configured(self) -> dict[str, Principal]:
        """The principals the configuration's secrets sign in, by name."""
        known = {}
        if self.settings.password_hash:
            known[CONFIG_ADMIN] = Principal(CONFIG_ADMIN, "admin", None, "password")
        if self.settings.token_hash:
            known[CONFIG_TOKEN] = Principal(CONFIG_TOKEN, "viewer", None, "token")
        return known

    def close_session(self, cookie: str | None) -> None:
        if not cookie or len(cookie) > MAX_SECRET:
            return
        with self.people() as people:
            if people is not None:
                people.close_session(cookie)


def new_user_token() -> str:
    """A user's API token: recognisable by its prefix, 256 random bits."""
    return TOKEN_PREFIX + new_token()


def _fingerprint(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
