"""How every listing is narrowed, the same way for each command, the API and the dashboard.

A site is named as people type it: "annecy", "ANNECY" and "Annecy" name the site the
agents call "Annecy", and "Saint-Etienne" names "Saint-Étienne" (``same_site``). A text
filter matches any value of a row with the same folding (``fold``). ``Filters`` holds the
site, severity, host and text a listing keeps.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cpsfleet.controller.model import SEVERITIES
from cpsfleet.i18n import _

Row = dict[str, Any]
# The keys under which a listing's rows name their host's id.
HOST_KEYS = ("host_id", "id")


class UnknownFilter(ValueError):
    """A filter value no listing knows; the message lists the known ones."""


def fold(text: str) -> str:
    """Lower case, without accents, spaces collapsed: "  Saint-Étienne " is "saint-etienne"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(bare.split())


def same_site(wanted: str | None, site: str | None) -> bool:
    """Whether ``wanted`` (typed by a person, or a roster's column) names ``site``."""
    if wanted is None or site is None:
        return False
    return fold(wanted) == fold(site)


def host_id(name: str, hosts: Iterable[Mapping[str, Any]]) -> str | None:
    """The id of the host of ``hosts`` (rows with ``id`` and ``hostname``) whose id is
    ``name``, or else whose hostname is ``name`` in any case; None if there is none."""
    rows = list(hosts)
    by_id = next((row["id"] for row in rows if row["id"] == name), None)
    named = (row["id"] for row in rows if (row["hostname"] or "").casefold() == name.casefold())
    return by_id or next(named, None)


@dataclass(frozen=True)
class Filters:
    """What a listing keeps: a site, a severity, a host id and a text (None: any); and
    ``scope``, the folded names of the sites its reader may see (None: every site; a row
    without a site is then out of scope)."""

    site: str | None = None
    severity: str | None = None
    text: str | None = None
    host: str | None = None
    scope: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.severity is not None and self.severity not in SEVERITIES:
            raise UnknownFilter(
                _("unknown severity {given!r}: use one of {choices}").format(
                    given=self.severity, choices=", ".join(SEVERITIES)
                )
            )

    @classmethod
    def of(cls, site: str | None, severity: str | None, text: str | None) -> Filters:
        """From query parameters, where an empty value means no filter."""
        return cls(site or None, severity or None, (text or "").strip() or None)

    def site_matches(self, site: str | None) -> bool:
        if self.scope is not None and (site is None or fold(site) not in self.scope):
            return False
        return self.site is None or same_site(self.site, site)

    def host_matches(self, row: Row) -> bool:
        return self.host is None or any(row.get(key) == self.host for key in HOST_KEYS)

    def text_matches(self, row: Row) -> bool:
        if self.text is None:
            return True
        wanted = fold(self.text)
        return any(wanted in fold(str(value)) for value in _values(row))

    def keeps(self, row: Row) -> bool:
        """Whether a row with a ``site``, a host and a ``severity`` passes every filter."""
        return (
            self.site_matches(row.get("site"))
            and self.host_matches(row)
            and (self.severity is None or row.get("severity") == self.severity)
            and self.text_matches(row)
        )


def _values(row: Row) -> Iterable[Any]:
    for value in row.values():
        if isinstance(value, dict):
            yield from _values(value)
        elif isinstance(value, list | tuple):
            for item in value:
                yield from _values(item) if isinstance(item, dict) else (item,)
        elif value is not None:
            yield value
