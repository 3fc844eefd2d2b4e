"""The audit trail in the dashboard: the page ``/audit``, its JSON twin ``/api/v1/audit`` and
its downloads ``/export/audit.{csv,csv-excel,xlsx,json}``, for admins whose rights cover
every site; and ``purge``, which the controller runs at start and once a day to keep the
trail ``audit_days`` days (the ``[dashboard]`` setting).

The filters: ``actor`` (exactly), ``action`` (that action or those it begins, ``alert``
keeps ``alert.acknowledge`` and ``alert.silence``), ``since`` and ``until`` (days, in the
dashboard's time zone, both included) and ``outcome`` (ok, refused, failed). Among the
newest ``AUDIT_PAGE`` entries the other filters keep, newest first.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from cpsfleet.controller.db.people import AUDIT_OUTCOMES, AUDIT_PAGE, AuditEntry, People
from cpsfleet.controller.people import Principal
from cpsfleet.controller.web import exports
from cpsfleet.controller.web.access import needs
from cpsfleet.controller.web.dashboard import Dashboard, dashboard
from cpsfleet.controller.web.language import _
from cpsfleet.i18n import N_

PAGE_SIZE = 100
COLUMNS = ("id", "at", "actor", "source", "action", "target", "outcome", "detail")
# The outcomes as the pages name them.
OUTCOME_NAMES = {"ok": N_("done"), "refused": N_("refused"), "failed": N_("failed")}
N_("Audit trail")

router = APIRouter()
Board = Annotated[Dashboard, Depends(dashboard)]
Auditor = Annotated[Principal, Depends(needs("audit"))]


def purge(people: People, now: datetime, days: int) -> int:
    """Delete the entries older than ``days`` days before ``now``; how many went."""
    return people.purge_audit(now - timedelta(days=days))


class AuditFilters:
    """The audit trail's filters (``audit_filters`` reads them from the query); an empty value
    is no filter."""

    def __init__(
        self,
        actor: str | None = None,
        action: str | None = None,
        since: str | None = None,
        until: str | None = None,
        outcome: str | None = None,
        page: int = 1,
    ) -> None:
        if outcome and outcome not in AUDIT_OUTCOMES:
            raise HTTPException(
                400,
                _("unknown outcome {outcome!r}: use one of {choices}").format(
                    outcome=outcome, choices=", ".join(AUDIT_OUTCOMES)
                ),
            )
        self.actor, self.action = actor or None, action or None
        self.since, self.until = _day(since), _day(until)
        self.outcome, self.page = outcome or None, page

    def entries(self, board: Dashboard) -> list[AuditEntry]:
        """Every entry the filters keep (the newest ``AUDIT_PAGE``), newest first."""
        zone = ZoneInfo(board.settings.dashboard.timezone)
        since = _midnight(self.since, zone)
        until = _midnight(self.until + timedelta(days=1), zone) if self.until else None
        with board.people() as people:
            if people is None:
                return []
            found = people.audit(self.actor, self.action, since, until, AUDIT_PAGE)
        return [entry for entry in found if self.outcome in (None, entry.outcome)]


def _day(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise HTTPException(
            400, _("{day!r} is not a day like 2026-12-01").format(day=text)
        ) from None


def _midnight(day: date | None, zone: ZoneInfo) -> datetime | None:
    return None if day is None else datetime.combine(day, time(), zone).astimezone(UTC)


def audit_filters(
    actor: str | None = Query(None, description="Only this user's entries."),
    action: str | None = Query(None, description="Only this action, or those it begins."),
    since: str | None = Query(None, description="From this day (YYYY-MM-DD)."),
    until: str | None = Query(None, description="To this day, included (YYYY-MM-DD)."),
    outcome: str | None = Query(None, description="ok, refused or failed."),
    page: int = Query(1, ge=1, le=AUDIT_PAGE // PAGE_SIZE, description="1 is the newest."),
) -> AuditFilters:
    """The filters from the query (a function: see ``dashboard.listing``)."""
    return AuditFilters(actor, action, since, until, outcome, page)


Chosen = Annotated[AuditFilters, Depends(audit_filters)]


@router.get("/audit", include_in_schema=False)
def audit_page(request: Request, board: Board, chosen: Chosen, principal: Auditor) -> HTMLResponse:
    entries = chosen.entries(board)
    start = (chosen.page - 1) * PAGE_SIZE
    with board.store() as opened:
        return board.page(
            request,
            opened,
            "audit.html",
            _("Audit trail"),
            entries=[entry.as_json() for entry in entries[start : start + PAGE_SIZE]],
            total=len(entries),
            more=len(entries) > start + PAGE_SIZE,
            outcomes=OUTCOME_NAMES,
            with_host=False,
        )


@router.get("/api/v1/audit", tags=["audit"])
def audit_api(board: Board, chosen: Chosen, principal: Auditor) -> dict[str, Any]:
    """The audit trail, newest first, ``PAGE_SIZE`` entries a page: who (``actor``), when
    (``at``), from where (``source``), what (``action``, ``target``, ``outcome``,
    ``detail``). ``more``: whether a next page has entries."""
    entries = chosen.entries(board)
    start = (chosen.page - 1) * PAGE_SIZE
    return {
        "page": chosen.page,
        "entries": [entry.as_json() for entry in entries[start : start + PAGE_SIZE]],
        "more": len(entries) > start + PAGE_SIZE,
    }


@router.get("/export/audit.{suffix}", tags=["exports"])
def audit_export(
    request: Request, board: Board, suffix: str, chosen: Chosen, principal: Auditor
) -> Response:
    """The audit trail as ``.csv``, ``.csv-excel``, ``.xlsx`` or ``.json``, with the page's
    filters (every page): the detail as JSON text."""
    form = next((known for known in exports.FORMATS if known == suffix), None)
    if form is None:
        raise HTTPException(404, "the audit export: .csv, .csv-excel, .xlsx or .json")
    rows = [export_row(entry) for entry in chosen.entries(board)]
    body = exports.render(rows, COLUMNS, form, UTC, "audit")
    board.audit(
        request,
        "export",
        f"audit.{suffix}",
        detail={key: value for key, value in request.query_params.items() if value},
    )
    excel = "-excel" if form == "csv-excel" else ""
    filename = f"cpsfleet-audit-{board.clock():%Y-%m-%d}{excel}{exports.SUFFIXES[form]}"
    return Response(
        body,
        media_type=exports.MEDIA_TYPES[form],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def export_row(entry: AuditEntry) -> dict[str, Any]:
    """An entry as the exports write it (``cpsfleet controller audit export`` too): ``at`` a
    time (a date cell of XLSX, in UTC; ISO 8601 UTC text in CSV and JSON), the detail as
    JSON text."""
    detail = json.dumps(entry.detail, ensure_ascii=False, sort_keys=True)
    return {**entry.as_json(), "at": entry.at, "detail": detail}
