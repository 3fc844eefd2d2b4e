"""The dashboard's JSON under ``/api/v1``: each page's data, with the same filters (``site``,
``severity``, ``q`` and, but for the readiness, ``host``: see ``Listing``). Each endpoint opens
the database once; the pages (``cpsfleet.controller.web.pages``) read the same data the same
way."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import HTTPException

from cpsfleet.controller.web import data as webdata
from cpsfleet.controller.web.dashboard import (
    Dashboard,
    Listing,
    RosterListing,
    dashboard,
    listing,
    refuse_other_sites,
    roster_listing,
    scope_of,
)

router = APIRouter(prefix="/api/v1")
Board = Annotated[Dashboard, Depends(dashboard)]
Chosen = Annotated[Listing, Depends(listing)]
RosterChosen = Annotated[RosterListing, Depends(roster_listing)]
Present = Annotated[bool, Query(description="Only the cards in a reader now.")]
Every = Annotated[
    bool, Query(alias="all", description="The superseded and retired cards too (their status).")
]


@router.get("/overview", tags=["fleet"])
def overview(board: Board, listing: Chosen) -> dict[str, Any]:
    """Hosts by state, readers, cards, findings by severity, per site; the expiry chart.

    ``severity`` keeps the hosts with at least one open finding of that severity (the chart:
    every card of the hosts kept); ``host``, one host."""
    with board.store() as opened:
        chosen = listing.filters(opened)
        return webdata.overview(opened, board.clock(), board.settings.thresholds, chosen)


@router.get("/sites", tags=["fleet"])
def sites(request: Request, board: Board) -> list[str]:
    """Every site a host reported (that the user's rights cover)."""
    with board.store() as opened:
        return webdata.sites(opened, scope_of(request))


@router.get("/hosts", tags=["fleet"])
def hosts(board: Board, listing: Chosen) -> list[dict[str, Any]]:
    """Every host: state, last report, readers, cards, Cryptolib, open findings by severity.

    ``severity`` keeps the hosts with at least one open finding of that severity."""
    with board.store() as opened:
        return webdata.hosts(opened, listing.filters(opened))


@router.get("/hosts/{host_id}", tags=["fleet"])
def host(request: Request, board: Board, host_id: str) -> dict[str, Any]:
    """One host: readers, cards and certificates, Cryptolib, findings, alerts, events; 403
    for a host of a site the user's rights do not cover."""
    with board.store() as opened:
        found = webdata.host(opened, host_id, board.clock(), board.settings.thresholds)
    if found is None:
        raise HTTPException(404, f"no host {host_id!r} has reported")
    refuse_other_sites(request, found["site"])
    return found


@router.get("/readers", tags=["fleet"])
def readers(board: Board, listing: Chosen) -> list[dict[str, Any]]:
    """The readers grouped by model (USB vendor and product ids, manufacturer, product): how
    many, on how many hosts, at which sites, their CCID driver versions, how many hold a card;
    the readers of unknown model (virtual, or from older agents) in one group of nulls."""
    with board.store() as opened:
        return webdata.reader_models(opened, listing.filters(opened))


@router.get("/cards", tags=["cards"])
def cards(
    board: Board, listing: Chosen, present: Present = False, every: Every = False
) -> list[dict[str, Any]]:
    """The cards the fleet watches, in a reader or not, soonest expiry first; ``severity`` is
    its expiry's or its PIN's, whichever is worse; ``host``, the host it was last seen at;
    ``present``, only those in a reader now; ``all``, the superseded and retired ones too."""
    with board.store() as opened:
        chosen = listing.filters(opened)
        now, thresholds = board.clock(), board.settings.thresholds
        return webdata.cards(opened, now, thresholds, chosen, every, present)


@router.get("/expiry", tags=["cards"])
def expiry(board: Board, listing: Chosen) -> dict[str, Any]:
    """CPS cards by month of expiry over the next 12 months; expired, later and undated: the
    cards ``/api/v1/cards`` lists with the same filters."""
    with board.store() as opened:
        chosen = listing.filters(opened)
        return webdata.expiry(opened, board.clock(), board.settings.thresholds, chosen)


@router.get("/findings", tags=["alerts"])
def findings(board: Board, listing: Chosen) -> list[dict[str, Any]]:
    """Open findings, most severe first."""
    with board.store() as opened:
        return webdata.findings(opened, listing.filters(opened))


@router.get("/alerts", tags=["alerts"])
def alerts(board: Board, listing: Chosen) -> list[dict[str, Any]]:
    """Alerts, firing first, with their acknowledgement."""
    with board.store() as opened:
        return webdata.alerts(opened, listing.filters(opened))


@router.get("/silences", tags=["alerts"])
def silences(board: Board, listing: Chosen) -> list[dict[str, Any]]:
    """The silences in force (of the hosts the filters keep, and every host's)."""
    with board.store() as opened:
        return webdata.silences(opened, board.clock(), listing.filters(opened))


@router.get("/readiness", tags=["readiness"])
def readiness(board: Board, listing: RosterChosen) -> list[dict[str, Any]]:
    """Each professional of the roster: state, next step, card.

    ``severity``: critical when they cannot log in, warning when a step is left."""
    settings = board.settings
    with board.store() as opened:
        return webdata.readiness(
            opened,
            board.clock(),
            settings.thresholds,
            settings.pseudonym_key,
            listing.filters(opened),
        )
