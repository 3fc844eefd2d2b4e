"""The agent's configuration: a TOML file, overridden by ``CPSFLEET_*`` environment variables.

    broker = "mqtt://127.0.0.1:1883"   # mqtts:// for TLS
    site = "Lyon Part-Dieu"            # the site label reported with the host
    host_id = "ws-lyon-07"             # optional: overrides the id derived from the machine
    interval = 900                     # seconds between two full inventories (default 15 min)
    splay = 60                         # first inventory after a random delay up to this (s)
    will_delay = 60                    # seconds a lost connection may last before "offline"
    reconnect_max = 300                # longest wait between two tries to reach the broker (s)
    state_dir = "/var/lib/cpsfleet"    # the outbox of documents waiting for the broker
    tls_ca = "/etc/cpsfleet/ca.pem"    # mqtts://: the CA of the broker's certificate
    tls_cert = "/etc/cpsfleet/agent.pem"   # this agent's certificate (CN = host id) and key
    tls_key = "/etc/cpsfleet/agent.key"
    allow_insecure = false             # plain mqtt:// is refused beyond loopback unless true
    pseudonym_key_file = "/etc/cpsfleet/pseudonym.key"   # optional: publish no names, and
                                       # idNat as a keyed hash (the controller has the key)

Each key has its environment variable: CPSFLEET_BROKER, CPSFLEET_SITE,
CPSFLEET_HOST_ID, CPSFLEET_INTERVAL, CPSFLEET_SPLAY, CPSFLEET_WILL_DELAY,
CPSFLEET_RECONNECT_MAX, CPSFLEET_STATE_DIR, CPSFLEET_TLS_CA, CPSFLEET_TLS_CERT, CPSFLEET_TLS_KEY,
CPSFLEET_ALLOW_INSECURE, CPSFLEET_PSEUDONYM_KEY_FILE.
"""

from __future__ import annotations

import os
import platform
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from cpsfleet.i18n import N_, _
from cpsfleet.schemas.broker import BrokerUrlError, ConnectionSettings
from cpsfleet.schemas.privacy import PseudonymKeyError
from cpsfleet.schemas.topics import TopicError, check_host_id

PROGRAM_DATA = Path(os.environ.get("PROGRAMDATA", "C:/ProgramData")) / "cpsfleet"
DEFAULT_PATHS = {
    "Linux": Path("/etc/cpsfleet/agent.toml"),
    "Darwin": Path("/Library/Application Support/cpsfleet/agent.toml"),
    "Windows": PROGRAM_DATA / "agent.toml",
}
STATE_DIRS = {
    "Linux": "/var/lib/cpsfleet",
    "Darwin": "/Library/Application Support/cpsfleet/state",
    "Windows": str(PROGRAM_DATA / "state"),
}


MAX_SECONDS = 30 * 24 * 3600  # what the status schema allows for the scan interval


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and the fault."""


NUMBERS = ("interval", "splay", "will_delay", "reconnect_max")


@dataclass(frozen=True)
class AgentConfig(ConnectionSettings):
    site: str | None = None
    host_id: str | None = None
    interval: int = 900
    splay: int = 60
    will_delay: int = 60
    # Between two tries to reach the broker the agent waits a random while, up to twice the
    # last one and at most this: a fleet coming back after an outage does not come at once.
    reconnect_max: int = 300
    state_dir: str = field(
        default_factory=lambda: STATE_DIRS.get(platform.system(), "/var/lib/cpsfleet")
    )

    def __post_init__(self) -> None:
        try:
            self.check_connection()
            if self.host_id is not None:
                check_host_id(self.host_id)
        except (BrokerUrlError, TopicError, PseudonymKeyError) as error:
            raise ConfigError(str(error)) from None
        for name in NUMBERS:
            least = 1 if name in ("interval", "reconnect_max") else 0
            if not least <= getattr(self, name) <= MAX_SECONDS:
                raise ConfigError(
                    _("{name} must be a positive number of seconds, 30 days at most").format(
                        name=name
                    )
                )


TYPES: dict[str, type] = {
    f.name: int if f.name in NUMBERS else bool if f.name == "allow_insecure" else str
    for f in fields(AgentConfig)
}


def default_path() -> Path:
    return DEFAULT_PATHS.get(platform.system(), DEFAULT_PATHS["Linux"])


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """The file at ``path`` (or the OS default, if it exists), then the environment on top."""
    values = _read_file(path) if path else _read_file(default_path(), missing_ok=True)
    values.update(_from_environment(os.environ if environ is None else environ))
    try:
        return AgentConfig(**values)  # type: ignore[arg-type]
    except ConfigError as error:
        where = path or default_path()
        raise ConfigError(_("{file}: {error}").format(file=where, error=error)) from None


def _from_environment(environ: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for key, kind in TYPES.items():
        raw = environ.get(f"CPSFLEET_{key.upper()}")
        if raw is None:
            continue
        try:
            values[key] = FROM_TEXT[kind](raw)
        except (ValueError, KeyError):
            raise ConfigError(
                _("{variable} must be {kind}, not {value}").format(
                    variable=f"CPSFLEET_{key.upper()}", kind=_(KIND_NAMES[kind]), value=repr(raw)
                )
            ) from None
    return values


def _boolean(text: str) -> bool:
    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[
        text.strip().lower()
    ]


FROM_TEXT: dict[type, Callable[[str], object]] = {int: int, str: str, bool: _boolean}
KIND_NAMES = {int: N_("a whole number"), str: N_("a non-empty string"), bool: N_("true or false")}


def _read_file(path: Path, missing_ok: bool = False) -> dict[str, object]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise ConfigError(_("{path}: no such configuration file").format(path=path)) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(
            _("{path}: cannot read the configuration: {error}").format(path=path, error=error)
        ) from error
    unknown = sorted(set(raw) - set(TYPES))
    if unknown:
        known = ", ".join(TYPES)
        raise ConfigError(
            _("{path}: unknown key(s) {keys}; known: {known}").format(
                path=path, keys=", ".join(unknown), known=known
            )
        )
    wrong = [key for key, value in raw.items() if type(value) is not TYPES[key] or value == ""]
    if wrong:
        raise ConfigError(
            _("{path}: {keys} must be {kinds}").format(
                path=path, keys=", ".join(wrong), kinds=_kinds(wrong)
            )
        )
    return dict(raw)


def _kinds(keys: list[str]) -> str:
    names = {int: _("whole numbers"), str: _("non-empty strings"), bool: _("true or false")}
    return " / ".join(sorted({names[TYPES[k]] for k in keys}))
