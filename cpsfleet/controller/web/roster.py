"""The roster from the dashboard: what it holds (``/roster``) and its import.

``POST /api/v1/roster`` replaces the roster with a CSV file sent as the body (``text/csv``,
UTF-8, as ``cpsfleet controller roster import`` reads it): scripts send it with a Bearer
token, the page's form with the session's CSRF token (``static/roster.js``). It needs the
``import_roster`` right, which only users of every site hold (the roster is the whole
SSTI's). A bad row imports nothing and the answer lists every fault with its line. The
import is recorded in the audit trail as the command line's (``roster.import``); the
controller judges who is missing against the new roster at its next periodic evaluation.
"""

from __future__ import annotations

from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from cpsfleet.controller.alerts.book import open_database
from cpsfleet.controller.db import professionals as professionals_table
from cpsfleet.controller.filters import fold
from cpsfleet.controller.intake.roster import RosterError, import_roster, parse_roster
from cpsfleet.controller.people import Principal
from cpsfleet.controller.web.access import bounded_body, needs
from cpsfleet.controller.web.acts import Board, Done, Refusal, carry_out, guarded
from cpsfleet.controller.web.dashboard import Dashboard, scope_of
from cpsfleet.controller.web.language import _
from cpsfleet.schemas.times import parse

# A roster of a few thousand professionals weighs a few hundred kilobytes.
ROSTER_MAX = 5 * 1024 * 1024
NAME_MAX = 200

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["roster"])
Importing = Annotated[Principal, Depends(guarded("roster.import", "import_roster"))]


def summary(board: Dashboard, scope: frozenset[str] | None) -> dict[str, Any]:
    """The roster's professionals per site (the sites of ``scope``) and its last import."""
    with board.store() as opened:
        rows = list(professionals_table.rows(opened.database))
    kept = [row for row in rows if scope is None or fold(row["site"] or "") in scope]
    per_site = sorted(Counter(row["site"] for row in kept).items())
    stamps = [row["imported_at"] for row in rows if row["imported_at"]]
    return {
        "professionals": len(kept),
        "sites": [{"site": site, "professionals": count} for site, count in per_site],
        "imported_at": parse(max(stamps)) if stamps else None,
    }


@router.get("/roster")
def roster_page(
    request: Request, board: Board, _principal: Annotated[Principal, Depends(needs("read"))]
) -> HTMLResponse:
    with board.store() as opened:
        return board.page(
            request,
            opened,
            "roster.html",
            _("Roster"),
            roster=summary(board, scope_of(request)),
            roster_max_mb=ROSTER_MAX // (1024 * 1024),
            with_host=False,
        )


@api.get("/roster")
def roster_api(
    request: Request, board: Board, _principal: Annotated[Principal, Depends(needs("read"))]
) -> dict[str, Any]:
    """How many professionals the roster holds, per site (the user's sites), and when it was
    last imported."""
    found = summary(board, scope_of(request))
    stamp = found["imported_at"]
    return found | {"imported_at": stamp.isoformat().replace("+00:00", "Z") if stamp else None}


def _import(board: Dashboard, data: bytes | None, name: str) -> Done:
    if data is None:
        raise Refusal(413, _("the roster is larger than {mb} MB").format(mb=ROSTER_MAX >> 20))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise Refusal(
            400, _("line {line}: not UTF-8: save the file as CSV UTF-8").format(line=line)
        ) from None
    try:
        professionals = parse_roster(text)
    except RosterError as error:
        raise Refusal(400, "\n".join(error.problems)) from None
    with closing(open_database(Path(board.settings.database))) as db:
        result = import_roster(db, professionals, board.clock())
    detail = {"imported": result.imported, "replaced": result.replaced}
    return Done(name, detail, detail)


@api.post("/roster")
async def roster_import(request: Request, board: Board, _principal: Importing) -> Response:
    """Replace the roster with the CSV file of the body (``Content-Type: text/csv``); a bad
    row imports nothing, and the 400 lists every fault with its line."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    sent = unquote(request.headers.get("x-roster-file", ""))[:NAME_MAX]
    name = "".join(char for char in sent if char.isprintable()) or "roster.csv"
    if kind not in ("text/csv", "text/plain"):
        return JSONResponse({"detail": _("send the roster as text/csv")}, status_code=415)
    data = await bounded_body(request, ROSTER_MAX)
    done = await carry_out(
        request, board, "roster.import", name, lambda: _import(board, data, name)
    )
    return JSONResponse(done.answer)
