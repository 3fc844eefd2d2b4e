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
from datetime import datetime, timedelta
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cpsfleet.controller.db.people import People, User, UserExists
from cpsfleet.controller.people import (
    ROLE_NAMES,
    ROLES,
    Principal,
    check_name,
    check_role,
    check_sites,
)
from cpsfleet.controller.web.access import form_of, needs
from cpsfleet.controller.web.acts import Done, Refusal, carry_out, guarded
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


def with_people(board: Dashboard, work: Callable[[People], Done]) -> Callable[[], Done]:
    """``work`` on the people tables, opened read-write for the request."""

    def run() -> Done:
        with board.people() as people:
            if people is None:
                raise Refusal(503, _("the controller database cannot be read"))
            return work(people)

    return run


async def act(
    request: Request,
    board: Dashboard,
    action: str,
    target: str,
    work: Callable[[People], Done],
    back: str,
    done: str,
) -> Response:
    """Carry out a form's ``work`` and go ``back`` to its page, telling it was ``done``."""
    await carry_out(request, board, action, target, with_people(board, work))
    return RedirectResponse(f"{back}?done={done}", status_code=303)


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
    return Done(f"token/{token_id}", detail, {"token": secret})


def revoke_token(people: People, principal: Principal, token_id: int, now: datetime) -> Done:
    found = next((token for token in people.tokens() if token.id == token_id), None)
    own = found is not None and found.user_name == principal.name
    if found is None or not (own or principal.holds("manage")):
        raise Refusal(404, _("no token {id}").format(id=token_id))
    people.revoke_token(token_id, now)
    return Done(f"token/{token_id}", {"user": found.user_name})


# --- the pages ----------------------------------------------------------------------------


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


# A route's principal: an admin (the ``manage`` right), its refusals audited as the action.
Adding = Annotated[Principal, Depends(guarded("user.add", "manage"))]
Setting = Annotated[Principal, Depends(guarded("user.set", "manage"))]
Resetting = Annotated[Principal, Depends(guarded("user.password", "manage"))]
Removing = Annotated[Principal, Depends(guarded("user.remove", "manage"))]


@router.post("/users")
async def add_user_form(request: Request, board: Board, _admin: Adding) -> Response:
    fields, now = await form_of(request), board.clock()
    work = partial(add_user, fields=fields, now=now)
    return await act(
        request, board, "user.add", fields.get("name", ""), work, "/users", "user_added"
    )


@router.post("/users/{name}")
async def set_user_form(request: Request, board: Board, name: str, admin: Setting) -> Response:
    fields, now = await form_of(request), board.clock()
    work = partial(set_user, principal=admin, name=name, fields=fields, now=now)
    return await act(request, board, "user.set", name, work, "/users", "user_changed")


@router.post("/users/{name}/password")
async def password_form(request: Request, board: Board, name: str, admin: Resetting) -> Response:
    fields, now = await form_of(request), board.clock()
    work = partial(set_password, principal=admin, name=name, fields=fields, now=now)
    return await act(request, board, "user.password", name, work, "/users", "password_set")


@router.post("/users/{name}/remove")
async def remove_form(request: Request, board: Board, name: str, admin: Removing) -> Response:
    work = partial(remove_user, principal=admin, name=name)
    return await act(request, board, "user.remove", name, work, "/users", "user_removed")


def tokens_page(
    request: Request, board: Dashboard, principal: Principal, shown: str | None
) -> HTMLResponse:
    """The user's own tokens, and ``shown``, the one just made."""
    with board.people() as people:
        account = people.user(principal.name) if people is not None else None
        tokens = people.tokens(principal.name) if people is not None and account else []
    with board.store() as opened:
        page = board.page(
            request,
            opened,
            "tokens.html",
            _("My API tokens"),
            account=account,
            tokens=tokens,
            days_max=TOKEN_DAYS_MAX,
            shown=shown,
            with_host=False,
        )
    if shown:
        page.headers["Cache-Control"] = "no-store"  # the token is in this page only
    return page


@router.get("/tokens")
def tokens(
    request: Request, board: Board, principal: Annotated[Principal, Depends(needs("read"))]
) -> HTMLResponse:
    return tokens_page(request, board, principal, None)


Reader = Annotated[Principal, Depends(guarded("token.add", "read"))]


@router.post("/tokens")
async def add_token_form(request: Request, board: Board, principal: Reader) -> Response:
    fields, now = await form_of(request), board.clock()
    work = partial(add_token, principal=principal, fields=fields, now=now)
    done = await carry_out(request, board, "token.add", principal.name, with_people(board, work))
    return tokens_page(request, board, principal, done.answer["token"])


@router.post("/tokens/{token_id}/revoke")
async def revoke_form(
    request: Request,
    board: Board,
    token_id: int,
    principal: Annotated[Principal, Depends(guarded("token.revoke", "read"))],
) -> Response:
    fields, now = await form_of(request), board.clock()
    work = partial(revoke_token, principal=principal, token_id=token_id, now=now)
    back = "/users" if fields.get("back") == "/users" else "/tokens"
    return await act(
        request, board, "token.revoke", f"token/{token_id}", work, back, "token_revoked"
    )


@api.get("/users")
def users_api(
    board: Board, _principal: Annotated[Principal, Depends(needs("manage"))]
) -> list[dict[str, Any]]:
    """Every user: role, sites (null: every site), source, last sign-in, disabled or not."""
    with board.people() as people:
        return [user.as_json() for user in people.users()] if people is not None else []
