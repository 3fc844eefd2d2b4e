"""The dashboard's downloads (``/export/...``) and ``/metrics``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.exceptions import HTTPException
from fastapi.responses import Response

from cpsfleet.controller.web import data as webdata
from cpsfleet.controller.web import exports
from cpsfleet.controller.web.dashboard import Dashboard, ExportListing, dashboard

EXPORTS = {
    "hosts": exports.HOST_COLUMNS,
    "cards": exports.CARD_COLUMNS,
    "readiness": exports.READINESS_COLUMNS,
}

router = APIRouter()
Board = Annotated[Dashboard, Depends(dashboard)]
Chosen = Annotated[ExportListing, Depends()]


@router.get("/export/{name}", tags=["exports"])
def download(board: Board, name: str, listing: Chosen) -> Response:
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
    excel = "-excel" if form == "csv-excel" else ""
    filename = f"cpsfleet-{what}-{now.strftime('%Y-%m-%d')}{excel}{exports.SUFFIXES[form]}"
    return Response(
        body,
        media_type=exports.MEDIA_TYPES[form],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/metrics", tags=["metrics"])
def prometheus(board: Board) -> Response:
    """Prometheus metrics: hosts, cards by days to expiry, findings, messages, latency."""
    body, content_type = board.metrics.render()
    return Response(body, media_type=content_type)
