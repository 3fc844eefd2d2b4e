"""Who may do what: the roles of the dashboard's users, the sites their rights cover, and the
principal a request acts as.

Three roles, each with the rights of the one below it:

- ``viewer`` reads the fleet (pages, API, exports) of their sites;
- ``operator`` also acknowledges and silences alerts, asks for rescans and imports the
  roster, on their sites;
- ``admin`` also manages users and tokens and reads the audit trail.

A user's ``sites`` limits every right to those sites (any case, accents and spacing, as
every filter names a site); ``None`` is every site, and only such a user reads what is not
one site's (the fleet-wide ``/metrics``, the roster import, the audit trail). A host that
reports no site is seen only by users of every site.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from cpsfleet.controller.filters import fold
from cpsfleet.i18n import N_, _

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
ROLE_NAMES = {"viewer": N_("viewer"), "operator": N_("operator"), "admin": N_("admin")}
Right = Literal["read", "act", "import_roster", "manage", "audit"]
# The lowest role that holds each right.
RIGHTS: dict[Right, Role] = {
    "read": "viewer",
    "act": "operator",
    "import_roster": "operator",
    "manage": "admin",
    "audit": "admin",
}
# Rights over the whole fleet: a user limited to some sites does not hold them.
FLEET_WIDE: frozenset[Right] = frozenset({"import_roster", "manage", "audit"})
USER_NAME_MAX = 128
SITE_NAME_MAX = 128


class PeopleError(ValueError):
    """A user name, role or site list that cannot be used; the message says why."""


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise PeopleError(
            _("unknown role {role!r}: use one of {roles}").format(role=role, roles=", ".join(ROLES))
        )
    return role


def check_name(name: str) -> str:
    """A user name as stored: stripped; refused empty, too long or with control characters."""
    stripped = name.strip()
    if not stripped or len(stripped) > USER_NAME_MAX or not stripped.isprintable():
        raise PeopleError(
            _("a user name is 1 to {most} printable characters: {name!r}").format(
                most=USER_NAME_MAX, name=name
            )
        )
    return stripped


def check_sites(sites: Iterable[str] | None) -> tuple[str, ...] | None:
    """The sites of a user as given (None: every site), without blanks or repeats; an
    empty list is refused (a user who sees nothing is a disabled one)."""
    if sites is None:
        return None
    kept: dict[str, str] = {}
    for site in sites:
        if not isinstance(site, str) or not site.strip():
            raise PeopleError(_("a site is a non-empty name: {site!r}").format(site=site))
        if len(site.strip()) > SITE_NAME_MAX:
            raise PeopleError(
                _("a site name is at most {most} characters, not {length}").format(
                    most=SITE_NAME_MAX, length=len(site.strip())
                )
            )
        kept.setdefault(fold(site), site.strip())
    if not kept:
        raise PeopleError(_("a user limited to sites needs at least one site"))
    return tuple(kept.values())


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a user (``via`` "session" or "token") or the controller's own
    configured secret (``via`` "password" or "token" with ``name`` "admin" or "token")."""

    name: str
    role: Role
    sites: tuple[str, ...] | None = None
    via: str = "session"

    @property
    def scope(self) -> frozenset[str] | None:
        """The folded names of the sites this principal may see; None: every site."""
        return None if self.sites is None else frozenset(fold(site) for site in self.sites)

    @property
    def everywhere(self) -> bool:
        return self.sites is None

    def holds(self, right: Right) -> bool:
        """Whether the role holds ``right``, and the sites do when it is fleet-wide."""
        if ROLES.index(self.role) < ROLES.index(RIGHTS[right]):
            return False
        return self.everywhere or right not in FLEET_WIDE

    def sees(self, site: str | None) -> bool:
        """Whether this principal may see a host (or its cards, alerts) of ``site``."""
        scope = self.scope
        return scope is None or (site is not None and fold(site) in scope)

    def may(self, right: Right, site: str | None) -> bool:
        return self.holds(right) and self.sees(site)
