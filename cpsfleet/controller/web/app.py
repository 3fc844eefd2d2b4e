"""The dashboard: server-rendered pages, their JSON under ``/api/v1``, exports and ``/metrics``.

``create_app`` builds the FastAPI application over the controller database, which every
request opens read-only (WAL lets it read beside the writer). Its routes are routers, one
module each: ``pages`` (HTML), ``api`` (JSON; each page has its twin with the same filters
``site``, ``severity``, ``q``), ``files`` (exports, ``/metrics``) and ``access`` (sign-in);
what they share is a ``Dashboard`` (``dashboard.py``). The OpenAPI description is at
``/api/v1/openapi.json``. Nothing is loaded from outside: the few scripts and styles are in
``static/``. Access is checked here, before any route: only the configured host names are
answered, and only to a signed-in user (a session or a Bearer token; failed tries
throttled), ``/healthz`` excepted; each route then asks for the right it needs and keeps to
the user's sites (``access``, ``auth``, ``cpsfleet.controller.people``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cpsfleet import i18n
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.controller.web import (
    access,
    actions,
    api,
    audit,
    files,
    history,
    language,
    oidc,
    pages,
    roster,
    users,
)
from cpsfleet.controller.web.auth import Gate, allowed_hosts
from cpsfleet.controller.web.dashboard import HERE, MACHINE_PATHS, Dashboard
from cpsfleet.controller.web.language import _
from cpsfleet.controller.web.metrics import Metrics
from cpsfleet.i18n import N_

# What a person reads for the errors Starlette raises itself, instead of the bare phrase.
ROUTING_ERRORS = {
    404: N_("This dashboard has nothing at this address."),
    405: N_("This address does not take that method."),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it a browser sends "Origin: null" with the dashboard's own forms
    # (sign-in, sign-out, actions), which the same-origin check refuses. Other sites get none.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def create_app(
    settings: ControllerSettings,
    metrics: Metrics | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    gate: Gate | None = None,
) -> FastAPI:
    """The dashboard over ``settings.database``; ``metrics`` is the controller's, if it runs;
    ``gate`` checks the secrets (one over ``settings.dashboard`` unless given)."""
    board = Dashboard.of(
        settings,
        clock,
        gate or Gate(settings.dashboard, settings.database, clock=clock),
        metrics or Metrics(Path(settings.database), holder_names=settings.metrics_names),
    )
    hosts = allowed_hosts(settings.dashboard)
    app = FastAPI(
        title="cpsfleet dashboard",
        summary="The fleet's hosts, cards, findings, alerts and readiness, as JSON.",
        version="1",
        docs_url=None,  # the interactive docs load their scripts from a CDN
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.dashboard = board
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in (
        access.router,
        language.router,
        pages.router,
        api.router,
        actions.router,
        actions.api,
        audit.router,
        users.router,
        users.api,
        roster.router,
        roster.api,
        files.router,
        history.router,
    ):
        app.include_router(router)
    oidc.install(app, board, settings)
    configured = settings.spoken

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Any]) -> Response:
        # A person's page in their language; what machines read, in English. The path from
        # the scope: request.url parses the Host header, which the guard has not checked yet
        # (and which an older Starlette refuses with ValueError).
        path: str = request.scope["path"]
        if path.startswith(MACHINE_PATHS):
            spoken = "en"
        else:
            spoken = language.choose(
                request.cookies, request.headers.get("accept-language"), configured
            )
        request.state.language = spoken
        with i18n.use(spoken):
            response: Response = await access.refusal(request, board, hosts) or await call_next(
                request
            )
        response.headers.update(SECURITY_HEADERS)
        if not path.startswith(MACHINE_PATHS):
            response.headers["Content-Language"] = spoken
            response.headers["Vary"] = "Accept-Language, Cookie"
        return response

    # Starlette's own errors (no such path, a method the path does not take) included.
    @app.exception_handler(StarletteHTTPException)
    async def error_page(request: Request, error: StarletteHTTPException) -> Response:
        detail = error.detail
        if detail == HTTPStatus(error.status_code).phrase:  # Starlette's bare "Not Found"
            routing = ROUTING_ERRORS.get(error.status_code)
            if routing is not None:
                with i18n.use(language.of(request)):
                    detail = _(routing)
        return board.refuse(request, error.status_code, detail, _with_head(error.headers))

    app.add_middleware(HeadAsGet)
    return app


def _with_head(headers: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """A 405's ``Allow`` names HEAD beside GET, as ``HeadAsGet`` answers it."""
    allowed = (headers or {}).get("Allow", "").split(", ")
    if headers is None or "GET" not in allowed:
        return headers
    return {**headers, "Allow": ", ".join([*allowed, "HEAD"])}


class HeadAsGet:
    """HEAD is answered wherever GET is: as GET, with the same status and headers, no body.

    FastAPI routes a path for the methods its route names, GET alone for ours; a monitoring
    probe or a link checker asks with HEAD."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
