"""Who may see the dashboard, at each request: the host names it answers, sign-in and
sign-out, sessions and Bearer tokens (the secrets and throttling are
``cpsfleet.controller.web.auth``'s)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)

from cpsfleet.controller.web.auth import Gate, Host, host_allowed
from cpsfleet.controller.web.dashboard import MACHINE_PATHS, Dashboard, dashboard
from cpsfleet.controller.web.language import _
from cpsfleet.controller.web.throttle import Throttled
from cpsfleet.i18n import N_

SESSION_COOKIE = "cpsfleet_session"
# A redirect names at most this much of the page asked for: a longer one goes to "/".
MAX_TARGET = 1024
# The sign-in form holds a secret and a target: anything larger is refused before it is read.
MAX_LOGIN_FORM = 8 * 1024
UNKNOWN_HOST = "This dashboard does not answer to that host name (see allowed_hosts).\n"
PUBLIC_PATHS = ("/login", "/static/", "/language/")

N_("Log in")  # the login page's title, translated per request
router = APIRouter(include_in_schema=False)
Board = Annotated[Dashboard, Depends(dashboard)]


async def refusal(request: Request, board: Dashboard, hosts: frozenset[Host]) -> Response | None:
    """The answer to a request that may not go further, or None."""
    # First of all: a page elsewhere whose name was made to point here (DNS rebinding)
    # sends its own name, and must not read the fleet even from this machine's browser.
    if not host_allowed(request.headers.get("host"), hosts):
        return PlainTextResponse(UNKNOWN_HOST, status_code=400)
    path = request.url.path
    if not board.settings.dashboard.login_required or path.startswith(PUBLIC_PATHS):
        return None
    try:
        if await _allowed(request, board.gate):
            return None
    except Throttled as error:
        detail = str(error)
        if not path.startswith(MACHINE_PATHS):
            detail = _("too many failed sign-ins: try again in {seconds} s").format(
                seconds=error.retry_after
            )
        return board.refuse(request, 429, detail, {"Retry-After": str(error.retry_after)})
    if path.startswith(MACHINE_PATHS):
        return JSONResponse(
            {"detail": "login required: a Bearer token or a session"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="cpsfleet"'},
        )
    return RedirectResponse(f"/login?{urlencode({'next': _local(path)})}", status_code=303)


def login_page(
    board: Dashboard,
    request: Request,
    target: str,
    status: int = 200,
    failed: bool = False,
    locked: Throttled | None = None,
) -> HTMLResponse:
    return board.render(
        request,
        "login.html",
        {
            "title": board.words(request, "Log in"),
            "path": "",
            "next": target,
            "failed": failed,
            "locked": locked,
        },
        status_code=status,
        headers={"Retry-After": str(locked.retry_after)} if locked else None,
    )


@router.get("/login")
def login_form(request: Request, board: Board, next: str = "/") -> HTMLResponse:
    return login_page(board, request, _local(next))


@router.post("/login")
async def login(request: Request, board: Board) -> Response:
    body = await _bounded_body(request, MAX_LOGIN_FORM)
    if body is None:
        return PlainTextResponse(_("The sign-in form is too large.") + "\n", status_code=413)
    form = parse_qs(body.decode("utf-8", "replace"))
    secret = (form.get("secret") or [""])[0]
    target = _local((form.get("next") or ["/"])[0])
    try:
        signed_in = await run_in_threadpool(board.gate.sign_in, secret, _source(request))
    except Throttled as error:
        return login_page(board, request, target, 429, locked=error)
    if not signed_in:
        return login_page(board, request, target, 401, failed=True)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        board.gate.open_session(),
        max_age=board.settings.dashboard.session_hours * 3600,
        httponly=True,
        samesite="strict",
        secure=board.settings.dashboard.secure_cookie,
    )
    return response


@router.post("/logout")
def logout(request: Request, board: Board) -> Response:
    board.gate.close_session(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE,
        httponly=True,
        samesite="strict",
        secure=board.settings.dashboard.secure_cookie,
    )
    return response


async def _allowed(request: Request, gate: Gate) -> bool:
    """A live session, or a right Bearer token; raises ``Throttled`` for a source that
    sent too many wrong ones."""
    if gate.session(request.cookies.get(SESSION_COOKIE)):
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return await run_in_threadpool(gate.bearer, token.strip(), _source(request))


def _source(request: Request) -> str:
    """The address tries are counted against (behind a proxy on this machine, the one it
    forwards: see ``cpsfleet.controller.web.server``)."""
    return request.client.host if request.client else ""


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it passes ``limit`` bytes (whatever its
    Content-Length says: a client may send none, or lie)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _local(target: str) -> str:
    """A redirect target on this site only, and short: a path, never ``//host`` or a URL."""
    local = target.startswith("/") and not target.startswith("//")
    return target if local and len(target) <= MAX_TARGET else "/"
