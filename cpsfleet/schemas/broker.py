"""Where the fleet meets: the broker URL both sides are configured with.

mqtt://host[:port]        plain MQTT (default port 1883)
mqtts://host[:port]       MQTT over TLS (default port 8883)
mqtt://user:password@host optional credentials
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cpsfleet.i18n import _
from cpsfleet.schemas.privacy import load_key

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class BrokerUrlError(ValueError):
    """A broker URL that cannot be used; the message says why."""


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): nothing crosses a network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class BrokerUrl:
    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def check_plain(self, allow_insecure: bool) -> None:
        """Plain MQTT crosses no network unless the administrator says so."""
        if not self.tls and not self.loopback and not allow_insecure:
            raise BrokerUrlError(
                _(
                    "plain mqtt:// to {host} would send the fleet's data in clear: use mqtts://, "
                    "or set allow_insecure = true if that network is trusted"
                ).format(host=self.host)
            )

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}"


def parse_broker_url(text: str) -> BrokerUrl:
    parts = urlsplit(text)
    if parts.scheme not in DEFAULT_PORTS:
        raise BrokerUrlError(
            _("broker URL {url} must start with mqtt:// or mqtts://").format(url=repr(text))
        )
    if not parts.hostname:
        raise BrokerUrlError(_("broker URL {url} names no host").format(url=repr(text)))
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerUrlError(
            _("broker URL {url} must not have a path or a query").format(url=repr(text))
        )
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as error:
        raise BrokerUrlError(
            _("broker URL {url}: {error}").format(url=repr(text), error=error)
        ) from None
    return BrokerUrl(
        parts.scheme,
        parts.hostname,
        port,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


@dataclass(frozen=True)
class TlsFiles:
    """The CA that signs the broker, and this client's own certificate and key (mutual TLS)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def check(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise BrokerUrlError(_("tls_cert and tls_key go together: give both or neither"))
        for name in ("ca", "cert", "key"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise BrokerUrlError(
                    _("{name} {path} is not a readable file").format(name=f"tls_{name}", path=path)
                )


class TlsContext:
    """A client TLS context whose certificate is read again when its files change.

    paho keeps the one SSLContext it is given; loading a renewed certificate into
    that same context makes the next handshake (a reconnection) use it.
    """

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self.context = ssl.create_default_context(cafile=files.ca)
        self.stamp: tuple[float, float] | None = None
        self.reload()

    def _files_stamp(self) -> tuple[float, float] | None:
        if not (self.files.cert and self.files.key):
            return None
        return os.stat(self.files.cert).st_mtime, os.stat(self.files.key).st_mtime

    def reload(self) -> bool:
        """Load the client certificate if it changed; True when it did."""
        stamp = self._files_stamp()
        if stamp is None or stamp == self.stamp:
            return False
        self.context.load_cert_chain(self.files.cert or "", self.files.key)
        self.stamp = stamp
        return True


@dataclass(frozen=True)
class ConnectionSettings:
    """How a side of the fleet reaches the broker; shared by the agent's and the controller's
    configurations, which check it with ``check_connection``."""

    broker: str = "mqtt://127.0.0.1:1883"
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    allow_insecure: bool = False
    pseudonym_key_file: str | None = None

    @property
    def broker_url(self) -> BrokerUrl:
        return parse_broker_url(self.broker)

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.tls_ca, self.tls_cert, self.tls_key)

    @property
    def pseudonym_key(self) -> bytes | None:
        return load_key(self.pseudonym_key_file) if self.pseudonym_key_file else None

    def check_connection(self) -> None:
        """Raise BrokerUrlError or PseudonymKeyError for a setting that cannot work."""
        self.broker_url.check_plain(self.allow_insecure)
        self.tls.check()
        if self.pseudonym_key_file is not None:
            load_key(self.pseudonym_key_file)
