"""The dashboard's pages, rendered on the server from the same data as their JSON twins
(``cpsfleet.controller.web.api``) with the same filters (``Listing``). Each page opens the
database once, for its rows and the list of sites alike."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse

from cpsfleet.controller.web import data as webdata
from cpsfleet.controller.web.api import Board, Chosen, RosterChosen
from cpsfleet.controller.web.dashboard import refuse_other_sites
from cpsfleet.controller.web.language import _

router = APIRouter(include_in_schema=False)


@router.get("/")
def overview(request: Request, board: Board, listing: Chosen) -> HTMLResponse:
    with board.store() as opened:
        chosen = listing.filters(opened)
        data = webdata.overview(opened, board.clock(), board.settings.thresholds, chosen)
        return board.page(request, opened, "overview.html", _("Fleet overview"), data=data)


@router.get("/hosts")
def hosts(request: Request, board: Board, listing: Chosen) -> HTMLResponse:
    with board.store() as opened:
        rows = webdata.hosts(opened, listing.filters(opened))
        return board.page(request, opened, "hosts.html", _("Hosts"), rows=rows)


@router.get("/hosts/{host_id}")
def host(request: Request, board: Board, host_id: str) -> HTMLResponse:
    with board.store() as opened:
        data = webdata.host(opened, host_id, board.clock(), board.settings.thresholds)
        if data is None:
            raise HTTPException(404, _("no host {host!r} has reported").format(host=host_id))
        refuse_other_sites(request, data["site"])
        return board.page(request, opened, "host.html", data["hostname"] or host_id, host=data)


@router.get("/readers")
def readers(request: Request, board: Board, listing: Chosen) -> HTMLResponse:
    with board.store() as opened:
        rows = webdata.reader_models(opened, listing.filters(opened))
        return board.page(request, opened, "readers.html", _("Reader models"), rows=rows)


@router.get("/cards")
def cards(request: Request, board: Board, listing: Chosen) -> HTMLResponse:
    with board.store() as opened:
        chosen = listing.filters(opened)
        rows = webdata.cards(opened, board.clock(), board.settings.thresholds, chosen)
        return board.page(request, opened, "cards.html", _("Cards"), rows=rows)


@router.get("/findings")
def findings(request: Request, board: Board, listing: Chosen) -> HTMLResponse:
    with board.store() as opened:
        rows = webdata.findings(opened, listing.filters(opened))
        return board.page(request, opened, "findings.html", _("Findings"), rows=rows)


@router.get("/alerts")
def alerts(request: Request, board: Board, listing: Chosen) -> HTMLResponse:
    with board.store() as opened:
        rows = webdata.alerts(opened, listing.filters(opened))
        active = webdata.silences(opened, board.clock(), listing.filters(opened))
        return board.page(request, opened, "alerts.html", _("Alerts"), rows=rows, silences=active)


@router.get("/readiness")
def readiness(request: Request, board: Board, listing: RosterChosen) -> HTMLResponse:
    settings = board.settings
    with board.store() as opened:
        chosen = listing.filters(opened)
        rows = webdata.readiness(
            opened, board.clock(), settings.thresholds, settings.pseudonym_key, chosen
        )
        return board.page(
            request, opened, "readiness.html", _("Readiness"), rows=rows, with_host=False
        )
