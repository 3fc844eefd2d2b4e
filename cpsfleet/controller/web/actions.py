"""Acting from the dashboard: acknowledge an alert, silence alerts, end a silence, ask hosts
for a rescan; and an alert's page with its history.

Each action has a form route (its page's form; answered by a 303 back to the page with
``?done=...``) and a JSON twin under ``/api/v1`` (a JSON body, for scripts with a Bearer
token). Every route needs the ``act`` right and, from a session, its CSRF token
(``access.acting``), and keeps to the user's sites: a host or an alert of another site is
refused (403), and so is a silence of a rule everywhere unless the user's rights cover
every site. The writes are the CLI's own (``AlertBook``), into the same rows; a rescan
sends its commands (``commands.send``) and does not wait for the answers, which the
controller stores as it does every status. Each action, done or refused, goes into the
audit trail, its target an alert's key spelled ``rule/host/subject`` (``*``: any).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cpsfleet.controller.alerts.book import Alert, AlertBook, AlertError, Silence, open_database
from cpsfleet.controller.commands.rescan import RescanError, choose_hosts
from cpsfleet.controller.commands.send import CommandError, CommandSender
from cpsfleet.controller.db import fleet
from cpsfleet.controller.db.people import AUDIT_PAGE
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.people import Principal
from cpsfleet.controller.web.access import form_of
from cpsfleet.controller.web.acts import Done, Refusal, carry_out, guarded
from cpsfleet.controller.web.audit import OUTCOME_NAMES
from cpsfleet.controller.web.dashboard import Dashboard, dashboard, refuse_other_sites
from cpsfleet.controller.web.language import _
from cpsfleet.i18n import N_
from cpsfleet.schemas.commands import MAX_LIFETIME, new_command
from cpsfleet.schemas.times import LAST, format_utc, shifted

# A note or a reason longer than this is refused: it is read on a page, not a document.
NOTE_MAX = 2000
# The durations a silence's form offers; "custom" takes its end from ``until``.
DURATIONS = {"1h": 3600, "4h": 4 * 3600, "1d": 86400, "1w": 7 * 86400}
DURATION_NAMES = {"1h": N_("1 hour"), "4h": N_("4 hours"), "1d": N_("1 day"), "1w": N_("1 week")}
# The longest silence the dashboard sets: past a year, what it hides is better fixed (or its
# rule's threshold changed) than silenced; the command line sets any.
SILENCE_MAX = timedelta(days=366)
# The most a JSON body may weigh.
MAX_BODY = 64 * 1024
ANY = "*"

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["actions"])
Board = Annotated[Dashboard, Depends(dashboard)]


def key_text(rule: str | None, host_id: str | None, subject: str | None) -> str:
    """An alert's or a silence's key as the audit trail spells it: ``rule/host/subject``."""
    return "/".join(ANY if part is None else part for part in (rule, host_id, subject))


# --- the work -----------------------------------------------------------------------------


def _site_of(opened: Store, host_id: str) -> str | None:
    row = fleet.host_row(opened.database, host_id)
    if row is None:
        raise Refusal(404, _("no host {host!r} has reported").format(host=host_id))
    site: str | None = row["site"]
    return site


def _check_sees(principal: Principal, site: str | None) -> None:
    if not principal.sees(site):
        raise Refusal(403, _("your rights do not cover the site of this host"))


def _check_text(name: str, text: str) -> str:
    if not text.strip():
        raise Refusal(400, _("the {name} is empty: say why").format(name=name))
    if len(text) > NOTE_MAX:
        raise Refusal(
            400,
            _("the {name} is {length} characters long: at most {most}").format(
                name=name, length=len(text), most=NOTE_MAX
            ),
        )
    return text.strip()


def _write(board: Dashboard, work: Callable[[AlertBook], Any]) -> Any:
    """``work`` on the alert book, the database opened read-write as the CLI opens it."""
    try:
        with closing(open_database(Path(board.settings.database))) as db:
            return work(AlertBook(db, board.settings.alerts))
    except AlertError as error:
        raise Refusal(400, str(error)) from None


def find_alert(opened: Store, rule: str, host_id: str, subject: str) -> Alert:
    wanted = (rule, host_id, subject)
    for alert in AlertBook(opened.database).alerts(host_id=host_id):
        if alert.key == wanted:
            return alert
    raise Refusal(404, _("no alert {key}").format(key=key_text(rule, host_id, subject)))


def acknowledge(
    board: Dashboard, principal: Principal, rule: str, host_id: str, subject: str, note: str
) -> Done:
    note = _check_text(_("note"), note)
    with board.store() as opened:
        find_alert(opened, rule, host_id, subject)
        _check_sees(principal, _site_of(opened, host_id))
    now = board.clock()
    _write(board, lambda book: book.acknowledge(rule, host_id, subject, principal.name, note, now))
    target = key_text(rule, host_id, subject)
    return Done(target, {"note": note}, {"acknowledged": target})


def silence_end(board: Dashboard, duration: str, until: str | None) -> datetime:
    """The end of a silence: ``duration`` from now (one of ``DURATIONS``), or ``until`` (an
    ISO date and time, in the dashboard's time zone unless it says its offset); at most
    ``SILENCE_MAX`` from now."""
    now = board.clock()
    end = _end_of(board, now, duration, until)
    if end - now > SILENCE_MAX:
        raise Refusal(
            400,
            _("a silence lasts at most {days} days: fix what it would hide instead").format(
                days=SILENCE_MAX.days
            ),
        )
    return end


def _end_of(board: Dashboard, now: datetime, duration: str, until: str | None) -> datetime:
    if duration in DURATIONS:
        return shifted(now, timedelta(seconds=DURATIONS[duration]))
    if duration != "custom" or not until:
        raise Refusal(
            400,
            _("choose a duration ({choices}) or an end date").format(choices=", ".join(DURATIONS)),
        )
    try:
        moment = datetime.fromisoformat(until.strip())
    except ValueError:
        raise Refusal(
            400, _("{until!r} is not a date and time like 2026-12-01T18:00").format(until=until)
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(board.settings.dashboard.timezone))
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):  # past the end of year 9999 in UTC
        return LAST


def silence(
    board: Dashboard,
    principal: Principal,
    rule: str,
    host_id: str | None,
    subject: str | None,
    end: datetime,
    reason: str,
) -> Done:
    target = key_text(rule, host_id, subject)
    reason = _check_text(_("reason"), reason)
    if host_id is None:
        if not principal.everywhere:
            raise Refusal(403, _("a silence of every host needs rights over every site"))
    else:
        with board.store() as opened:
            _check_sees(principal, _site_of(opened, host_id))
    now = board.clock()
    silence_id = _write(
        board,
        lambda book: book.add_silence(rule, host_id, subject, end, reason, principal.name, now),
    )
    detail = {"silence": silence_id, "until": format_utc(end), "reason": reason}
    return Done(target, detail, {"id": silence_id, "until": format_utc(end)})


def expire(board: Dashboard, principal: Principal, silence_id: int) -> Done:
    now = board.clock()
    with board.store() as opened:
        found = _silence_of(opened, silence_id, now)
        if found.host_id is None:
            if not principal.everywhere:
                raise Refusal(403, _("a silence of every host needs rights over every site"))
        else:
            _check_sees(
                principal, (fleet.host_row(opened.database, found.host_id) or {}).get("site")
            )
    _write(board, lambda book: book.expire_silence(silence_id, now))
    key = key_text(found.rule, found.host_id, found.subject)
    return Done(f"silence/{silence_id}", {"key": key}, {"expired": silence_id})


def _silence_of(opened: Store, silence_id: int, now: datetime) -> Silence:
    for found in AlertBook(opened.database).silences(now, include_expired=True):
        if found.id == silence_id:
            return found
    raise Refusal(404, _("no silence {id}").format(id=silence_id))


def rescan_hosts(board: Dashboard, principal: Principal, host_ids: list[str], target: str) -> Done:
    """Send a rescan command to each host, without waiting for the answers."""
    issued_by = f"cpsfleet dashboard, {principal.name}"
    now = datetime.now(UTC)  # the agents check a command's expiry on their own clocks
    offline = []
    try:
        with CommandSender(board.settings) as sender:
            for host_id in host_ids:
                command = new_command(host_id, "rescan", now, MAX_LIFETIME, issued_by)
                if not sender.send(command, command.lifetime_s(now)):
                    offline.append(host_id)
    except CommandError as error:
        raise Refusal(503, _("the rescan could not be sent: {error}").format(error=error)) from None
    answer = {"sent": host_ids, "no_agent": offline}
    return Done(target, answer, answer)


def rescan_host(board: Dashboard, principal: Principal, host_id: str) -> Done:
    with board.store() as opened:
        _check_sees(principal, _site_of(opened, host_id))
    return rescan_hosts(board, principal, [host_id], host_id)


def rescan_site(board: Dashboard, principal: Principal, site: str) -> Done:
    if not site.strip():
        raise Refusal(400, _("choose a site"))
    if not principal.sees(site):
        raise Refusal(403, _("your rights do not cover this site"))
    with board.store() as opened:
        try:
            host_ids = choose_hosts(opened, [], site)
        except RescanError:
            raise Refusal(404, _("no host in site {site!r}").format(site=site)) from None
    return rescan_hosts(board, principal, host_ids, site)


# --- the forms ----------------------------------------------------------------------------


def back(fields: dict[str, str], default: str, done: str) -> RedirectResponse:
    """A 303 to the page the form came from (``back``, a path of this dashboard), with
    ``done`` in its query."""
    target = fields.get("back", "")
    if not _own_path(target):
        target = default
    parts = urlsplit(target)
    query = "&".join(part for part in (parts.query, urlencode({"done": done})) if part)
    return RedirectResponse(f"{parts.path}?{query}", status_code=303)


def _own_path(target: str) -> bool:
    """Whether ``target`` is a path of this dashboard, as a browser reads it too: it takes
    ``\\`` for ``/`` and drops tabs and line breaks (``//host`` would be another site)."""
    if len(target) > 1024 or "\\" in target or not target.isprintable():
        return False
    parts = urlsplit(target)
    return target.startswith("/") and not target.startswith("//") and not parts.netloc


def alert_path(rule: str, host_id: str, subject: str) -> str:
    return f"/alerts/{quote(rule, safe='')}/{quote(host_id, safe='')}/{quote(subject)}"


@router.post("/alerts/acknowledge")
async def acknowledge_form(
    request: Request,
    board: Board,
    principal: Annotated[Principal, Depends(guarded("alert.acknowledge"))],
) -> Response:
    fields = await form_of(request)
    rule, host_id, subject = (fields.get(name, "") for name in ("rule", "host", "subject"))
    await carry_out(
        request,
        board,
        "alert.acknowledge",
        key_text(rule, host_id, subject),
        lambda: acknowledge(board, principal, rule, host_id, subject, fields.get("note", "")),
    )
    return back(fields, alert_path(rule, host_id, subject), "acknowledged")


# What a silence's form covers: this alert, its rule on its host, or its rule everywhere.
SCOPES = ("alert", "host", "rule")


@router.post("/alerts/silence")
async def silence_form(
    request: Request,
    board: Board,
    principal: Annotated[Principal, Depends(guarded("alert.silence"))],
) -> Response:
    fields = await form_of(request)
    rule, host_id, subject = (fields.get(name, "") for name in ("rule", "host", "subject"))
    scope = fields.get("scope", "alert")
    chosen_host = None if scope == "rule" else host_id
    chosen_subject = subject if scope == "alert" else None

    def work() -> Done:
        if scope not in SCOPES:
            raise Refusal(
                400,
                _("unknown scope {scope!r}: use one of {choices}").format(
                    scope=scope, choices=", ".join(SCOPES)
                ),
            )
        end = silence_end(board, fields.get("duration", ""), fields.get("until"))
        reason = fields.get("reason", "")
        return silence(board, principal, rule, chosen_host, chosen_subject, end, reason)

    target = key_text(rule, chosen_host, chosen_subject)
    await carry_out(request, board, "alert.silence", target, work)
    return back(fields, alert_path(rule, host_id, subject), "silenced")


@router.post("/silences/{silence_id}/expire")
async def expire_form(
    request: Request,
    board: Board,
    silence_id: int,
    principal: Annotated[Principal, Depends(guarded("silence.expire"))],
) -> Response:
    fields = await form_of(request)
    target = f"silence/{silence_id}"
    await carry_out(
        request, board, "silence.expire", target, lambda: expire(board, principal, silence_id)
    )
    return back(fields, "/alerts", "silence_ended")


@router.post("/hosts/{host_id}/rescan")
async def rescan_host_form(
    request: Request,
    board: Board,
    host_id: str,
    principal: Annotated[Principal, Depends(guarded("host.rescan"))],
) -> Response:
    fields = await form_of(request)
    done = await carry_out(
        request, board, "host.rescan", host_id, lambda: rescan_host(board, principal, host_id)
    )
    return back(fields, f"/hosts/{quote(host_id, safe='')}", _rescan_notice(done))


@router.post("/sites/rescan")
async def rescan_site_form(
    request: Request,
    board: Board,
    principal: Annotated[Principal, Depends(guarded("site.rescan"))],
) -> Response:
    fields = await form_of(request)
    site = fields.get("site", "")
    done = await carry_out(
        request, board, "site.rescan", site, lambda: rescan_site(board, principal, site)
    )
    return back(fields, f"/hosts?{urlencode({'site': site})}", _rescan_notice(done))


def _rescan_notice(done: Done) -> str:
    return "rescan_no_agent" if done.answer["no_agent"] else "rescan_sent"


# --- the JSON twins -----------------------------------------------------------------------


async def body_of(request: Request) -> dict[str, Any]:
    """The request's JSON object; 413 past ``MAX_BODY`` (read no further, whatever its
    Content-Length says), 400 for anything else."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HTTPException(413, "the body is too large")
    try:
        found = json.loads(body or b"{}")
    except ValueError:
        raise HTTPException(400, "the body is not JSON") from None
    if not isinstance(found, dict):
        raise HTTPException(400, "the body is not a JSON object")
    return found


def _text_of(body: dict[str, Any], name: str, default: str | None = "") -> Any:
    """The text ``name`` of the body; null only where its absence is (``default`` None)."""
    value = body.get(name, default)
    if (value is not None or default is not None) and not isinstance(value, str):
        raise HTTPException(400, f"{name} must be a string")
    return value


@api.post("/alerts/acknowledge")
async def acknowledge_api(
    request: Request,
    board: Board,
    principal: Annotated[Principal, Depends(guarded("alert.acknowledge"))],
) -> dict[str, Any]:
    """Acknowledge a firing alert: ``{"rule", "host", "subject", "note"}`` (``subject``: ""
    for the host's own alerts)."""
    body = await body_of(request)
    rule, host_id, subject, note = (
        _text_of(body, name) for name in ("rule", "host", "subject", "note")
    )
    done = await carry_out(
        request,
        board,
        "alert.acknowledge",
        key_text(rule, host_id, subject),
        lambda: acknowledge(board, principal, rule, host_id, subject, note),
    )
    return done.answer


@api.post("/silences")
async def silence_api(
    request: Request,
    board: Board,
    principal: Annotated[Principal, Depends(guarded("alert.silence"))],
) -> dict[str, Any]:
    """Silence alerts: ``{"rule", "host", "subject", "duration" or "until", "reason"}``;
    ``host`` and ``subject`` null or absent: any. ``duration``: 1h, 4h, 1d or 1w; ``until``:
    an ISO date and time (the dashboard's time zone unless it has an offset)."""
    body = await body_of(request)
    rule, reason = _text_of(body, "rule"), _text_of(body, "reason")
    host_id, subject = _text_of(body, "host", None), _text_of(body, "subject", None)
    until = _text_of(body, "until", None)
    duration = _text_of(body, "duration", "custom" if until else "")

    def work() -> Done:
        end = silence_end(board, duration, until)
        return silence(board, principal, rule, host_id, subject, end, reason)

    done = await carry_out(request, board, "alert.silence", key_text(rule, host_id, subject), work)
    return done.answer


@api.post("/silences/{silence_id}/expire")
async def expire_api(
    request: Request,
    board: Board,
    silence_id: int,
    principal: Annotated[Principal, Depends(guarded("silence.expire"))],
) -> dict[str, Any]:
    """End a silence now."""
    done = await carry_out(
        request,
        board,
        "silence.expire",
        f"silence/{silence_id}",
        lambda: expire(board, principal, silence_id),
    )
    return done.answer


@api.post("/hosts/{host_id}/rescan")
async def rescan_host_api(
    request: Request,
    board: Board,
    host_id: str,
    principal: Annotated[Principal, Depends(guarded("host.rescan"))],
) -> dict[str, Any]:
    """Send the host's agent a rescan command; its answer is its next status. ``no_agent``
    names a host whose agent was not connected to take it."""
    done = await carry_out(
        request, board, "host.rescan", host_id, lambda: rescan_host(board, principal, host_id)
    )
    return done.answer


@api.post("/sites/{site}/rescan")
async def rescan_site_api(
    request: Request,
    board: Board,
    site: str,
    principal: Annotated[Principal, Depends(guarded("site.rescan"))],
) -> dict[str, Any]:
    """Send every host of ``site`` a rescan command, without waiting for the answers."""
    done = await carry_out(
        request, board, "site.rescan", site, lambda: rescan_site(board, principal, site)
    )
    return done.answer


# --- an alert's page ----------------------------------------------------------------------


@router.get("/alerts/{rule}/{host_id}/{subject:path}")
def alert_page(
    request: Request, board: Board, rule: str, host_id: str, subject: str
) -> HTMLResponse:
    """One alert, its acknowledgement, the silences over it and what the audit trail holds
    about it, with the forms to act on it."""
    now = board.clock()
    with board.store() as opened:
        try:
            alert = find_alert(opened, rule, host_id, subject)
        except Refusal as refusal:
            raise HTTPException(refusal.status, refusal.message) from None
        site = (fleet.host_row(opened.database, host_id) or {}).get("site")
        refuse_other_sites(request, site)
        over = [
            {**asdict(found), "active": found.active(now)}
            for found in AlertBook(opened.database).silences(now, include_expired=True)
            if found.matches(alert)
        ]
        return board.page(
            request,
            opened,
            "alert.html",
            _("Alert {key}").format(key=key_text(*alert.key)),
            alert=asdict(alert),
            site=site,
            silences=over,
            history=alert_history(board, alert.key, [found["id"] for found in over]),
            durations=DURATION_NAMES,
            outcomes=OUTCOME_NAMES,
            with_host=False,
        )


def alert_history(
    board: Dashboard, key: tuple[str, str, str], silence_ids: list[int]
) -> list[dict[str, Any]]:
    """The audit entries about the alert ``key``, newest first: its acknowledgements, the
    silences over it (a key with ``*`` for any) and the ends of those ``silence_ids`` (among
    the newest ``AUDIT_PAGE`` entries of each kind)."""
    ended = {f"silence/{silence_id}" for silence_id in silence_ids}
    with board.people() as people:
        if people is None:
            return []
        entries = people.audit(action="alert", limit=AUDIT_PAGE)
        entries += people.audit(action="silence.expire", limit=AUDIT_PAGE)
    kept = [entry for entry in entries if entry.target in ended or _covers(entry.target, key)]
    return [asdict(entry) for entry in sorted(kept, key=lambda entry: entry.id, reverse=True)]


def _covers(target: str, key: tuple[str, str, str]) -> bool:
    """Whether an audit entry's target (``rule/host/subject``, ``*``: any) names ``key``.
    A subject may hold ``/``: the rule and the host never do."""
    parts = target.split("/", 2)
    if len(parts) != 3:
        return False
    return all(part in (ANY, wanted) for part, wanted in zip(parts, key, strict=True))
