"""Single sign-on: the dashboard as an OpenID Connect relying party of the organisation's
provider (Keycloak, Microsoft Entra ID, LemonLDAP::NG...), with the authorization code
flow, PKCE (S256), a state and a nonce. The settings and who the claims make a person are
``oidc_settings``; the HTTP and the tokens, Authlib's OAuth 2 client over requests and
joserfc.

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

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NoReturn

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from cpsfleet.controller.db.people import People, User
from cpsfleet.controller.people import Principal
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.controller.web.access import _local as local_target
from cpsfleet.controller.web.access import sign_in
from cpsfleet.controller.web.auth import MAX_SECRET
from cpsfleet.controller.web.dashboard import Dashboard, dashboard
from cpsfleet.controller.web.language import _
from cpsfleet.controller.web.oidc_settings import Grant, NotGranted, OidcSettings, grant
from cpsfleet.controller.web.throttle import Throttled

COOKIE = "cpsfleet_oidc"
# How long a person has at the provider to sign in.
FLOW_SECONDS = 600
# At most this many sign-ins under way: the oldest is forgotten first.
MAX_FLOWS = 10_000
# How long the provider's discovery document and keys are trusted before they are read again.
METADATA_SECONDS = 3600
# The clock difference tolerated between the provider and this machine.
LEEWAY_S = 60
# A state, a code or an error longer than this is nobody's.
MAX_PARAM = 4096
# Signatures the ID token may bear: a provider's keys are public ones.
SYMMETRIC = ("none", "HS256", "HS384", "HS512")

router = APIRouter(include_in_schema=False)
Board = Annotated[Dashboard, Depends(dashboard)]


class SignOnFailed(Exception):
    """A sign-in that does not go through: the HTTP status, the ``outcome`` for the audit
    trail (``failed``: a check failed; ``refused``: the provider or the dashboard said no),
    the ``reason`` it records, and the ``message`` the person reads."""

    def __init__(
        self, status: int, outcome: str, reason: str, message: str, actor: str = ""
    ) -> None:
        super().__init__(reason)
        self.status, self.outcome, self.reason = status, outcome, reason
        self.message, self.actor = message, actor


class ProviderError(Exception):
    """The provider cannot be reached, or answers what is not OpenID Connect."""


# --- the sign-ins under way -----------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    browser: str  # the SHA-256 of the browser's cookie
    nonce: str
    verifier: str
    target: str
    started: float


class Flows:
    """The sign-ins under way, by state; each taken at most once, within ``FLOW_SECONDS``."""

    def __init__(
        self,
        now: Callable[[], float] = time.monotonic,
        lifetime: float = FLOW_SECONDS,
        capacity: int = MAX_FLOWS,
    ) -> None:
        self.now, self.lifetime, self.capacity = now, lifetime, capacity
        self._flows: OrderedDict[str, Flow] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._flows)

    def start(self, browser: str, target: str) -> tuple[str, Flow]:
        state = secrets.token_urlsafe(32)
        flow = Flow(
            _digest(browser),
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(48),
            target,
            self.now(),
        )
        with self._lock:
            self._flows[state] = flow
            while self._flows:
                oldest = next(iter(self._flows.values()))
                if len(self._flows) <= self.capacity and not self._over(oldest):
                    break
                self._flows.popitem(last=False)
        return state, flow

    def take(self, state: str) -> Flow | None:
        with self._lock:
            flow = self._flows.pop(state, None)
        return None if flow is None or self._over(flow) else flow

    def _over(self, flow: Flow) -> bool:
        return self.now() - flow.started >= self.lifetime


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# --- the provider ---------------------------------------------------------------------------


class Provider:
    """The provider as its discovery document describes it, with its keys; both read again
    after ``METADATA_SECONDS``, and the keys at once when a token names a key they lack."""

    def __init__(self, settings: OidcSettings, now: Callable[[], float] = time.monotonic):
        self.settings, self.now = settings, now
        self._metadata: dict[str, Any] = {}
        self._keys: KeySet | None = None
        self._read_at = -float("inf")
        self._lock = threading.Lock()

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self.now() - self._read_at >= METADATA_SECONDS:
                self._metadata, self._keys = self._discover(), None
                self._read_at = self.now()
            return self._metadata

    def _discover(self) -> dict[str, Any]:
        found = self._get_json(self.settings.discovery_url)
        if found.get("issuer") != self.settings.issuer:
            raise ProviderError(
                f"the discovery document names the issuer {found.get('issuer')!r},"
                f" not {self.settings.issuer!r}"
            )
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(found.get(name), str):
                raise ProviderError(f"the discovery document has no {name}")
        return found

    def keys(self, again: bool = False) -> KeySet:
        metadata = self.metadata()
        with self._lock:
            if self._keys is None or again:
                try:
                    self._keys = KeySet.import_key_set(self._get_json(metadata["jwks_uri"]))  # type: ignore[arg-type]
                except (JoseError, ValueError, TypeError, KeyError) as error:
                    raise ProviderError(f"the provider's keys cannot be read: {error}") from None
            return self._keys

    def _get_json(self, url: str, token: str | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            reply = requests.get(url, headers=headers, timeout=self.settings.timeout_s)
            reply.raise_for_status()
            found = reply.json()
        except (requests.RequestException, ValueError) as error:
            raise ProviderError(f"{url}: {error}") from None
        if not isinstance(found, dict):
            raise ProviderError(f"{url}: not a JSON object")
        return found

    def _client(self) -> OAuth2Session:
        settings = self.settings
        return OAuth2Session(
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            scope=" ".join(settings.scopes),
            redirect_uri=settings.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method=settings.token_auth_method,
        )

    def authorization_url(self, state: str, flow: Flow) -> str:
        endpoint = self.metadata()["authorization_endpoint"]
        with self._client() as client:
            url, _state = client.create_authorization_url(
                endpoint, state=state, nonce=flow.nonce, code_verifier=flow.verifier
            )
        return str(url)

    def exchange(self, code: str, verifier: str) -> dict[str, Any]:
        """The token endpoint's answer for ``code``; ``SignOnFailed`` when it refuses."""
        endpoint = self.metadata()["token_endpoint"]
        with self._client() as client:
            try:
                token = client.fetch_token(
                    endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=verifier,
                    timeout=self.settings.timeout_s,
                )
            except requests.RequestException as error:
                raise ProviderError(f"token endpoint: {error}") from None
            except (OAuthError, ValueError) as error:  # its error, or a body that is not JSON
                reason = f"the token endpoint refused the code: {error}"
                raise SignOnFailed(400, "failed", reason, _code_refused()) from None
        return dict(token)

    def verified(self, token: Mapping[str, Any], nonce: str) -> dict[str, Any]:
        """The ID token's claims once its signature, issuer, audience, times and nonce are
        right; with the userinfo endpoint's claims when the groups are not in it."""
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise _untrusted("the token endpoint sent no ID token")
        claims = self._decoded(id_token)
        registry = JWTClaimsRegistry(
            leeway=LEEWAY_S,
            iss={"essential": True, "value": self.settings.issuer},
            aud={"essential": True, "value": self.settings.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as error:
            raise _untrusted(f"ID token: {error}") from None
        audience = claims["aud"]
        several = isinstance(audience, list) and len(audience) > 1
        if (several or "azp" in claims) and claims.get("azp") != self.settings.client_id:
            raise _untrusted("ID token: azp is not this dashboard's client_id")
        return self._with_userinfo(claims, token)

    def _decoded(self, id_token: str) -> dict[str, Any]:
        offered = self.metadata().get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [name for name in offered if isinstance(name, str) and name not in SYMMETRIC]
        for again in (False, True):
            try:
                return dict(jwt.decode(id_token, self.keys(again), algorithms=algorithms).claims)
            except JoseError as error:
                if again or error.error not in ("invalid_key_id", "bad_signature"):
                    raise _untrusted(f"ID token: {error}") from None
            except ValueError as error:
                raise _untrusted(f"ID token: {error}") from None
        raise AssertionError("unreachable")

    def _with_userinfo(self, claims: dict[str, Any], token: Mapping[str, Any]) -> dict[str, Any]:
        endpoint = self.metadata().get("userinfo_endpoint")
        access = token.get("access_token")
        if self.settings.groups_claim.split(".")[0] in claims or not endpoint or not access:
            return claims
        info = self._get_json(str(endpoint), str(access))
        if info.get("sub") != claims["sub"]:
            raise _untrusted("the userinfo endpoint answered for another subject")
        return {**info, **claims}


def _untrusted(reason: str) -> SignOnFailed:
    message = _("The identity provider's answer could not be verified: sign in again.")
    return SignOnFailed(401, "failed", reason, message)


def _code_refused() -> str:
    return _("The identity provider did not accept this sign-in (used or expired): sign in again.")


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
        if browser is None or not hmac.compare_digest(_digest(browser), flow.browser):
            message = _("This sign-in was started in another browser: sign in again.")
            raise SignOnFailed(400, "failed", "state of another browser", message)
        code = query.get("code", "")
        if not code:
            raise SignOnFailed(400, "failed", "no code", _code_refused())
        try:
            claims = self.provider.verified(self.provider.exchange(code, flow.verifier), flow.nonce)
        except ProviderError as error:
            raise _unreachable(str(error)) from None
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
        if found is not None and found.source != "oidc":
            raise SignOnFailed(
                403,
                "refused",
                "a local user of this name exists",
                _("A user of this name signs in with a password here: ask an administrator."),
                granted.name,
            )
        if found is not None and not found.active:
            raise SignOnFailed(
                403,
                "refused",
                "user disabled",
                _("Your account is disabled on this dashboard: ask an administrator."),
                granted.name,
            )
        wanted = {
            "role": granted.role,
            "sites": granted.sites,
            "display_name": granted.display_name,
            "email": granted.email,
        }
        action: str | None = None
        if found is None:
            user = people.add_user(
                granted.name,
                granted.role,
                granted.sites,
                now,
                source="oidc",
                display_name=granted.display_name,
                email=granted.email,
            )
            action = "user.add"
        else:
            changes = {key: value for key, value in wanted.items() if getattr(found, key) != value}
            user = found
            if changes:
                user = people.update_user(granted.name, now, **changes) or found
                action = "user.set"
        people.signed_in(granted.name, now)
        return user, action


def _unreachable(reason: str) -> SignOnFailed:
    message = _("The identity provider cannot be reached or answers wrongly: try again later.")
    return SignOnFailed(502, "failed", reason, message)


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
        failure = _unreachable(str(error))
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
    source = request.client.host if request.client else ""
    query = {key: value[:MAX_PARAM] for key, value in request.query_params.items()}
    try:
        board.gate.sources.charge(source)
    except Throttled as error:
        board.audit(
            request, "sign_in", outcome="refused", actor="", detail={"via": "oidc", "locked": True}
        )
        detail = _("too many failed sign-ins: try again in {seconds} s").format(
            seconds=error.retry_after
        )
        return board.refuse(request, 429, detail, {"Retry-After": str(error.retry_after)})
    try:
        principal, target = await run_in_threadpool(_signed_on, request, board, sso, query)
    except SignOnFailed as failure:
        board.gate.sources.settle(source, failed=failure.outcome == "failed")
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
            raise _unreachable("no controller database")
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


def _detail(failure: SignOnFailed) -> dict[str, Any]:
    return {"via": "oidc", "status": failure.status, "reason": failure.reason}
