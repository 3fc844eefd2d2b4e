"""The controller's configuration: a TOML file, overridden by ``CPSFLEET_*`` environment variables.

    broker = "mqtt://127.0.0.1:1883"
    database = "/var/lib/cpsfleet/controller.db"
    tls_ca = "/etc/cpsfleet/ca.pem"             # with mqtts://: the broker's CA,
    tls_cert = "/etc/cpsfleet/controller.pem"   # and the controller's own certificate
    tls_key = "/etc/cpsfleet/controller.key"    # (CN cpsfleet-controller) and key
    command_tls_cert = "/etc/cpsfleet/commands.pem"   # with mqtts:// and a client certificate:
    command_tls_key = "/etc/cpsfleet/commands.key"    # `cpsfleet controller rescan`'s own
                                # (CN cpsfleet-commands); see cpsfleet.controller.commands.send
    allow_insecure = false      # plain mqtt:// is refused beyond loopback unless true
    pseudonym_key_file = "/etc/cpsfleet/pseudonym.key"   # when agents pseudonymise
    history_days = 30          # status history and events older than this are deleted
    language = "fr"            # or "en"; unset: the locale's if English, else French
    evaluate_every = 60        # seconds between two evaluations of the whole fleet
    share_group = "fleet"      # PostgreSQL only: several controllers share the intake
                               # ($share/fleet/...); one of them, elected, runs the periodic
                               # work (cpsfleet.controller.cluster). Unset: one controller
    node_name = "ctl-1"        # this controller's MQTT client id is cpsfleet-controller-ctl-1;
                               # unset: cpsfleet-controller, or with share_group the host name
    metrics_holder_names = false   # true: /metrics names each card's holder (a `holder`
                               # label); never when agents pseudonymise (pseudonym_key_file)

    [thresholds]               # see cpsfleet.controller.rules.findings.Thresholds
    expiring_warning_days = 60
    expiring_critical_days = 14
    card_update_max_years = 3
    min_cryptolib_version = "5.2.0"
    offline_margin_s = 300
    default_scan_interval_s = 900
    card_retire_after_days = 90   # a card unseen this long leaves the lists; its alerts resolve
    card_unseen_days = 30         # a roster professional's card unseen this long: card_unseen
    min_agent_version = "0.2.0"   # unset (the default): agents' versions are not compared

    [alerts]                   # see cpsfleet.controller.alerts.book.AlertSettings
    channels = ["mailto://...", "msteams://...", "json://host/hook"]   # apprise URLs
    repeat_interval_s = 86400
    min_severity = "warning"
    mqtt_topic_prefix = "cpsfleet/v1/alerts"

    [dashboard]                # see cpsfleet.controller.web.auth.DashboardSettings
    enabled = true
    listen = "127.0.0.1:8080"  # beyond loopback, a login is required:
    allowed_hosts = ["dashboard.ssti.example"]   # Host names answered, besides loopback
                               # and the listen address; any other Host gets a 400
    password_hash = "scrypt$..."   # `cpsfleet controller dashboard-secret`
    token_hash = "scrypt$..."      # `cpsfleet controller dashboard-secret --token`
    tls_cert = "/etc/cpsfleet/dashboard.pem"   # HTTPS, with tls_key
    tls_key = "/etc/cpsfleet/dashboard.key"
    cookie_secure = "auto"     # Secure cookie: "auto" (with tls_cert), true behind a TLS proxy
    session_hours = 12
    login_failures_per_source = 5     # failed sign-ins from one address, or
    login_failures_per_account = 20   # with the password from anywhere, within
    login_window_s = 900              # this many seconds lock sign-in out (429)
    login_lockout_s = 900             # for this many seconds
    timezone = "Europe/Paris"  # how the pages show times (the JSON is UTC)

    [oidc]                     # single sign-on: see cpsfleet.controller.web.oidc_settings
    issuer = "https://sso.ssti.example/realms/ssti"
    client_id = "cpsfleet"
    client_secret_file = "/etc/cpsfleet/oidc-secret"
    base_url = "https://dashboard.ssti.example"
    [oidc.roles]               # group -> admin, operator or viewer
    [oidc.sites]               # group -> sites

Environment: CPSFLEET_BROKER, CPSFLEET_DATABASE, CPSFLEET_SHARE_GROUP, CPSFLEET_NODE_NAME.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cpsfleet import i18n
from cpsfleet.controller.alerts.book import AlertError, AlertSettings
from cpsfleet.controller.db.connect import is_postgres
from cpsfleet.controller.rules.findings import RulesConfigError, Thresholds
from cpsfleet.controller.web.auth import DashboardConfigError, DashboardSettings
from cpsfleet.controller.web.oidc_settings import OidcConfigError, OidcSettings, from_table
from cpsfleet.i18n import N_, _
from cpsfleet.schemas.broker import BrokerUrlError, ConnectionSettings, TlsFiles
from cpsfleet.schemas.privacy import PseudonymKeyError

DEFAULT_PATH = Path("/etc/cpsfleet/controller.toml")
DEFAULT_DATABASE = "/var/lib/cpsfleet/controller.db"
ENVIRONMENT = {
    "broker": "CPSFLEET_BROKER",
    "database": "CPSFLEET_DATABASE",
    "share_group": "CPSFLEET_SHARE_GROUP",
    "node_name": "CPSFLEET_NODE_NAME",
}
CLIENT_ID = "cpsfleet-controller"
# A share group is one topic level; a node name ends the client id and names the controller
# in the logs (MQTT guarantees client ids of 23 characters only; Mosquitto takes 65535).
SHARE_GROUP = re.compile(r"[A-Za-z0-9._-]{1,64}")
NODE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class SettingsError(ValueError):
    """A configuration that cannot be used; the message names the file and the fault."""


@dataclass(frozen=True)
class ControllerSettings(ConnectionSettings):
    database: str = DEFAULT_DATABASE
    command_tls_cert: str | None = None
    command_tls_key: str | None = None
    history_days: int = 30
    evaluate_every: int = 60
    metrics_holder_names: bool = False
    # "fr" or "en": of notifications, findings, readiness and the dashboard's default. None:
    # the locale's (LC_ALL, LC_MESSAGES, LANG) if English, else French (cpsfleet.i18n).
    language: str | None = None
    # Several controllers on one PostgreSQL database: the MQTT share group they receive the
    # fleet's documents through, and this one's name (its client id's end).
    share_group: str | None = None
    node_name: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    oidc: OidcSettings = field(default_factory=OidcSettings)

    def __post_init__(self) -> None:
        try:
            self.check_connection()
        except (BrokerUrlError, PseudonymKeyError) as error:
            raise SettingsError(str(error)) from None
        if self.history_days < 1 or self.evaluate_every < 1:
            raise SettingsError(_("history_days and evaluate_every must be positive"))
        self._check_command_tls()
        self._check_cluster()
        if self.language is not None:
            try:
                i18n.check(self.language)
            except i18n.LanguageError as error:
                raise SettingsError(_("language: {error}").format(error=error)) from None

    @property
    def spoken(self) -> str:
        """The language the controller speaks: ``language``, else the locale's, else French."""
        return i18n.choose(self.language, os.environ)

    def digests(self) -> dict[str, str]:
        """A digest of each part of the configuration (``controller``: the top-level keys;
        then each table), to tell which parts changed between two starts without keeping
        their values, some of which are secrets."""
        tables = ("thresholds", "alerts", "dashboard", "oidc")
        parts: dict[str, Any] = {"controller": {}}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in tables:
                parts[item.name] = asdict(value)
            else:
                parts["controller"][item.name] = value
        return {
            name: hashlib.sha256(
                json.dumps(part, sort_keys=True, default=_plain).encode("utf-8")
            ).hexdigest()[:16]
            for name, part in parts.items()
        }

    @property
    def metrics_names(self) -> bool:
        """Whether ``/metrics`` names holders: when allowed, and never with pseudonyms."""
        return self.metrics_holder_names and self.pseudonym_key_file is None

    def _check_command_tls(self) -> None:
        if bool(self.command_tls_cert) != bool(self.command_tls_key):
            raise SettingsError(_("command_tls_cert and command_tls_key go together"))
        for name in ("command_tls_cert", "command_tls_key"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise SettingsError(
                    _("{name} {path} is not a readable file").format(name=name, path=path)
                )

    def _check_cluster(self) -> None:
        if self.share_group is not None:
            if not SHARE_GROUP.fullmatch(self.share_group):
                raise SettingsError(
                    _("share_group must be 1 to 64 letters, digits, dots, underscores or hyphens")
                )
            if not is_postgres(self.database):
                raise SettingsError(
                    _(
                        "share_group needs a PostgreSQL database (database = "
                        '"postgresql://..."): several controllers cannot share an SQLite file'
                    )
                )
        if self.node_name is not None and not NODE_NAME.fullmatch(self.node_name):
            raise SettingsError(
                _("node_name must be 1 to 64 letters, digits, dots, underscores or hyphens")
            )

    @property
    def node(self) -> str | None:
        """This controller's name among several: ``node_name``, else with ``share_group``
        the host's name (its first label, made fit for a client id); None alone."""
        if self.node_name is not None or self.share_group is None:
            return self.node_name
        label = socket.gethostname().split(".")[0]
        return re.sub(r"[^A-Za-z0-9._-]", "-", label)[:64] or "controller"

    @property
    def client_id(self) -> str:
        """The controller's MQTT client id: each controller of a share group needs its own
        (two with one id would take the session from each other), a lone controller keeps
        the one its persistent session has always had."""
        return CLIENT_ID if self.node is None else f"{CLIENT_ID}-{self.node}"

    @property
    def command_tls(self) -> TlsFiles:
        """The CA and the client certificate that commands are sent with."""
        return TlsFiles(self.tls_ca, self.command_tls_cert, self.command_tls_key)


TABLES: dict[str, Any] = {
    "thresholds": Thresholds,
    "alerts": AlertSettings,
    "dashboard": DashboardSettings,
    "oidc": from_table,
}
KINDS: dict[str, type] = {"int": int, "bool": bool}
SCALARS = {
    f.name: KINDS.get(str(f.type), str) for f in fields(ControllerSettings) if f.name not in TABLES
}
KIND_NAMES = {int: N_("whole number"), bool: N_("true or false"), str: N_("string")}


def _plain(value: Any) -> Any:
    """A value JSON cannot write, as text (a set in order: its own order varies by process)."""
    if isinstance(value, set | frozenset):
        return sorted(str(item) for item in value)
    return str(value)


def load_settings(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> ControllerSettings:
    """The file at ``path`` (or the default, if it exists), then the environment on top."""
    where = path or DEFAULT_PATH
    raw = _read(where, missing_ok=path is None)
    env = os.environ if environ is None else environ
    raw.update({key: env[name] for key, name in ENVIRONMENT.items() if name in env})
    try:
        return _build(raw)
    except (
        SettingsError,
        RulesConfigError,
        AlertError,
        DashboardConfigError,
        OidcConfigError,
        TypeError,
    ) as error:
        raise SettingsError(_("{file}: {error}").format(file=where, error=error)) from None


def _build(raw: dict[str, Any]) -> ControllerSettings:
    unknown = sorted(set(raw) - set(SCALARS) - set(TABLES))
    if unknown:
        raise SettingsError(_("unknown key(s) {keys}").format(keys=", ".join(unknown)))
    for key, value in raw.items():
        expected = SCALARS.get(key, str)
        if key not in TABLES and type(value) is not expected:
            raise SettingsError(
                _("{key} must be a {kind}").format(key=key, kind=_(KIND_NAMES[expected]))
            )
    tables = {name: raw.pop(name, {}) for name in TABLES}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise SettingsError(_("{name} must be a table ([{name}])").format(name=name))
    return ControllerSettings(**raw, **{name: TABLES[name](**t) for name, t in tables.items()})


def _read(path: Path, missing_ok: bool) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise SettingsError(_("{path}: no such configuration file").format(path=path)) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SettingsError(
            _("{path}: cannot read the configuration: {error}").format(path=path, error=error)
        ) from error
