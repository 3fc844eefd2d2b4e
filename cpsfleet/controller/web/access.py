"""Who may see the dashboard, at each request: the host names it answers, sign-in and
sign-out, sessions and Bearer tokens, the CSRF token of every state-changing request, and
the rights of each route (the secrets and throttling are ``cpsfleet.controller.web.auth``'s).

A request that passes carries its ``Visitor`` in ``request.state.visitor``; a route that
changes something takes ``Depends(acting("act"))`` (or another right), which refuses a
visitor without it (403) and a session's request without its CSRF token (403)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)

from cpsfleet.controller.people import Principal, Right
from cpsfleet.controller.web.auth import Gate, Host, NoSessions, Visitor, host_allowed
from cpsfleet.controller.web.dashboard import MACHINE_PATHS, Dashboard, dashboard
from cpsfleet.controller.web.language import _
from cpsfleet.controller.web.throttle import Throttled
from cpsfleet.i18n import N_

SESSION_COOKIE = "cpsfleet_session"
# A redirect names at most this much of the page asked for: a longer one goes to "/".
MAX_TARGET = 1024
# The sign-in form holds a secret and a target: anything larger is refused before it is read.
MAX_LOGIN_FORM = 8 * 1024
# Any other form of the dashboard (a note, a reason): larger is refused unread.
MAX_FORM = 64 * 1024
UNKNOWN_HOST = "This dashboard does not answer to that host name (see allowed_hosts).\n"
PUBLIC_PATHS = ("/login", "/static/", "/language/", "/healthz", "/oidc/")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_FIELD, CSRF_HEADER = "csrf", "x-csrf-token"

N_("Log in")  # the login page's title, translated per request
router = APIRouter(include_in_schema=False)
Board = Annotated[Dashboard, Depends(dashboard)]


async def refusal(request: Request, board: Dashboard, hosts: frozenset[Host]) -> Response | None:
    """The answer to a request that may not go further, or None (with its visitor in
    ``request.state.visitor`` when it signed in)."""
    request.state.visitor = None
    # First of all: a page elsewhere whose name was made to point here (DNS rebinding)
    # sends its own name, and must not read the fleet even from this machine's browser.
    if not host_allowed(request.headers.get("host"), hosts):
        return PlainTextResponse(UNKNOWN_HOST, status_code=400)
    if request.method in UNSAFE_METHODS and not _same_origin(request, hosts):
        # Who sent it is not known yet (a browser sends no session cookie cross-site).
        origin = request.headers.get("origin", "")[:MAX_TARGET]
        board.audit(request, "cross_site", request.url.path, "refused", {"origin": origin})
        return board.refuse(request, 403, _("a form from another site is refused"))
    path = request.url.path
    try:
        visitor = await _visitor(request, board.gate)
    except Throttled as error:
        detail = str(error)
        if not path.startswith(MACHINE_PATHS):
            detail = _("too many failed sign-ins: try again in {seconds} s").format(
                seconds=error.retry_after
            )
        return board.refuse(request, 429, detail, {"Retry-After": str(error.retry_after)})
    request.state.visitor = visitor
    if visitor is not None or path.startswith(PUBLIC_PATHS):
        return None
    if path == "/metrics" and board.settings.dashboard.metrics_public:
        return None
    if path.startswith(MACHINE_PATHS):
        return JSONResponse(
            {"detail": "login required: a Bearer token or a session"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="cpsfleet"'},
        )
    return RedirectResponse(f"/login?{urlencode({'next': local_target(path)})}", status_code=303)


def visitor_of(request: Request) -> Visitor | None:
    found: Visitor | None = getattr(request.state, "visitor", None)
    return found


def principal_of(request: Request) -> Principal:
    """Who the request acts as; 401 when nobody signed in (a public path)."""
    visitor = visitor_of(request)
    if visitor is None:
        raise HTTPException(401, _("sign in first"))
    return visitor.principal


def needs(right: Right) -> Callable[[Request], Principal]:
    """A dependency: the request's principal, when it holds ``right`` (403 otherwise)."""

    def check(request: Request) -> Principal:
        principal = principal_of(request)
        if not principal.holds(right):
            raise HTTPException(403, _("your role does not allow this"))
        return principal

    return check


def acting(right: Right) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency of a route that changes something: ``needs(right)``, and the session's
    CSRF token in the form (``csrf``) or the ``X-CSRF-Token`` header (a Bearer token's
    request has no session and needs none)."""

    async def check(request: Request) -> Principal:
        principal = needs(right)(request)
        visitor = visitor_of(request)
        if visitor is not None and visitor.csrf is not None:
            sent = request.headers.get(CSRF_HEADER)
            if sent is None and _is_form(request):
                sent = (await form_of(request)).get(CSRF_FIELD)
            # As bytes: compare_digest refuses str with other than ASCII (a client sends any).
            expected = visitor.csrf.encode("utf-8")
            if not sent or not hmac.compare_digest(sent.encode("utf-8", "replace"), expected):
                raise HTTPException(403, _("this form has expired: reload the page"))
        return principal

    return check


async def form_of(request: Request, limit: int = MAX_FORM) -> dict[str, str]:
    """A URL-encoded form's fields (the first value of each), read once per request; 413
    past ``limit`` bytes, 415 for another kind of body."""
    cached: dict[str, str] | None = getattr(request.state, "form", None)
    if cached is not None:
        return cached
    if not _is_form(request):
        raise HTTPException(415, _("send a form (application/x-www-form-urlencoded)"))
    body = await bounded_body(request, limit)
    if body is None:
        raise HTTPException(413, _("this form is too large"))
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    request.state.form = {name: values[0] for name, values in fields.items()}
    return dict(request.state.form)


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return kind == "application/x-www-form-urlencoded"


def _same_origin(request: Request, hosts: frozenset[Host]) -> bool:
    """Whether a state-changing request comes from this dashboard's pages (or from no page:
    a script sends no Origin). Browsers send Origin with every POST."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:  # not a URL ("http://[" ...): nobody's page
        return False
    return bool(parts.netloc) and host_allowed(parts.netloc, hosts)


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
    return login_page(board, request, local_target(next))


@router.post("/login")
async def login(request: Request, board: Board) -> Response:
    body = await bounded_body(request, MAX_LOGIN_FORM)
    if body is None:
        return PlainTextResponse(_("The sign-in form is too large.") + "\n", status_code=413)
    form = parse_qs(body.decode("utf-8", "replace"))
    name = (form.get("user") or [""])[0].strip()
    secret = (form.get("secret") or [""])[0]
    target = local_target((form.get("next") or ["/"])[0])
    source = _source(request)
    try:
        principal = await run_in_threadpool(board.gate.sign_in, name, secret, source)
    except Throttled as error:
        board.audit(request, "sign_in", outcome="refused", actor=name, detail={"locked": True})
        return login_page(board, request, target, 429, locked=error)
    if principal is None:
        board.audit(request, "sign_in", outcome="failed", actor=name)
        return login_page(board, request, target, 401, failed=True)
    return sign_in(request, board, principal, target)


def sign_in(request: Request, board: Board, principal: Principal, target: str) -> Response:
    """Open a session for ``principal`` (signed in by the form or single sign-on), record it
    in the audit trail, and send the browser to ``target`` with the session's cookie."""
    try:
        opened = board.gate.open_session(principal, _source(request))
    except NoSessions:
        detail = _("signing in needs the controller database, which cannot be opened")
        return board.refuse(request, 503, detail)
    board.audit(request, "sign_in", actor=principal.name, detail={"via": principal.via})
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        opened.cookie,
        max_age=board.settings.dashboard.session_hours * 3600,
        httponly=True,
        # lax, not strict: the single sign-on provider's redirect back must carry it; every
        # state-changing request needs the session's CSRF token besides.
        samesite="lax",
        secure=board.settings.dashboard.secure_cookie,
    )
    return response


@router.post("/logout")
async def logout(
    request: Request, board: Board, principal: Annotated[Principal, Depends(acting("read"))]
) -> Response:
    board.gate.close_session(request.cookies.get(SESSION_COOKIE))
    board.audit(request, "sign_out", actor=principal.name)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE,
        httponly=True,
        samesite="lax",
        secure=board.settings.dashboard.secure_cookie,
    )
    return response


@router.get("/healthz", include_in_schema=True, tags=["health"])
def healthz(board: Board) -> JSONResponse:
    """Whether the dashboard can read the controller database; open to anyone."""
    try:
        with board.store():
            pass
    except HTTPException as error:
        return JSONResponse({"status": "unavailable", "detail": error.detail}, status_code=503)
    return JSONResponse({"status": "ok"})


async def _visitor(request: Request, gate: Gate) -> Visitor | None:
    """A live session, or a right Bearer token; raises ``Throttled`` for a source that
    sent too many wrong ones."""
    visitor = await run_in_threadpool(gate.session, request.cookies.get(SESSION_COOKIE))
    if visitor is not None:
        return visitor
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    principal = await run_in_threadpool(gate.bearer, token.strip(), _source(request))
    return None if principal is None else Visitor(principal)


def _source(request: Request) -> str:
    """The address tries are counted against (behind a proxy on this machine, the one it
    forwards: see ``cpsfleet.controller.web.server``)."""
    return request.client.host if request.client else ""


async def bounded_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it passes ``limit`` bytes (whatever its
    Content-Length says: a client may send none, or lie)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def local_target(target: str) -> str:
    """A redirect target on this site only, and short: a path, never ``//host`` or a URL."""
    local = target.startswith("/") and not target.startswith("//")
    return target if local and len(target) <= MAX_TARGET else "/"
