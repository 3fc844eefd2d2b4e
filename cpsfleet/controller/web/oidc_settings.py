"""Single sign-on with the organisation's OpenID Connect provider: the ``[oidc]`` table of
the controller configuration, and who a provider's claims make a person on the dashboard.

    [oidc]
    issuer = "https://sso.ssti.example/realms/ssti"   # its /.well-known/openid-configuration
    client_id = "cpsfleet"
    client_secret_file = "/etc/cpsfleet/oidc-secret"  # or client_secret = "..."
    base_url = "https://dashboard.ssti.example"  # the redirect URI is BASE_URL/oidc/callback
    provider_name = "Keycloak"                # the login page: "Sign in with Keycloak"
    scopes = ["openid", "profile", "email"]
    name_claim = "preferred_username"         # the user's name on the dashboard
    groups_claim = "groups"                   # a dotted path: realm_access.roles
    sites_claim = ""                          # a claim that lists sites by name, if any
    token_auth_method = "client_secret_basic" # or "client_secret_post"
    ca_file = "/etc/ssl/certs/ca-certificates.crt"   # the CAs the provider's TLS certificate
                                              # is checked with (default: certifi's)
    timeout_s = 10

    [oidc.roles]                              # group -> role; the highest of a person's wins
    "cpsfleet-admins" = "admin"
    "cpsfleet-operators" = "operator"
    "cpsfleet-viewers" = "viewer"

    [oidc.sites]                              # group -> sites ("*": every site)
    "site-lyon" = ["Lyon Part-Dieu"]
    "direction" = ["*"]

A person signs in only when a group gives them a role. Their sites are those their groups
(and ``sites_claim``) give; an admin given none sees every site, an operator or a viewer
given none is refused: nobody gets the whole fleet by an omission.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cpsfleet.controller.people import ROLES, PeopleError, Role, check_name
from cpsfleet.i18n import _

CALLBACK_PATH = "/oidc/callback"
EVERY_SITE = "*"
TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
# Who the configuration's own secrets sign in as (``auth.CONFIG_ADMIN``, ``CONFIG_TOKEN``):
# a provider's user of that name would take the recovery account over.
RESERVED_NAMES = frozenset({"admin", "token"})
SCALARS: dict[str, type] = {
    "issuer": str,
    "client_id": str,
    "client_secret": str,
    "client_secret_file": str,
    "base_url": str,
    "provider_name": str,
    "name_claim": str,
    "groups_claim": str,
    "sites_claim": str,
    "token_auth_method": str,
    "ca_file": str,
    "timeout_s": int,
}


class OidcConfigError(ValueError):
    """An ``[oidc]`` setting that cannot be used; the message says which and why."""


class NotGranted(Exception):
    """The provider vouched for a person this dashboard does not let in; the reason says why."""


@dataclass(frozen=True)
class OidcSettings:
    """The ``[oidc]`` table; without ``issuer``, single sign-on is off."""

    issuer: str = ""
    client_id: str = ""
    client_secret: str = ""
    client_secret_file: str = ""
    base_url: str = ""
    provider_name: str = ""
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    name_claim: str = "preferred_username"
    groups_claim: str = "groups"
    sites_claim: str = ""
    token_auth_method: str = "client_secret_basic"
    ca_file: str = ""
    timeout_s: int = 10
    roles: Mapping[str, str] = field(default_factory=dict)
    sites: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_kinds()
        if not self.issuer:
            if self.client_id or self.roles:
                raise OidcConfigError(_("oidc: issuer is required to sign in with a provider"))
            return
        _check_url("issuer", self.issuer)
        _check_url("base_url", self.base_url, bare=True)
        if not self.client_id:
            raise OidcConfigError(_("oidc: client_id is required"))
        if bool(self.client_secret) == bool(self.client_secret_file):
            raise OidcConfigError(
                _("oidc: give the client secret once: client_secret or client_secret_file")
            )
        self._check_claims()
        self._check_mappings()
        if self.client_secret_file:
            object.__setattr__(self, "client_secret", _read_secret(self.client_secret_file))

    def _check_kinds(self) -> None:
        for name, kind in SCALARS.items():
            if type(getattr(self, name)) is not kind:
                raise OidcConfigError(
                    _("oidc: {key} must be a {kind}").format(
                        key=name, kind=_("whole number") if kind is int else _("string")
                    )
                )
        if isinstance(self.scopes, list):  # as TOML reads it
            object.__setattr__(self, "scopes", tuple(self.scopes))
        if not isinstance(self.scopes, tuple) or not all(
            isinstance(scope, str) and scope for scope in self.scopes
        ):
            raise OidcConfigError(_("oidc: scopes must be a list of names"))
        for name in ("roles", "sites"):
            if not isinstance(getattr(self, name), Mapping):
                raise OidcConfigError(
                    _("oidc: {name} must be a table ([oidc.{name}])").format(name=name)
                )

    def _check_claims(self) -> None:
        if "openid" not in self.scopes:
            raise OidcConfigError(_("oidc: scopes must include openid"))
        if not self.name_claim or not self.groups_claim:
            raise OidcConfigError(_("oidc: name_claim and groups_claim name a claim each"))
        if self.token_auth_method not in TOKEN_AUTH_METHODS:
            raise OidcConfigError(
                _("oidc: token_auth_method must be one of {methods}").format(
                    methods=", ".join(TOKEN_AUTH_METHODS)
                )
            )
        if not 1 <= self.timeout_s <= 120:
            raise OidcConfigError(_("oidc: timeout_s must be from 1 to 120"))
        if self.ca_file and not Path(self.ca_file).is_file():
            raise OidcConfigError(_("oidc: ca_file: no such file {path}").format(path=self.ca_file))

    def _check_mappings(self) -> None:
        if not self.roles:
            raise OidcConfigError(
                _("oidc: [oidc.roles] must give a role to at least one group, or nobody signs in")
            )
        for group, role in self.roles.items():
            if role not in ROLES:
                raise OidcConfigError(
                    _(
                        "oidc: group {group!r} has the unknown role {role!r}: use one of {roles}"
                    ).format(group=group, role=role, roles=", ".join(ROLES))
                )
        checked = {}
        for group, sites in self.sites.items():
            if isinstance(sites, str):
                sites = [sites]
            if (
                not isinstance(sites, list | tuple)
                or not sites
                or not all(isinstance(site, str) and site.strip() for site in sites)
            ):
                raise OidcConfigError(
                    _(
                        'oidc: the sites of group {group!r} are a list of site names, or ["*"]'
                    ).format(group=group)
                )
            checked[group] = tuple(site.strip() for site in sites)
        object.__setattr__(self, "sites", checked)
        object.__setattr__(self, "roles", dict(self.roles))

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)

    @property
    def redirect_uri(self) -> str:
        return self.base_url.rstrip("/") + CALLBACK_PATH

    @property
    def verify(self) -> str | bool:
        """What requests checks the provider's certificate with: ``ca_file``, or its own CAs."""
        return self.ca_file or True

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    @property
    def shown_name(self) -> str:
        """The provider's name on the login page: ``provider_name``, else the issuer's host."""
        return self.provider_name or (urlsplit(self.issuer).hostname or self.issuer)


def _check_url(name: str, url: str, bare: bool = False) -> None:
    """An https URL (http only on loopback), without query or fragment; ``bare``: no path."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "https" or (parts.scheme == "http" and _loopback(host))
    if not url or not secure or not host or parts.query or parts.fragment:
        raise OidcConfigError(
            _("oidc: {name} must be an https:// URL (http:// only on loopback): {url!r}").format(
                name=name, url=url
            )
        )
    if bare and parts.path not in ("", "/"):
        raise OidcConfigError(
            _("oidc: base_url is the dashboard's address without a path: {url!r}").format(url=url)
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_secret(path: str) -> str:
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise OidcConfigError(
            _("oidc: cannot read client_secret_file {path}: {error}").format(path=path, error=error)
        ) from None
    if not secret:
        raise OidcConfigError(_("oidc: client_secret_file {path} is empty").format(path=path))
    return secret


# --- who the claims make a person ---------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """What the dashboard makes of a person the provider vouched for."""

    name: str
    role: Role
    sites: tuple[str, ...] | None
    display_name: str
    email: str
    groups: tuple[str, ...]


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """The claim at ``path``: a name, or a dotted path into nested objects; None if absent."""
    found: Any = claims
    for part in path.split("."):
        if not isinstance(found, Mapping) or part not in found:
            return None
        found = found[part]
    return found


def names_of(value: Any) -> tuple[str, ...]:
    """A claim holding one name or a list of them, as a tuple of strings (others dropped)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str))
    return ()


def grant(settings: OidcSettings, claims: Mapping[str, Any]) -> Grant:
    """The name, role and sites ``claims`` give; ``NotGranted`` with the reason otherwise."""
    name = _name_of(settings, claims)
    groups = names_of(claim(claims, settings.groups_claim))
    role = _role_of(settings, groups)
    return Grant(
        name=name,
        role=role,
        sites=_sites_of(settings, claims, groups, role),
        display_name=_display_name(claims),
        email=claims["email"] if isinstance(claims.get("email"), str) else "",
        groups=groups,
    )


def _name_of(settings: OidcSettings, claims: Mapping[str, Any]) -> str:
    value = claim(claims, settings.name_claim)
    if not isinstance(value, str) or not value.strip():
        raise NotGranted(
            _("the identity provider sent no {claim} claim to name you by").format(
                claim=settings.name_claim
            )
        )
    try:
        name = check_name(value)
    except PeopleError as error:
        raise NotGranted(str(error)) from None
    if name.casefold() in RESERVED_NAMES:
        raise NotGranted(
            _("the name {name!r} is reserved for the configured accounts").format(name=name)
        )
    return name


def _role_of(settings: OidcSettings, groups: Iterable[str]) -> Role:
    given = [settings.roles[group] for group in groups if group in settings.roles]
    if not given:
        raise NotGranted(_("none of your groups gives a role on this dashboard"))
    best: Role = max(given, key=ROLES.index)  # type: ignore[arg-type]
    return best


def _sites_of(
    settings: OidcSettings, claims: Mapping[str, Any], groups: Iterable[str], role: Role
) -> tuple[str, ...] | None:
    given: dict[str, None] = {}
    for group in groups:
        given.update(dict.fromkeys(settings.sites.get(group, ())))
    if settings.sites_claim:
        given.update(
            dict.fromkeys(s.strip() for s in names_of(claim(claims, settings.sites_claim)))
        )
    given.pop("", None)
    if EVERY_SITE in given:
        return None
    if given:
        return tuple(given)
    if role == "admin":
        return None
    raise NotGranted(_("none of your groups gives a site on this dashboard"))


def _display_name(claims: Mapping[str, Any]) -> str:
    name = claims.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    parts = [claims.get(key) for key in ("given_name", "family_name")]
    return " ".join(part.strip() for part in parts if isinstance(part, str) and part.strip())


def from_table(**table: Any) -> OidcSettings:
    """The ``[oidc]`` table as read from TOML; an unknown key is refused by name."""
    known = {f.name for f in fields(OidcSettings)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise OidcConfigError(_("oidc: unknown key(s) {keys}").format(keys=", ".join(unknown)))
    return OidcSettings(**table)
