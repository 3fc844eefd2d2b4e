"""The dashboard: server-rendered pages, their JSON under ``/api/v1``, exports and ``/metrics``.

``create_app`` builds the FastAPI application over the controller database,
which every request opens read-only (WAL lets it read beside the writer).
Each page has its JSON twin with the same filters (``site``, ``severity``,
``q``); the OpenAPI description is at ``/api/v1/openapi.json``. Nothing is
loaded from outside: the few scripts and styles are in ``cpsfleet/controller/web/static``.
Access is checked by ``cpsfleet.controller.web.auth``: only the configured host names are
answered; open on loopback, a session (password login) or a Bearer token anywhere
else, with failed tries throttled.
"""

from __future__ import annotations

import calendar
import io
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import HTTPException
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from cpsfleet.controller.db.store import Store, StoreError
from cpsfleet.controller.model import SEVERITIES
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.controller.web import data as webdata
from cpsfleet.controller.web import exports
from cpsfleet.controller.web.auth import Gate, allowed_hosts, host_allowed
from cpsfleet.controller.web.data import Filters, UnknownFilter
from cpsfleet.controller.web.metrics import Metrics
from cpsfleet.controller.web.throttle import Throttled
from cpsfleet.schemas.times import format_utc, in_zone, never_expires

HERE = Path(__file__).parent
SESSION_COOKIE = "cpsfleet_session"
# A redirect names at most this much of the page asked for: a longer one goes to "/".
MAX_TARGET = 1024
# The sign-in form holds a secret and a target: anything larger is refused before it is read.
MAX_LOGIN_FORM = 8 * 1024
UNKNOWN_HOST = "This dashboard does not answer to that host name (see allowed_hosts).\n"
PUBLIC_PATHS = ("/login", "/static/")
MACHINE_PATHS = ("/api/", "/metrics", "/export/")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
NAV = (
    ("/", "Overview"),
    ("/hosts", "Hosts"),
    ("/cards", "Cards"),
    ("/findings", "Findings"),
    ("/alerts", "Alerts"),
    ("/readiness", "Readiness"),
)
EXPORTS = {
    "hosts": exports.HOST_COLUMNS,
    "cards": exports.CARD_COLUMNS,
    "readiness": exports.READINESS_COLUMNS,
}
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}

SITE = Query(None, description="Only this site (any case and spacing).")
SEVERITY = Query(
    None,
    description="Only rows of this severity: critical, warning or info.",
    json_schema_extra={"enum": list(SEVERITIES)},
)
TEXT = Query(None, description="Only rows with this text in some value (any case, any accents).")


def create_app(
    settings: ControllerSettings,
    metrics: Metrics | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    gate: Gate | None = None,
) -> FastAPI:
    """The dashboard over ``settings.database``; ``metrics`` is the controller's, if it runs;
    ``gate`` checks the secrets (one over ``settings.dashboard`` unless given)."""
    dashboard = settings.dashboard
    gate = gate or Gate(dashboard)
    hosts = allowed_hosts(dashboard)
    metrics = metrics or Metrics(Path(settings.database))
    zone = ZoneInfo(dashboard.timezone)
    app = FastAPI(
        title="cpsfleet dashboard",
        summary="The fleet's hosts, cards, findings, alerts and readiness, as JSON.",
        version="1",
        docs_url=None,  # the interactive docs load their scripts from a CDN
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["when"] = lambda moment: _when(moment, zone)
    templates.env.filters["iso"] = _iso
    templates.env.filters["month"] = _month
    templates.env.globals.update(nav=NAV, severities=SEVERITIES, login=dashboard.login_required)

    @contextmanager
    def store() -> Iterator[Store]:
        try:
            opened = Store.open_readonly(settings.database)
        except StoreError as error:
            raise HTTPException(503, f"the controller database cannot be read: {error}") from None
        with opened:
            yield opened

    def filters(site: str | None, severity: str | None, text: str | None) -> Filters:
        try:
            return Filters.of(site, severity, text)
        except UnknownFilter as error:
            raise HTTPException(400, str(error)) from None

    def page(request: Request, name: str, title: str, **context: Any) -> HTMLResponse:
        with store() as opened:
            known_sites = webdata.sites(opened)
        params = dict(request.query_params)
        return templates.TemplateResponse(
            request,
            name,
            {
                "title": title,
                "path": request.url.path,
                "params": params,
                "sites": known_sites,
                "now": clock(),
                "query": lambda **changes: _query(params, changes),
                **context,
            },
        )

    # --- access ---------------------------------------------------------------------------

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await refusal(request) or await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def refusal(request: Request) -> Response | None:
        """The answer to a request that may not go further, or None."""
        # First of all: a page elsewhere whose name was made to point here (DNS rebinding)
        # sends its own name, and must not read the fleet even from this machine's browser.
        if not host_allowed(request.headers.get("host"), hosts):
            return PlainTextResponse(UNKNOWN_HOST, status_code=400)
        path = request.url.path
        if not dashboard.login_required or path.startswith(PUBLIC_PATHS):
            return None
        try:
            if await _allowed(request, gate):
                return None
        except Throttled as error:
            return refuse(request, 429, str(error), {"Retry-After": str(error.retry_after)})
        if path.startswith(MACHINE_PATHS):
            return JSONResponse(
                {"detail": "login required: a Bearer token or a session"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="cpsfleet"'},
            )
        return RedirectResponse(f"/login?{urlencode({'next': _local(path)})}", status_code=303)

    def refuse(
        request: Request, status: int, detail: Any, headers: Mapping[str, str] | None = None
    ) -> Response:
        if request.url.path.startswith(MACHINE_PATHS):
            return JSONResponse({"detail": detail}, status_code=status, headers=headers)
        return templates.TemplateResponse(
            request,
            "error.html",
            {"title": "Error", "path": "", "status": status, "detail": detail},
            status_code=status,
            headers=headers,
        )

    @app.exception_handler(HTTPException)
    async def error_page(request: Request, error: HTTPException) -> Response:
        return refuse(request, error.status_code, error.detail, error.headers)

    def login_page(
        request: Request,
        target: str,
        status: int = 200,
        failed: bool = False,
        locked: Throttled | None = None,
    ) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            "login.html",
            {"title": "Log in", "path": "", "next": target, "failed": failed, "locked": locked},
            status_code=status,
            headers={"Retry-After": str(locked.retry_after)} if locked else None,
        )

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return login_page(request, _local(next))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        body = await _bounded_body(request, MAX_LOGIN_FORM)
        if body is None:
            return PlainTextResponse("The sign-in form is too large.\n", status_code=413)
        form = parse_qs(body.decode("utf-8", "replace"))
        secret = (form.get("secret") or [""])[0]
        target = _local((form.get("next") or ["/"])[0])
        try:
            signed_in = await run_in_threadpool(gate.sign_in, secret, _source(request))
        except Throttled as error:
            return login_page(request, target, 429, locked=error)
        if not signed_in:
            return login_page(request, target, 401, failed=True)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            gate.open_session(),
            max_age=dashboard.session_hours * 3600,
            httponly=True,
            samesite="strict",
            secure=dashboard.secure_cookie,
        )
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        gate.close_session(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(
            SESSION_COOKIE, httponly=True, samesite="strict", secure=dashboard.secure_cookie
        )
        return response

    # --- pages ------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def overview_page(
        request: Request, site: str | None = None, severity: str | None = None, q: str | None = None
    ) -> HTMLResponse:
        data = api_overview(site, severity, q)
        return page(request, "overview.html", "Fleet overview", data=data)

    @app.get("/hosts", include_in_schema=False)
    def hosts_page(
        request: Request, site: str | None = None, severity: str | None = None, q: str | None = None
    ) -> HTMLResponse:
        return page(request, "hosts.html", "Hosts", rows=api_hosts(site, severity, q))

    @app.get("/hosts/{host_id}", include_in_schema=False)
    def host_page(request: Request, host_id: str) -> HTMLResponse:
        data = api_host(host_id)
        return page(request, "host.html", data["hostname"] or host_id, host=data)

    @app.get("/cards", include_in_schema=False)
    def cards_page(
        request: Request, site: str | None = None, severity: str | None = None, q: str | None = None
    ) -> HTMLResponse:
        return page(request, "cards.html", "Cards", rows=api_cards(site, severity, q))

    @app.get("/findings", include_in_schema=False)
    def findings_page(
        request: Request, site: str | None = None, severity: str | None = None, q: str | None = None
    ) -> HTMLResponse:
        return page(request, "findings.html", "Findings", rows=api_findings(site, severity, q))

    @app.get("/alerts", include_in_schema=False)
    def alerts_page(
        request: Request, site: str | None = None, severity: str | None = None, q: str | None = None
    ) -> HTMLResponse:
        rows, active = api_alerts(site, severity, q), api_silences()
        return page(request, "alerts.html", "Alerts", rows=rows, silences=active)

    @app.get("/readiness", include_in_schema=False)
    def readiness_page(
        request: Request, site: str | None = None, severity: str | None = None, q: str | None = None
    ) -> HTMLResponse:
        rows = api_readiness(site, severity, q)
        return page(request, "readiness.html", "Readiness", rows=rows)

    # --- JSON -------------------------------------------------------------------------------

    @app.get("/api/v1/overview", tags=["fleet"])
    def api_overview(
        site: str | None = SITE, severity: str | None = SEVERITY, q: str | None = TEXT
    ) -> dict[str, Any]:
        """Hosts by state, readers, cards, findings by severity, per site; the expiry chart."""
        chosen = filters(site, severity, q)
        with store() as opened:
            return webdata.overview(opened, clock(), settings.thresholds, chosen)

    @app.get("/api/v1/sites", tags=["fleet"])
    def api_sites() -> list[str]:
        """Every site a host reported."""
        with store() as opened:
            return webdata.sites(opened)

    @app.get("/api/v1/hosts", tags=["fleet"])
    def api_hosts(
        site: str | None = SITE, severity: str | None = SEVERITY, q: str | None = TEXT
    ) -> list[dict[str, Any]]:
        """Every host: state, last report, readers, cards, Cryptolib, open findings by severity.

        ``severity`` keeps the hosts with at least one open finding of that severity."""
        chosen = filters(site, severity, q)
        with store() as opened:
            return webdata.hosts(opened, chosen)

    @app.get("/api/v1/hosts/{host_id}", tags=["fleet"])
    def api_host(host_id: str) -> dict[str, Any]:
        """One host: readers, cards and certificates, Cryptolib, findings, alerts, events."""
        with store() as opened:
            found = webdata.host(opened, host_id, clock(), settings.thresholds)
        if found is None:
            raise HTTPException(404, f"no host {host_id!r} has reported")
        return found

    @app.get("/api/v1/cards", tags=["cards"])
    def api_cards(
        site: str | None = SITE, severity: str | None = SEVERITY, q: str | None = TEXT
    ) -> list[dict[str, Any]]:
        """Every card known, soonest expiry first; ``severity`` is its expiry's."""
        chosen = filters(site, severity, q)
        with store() as opened:
            return webdata.cards(opened, clock(), settings.thresholds, chosen)

    @app.get("/api/v1/expiry", tags=["cards"])
    def api_expiry(site: str | None = SITE, q: str | None = TEXT) -> dict[str, Any]:
        """Cards by month of expiry over the next 12 months; expired, later and undated."""
        chosen = filters(site, None, q)
        with store() as opened:
            return webdata.expiry(opened, clock(), settings.thresholds, chosen)

    @app.get("/api/v1/findings", tags=["alerts"])
    def api_findings(
        site: str | None = SITE, severity: str | None = SEVERITY, q: str | None = TEXT
    ) -> list[dict[str, Any]]:
        """Open findings, most severe first."""
        chosen = filters(site, severity, q)
        with store() as opened:
            return webdata.findings(opened, chosen)

    @app.get("/api/v1/alerts", tags=["alerts"])
    def api_alerts(
        site: str | None = SITE, severity: str | None = SEVERITY, q: str | None = TEXT
    ) -> list[dict[str, Any]]:
        """Alerts, firing first, with their acknowledgement."""
        chosen = filters(site, severity, q)
        with store() as opened:
            return webdata.alerts(opened, chosen)

    @app.get("/api/v1/silences", tags=["alerts"])
    def api_silences() -> list[dict[str, Any]]:
        """The silences in force."""
        with store() as opened:
            return webdata.silences(opened, clock())

    @app.get("/api/v1/readiness", tags=["readiness"])
    def api_readiness(
        site: str | None = SITE, severity: str | None = SEVERITY, q: str | None = TEXT
    ) -> list[dict[str, Any]]:
        """Each professional of the roster: state, next step, card.

        ``severity``: critical when they cannot log in, warning when a step is left."""
        chosen = filters(site, severity, q)
        with store() as opened:
            return webdata.readiness(
                opened, clock(), settings.thresholds, settings.pseudonym_key, chosen
            )

    # --- files and metrics ----------------------------------------------------------------

    @app.get("/export/{name}", tags=["exports"])
    def download(name: str, site: str | None = SITE) -> Response:
        """``hosts``, ``cards`` or ``readiness``, ``.csv`` or ``.json``, as ``cpsfleet controller
        export`` writes them."""
        what, _, form = name.partition(".")
        if what not in EXPORTS or form not in exports.FORMATS:
            raise HTTPException(404, "exports: hosts, cards or readiness, .csv or .json")
        now = clock()
        with store() as opened:
            if what == "hosts":
                rows = exports.hosts(opened, site)
            elif what == "cards":
                rows = exports.cards(opened, now, site)
            else:
                rows = exports.readiness(
                    opened, now, settings.thresholds, settings.pseudonym_key, site
                )
        body = io.StringIO(newline="")
        exports.write(rows, EXPORTS[what], "csv" if form == "csv" else "json", body)
        filename = f"cpsfleet-{what}-{now.strftime('%Y-%m-%d')}.{form}"
        return Response(
            body.getvalue().encode("utf-8"),
            media_type=MEDIA_TYPES[form],
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @app.get("/metrics", tags=["metrics"])
    def prometheus() -> Response:
        """Prometheus metrics: hosts, cards by days to expiry, findings, messages, latency."""
        assert metrics is not None
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app


async def _allowed(request: Request, gate: Gate) -> bool:
    """A live session, or a right Bearer token; raises ``Throttled`` for a source that
    sent too many wrong ones."""
    if gate.session(request.cookies.get(SESSION_COOKIE)):
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return await run_in_threadpool(gate.bearer, token.strip(), _source(request))


def _source(request: Request) -> str:
    """The address tries are counted against (behind a proxy on this machine, the one it
    forwards: see ``cpsfleet.controller.web.server``)."""
    return request.client.host if request.client else ""


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it passes ``limit`` bytes (whatever its
    Content-Length says: a client may send none, or lie)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _local(target: str) -> str:
    """A redirect target on this site only, and short: a path, never ``//host`` or a URL."""
    local = target.startswith("/") and not target.startswith("//")
    return target if local and len(target) <= MAX_TARGET else "/"


def _query(params: dict[str, str], changes: dict[str, Any]) -> str:
    merged = {**params, **{key: value for key, value in changes.items()}}
    kept = {key: value for key, value in merged.items() if value not in (None, "")}
    return f"?{urlencode(kept)}" if kept else ""


def _iso(moment: datetime | str | None) -> str:
    if moment is None or isinstance(moment, str):
        return moment or ""
    return format_utc(moment)


def _month(month: str) -> str:
    """ "2026-11" as "Nov 26", short enough for a bar of the chart."""
    year, number = month.split("-")
    return f"{calendar.month_abbr[int(number)]} {year[2:]}"


def _when(moment: datetime | str | None, zone: ZoneInfo) -> str:
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if never_expires(moment):
        return "no expiry"  # RFC 5280's 9999-12-31T23:59:59Z
    local = in_zone(moment, zone)
    return f"{local.year:04d}-{local:%m-%d %H:%M}"
