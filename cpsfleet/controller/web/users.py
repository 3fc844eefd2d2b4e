"""The dashboard's people: users managed by admins (``/users``), and each user's own API
tokens (``/tokens``).

An admin (the ``manage`` right, over every site) adds a user with a role, the sites their
rights cover (none given: every site) and an optional password (without one, the user signs
in only through single sign-on, or works with API tokens); changes a user's role, sites,
name and address; sets a new password; disables, enables or removes a user (sessions closed,
tokens gone with a removed user); and revokes any token. Nobody acts on their own account
here: another admin, or ``cpsfleet controller user``, does, so that an admin cannot lock
the last way in by mistake. Every signed-in user with an account makes and revokes their
own tokens; a token is shown once, when made, and only its digest is kept.

The actions are those of ``cpsfleet controller user`` and ``token``, with the same names in
the audit trail (``user.add``, ``user.set``, ``user.password``, ``user.remove``,
``token.add``, ``token.revoke``), done or refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cpsfleet.controller.db.people import People, User, UserExists
from cpsfleet.controller.people import (
    ROLE_NAMES,
    ROLES,
    PeopleError,
    Principal,
    Right,
    check_name,
    check_role,
    check_sites,
)
from cpsfleet.controller.web.access import acting, form_of, needs
from cpsfleet.controller.web.auth import MAX_SECRET, hash_secret, new_user_token
from cpsfleet.controller.web.dashboard import Dashboard, dashboard
from cpsfleet.controller.web.language import _
from cpsfleet.schemas.times import shifted

# As ``cpsfleet controller user password`` asks.
PASSWORD_MIN = 12
# A token lives at most this long (the command line sets any).
TOKEN_DAYS_MAX = 3660
LABEL_MAX = 200
FIELD_MAX = 256

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["people"])
Board = Annotated[Dashboard, Depends(dashboard)]


class Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Done:
    target: str
    detail: dict[str, Any] = field(default_factory=dict)
    shown: str | None = None  # a secret shown once (a new token)


def guarded(right: Right, action: str) -> Callable[..., Any]:
    """``acting(right)``, its refusals kept in the audit trail under ``action``."""
    check = acting(right)

    async def dependency(request: Request, board: Board) -> Principal:
        try:
            return await check(request)
        except HTTPException as error:
            detail = {"status": error.status_code, "why": str(error.detail)}
            board.audit(request, action, outcome="refused", detail=detail)
            raise

    return dependency


async def carry_out(
    request: Request,
    board: Dashboard,
    action: str,
    target: str,
    work: Callable[[People], Done],
) -> Done:
    """``work`` on the people tables beside the event loop, recorded in the audit trail."""

    def run() -> Done:
        with board.people() as people:
            if people is None:
                raise Refusal(503, _("the controller database cannot be read"))
            return work(people)

    try:
        done = await run_in_threadpool(run)
    except (Refusal, PeopleError) as error:
        status = error.status if isinstance(error, Refusal) else 400
        message = error.message if isinstance(error, Refusal) else str(error)
        outcome = "refused" if status == 403 else "failed"
        detail = {"status": status, "why": message}
        board.audit(request, action, target, outcome, detail)
        raise HTTPException(status, message) from None
    board.audit(request, action, done.target, "ok", done.detail)
    return done


# --- the work -----------------------------------------------------------------------------


def parse_sites(text: str) -> tuple[str, ...] | None:
    """Sites as typed in the form: comma-separated, none for every site."""
    names = [name for name in text.split(",") if name.strip()]
    return check_sites(names) if names else None


def _text(fields: dict[str, str], name: str) -> str:
    value = fields.get(name, "").strip()
    if len(value) > FIELD_MAX or not value.isprintable():
        raise Refusal(
            400,
            _("{name} is at most {most} printable characters").format(name=name, most=FIELD_MAX),
        )
    return value


def _password(fields: dict[str, str], optional: bool) -> str | None:
    secret, again = fields.get("password", ""), fields.get("password_again", "")
    if not secret and optional:
        return None
    if secret != again:
        raise Refusal(400, _("the two passwords differ"))
    if not PASSWORD_MIN <= len(secret) <= MAX_SECRET:
        raise Refusal(
            400,
            _("a password is {least} to {most} characters long").format(
                least=PASSWORD_MIN, most=MAX_SECRET
            ),
        )
    return hash_secret(secret)


def _other(people: People, principal: Principal, name: str) -> User:
    """The user ``name``, who is not the one acting."""
    user = people.user(name)
    if user is None:
        raise Refusal(404, _("no user {name!r}").format(name=name))
    if user.name == principal.name:
        raise Refusal(403, _("another admin changes your own account"))
    return user


def add_user(people: People, fields: dict[str, str], now: datetime) -> Done:
    name = check_name(fields.get("name", ""))
    role = check_role(fields.get("role", ""))
    sites = parse_sites(fields.get("sites", ""))
    display, email = _text(fields, "display_name"), _text(fields, "email")
    hashed = _password(fields, optional=True)
    try:
        people.add_user(name, role, sites, now, hashed, "local", display, email)
    except UserExists:
        raise Refusal(409, _("a user {name!r} exists already").format(name=name)) from None
    detail = {"role": role, "sites": list(sites) if sites else None, "password": bool(hashed)}
    return Done(name, detail)


def set_user(
    people: People, principal: Principal, name: str, fields: dict[str, str], now: datetime
) -> Done:
    user = _other(people, principal, name)
    changes: dict[str, Any] = {
        "role": check_role(fields.get("role", user.role)),
        "sites": parse_sites(fields.get("sites", ",".join(user.sites or ()))),
        "display_name": _text(fields, "display_name"),
        "email": _text(fields, "email"),
    }
    if "state" in fields:
        if fields["state"] not in ("active", "disabled"):
            raise Refusal(400, _("the state is active or disabled"))
        changes["disabled"] = fields["state"] == "disabled"
    people.update_user(user.name, now, **changes)
    detail = {
        key: (list(value) if isinstance(value, tuple) else value) for key, value in changes.items()
    }
    return Done(user.name, detail)


def set_password(
    people: People, principal: Principal, name: str, fields: dict[str, str], now: datetime
) -> Done:
    user = _other(people, principal, name)
    hashed = _password(fields, optional=False)
    people.update_user(user.name, now, password_hash=hashed)
    return Done(user.name, {"password": True})


def remove_user(people: People, principal: Principal, name: str) -> Done:
    user = _other(people, principal, name)
    tokens = [token.id for token in people.tokens(user.name)]
    people.remove_user(user.name)
    return Done(user.name, {"tokens": tokens})


def add_token(people: People, principal: Principal, fields: dict[str, str], now: datetime) -> Done:
    if people.user(principal.name) is None:
        raise Refusal(403, _("the configured sign-in has no tokens: an admin creates you a user"))
    label = fields.get("label", "").strip()
    if not label or len(label) > LABEL_MAX or not label.isprintable():
        raise Refusal(
            400, _("a token's label is 1 to {most} printable characters").format(most=LABEL_MAX)
        )
    days_text = fields.get("days", "").strip()
    expires = None
    if days_text:
        if not days_text.isdigit() or not 1 <= int(days_text) <= TOKEN_DAYS_MAX:
            raise Refusal(400, _("a token lasts 1 to {most} days").format(most=TOKEN_DAYS_MAX))
        expires = shifted(now, timedelta(days=int(days_text)))
    secret = new_user_token()
    token_id = people.add_token(principal.name, label, secret, now, expires)
    detail = {"user": principal.name, "label": label, "days": int(days_text) if days_text else None}
    return Done(f"token/{token_id}", detail, shown=secret)


def revoke_token(people: People, principal: Principal, token_id: int, now: datetime) -> Done:
    found = next((token for token in people.tokens() if token.id == token_id), None)
    own = found is not None and found.user_name == principal.name
    if found is None or not (own or principal.holds("manage")):
        raise Refusal(404, _("no token {id}").format(id=token_id))
    people.revoke_token(token_id, now)
    return Done(f"token/{token_id}", {"user": found.user_name})


# --- the pages ----------------------------------------------------------------------------


def _back(path: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?done={done}", status_code=303)


@router.get("/users")
def users_page(
    request: Request, board: Board, _principal: Annotated[Principal, Depends(needs("manage"))]
) -> HTMLResponse:
    with board.people() as people:
        users = people.users() if people is not None else []
        tokens = people.tokens() if people is not None else []
    with board.store() as opened:
        return board.page(
            request,
            opened,
            "users.html",
            _("Users"),
            users=users,
            tokens=tokens,
            roles=ROLES,
            role_names=ROLE_NAMES,
            password_min=PASSWORD_MIN,
            with_host=False,
        )


@router.post("/users")
async def add_user_form(
    request: Request,
    board: Board,
    principal: Annotated[Principal, Depends(guarded("manage", "user.add"))],
) -> Response:
    fields = await form_of(request)
    now = board.clock()
    await carry_out(
        request, board, "user.add", fields.get("name", ""), lambda p: add_user(p, fields, now)
    )
    return _back("/users", "user_added")


@router.post("/users/{name}")
async def set_user_form(
    request: Request,
    board: Board,
    name: str,
    principal: Annotated[Principal, Depends(guarded("manage", "user.set"))],
) -> Response:
    fields = await form_of(request)
    now = board.clock()
    await carry_out(
        request, board, "user.set", name, lambda p: set_user(p, principal, name, fields, now)
    )
    return _back("/users", "user_changed")


@router.post("/users/{name}/password")
async def password_form(
    request: Request,
    board: Board,
    name: str,
    principal: Annotated[Principal, Depends(guarded("manage", "user.password"))],
) -> Response:
    fields = await form_of(request)
    now = board.clock()
    await carry_out(
        request,
        board,
        "user.password",
        name,
        lambda p: set_password(p, principal, name, fields, now),
    )
    return _back("/users", "password_set")


@router.post("/users/{name}/remove")
async def remove_form(
    request: Request,
    board: Board,
    name: str,
    principal: Annotated[Principal, Depends(guarded("manage", "user.remove"))],
) -> Response:
    await carry_out(request, board, "user.remove", name, lambda p: remove_user(p, principal, name))
    return _back("/users", "user_removed")


@router.get("/tokens")
def tokens_page(
    request: Request, board: Board, principal: Annotated[Principal, Depends(needs("read"))]
) -> HTMLResponse:
    with board.people() as people:
        account = people.user(principal.name) if people is not None else None
        tokens = people.tokens(principal.name) if people is not None and account else []
    with board.store() as opened:
        return board.page(
            request,
            opened,
            "tokens.html",
            _("My API tokens"),
            account=account,
            tokens=tokens,
            days_max=TOKEN_DAYS_MAX,
            shown=None,
            with_host=False,
        )


@router.post("/tokens")
async def add_token_form(
    request: Request,
    board: Board,
    principal: Annotated[Principal, Depends(guarded("read", "token.add"))],
) -> Response:
    fields = await form_of(request)
    now = board.clock()
    done = await carry_out(
        request, board, "token.add", principal.name, lambda p: add_token(p, principal, fields, now)
    )
    with board.people() as people:
        account = people.user(principal.name) if people is not None else None
        tokens = people.tokens(principal.name) if people is not None else []
    with board.store() as opened:
        page = board.page(
            request,
            opened,
            "tokens.html",
            _("My API tokens"),
            account=account,
            tokens=tokens,
            days_max=TOKEN_DAYS_MAX,
            shown=done.shown,
            with_host=False,
        )
    page.headers["Cache-Control"] = "no-store"  # the token is in this page only
    return page


@router.post("/tokens/{token_id}/revoke")
async def revoke_form(
    request: Request,
    board: Board,
    token_id: int,
    principal: Annotated[Principal, Depends(guarded("read", "token.revoke"))],
) -> Response:
    fields = await form_of(request)
    now = board.clock()
    await carry_out(
        request,
        board,
        "token.revoke",
        f"token/{token_id}",
        lambda p: revoke_token(p, principal, token_id, now),
    )
    back = "/users" if fields.get("back") == "/users" else "/tokens"
    return _back(back, "token_revoked")


@api.get("/users")
def users_api(
    board: Board, _principal: Annotated[Principal, Depends(needs("manage"))]
) -> list[dict[str, Any]]:
    """Every user: role, sites (null: every site), source, last sign-in, disabled or not."""
    with board.people() as people:
        return [user.as_json() for user in people.users()] if people is not None else []
