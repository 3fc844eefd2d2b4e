"""Where the fleet meets: the broker URL both sides are configured with.

mqtt://host[:port]        plain MQTT (default port 1883)
mqtts://host[:port]       MQTT over TLS (default port 8883)
mqtt://user:password@host optional credentials
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class BrokerUrlError(ValueError):
    """A broker URL that cannot be used; the message says why."""


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

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}"


def parse_broker_url(text: str) -> BrokerUrl:
    parts = urlsplit(text)
    if parts.scheme not in DEFAULT_PORTS:
        raise BrokerUrlError(f"broker URL {text!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise BrokerUrlError(f"broker URL {text!r} names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerUrlError(f"broker URL {text!r} must not have a path or a query")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as error:
        raise BrokerUrlError(f"broker URL {text!r}: {error}") from None
    return BrokerUrl(
        parts.scheme,
        parts.hostname,
        port,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )
