"""The dashboard's JSON under ``/api/v1``: each page's data, with the same filters (``site``,
``severity``, ``q``). The functions are plain, for the pages to call with the same filters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.exceptions import HTTPException

from cpsfleet.controller.web import data as webdata
from cpsfleet.controller.web.dashboard import SEVERITY, SITE, TEXT, Dashboard, dashboard

router = APIRouter(prefix="/api/v1")
Board = Annotated[Dashboard, Depends(dashboard)]


@router.get("/overview", tags=["fleet"])
def overview(
    board: Board, site: str | None = SITE, severity: str | None = SEVERITY, q: str | None = TEXT
) -> dict[str, Any]:
    """Hosts by state, readers, cards, findings by severity, per site; the expiry chart."""
    chosen = board.filters(site, severity, q)
    with board.store() as opened:
        return webdata.overview(opened, board.clock(), board.settings.thresholds, chosen)


@router.get("/sites", tags=["fleet"])
def sites(board: Board) -> list[str]:
    """Every site a host reported."""
    with board.store() as opened:
        return webdata.sites(opened)


@router.get("/hosts", tags=["fleet"])
def hosts(
    board: Board, site: str | None = SITE, severity: str | None = SEVERITY, q: str | None = TEXT
) -> list[dict[str, Any]]:
    """Every host: state, last report, readers, cards, Cryptolib, open findings by severity.

    ``severity`` keeps the hosts with at least one open finding of that severity."""
    chosen = board.filters(site, severity, q)
    with board.store() as opened:
        return webdata.hosts(opened, chosen)


@router.get("/hosts/{host_id}", tags=["fleet"])
def host(board: Board, host_id: str) -> dict[str, Any]:
    """One host: readers, cards and certificates, Cryptolib, findings, alerts, events."""
    with board.store() as opened:
        found = webdata.host(opened, host_id, board.clock(), board.settings.thresholds)
    if found is None:
        raise HTTPException(404, f"no host {host_id!r} has reported")
    return found


@router.get("/cards", tags=["cards"])
def cards(
    board: Board, site: str | None = SITE, severity: str | None = SEVERITY, q: str | None = TEXT
) -> list[dict[str, Any]]:
    """Every card known, soonest expiry first; ``severity`` is its expiry's."""
    chosen = board.filters(site, severity, q)
    with board.store() as opened:
        return webdata.cards(opened, board.clock(), board.settings.thresholds, chosen)


@router.get("/expiry", tags=["cards"])
def expiry(board: Board, site: str | None = SITE, q: str | None = TEXT) -> dict[str, Any]:
    """Cards by month of expiry over the next 12 months; expired, later and undated."""
    chosen = board.filters(site, None, q)
    with board.store() as opened:
        return webdata.expiry(opened, board.clock(), board.settings.thresholds, chosen)


@router.get("/findings", tags=["alerts"])
def findings(
    board: Board, site: str | None = SITE, severity: str | None = SEVERITY, q: str | None = TEXT
) -> list[dict[str, Any]]:
    """Open findings, most severe first."""
    chosen = board.filters(site, severity, q)
    with board.store() as opened:
        return webdata.findings(opened, chosen)


@router.get("/alerts", tags=["alerts"])
def alerts(
    board: Board, site: str | None = SITE, severity: str | None = SEVERITY, q: str | None = TEXT
) -> list[dict[str, Any]]:
    """Alerts, firing first, with their acknowledgement."""
    chosen = board.filters(site, severity, q)
    with board.store() as opened:
        return webdata.alerts(opened, chosen)


@router.get("/silences", tags=["alerts"])
def silences(board: Board) -> list[dict[str, Any]]:
    """The silences in force."""
    with board.store() as opened:
        return webdata.silences(opened, board.clock())


@router.get("/readiness", tags=["readiness"])
def readiness(
    board: Board, site: str | None = SITE, severity: str | None = SEVERITY, q: str | None = TEXT
) -> list[dict[str, Any]]:
    """Each professional of the roster: state, next step, card.

    ``severity``: critical when they cannot log in, warning when a step is left."""
    chosen = board.filters(site, severity, q)
    settings = board.settings
    with board.store() as opened:
        return webdata.readiness(
            opened, board.clock(), settings.thresholds, settings.pseudonym_key, chosen
        )
