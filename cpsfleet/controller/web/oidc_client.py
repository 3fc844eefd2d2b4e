"""The relying party's side of single sign-on (``cpsfleet.controller.web.oidc``): the
provider as its discovery document describes it, the code's exchange and the ID token's
checks (Authlib's OAuth 2 client over requests, joserfc), and the sign-ins under way.

Each way a sign-in can fail is a ``SignOnFailed`` carrying what the audit trail records and
what the person reads; a provider that cannot be reached is a ``ProviderError``.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from cpsfleet.controller.web.language import _
from cpsfleet.controller.web.oidc_settings import OidcSettings

# How long a person has at the provider to sign in.
FLOW_SECONDS = 600
# At most this many sign-ins under way: the oldest is forgotten first.
MAX_FLOWS = 10_000
# How long the provider's discovery document and keys are trusted before they are read again.
METADATA_SECONDS = 3600
# The clock difference tolerated between the provider and this machine.
LEEWAY_S = 60
# Signatures the ID token may bear: a provider's keys are public ones.
SYMMETRIC = ("none", "HS256", "HS384", "HS512")


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
            digest(browser),
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


def digest(value: str) -> str:
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
            reply = requests.get(
                url, headers=headers, timeout=self.settings.timeout_s, verify=self.settings.verify
            )
            reply.raise_for_status()
            found = reply.json()
        except (requests.RequestException, ValueError) as error:
            raise ProviderError(f"{url}: {error}") from None
        if not isinstance(found, dict):
            raise ProviderError(f"{url}: not a JSON object")
        return found

    def _client(self) -> OAuth2Session:
        settings = self.settings
        client = OAuth2Session(
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            scope=" ".join(settings.scopes),
            redirect_uri=settings.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method=settings.token_auth_method,
        )
        client.verify = settings.verify
        return client

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
                raise SignOnFailed(400, "failed", reason, code_refused()) from None
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


def code_refused() -> str:
    return _("The identity provider did not accept this sign-in (used or expired): sign in again.")


def unreachable(reason: str) -> SignOnFailed:
    message = _("The identity provider cannot be reached or answers wrongly: try again later.")
    return SignOnFailed(502, "failed", reason, message)
