"""The history page (``/history``) and its JSON twin (``/api/v1/history``): the fleet's
readiness, expiring cards and open alerts, day by day over a window of ``days`` (7 to 730,
90 unless asked), for one site or the whole fleet.

What each series counts is ``cpsfleet.controller.db.history``'s; here the counts become the
JSON (English keys, days as ISO dates) and the charts, drawn on the server as inline SVG
(the CSP allows no script but ``static/``'s), each with its figures as a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse

from cpsfleet.controller.db import history as stored
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.filters import Filters
from cpsfleet.controller.model import SEVERITIES
from cpsfleet.controller.web.dashboard import SITE, Dashboard, Listing, dashboard
from cpsfleet.controller.web.language import _, word
from cpsfleet.i18n import N_
from cpsfleet.schemas.privacy import pseudonym

router = APIRouter()
Board = Annotated[Dashboard, Depends(dashboard)]
DAYS = Query(
    None,
    description=f"How many days, today's the last: {stored.MIN_DAYS} to {stored.MAX_DAYS} "
    f"({stored.DEFAULT_DAYS} unless given).",
)

# The charts: their id, title, and series (key, label) in the order drawn.
CHARTS = (
    (
        "professionals",
        N_("Professionals with a usable CPS card"),
        (("with_usable_card", N_("with a usable card")), ("without", N_("without a usable card"))),
    ),
    (
        "cards",
        N_("CPS cards expiring and expired"),
        (("expiring", N_("expiring")), ("expired", N_("expired"))),
    ),
    (
        "alerts",
        N_("Open alerts by severity"),
        tuple((severity, severity) for severity in SEVERITIES),
    ),
)
# The drawing's frame, in SVG units: the plot between the margins.
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 760, 220, 48, 12, 12, 28
TICKS = 6


class HistoryListing(Listing):
    """The history's filter: ``site`` only (its series are the fleet's, not rows)."""


def history_listing(request: Request, site: str | None = SITE) -> HistoryListing:
    """The history's filter from the query (see ``dashboard.listing``)."""
    return HistoryListing(request, site, None, None, None)


Chosen = Annotated[HistoryListing, Depends(history_listing)]


def window_days(days: str | None) -> int:
    """The ``days`` asked, or the default; 400 outside the range counted."""
    if days is None or days == "":
        return stored.DEFAULT_DAYS
    try:
        wanted = int(days)
    except ValueError:
        wanted = 0
    if not stored.MIN_DAYS <= wanted <= stored.MAX_DAYS:
        message = _("days must be a whole number from {low} to {high}, not {given}")
        raise HTTPException(
            400, message.format(low=stored.MIN_DAYS, high=stored.MAX_DAYS, given=repr(days))
        )
    return wanted


def counted(board: Dashboard, opened: Store, filters: Filters, days: int) -> stored.History:
    """The history of the sites ``filters`` keep, over ``days`` days ending today."""
    settings = board.settings
    window = stored.Window.ending(board.clock(), ZoneInfo(settings.dashboard.timezone), days)
    database = opened.database
    sites = _sites(stored.known_sites(database), filters)
    return stored.history(database, window, settings.thresholds, sites, _aliases(board, opened))


def _sites(known: list[str], filters: Filters) -> stored.Sites:
    """Every row, when the filters keep a row without a site; else the sites they keep (as
    people name them, see ``cpsfleet.controller.filters``)."""
    if filters.site_matches(None):
        return stored.Sites()
    return stored.Sites(every=False, names=tuple(s for s in known if filters.site_matches(s)))


def _aliases(board: Dashboard, opened: Store) -> list[tuple[str, str]]:
    """The pseudonyms of the roster's idNats, when agents pseudonymise (a roster is a few
    thousand rows at most)."""
    key = board.settings.pseudonym_key
    if key is None:
        return []
    rows = opened.database.execute("select id_nat from professionals where id_nat is not null")
    return [(id_nat, pseudonym(key, id_nat)) for (id_nat,) in rows.fetchall()]


def as_json(found: stored.History, site: str | None) -> dict[str, Any]:
    """The history as ``/api/v1/history`` gives it: one row per day, oldest first."""
    days = found.window.days
    return {
        "site": site,
        "days": len(days),
        "first_day": days[0].isoformat(),
        "last_day": days[-1].isoformat(),
        "professionals": found.professionals,
        "series": [
            {
                "day": day.isoformat(),
                "professionals": {
                    "with_usable_card": found.with_usable_card[index],
                    "without": found.professionals - found.with_usable_card[index],
                },
                "cards": {name: found.cards[name][index] for name in stored.CARD_SERIES},
                "alerts": {severity: found.alerts[severity][index] for severity in SEVERITIES},
            }
            for index, day in enumerate(days)
        ],
    }


# --- the charts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    key: str
    label: str
    points: str  # the SVG polyline's points
    last: int  # today's count


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    lines: tuple[Line, ...]
    y_ticks: tuple[tuple[float, int], ...]  # (y, count)
    x_ticks: tuple[tuple[float, str], ...]  # (x, ISO day)
    rows: tuple[tuple[str, tuple[int, ...]], ...]  # (ISO day, a count per line)


def charts(data: dict[str, Any]) -> list[Chart]:
    """The three charts of ``as_json``'s history."""
    series, days = data["series"], [row["day"] for row in data["series"]]
    return [
        _chart(
            chart_id,
            title,
            [(key, label, [row[chart_id][key] for row in series]) for key, label in lines],
            days,
        )
        for chart_id, title, lines in CHARTS
    ]


def _chart(
    chart_id: str, title: str, lines: list[tuple[str, str, list[int]]], days: list[str]
) -> Chart:
    peak = max([1, *(count for _, _, counts in lines for count in counts)])
    drawn = tuple(
        Line(key, _label(chart_id, label), _points(counts, peak), counts[-1])
        for key, label, counts in lines
    )
    rows = tuple(
        (day, tuple(counts[index] for _, _, counts in lines)) for index, day in enumerate(days)
    )
    return Chart(chart_id, _(title), drawn, _y_ticks(peak), _x_ticks(days), rows)


def _label(chart_id: str, label: str) -> str:
    """A series' name in the current language (the alerts' are severities, as words)."""
    return word(label) if chart_id == "alerts" else _(label)


def _x(index: int, count: int) -> float:
    return round(LEFT + (WIDTH - LEFT - RIGHT) * index / max(count - 1, 1), 1)


def _y(value: int, peak: int) -> float:
    return round(HEIGHT - BOTTOM - (HEIGHT - BOTTOM - TOP) * value / peak, 1)


def _points(counts: list[int], peak: int) -> str:
    """Steps: each day's count level across its day's width, centred on its tick."""
    half = (WIDTH - LEFT - RIGHT) / max(len(counts) - 1, 1) / 2
    points = []
    for index, count in enumerate(counts):
        middle, y = _x(index, len(counts)), _y(count, peak)
        left, right = max(LEFT, middle - half), min(WIDTH - RIGHT, middle + half)
        points += [f"{round(left, 1)},{y}", f"{round(right, 1)},{y}"]
    return " ".join(points)


def _y_ticks(peak: int) -> tuple[tuple[float, int], ...]:
    """Zero, the peak, and a whole number halfway when there is one."""
    values = sorted({0, peak // 2, peak})
    return tuple((_y(value, peak), value) for value in values)


def _x_ticks(days: list[str]) -> tuple[tuple[float, str], ...]:
    """About ``TICKS`` days, evenly spread, the first and the last always among them."""
    step = max(1, round((len(days) - 1) / (TICKS - 1)))
    picked = sorted({*range(0, len(days), step), len(days) - 1})
    if len(picked) > 1 and picked[-1] - picked[-2] < step / 2:
        picked.pop(-2)  # too close to the last to be read
    return tuple((_x(index, len(days)), days[index]) for index in picked)


# --- the routes ------------------------------------------------------------------------------


@router.get("/history", include_in_schema=False)
def page(request: Request, board: Board, listing: Chosen, days: str | None = DAYS) -> HTMLResponse:
    wanted = window_days(days)
    with board.store() as opened:
        chosen = listing.filters(opened)
        data = as_json(counted(board, opened, chosen, wanted), chosen.site)
        return board.page(
            request,
            opened,
            "history.html",
            _("History"),
            data=data,
            charts=charts(data),
            with_host=False,
            with_severity=False,
            choices=(7, 30, 90, 365, 730),
        )


@router.get("/api/v1/history", tags=["history"])
def api(board: Board, listing: Chosen, days: str | None = DAYS) -> dict[str, Any]:
    """Per day of the window (oldest first, in the fleet's time zone): the roster's
    professionals with and without a usable CPS card, the CPS cards expiring (within the
    warning threshold) and expired, and the alerts open by severity; for one ``site`` or
    every site. What each figure counts, and what it cannot, is told in the documentation
    (docs/controller.md, "History")."""
    wanted = window_days(days)
    with board.store() as opened:
        chosen = listing.filters(opened)
        return as_json(counted(board, opened, chosen, wanted), chosen.site)
