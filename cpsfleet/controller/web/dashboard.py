"""What every route of the dashboard shares: the settings, the clock, the sign-in gate, the
templates, the read-only opening of the database for one request, and the filters a listing
takes from its query.

``create_app`` (``cpsfleet.controller.web.app``) makes one ``Dashboard`` and keeps it in
``app.state``; each router's endpoints get it through ``Depends(dashboard)``. A listing's
endpoint gets its filters through ``Depends(listing)``, a ``Listing`` (site, severity, text ``q``,
host), ``RosterListing`` (the readiness: no host) or ``ExportListing`` (the downloads: site,
severity, host, as ``cpsfleet controller export``); each opens the database once, and
``Listing.filters`` finds the host in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Query, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from cpsfleet import i18n
from cpsfleet.controller.db.people import People
from cpsfleet.controller.db.store import Store, StoreError
from cpsfleet.controller.filters import Filters, UnknownFilter, host_id
from cpsfleet.controller.model import SEVERITIES
from cpsfleet.controller.people import ROLE_NAMES, Right
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.controller.web import data as webdata
from cpsfleet.controller.web import language
from cpsfleet.controller.web.auth import Gate, Visitor
from cpsfleet.controller.web.language import _
from cpsfleet.controller.web.metrics import Metrics
from cpsfleet.i18n import N_
from cpsfleet.schemas.times import format_utc

HERE = Path(__file__).parent
MAX_QUERY = 512  # of a refused request's query, in the audit trail
MACHINE_PATHS = ("/api/", "/metrics", "/export/")
NAV = (
    ("/", N_("Overview")),
    ("/hosts", N_("Hosts")),
    ("/cards", N_("Cards")),
    ("/readers", N_("Readers")),
    ("/findings", N_("Findings")),
    ("/alerts", N_("Alerts")),
    ("/readiness", N_("Readiness")),
    ("/roster", N_("Roster")),
    ("/history", N_("History")),
    ("/audit", N_("Audit trail")),
    ("/users", N_("Users")),
)
# The right an entry of NAV needs to be shown (none: any signed-in user's).
NAV_RIGHTS: dict[str, Right] = {"/audit": "audit", "/users": "manage"}
N_("Error")
SITE = Query(None, description="Only this site (any case, accents and spacing).")
SEVERITY = Query(
    None,
    description="Only rows of this severity: critical, warning or info.",
    json_schema_extra={"enum": list(SEVERITIES)},
)
TEXT = Query(None, description="Only rows with this text in some value (any case, any accents).")
HOST = Query(None, description="Only this host's rows: its id, or its hostname in any case.")


class Listing:
    """The filters of a listing, from its query: ``site``, ``severity``, ``q`` and ``host``
    (the FastAPI dependency ``listing`` reads them from the query).

    A severity no listing knows is refused (400) before the database is opened; the host,
    named by its id or hostname as ``--host`` names it, is looked up in the database the
    endpoint opened, by ``filters``. An empty value is no filter.
    """

    def __init__(
        self,
        request: Request,
        site: str | None = None,
        severity: str | None = None,
        q: str | None = None,
        host: str | None = None,
    ) -> None:
        try:
            chosen = Filters.of(site, severity, q)
        except UnknownFilter as error:
            raise HTTPException(400, str(error)) from None
        # What the signed-in user may see: their sites only; asking for another is refused.
        self.chosen = replace(chosen, scope=scope_of(request))
        if chosen.site is not None:
            refuse_other_sites(request, chosen.site, _("your rights do not cover this site"))
        self.request = request
        self.host = (host or "").strip() or None

    def filters(self, opened: Store) -> Filters:
        """The filters, the host as its id; 400 for a host that never reported, 403 for a
        host of a site the user may not see."""
        if self.host is None:
            return self.chosen
        found = host_id(self.host, opened.hosts())
        if found is None:
            raise HTTPException(
                400,
                _("unknown host {host!r}: /api/v1/hosts lists the fleet").format(host=self.host),
            )
        refuse_other_sites(self.request, _site_of(opened, found))
        return replace(self.chosen, host=found)


class RosterListing(Listing):
    """The readiness' filters: ``site``, ``severity`` and ``q``; its rows are professionals,
    and ``cpsfleet controller readiness`` has no ``--host`` either."""


class ExportListing(Listing):
    """The downloads' filters: those of ``cpsfleet controller export`` (``site``,
    ``severity``, ``host``)."""


# The dependencies that read the filters from the query. Functions, not the classes
# themselves: FastAPI resolves a function's annotations (the request among them) but, before
# 0.115, not those of a class's __init__ written as text.


def listing(
    request: Request,
    site: str | None = SITE,
    severity: str | None = SEVERITY,
    q: str | None = TEXT,
    host: str | None = HOST,
) -> Listing:
    return Listing(request, site, severity, q, host)


def roster_listing(
    request: Request,
    site: str | None = SITE,
    severity: str | None = SEVERITY,
    q: str | None = TEXT,
) -> RosterListing:
    return RosterListing(request, site, severity, q, None)


def export_listing(
    request: Request,
    site: str | None = SITE,
    severity: str | None = SEVERITY,
    host: str | None = HOST,
) -> ExportListing:
    return ExportListing(request, site, severity, None, host)


@dataclass
class Dashboard:
    settings: ControllerSettings
    clock: Callable[[], datetime]
    gate: Gate
    metrics: Metrics
    templates: Jinja2Templates

    @classmethod
    def of(
        cls,
        settings: ControllerSettings,
        clock: Callable[[], datetime],
        gate: Gate,
        metrics: Metrics,
    ) -> Dashboard:
        zone = ZoneInfo(settings.dashboard.timezone)
        environment = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=True,
            extensions=["jinja2.ext.i18n"],
        )
        templates = Jinja2Templates(env=environment)
        # The templates' _() and ngettext() translate into the request's language, which
        # ``Dashboard.render`` makes the current one while a page is rendered.
        environment.install_gettext_callables(  # type: ignore[attr-defined]
            language.gettext, language.ngettext_, newstyle=True
        )
        templates.env.filters["when"] = lambda moment: language.when(moment, zone)
        templates.env.filters["iso"] = _iso
        templates.env.filters["month"] = language.month
        templates.env.filters["day"] = language.day
        templates.env.filters["number"] = language.number
        templates.env.filters["word"] = language.word
        templates.env.globals.update(
            nav=NAV,
            nav_rights=NAV_RIGHTS,
            severities=SEVERITIES,
            languages=language.NAMES,
            role_names=ROLE_NAMES,
            switch_link=language.switch_link,
        )
        return cls(settings, clock, gate, metrics, templates)

    @contextmanager
    def store(self) -> Iterator[Store]:
        """The database, read-only, for one request; 503 when it cannot be read."""
        try:
            opened = Store.open_readonly(self.settings.database)
        except StoreError as error:
            raise HTTPException(
                503, _("the controller database cannot be read: {error}").format(error=error)
            ) from None
        with opened:
            yield opened

    def people(self) -> AbstractContextManager[People | None]:
        """The people tables (users, tokens, sessions, audit), read-write."""
        return self.gate.people()

    def audit(
        self,
        request: Request,
        action: str,
        target: str = "",
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> None:
        """Record what the request's user did (``actor``: who, when nobody is signed in yet)
        in the audit trail, with the address it came from."""
        if actor is None:
            visitor: Visitor | None = getattr(request.state, "visitor", None)
            actor = visitor.principal.name if visitor is not None else ""
        source = request.client.host if request.client else ""
        with self.people() as people:
            if people is not None:
                people.record(self.clock(), actor, source, action, target, outcome, detail)

    def page(
        self, request: Request, opened: Store, name: str, title: str, **context: Any
    ) -> HTMLResponse:
        """The page ``name``; ``opened`` is the request's database, for the list of sites.
        ``with_host``: whether the filters offer a host (they do unless told not to)."""
        params = dict(request.query_params)
        return self.render(
            request,
            name,
            {
                "title": title,
                "path": request.url.path,
                "params": params,
                "sites": webdata.sites(opened, scope_of(request)),
                "now": self.clock(),
                "query": lambda **changes: _query(params, changes),
                "with_host": True,
                **context,
            },
        )

    @staticmethod
    def words(request: Request, message: str) -> str:
        """``message`` translated into the request's language."""
        with i18n.use(language.of(request)):
            return _(message)

    def render(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        """The template ``name`` in the request's language (``language.of``)."""
        spoken = language.of(request)
        visitor: Visitor | None = getattr(request.state, "visitor", None)
        with i18n.use(spoken):
            response: HTMLResponse = self.templates.TemplateResponse(
                request,
                name,
                {
                    "lang": spoken,
                    "here": (request.url.path, request.url.query),
                    "user": visitor.principal if visitor is not None else None,
                    "csrf": visitor.csrf if visitor is not None else None,
                    **context,
                },
                status_code=status_code,
                headers=headers,
            )
        return response

    def refuse(
        self,
        request: Request,
        status: int,
        detail: Any,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """An error as JSON for the machine paths, as a page for a person."""
        if request.url.path.startswith(MACHINE_PATHS):
            return JSONResponse({"detail": detail}, status_code=status, headers=headers)
        return self.render(
            request,
            "error.html",
            {"title": self.words(request, "Error"), "path": "", "status": status, "detail": detail},
            status_code=status,
            headers=headers,
        )


def scope_of(request: Request) -> frozenset[str] | None:
    """The folded sites the request's user may see (None: every site)."""
    visitor: Visitor | None = getattr(request.state, "visitor", None)
    return None if visitor is None else visitor.principal.scope


def refuse_other_sites(request: Request, site: str | None, message: str | None = None) -> None:
    """403 when the request's user may not see ``site`` (a host's, or a filter's), recorded in
    the audit trail as a refused ``read`` of the path."""
    visitor: Visitor | None = getattr(request.state, "visitor", None)
    if visitor is None or visitor.principal.sees(site):
        return
    detail = {"site": site, "query": str(request.url.query)[:MAX_QUERY]}
    dashboard(request).audit(request, "read", request.url.path, "refused", detail)
    raise HTTPException(403, message or _("your rights do not cover the site of this host"))


def _site_of(opened: Store, host: str) -> str | None:
    row = opened.database.execute("select site from hosts where id = ?", [host]).fetchone()
    return None if row is None else row[0]


def dashboard(request: Request) -> Dashboard:
    """The dashboard of the application serving ``request`` (a FastAPI dependency)."""
    found: Dashboard = request.app.state.dashboard
    return found


def _query(params: dict[str, str], changes: dict[str, Any]) -> str:
    merged = {**params, **{key: value for key, value in changes.items()}}
    kept = {key: value for key, value in merged.items() if value not in (None, "")}
    return f"?{urlencode(kept)}" if kept else ""


def _iso(moment: datetime | str | None) -> str:
    if moment is None or isinstance(moment, str):
        return moment or ""
    return format_utc(moment)
