"""Single sign-on: the dashboard as an OpenID Connect relying party of the organisation's
provider (Keycloak, Microsoft Entra ID, LemonLDAP::NG...), with the authorization code
flow, PKCE (S256), a state and a nonce: its two routes, and what the callback makes of a
person. The settings and who the claims make a person are ``oidc_settings``; the provider,
the tokens and the sign-ins under way, ``oidc_client``.

- ``GET /oidc/login?next=/page`` sends the browser to the provider. The flow's state,
  nonce and PKCE verifier stay on the server, under the state, for ``FLOW_SECONDS``;
  an HttpOnly cookie binds them to the browser that started it.
- ``GET /oidc/callback`` takes the flow back once (a replayed callback finds nothing),
  checks the cookie, exchanges the code, verifies the ID token (signature against the
  provider's JWKS, ``iss``, ``aud``, ``azp``, ``exp``, ``iat``, the nonce), maps its
  groups to a role and sites, creates or updates the user (source ``oidc``), refuses a
  disabled one, opens a session as the login form does, and sends the browser to ``next``.

Every outcome goes into the audit trail as ``sign_in`` (``via`` ``oidc``, with the reason of a
refusal or a failure); the creation or change of a user as ``user.add`` or ``user.set``.
Failed callbacks count against the source address as failed sign-ins do.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from cpsfleet.controller.db.people import People, User, UserExists
from cpsfleet.controller.people import Principal
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.controller.web.access import local_target, sign_in
from cpsfleet.controller.web.auth import MAX_SECRET
from cpsfleet.controller.web.dashboard import Dashboard, dashboard
from cpsfleet.controller.web.language import _
from cpsfleet.controller.web.oidc_client import (
    FLOW_SECONDS,
    Flow,
    Flows,
    Provider,
    ProviderError,
    SignOnFailed,
    code_refused,
    digest,
    unreachable,
)
from cpsfleet.controller.web.oidc_settings import Grant, NotGranted, OidcSettings, grant
from cpsfleet.controller.web.throttle import Throttled

COOKIE = "cpsfleet_oidc"
# A state, a code or an error longer than this is nobody's.
MAX_PARAM = 4096
# The most of a refusal's reason (a provider's error description...) the audit trail keeps.
MAX_REASON = 500

router = APIRouter(include_in_schema=False)
Board = Annotated[Dashboard, Depends(dashboard)]


# --- the sign-on ----------------------------------------------------------------------------


class SingleSignOn:
    """The provider, the sign-ins under way, and the work of the callback."""

    def __init__(self, settings: OidcSettings, clock: Callable[[], datetime]) -> None:
        self.settings, self.clock = settings, clock
        self.provider = Provider(settings)
        self.flows = Flows()

    def start(self, browser: str, target: str) -> str:
        """The provider's address for a new sign-in from ``browser``, back to ``target``."""
        state, flow = self.flows.start(browser, target)
        return self.provider.authorization_url(state, flow)

    def complete(self, query: Mapping[str, str], browser: str | None) -> tuple[Grant, Flow]:
        """The callback's checks, in order: the provider's error, the flow, the browser,
        the code's exchange, the ID token, the groups (the flow is taken in any case)."""
        flow = self.flows.take(query.get("state", ""))
        if "error" in query:  # some providers send no state with it: it changes nothing here
            self._provider_refused(query)
        if flow is None:
            message = _("This sign-in is unknown or has expired: sign in again.")
            raise SignOnFailed(400, "failed", "unknown or expired state", message)
        if browser is None or not hmac.compare_digest(digest(browser), flow.browser):
            message = _("This sign-in was started in another browser: sign in again.")
            raise SignOnFailed(400, "failed", "state of another browser", message)
        code = query.get("code", "")
        if not code:
            raise SignOnFailed(400, "failed", "no code", code_refused())
        try:
            claims = self.provider.verified(self.provider.exchange(code, flow.verifier), flow.nonce)
        except ProviderError as error:
            raise unreachable(str(error)) from None
        try:
            return grant(self.settings, claims), flow
        except NotGranted as refusal:
            actor = claims.get(self.settings.name_claim)
            raise SignOnFailed(
                403,
                "refused",
                str(refusal),
                _("You may not use this dashboard: {reason}.").format(reason=refusal),
                actor if isinstance(actor, str) else "",
            ) from None

    def _provider_refused(self, query: Mapping[str, str]) -> NoReturn:
        error, description = query.get("error", ""), query.get("error_description", "")
        said = f"{error}: {description}" if description else error
        message = _("The identity provider refused the sign-in ({error}).").format(error=said)
        raise SignOnFailed(403, "refused", f"provider: {said}", message)

    def user(self, people: People, granted: Grant) -> tuple[User, str | None]:
        """The dashboard's user for ``granted``, created or brought up to date; the audit
        action of the change (``user.add``, ``user.set``, None)."""
        now = self.clock()
        found = people.user(granted.name)
        _check_may_sign_on(found, granted.name)
        if found is None:
            try:
                user = people.add_user(
                    granted.name,
                    granted.role,
                    granted.sites,
                    now,
                    source="oidc",
                    display_name=granted.display_name,
                    email=granted.email,
                )
            except UserExists:  # the same person's other sign-in created it meanwhile
                return self.user(people, granted)
            action: str | None = "user.add"
        else:
            user, action = _brought_up_to_date(people, found, granted, now)
        people.signed_in(granted.name, now)
        return user, action


def _check_may_sign_on(found: User | None, name: str) -> None:
    """Refuses a local user's name (the provider may not take the account over) and a
    disabled user."""
    if found is not None and found.source != "oidc":
        message = _("A user of this name signs in with a password here: ask an administrator.")
        raise SignOnFailed(403, "refused", "a local user of this name exists", message, name)
    if found is not None and not found.active:
        message = _("Your account is disabled on this dashboard: ask an administrator.")
        raise SignOnFailed(403, "refused", "user disabled", message, name)


def _brought_up_to_date(
    people: People, found: User, granted: Grant, now: datetime
) -> tuple[User, str | None]:
    wanted = {
        "role": granted.role,
        "sites": granted.sites,
        "display_name": granted.display_name,
        "email": granted.email,
    }
    changes = {key: value for key, value in wanted.items() if getattr(found, key) != value}
    if not changes:
        return found, None
    return people.update_user(found.name, now, **changes) or found, "user.set"


def install(app: FastAPI, board: Dashboard, settings: ControllerSettings) -> None:
    """Single sign-on on ``app`` when ``[oidc]`` is configured; the login page offers it."""
    sso = SingleSignOn(settings.oidc, board.clock) if settings.oidc.enabled else None
    app.state.oidc = sso
    board.templates.env.globals["sso_name"] = sso.settings.shown_name if sso else None
    app.include_router(router)


def _sso(request: Request) -> SingleSignOn:
    found: SingleSignOn | None = getattr(request.app.state, "oidc", None)
    if found is None:
        raise HTTPException(404, _("Single sign-on is not configured on this dashboard."))
    return found


def _browser(request: Request) -> str | None:
    cookie = request.cookies.get(COOKIE)
    return cookie if cookie and len(cookie) <= MAX_SECRET else None


@router.get("/oidc/login")
def oidc_login(request: Request, board: Board, next: str = "/") -> Response:
    sso = _sso(request)
    browser = _browser(request) or secrets.token_urlsafe(32)
    try:
        url = sso.start(browser, local_target(next))
    except ProviderError as error:
        # Counted as a failed sign-in: nobody fills the audit trail by asking again and again.
        source = _source(request)
        locked = _throttled(request, board, source)
        if locked is not None:
            return locked
        board.gate.sources.settle(source, failed=True)
        failure = unreachable(str(error))
        board.audit(request, "sign_in", outcome="failed", actor="", detail=_detail(failure))
        return board.refuse(request, failure.status, failure.message)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        COOKIE,
        browser,
        max_age=FLOW_SECONDS,
        path="/oidc/",
        httponly=True,
        # lax: the provider's redirect back is a top-level navigation from its site.
        samesite="lax",
        secure=board.settings.dashboard.secure_cookie,
    )
    return response


@router.get("/oidc/callback")
async def oidc_callback(request: Request, board: Board) -> Response:
    sso = _sso(request)
    source = _source(request)
    query = {key: value[:MAX_PARAM] for key, value in request.query_params.items()}
    locked = _throttled(request, board, source)
    if locked is not None:
        return locked
    try:
        principal, target = await run_in_threadpool(_signed_on, request, board, sso, query)
    except SignOnFailed as failure:
        # Every sign-in that does not go through counts, refusals too: a crafted callback
        # (?error=...) would otherwise add to the audit trail without end.
        board.gate.sources.settle(source, failed=True)
        board.audit(
            request,
            "sign_in",
            outcome=failure.outcome,
            actor=failure.actor,
            detail=_detail(failure),
        )
        return board.refuse(request, failure.status, failure.message)
    board.gate.sources.settle(source, failed=False)
    return sign_in(request, board, principal, target)


def _signed_on(
    request: Request, board: Dashboard, sso: SingleSignOn, query: Mapping[str, str]
) -> tuple[Principal, str]:
    granted, flow = sso.complete(query, _browser(request))
    with board.people() as people:
        if people is None:
            raise unreachable("no controller database")
        user, action = sso.user(people, granted)
    if action is not None:
        detail = {
            "via": "oidc",
            "role": user.role,
            "sites": user.sites,
            "groups": list(granted.groups),
        }
        board.audit(request, action, target=user.name, actor=user.name, detail=detail)
    return user.principal("oidc"), flow.target


def _source(request: Request) -> str:
    return request.client.host if request.client else ""


def _throttled(request: Request, board: Dashboard, source: str) -> Response | None:
    """A 429 page when ``source`` has no sign-in left (recorded), else None: a try is counted,
    which the caller settles."""
    try:
        board.gate.sources.charge(source)
    except Throttled as error:
        detail = {"via": "oidc", "locked": True}
        board.audit(request, "sign_in", outcome="refused", actor="", detail=detail)
        message = _("too many failed sign-ins: try again in {seconds} s").format(
            seconds=error.retry_after
        )
        return board.refuse(request, 429, message, {"Retry-After": str(error.retry_after)})
    return None


def _detail(failure: SignOnFailed) -> dict[str, Any]:
    return {"via": "oidc", "status": failure.status, "reason": failure.reason[:MAX_REASON]}
