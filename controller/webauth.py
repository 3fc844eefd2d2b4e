"""Who may see the dashboard: its settings, the hashed secrets, and the login sessions.

On a loopback address the dashboard is open to whoever can reach it (the
machine's own users). On any other address a login is required, so the
configuration must hold a password hash, a token hash, or both:

    [dashboard]
    listen = "0.0.0.0:8443"
    password_hash = "scrypt$16384$8$1$..."   # from `cpsfleet controller dashboard-secret`
    token_hash = "scrypt$16384$8$1$..."      # for scripts and Prometheus (Bearer token)
    tls_cert = "/etc/cpsfleet/dashboard.pem" # both or neither: HTTPS
    tls_key = "/etc/cpsfleet/dashboard.key"

Secrets are stored as scrypt hashes (``scrypt$N$r$p$salt$hash``, salt and hash in
base64); a session is a random token kept in memory only, so a restart logs everyone out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.broker import is_loopback

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32
DEFAULT_LISTEN = "127.0.0.1:8080"
KINDS: dict[str, type] = {"bool": bool, "str": str, "int": int}
KIND_NAMES = {"bool": "true or false", "str": "string", "int": "whole number"}


class DashboardConfigError(ValueError):
    """A ``[dashboard]`` setting that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

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
                f"listen: {host!r} is not an IP address (0.0.0.0, 127.0.0.1, ::1...)"
            ) from None
    return Listen(host, int(port))


@dataclass(frozen=True)
class DashboardSettings:
    """The ``[dashboard]`` table of the controller configuration."""

    enabled: bool = True
    listen: str = DEFAULT_LISTEN
    password_hash: str = ""
    token_hash: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    session_hours: int = 12
    timezone: str = "Europe/Paris"

    def __post_init__(self) -> None:
        for known in fields(self):
            if type(getattr(self, known.name)) is not KINDS[str(known.type)]:
                raise DashboardConfigError(f"{known.name} must be a {KIND_NAMES[str(known.type)]}")
        address = parse_listen(self.listen)
        for name in ("password_hash", "token_hash"):
            value = getattr(self, name)
            if value and not _parse_hash(value):
                raise DashboardConfigError(
                    f"{name} is not a secret hash: make one with "
                    "`cpsfleet controller dashboard-secret`"
                )
        if self.enabled and not address.loopback and not self.login_possible:
            raise DashboardConfigError(
                f"the dashboard listens on {address}, beyond loopback: set password_hash or "
                "token_hash (`cpsfleet controller dashboard-secret`), or listen on 127.0.0.1"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise DashboardConfigError("tls_cert and tls_key go together: set both or neither")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise DashboardConfigError(f"{name}: no such file {path}")
        if self.session_hours < 1:
            raise DashboardConfigError("session_hours must be at least 1")
        try:
            ZoneInfo(self.timezone)
        except (ValueError, ZoneInfoNotFoundError):
            raise DashboardConfigError(f"timezone: unknown time zone {self.timezone!r}") from None

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


class Gate:
    """Checks passwords, tokens and sessions against one ``DashboardSettings``.

    Verifying scrypt costs tens of milliseconds, so a token once verified is
    remembered (by its SHA-256) for the life of the process.
    """

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self._sessions: dict[str, float] = {}
        self._tokens: set[bytes] = set()
        self._lock = threading.Lock()

    def password(self, candidate: str) -> bool:
        hashed = self.settings.password_hash
        return bool(hashed) and verify_secret(candidate, hashed)

    def token(self, candidate: str) -> bool:
        hashed = self.settings.token_hash
        if not hashed or not candidate:
            return False
        fingerprint = hashlib.sha256(candidate.encode("utf-8")).digest()
        with self._lock:
            if fingerprint in self._tokens:
                return True
        if not verify_secret(candidate, hashed):
            return False
        with self._lock:
            self._tokens.add(fingerprint)
        return True

    def open_session(self) -> str:
        session = new_token()
        with self._lock:
            now = time.monotonic()
            self._sessions = {key: end for key, end in self._sessions.items() if end > now}
            self._sessions[session] = now + self.settings.session_hours * 3600
        return session

    def session(self, candidate: str | None) -> bool:
        if not candidate:
            return False
        with self._lock:
            end = self._sessions.get(candidate)
        return end is not None and end > time.monotonic()

    def close_session(self, candidate: str | None) -> None:
        with self._lock:
            self._sessions.pop(candidate or "", None)
