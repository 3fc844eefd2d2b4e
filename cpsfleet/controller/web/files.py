"""The dashboard's downloads (``/export/...``) and ``/metrics``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import Response

from cpsfleet.controller.web import data as webdata
from cpsfleet.controller.web import exports
from cpsfleet.controller.web.access import visitor_of
from cpsfleet.controller.web.dashboard import Dashboard, ExportListing, dashboard, export_listing

EXPORTS = {
    "hosts": exports.HOST_COLUMNS,
    "cards": exports.CARD_COLUMNS,
    "readiness": exports.READINESS_COLUMNS,
}

router = APIRouter()
Board = Annotated[Dashboard, Depends(dashboard)]
Chosen = Annotated[ExportListing, Depends(export_listing)]


@router.get("/export/{name}", tags=["exports"])
def download(request: Request, board: Board, name: str, listing: Chosen) -> Response:
    """``hosts``, ``cards`` or ``readiness``, then ``.csv``, ``.csv-excel`` (``;`` and a byte
    order mark, for Excel), ``.xlsx`` or ``.json``, as ``cpsfleet controller export --format``
    writes them, with its filters: ``site``, ``severity`` (hosts with an open finding of that
    severity; cards whose expiry or PIN is; professionals who cannot log in, critical, or have
    a step left, warning) and ``host`` (hosts and cards only)."""
    what, _, suffix = name.partition(".")
    form = next((known for known in exports.FORMATS if known == suffix), None)
    if what not in EXPORTS or form is None:
        raise HTTPException(
            404, "exports: hosts, cards or readiness, .csv, .csv-excel, .xlsx or .json"
        )
    if what == "readiness" and listing.host is not None:
        raise HTTPException(400, "the readiness export has no host filter")
    now, settings = board.clock(), board.settings
    with board.store() as opened:
        chosen = listing.filters(opened)
        if what == "hosts":
            rows = webdata.hosts(opened, chosen)
        elif what == "cards":
            rows = webdata.cards(opened, now, settings.thresholds, chosen)
        else:
            key = settings.pseudonym_key
            rows = webdata.readiness(opened, now, settings.thresholds, key, chosen)
    body = exports.render(rows, EXPORTS[what], form, settings.thresholds.zone, what)
    board.audit(
        request,
        "export",
        name,
        detail={key: value for key, value in request.query_params.items() if value},
    )
    excel = "-excel" if form == "csv-excel" else ""
    filename = f"cpsfleet-{what}-{now.strftime('%Y-%m-%d')}{excel}{exports.SUFFIXES[form]}"
    return Response(
        body,
        media_type=exports.MEDIA_TYPES[form],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/metrics", tags=["metrics"])
def prometheus(request: Request, board: Board) -> Response:
    """Prometheus metrics: hosts, cards by days to expiry, findings, messages, latency; the
    whole fleet's, so for a user of every site (or anyone, with ``metrics_public``)."""
    visitor = visitor_of(request)
    public = board.settings.dashboard.metrics_public
    if not public and (visitor is None or not visitor.principal.everywhere):
        raise HTTPException(403, "the metrics are the whole fleet's: a user of every site")
    body, content_type = board.metrics.render()
    return Response(body, media_type=content_type)
