"""The dashboard's pages, rendered on the server from the same data as their JSON twins
(``cpsfleet.controller.web.api``) with the same filters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from cpsfleet.controller.web import api
from cpsfleet.controller.web.dashboard import Dashboard, dashboard

router = APIRouter(include_in_schema=False)
Board = Annotated[Dashboard, Depends(dashboard)]


@router.get("/")
def overview(
    request: Request,
    board: Board,
    site: str | None = None,
    severity: str | None = None,
    q: str | None = None,
) -> HTMLResponse:
    data = api.overview(board, site, severity, q)
    return board.page(request, "overview.html", "Fleet overview", data=data)


@router.get("/hosts")
def hosts(
    request: Request,
    board: Board,
    site: str | None = None,
    severity: str | None = None,
    q: str | None = None,
) -> HTMLResponse:
    return board.page(request, "hosts.html", "Hosts", rows=api.hosts(board, site, severity, q))


@router.get("/hosts/{host_id}")
def host(request: Request, board: Board, host_id: str) -> HTMLResponse:
    data = api.host(board, host_id)
    return board.page(request, "host.html", data["hostname"] or host_id, host=data)


@router.get("/cards")
def cards(
    request: Request,
    board: Board,
    site: str | None = None,
    severity: str | None = None,
    q: str | None = None,
) -> HTMLResponse:
    return board.page(request, "cards.html", "Cards", rows=api.cards(board, site, severity, q))


@router.get("/findings")
def findings(
    request: Request,
    board: Board,
    site: str | None = None,
    severity: str | None = None,
    q: str | None = None,
) -> HTMLResponse:
    rows = api.findings(board, site, severity, q)
    return board.page(request, "findings.html", "Findings", rows=rows)


@router.get("/alerts")
def alerts(
    request: Request,
    board: Board,
    site: str | None = None,
    severity: str | None = None,
    q: str | None = None,
) -> HTMLResponse:
    rows, active = api.alerts(board, site, severity, q), api.silences(board)
    return board.page(request, "alerts.html", "Alerts", rows=rows, silences=active)


@router.get("/readiness")
def readiness(
    request: Request,
    board: Board,
    site: str | None = None,
    severity: str | None = None,
    q: str | None = None,
) -> HTMLResponse:
    rows = api.readiness(board, site, severity, q)
    return board.page(request, "readiness.html", "Readiness", rows=rows)
