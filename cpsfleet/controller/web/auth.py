"""Who may see the dashboard: its settings, the host names it answers, the hashed secrets,
the throttling of sign-in, and the login sessions.

On a loopback address the dashboard is open to whoever can reach it (the
machine's own users). On any other address a login is required, so the
configuration must hold a password hash, a token hash, or both:

    [dashboard]
    listen = "0.0.0.0:8443"
    allowed_hosts = ["dashboard.ssti.example"]   # the names users type (loopback ones always)
    password_hash = "scrypt$16384$8$1$..."   # from `cpsfleet controller dashboard-secret`
    token_hash = "scrypt$16384$8$1$..."      # for scripts and Prometheus (Bearer token)
    tls_cert = "/etc/cpsfleet/dashboard.pem" # both or neither: HTTPS
    tls_key = "/etc/cpsfleet/dashboard.key"
    cookie_secure = "auto"                   # true behind a TLS reverse proxy
    login_failures_per_source = 5            # failed sign-ins from one address,
    login_failures_per_account = 20          # or against the password, within
    login_window_s = 900                     # this window lock them out
    login_lockout_s = 900                    # for this long

Secrets are stored as scrypt hashes (``scrypt$N$r$p$salt$hash``, salt and hash in
base64); a session is a random token kept in memory only, so a restart logs everyone out.
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
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
# The only account of the login form: it asks for the password (or the token), no user name.
PASSWORD_LOGIN = "password login"


class DashboardConfigError(ValueError):
    """A ``[dashboard]`` setting that cannot be used; the message says which and why."""


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
        if self.enabled and not address.loopback and not self.login_possible:
            raise DashboardConfigError(
                _(
                    "the dashboard listens on {address}, beyond loopback: set password_hash or "
                    "token_hash (`cpsfleet controller dashboard-secret`), or listen on 127.0.0.1"
                ).format(address=address)
            )

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
        for name in LOGIN_LIMITS:
            if getattr(self, name) < 1:
                raise DashboardConfigError(_("{name} must be at least 1").format(name=name))

    @property
    def address(self) -> Listen:
        return parse_listen(self.listen)

    @property
    def login_required(self) -> bool:
        return not self.address.loopback

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


class Gate:
    """Checks passwords, tokens and sessions against one ``DashboardSettings``, and
    throttles the tries: per source address, and per account for the login form.

    Verifying scrypt costs tens of milliseconds, so a token once verified is
    remembered (by its SHA-256) for the life of the process.
    """

    def __init__(self, settings: DashboardSettings, now: Callable[[], float] = time.monotonic):
        self.settings, self.now = settings, now
        window, lockout = settings.login_window_s, settings.login_lockout_s
        self.sources = Throttle(settings.login_failures_per_source, window, lockout, now)
        self.accounts = Throttle(settings.login_failures_per_account, window, lockout, now)
        self._sessions: dict[str, float] = {}
        self._tokens: set[bytes] = set()
        self._lock = threading.Lock()

    def sign_in(self, secret: str, source: str) -> bool:
        """The login form's secret, the password or the token, from ``source``; raises
        ``Throttled`` when that source or the password login has no tries left."""
        self.sources.charge(source)
        try:
            self.accounts.charge(PASSWORD_LOGIN)
        except Throttled:
            self.sources.settle(source, failed=False)  # refused unchecked: not a failure
            raise
        succeeded = self.password(secret) or self.token(secret)
        self.sources.settle(source, failed=not succeeded)
        self.accounts.settle(PASSWORD_LOGIN, failed=not succeeded)
        return succeeded

    def bearer(self, token: str, source: str) -> bool:
        """A Bearer token from ``source``; raises ``Throttled`` when that source has no
        tries left, unless the token was verified already (a scraper behind the same proxy
        as an attacker keeps working: it guesses nothing)."""
        if self._known(token):
            return True
        self.sources.charge(source)
        succeeded = self.token(token)
        self.sources.settle(source, failed=not succeeded)
        return succeeded

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

    def open_session(self) -> str:
        session = new_token()
        with self._lock:
            now = self.now()
            self._sessions = {key: end for key, end in self._sessions.items() if end > now}
            self._sessions[session] = now + self.settings.session_hours * 3600
        return session

    def session(self, candidate: str | None) -> bool:
        if not candidate:
            return False
        with self._lock:
            end = self._sessions.get(candidate)
        return end is not None and end > self.now()

    def close_session(self, candidate: str | None) -> None:
        with self._lock:
            self._sessions.pop(candidate or "", None)


def _fingerprint(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
