"""OpenID Connect sign-in to the web UI: the authorization code flow with PKCE, one provider per tenant.

A tenant's admin sets its provider (issuer, client id and secret, the claim that names the user, and optionally the
role of users who have no account yet). A browser that signs in is sent to the provider with a fresh `state`,
`nonce` and PKCE verifier, kept in a short-lived cookie of its own (`Pending`); the provider sends it back with a
code, exchanged at the token endpoint for an ID token that must be signed by a key of the provider's JWKS with an
asymmetric algorithm it announces, issued by the issuer, for this client, not expired, and carrying the nonce
(joserfc, the JOSE library of the authlib project, checks signature and claims).

The provider's account (issuer, subject) is bound to a user at its first sign-in: to the tenant's user named by the
claim, or to a user created with `default_role`; later sign-ins find the user by the binding. A user the provider
vouches for still needs an account here (or the default role): the provider does not choose roles. Every sign-in,
binding and refusal is in the audit log. Client secrets are stored encrypted with the server's secret.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from cachetools import TTLCache
from cryptography.fernet import Fernet, InvalidToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import Database
from ..errors import BadGateway, Invalid, NotFound, Unauthorized
from ..models import Tenant, User, utcnow
from ..ui_models import OidcProvider, UserIdentity
from . import audit
from .auth import ROLES, Principal, _aware

__all__ = ["PENDING_SECONDS", "OidcService", "Pending", "check_issuer"]

PENDING_SECONDS = 600  # a sign-in must come back from the provider within this
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # a user name here (services/tenants.py)
_CLAIM = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}\Z")
MAX_DOCUMENT = 512 * 1024  # discovery, JWKS and token answers are small
LEEWAY = 60  # seconds of clock difference accepted on exp/iat


def check_issuer(issuer: str) -> str:
    """An issuer URL: https, or http to a loopback address only (a provider on the same host, as in development)."""
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise Invalid("issuer must be the provider's https URL (as its discovery document names it), without query")
    if parts.scheme == "http":
        host = parts.hostname
        loopback = host == "localhost"
        with contextlib.suppress(ValueError):
            loopback = loopback or ipaddress.ip_address(host).is_loopback
        if not loopback:
            raise Invalid("issuer must use https (plain http is accepted only for a provider on this host)")
    return issuer  # exactly as given: the discovery document and every ID token must name the same string


@dataclass(frozen=True)
class Pending:
    """One browser's sign-in in flight, kept in its own cookie until the provider sends it back."""

    tenant: str
    state: str
    nonce: str
    verifier: str
    next: str
    expires: int

    def encode(self) -> str:
        raw = json.dumps([self.tenant, self.state, self.nonce, self.verifier, self.next, self.expires])
        return base64.urlsafe_b64encode(raw.encode()).decode()

    @staticmethod
    def decode(value: str | None) -> Pending | None:
        if not value or len(value) > 2048:
            return None
        try:
            t, st, n, v, nx, e = json.loads(base64.urlsafe_b64decode(value.encode()))
            fields = (t, st, n, v, nx)
            if not all(isinstance(f, str) and len(f) <= 512 for f in fields) or not isinstance(e, int):
                return None
        except (ValueError, TypeError):
            return None
        return Pending(t, st, n, v, nx, e)


def _challenge(verifier: str) -> str:
    """PKCE S256 (RFC 7636): base64url of the verifier's SHA-256, without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class OidcService:
    def __init__(self, db: Database, secret: bytes, http: Callable[[], httpx.Client] | None = None) -> None:
        self.db = db
        self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"bulkhead oidc client secret\0" + secret).digest()))
        self._http = http or (lambda: httpx.Client(timeout=10.0, follow_redirects=False))
        self._discovery: TTLCache[str, dict[str, Any]] = TTLCache(maxsize=256, ttl=3600)
        self._jwks: TTLCache[str, KeySet] = TTLCache(maxsize=256, ttl=3600)

    # -- the tenant's settings (admins) -------------------------------------------------------------

    def configure(self, who: Principal, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        who.require("admin")
        tid = who.require_tenant()
        issuer = check_issuer(str(body.get("issuer") or ""))
        if len(issuer) > 512:
            raise Invalid("issuer is longer than 512 characters")
        client_id, secret = str(body.get("client_id") or ""), str(body.get("client_secret") or "")
        if not 1 <= len(client_id) <= 256:
            raise Invalid("client_id must be 1-256 characters: the id the provider gave this server")
        if len(secret) > 1024:
            raise Invalid("client_secret is longer than 1024 characters")
        claim = str(body.get("username_claim") or "preferred_username")
        if not _CLAIM.match(claim):
            raise Invalid("username_claim must be a claim name such as preferred_username or email")
        role = body.get("default_role")
        if role is not None and role not in ROLES:
            raise Invalid(f"default_role must be one of {', '.join(ROLES)}, or null (only existing users sign in)")
        with self.db.session() as s:
            row = s.get(OidcProvider, tid)
            created = row is None
            if row is None:
                if not secret:
                    raise Invalid("client_secret is needed to set a provider (the secret the provider gave this client)")
                row = OidcProvider(tenant_id=tid)
                s.add(row)
            row.issuer, row.client_id, row.username_claim, row.default_role = issuer, client_id, claim, role
            if secret:
                row.client_secret = self._fernet.encrypt(secret.encode()).decode()
            row.updated_by, row.updated_at = f"{who.kind}:{who.name}", utcnow()
            s.flush()
            audit.record(s, who, "oidc.set", issuer, client_id=row.client_id, username_claim=claim, default_role=role)
            return _json(row), created

    def show(self, who: Principal) -> dict[str, Any]:
        found = self.current(who)
        if found is None:
            raise NotFound("this tenant has no OpenID Connect provider: set one with PUT /api/v1/oidc")
        return found

    def current(self, who: Principal) -> dict[str, Any] | None:
        """The tenant's provider (admins), or None."""
        who.require("admin")
        with self.db.session() as s:
            row = s.get(OidcProvider, who.require_tenant())
            return _json(row) if row is not None else None

    def remove(self, who: Principal) -> None:
        who.require("admin")
        with self.db.session() as s:
            row = s.get(OidcProvider, who.require_tenant())
            if row is None:
                raise NotFound("this tenant has no OpenID Connect provider")
            s.delete(row)
            audit.record(s, who, "oidc.delete", row.issuer)

    def offered(self, tenant: str) -> bool:
        """Whether the tenant signs in through a provider (the login page offers it)."""
        with self.db.session() as s:
            return (
                s.scalar(
                    select(OidcProvider.tenant_id).join(Tenant, Tenant.id == OidcProvider.tenant_id).where(Tenant.name == tenant)
                )
                is not None
            )

    # -- the flow ---------------------------------------------------------------------------------

    def begin(self, tenant: str, redirect_uri: str, next_path: str) -> tuple[str, Pending]:
        """The provider's authorization URL for a new sign-in, and what the browser keeps until it comes back."""
        provider = self._provider(tenant)
        meta = self._meta(provider.issuer)
        pending = Pending(
            tenant, secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48), next_path,
            int(time.time()) + PENDING_SECONDS,
        )  # fmt: skip
        query = {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid profile email",
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": _challenge(pending.verifier),
            "code_challenge_method": "S256",
        }
        endpoint = str(meta["authorization_endpoint"])
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(query), pending

    def finish(self, pending: Pending | None, params: dict[str, str], redirect_uri: str) -> tuple[int, str]:
        """The provider sent the browser back: (user id, user name) of the account it vouches for, bound here."""
        if pending is None or pending.expires < time.time():
            raise Invalid("this sign-in expired or was started in another browser: sign in again")
        if not secrets.compare_digest(params.get("state", ""), pending.state):
            raise Invalid("the provider's answer does not belong to this browser's sign-in: sign in again")
        if params.get("error"):
            why = params.get("error_description") or params["error"]
            raise Unauthorized(f"the identity provider refused the sign-in: {why[:300]}")
        code = params.get("code", "")
        if not code or len(code) > 2048:
            raise Invalid("the provider's answer carries no authorization code: sign in again")
        provider = self._provider(pending.tenant)
        meta = self._meta(provider.issuer)
        secret = self._secret(provider)
        tokens = self._token(meta, provider.client_id, secret, code, redirect_uri, pending.verifier)
        claims = self._verify(meta, provider, str(tokens.get("id_token") or ""), pending.nonce)
        if provider.username_claim not in claims and meta.get("userinfo_endpoint") and tokens.get("access_token"):
            claims = {**self._userinfo(str(meta["userinfo_endpoint"]), str(tokens["access_token"]), claims), **claims}
        return self._bind(provider, claims)

    def _userinfo(self, url: str, access_token: str, claims: dict[str, Any]) -> dict[str, Any]:
        """The UserInfo claims (many providers put the profile there, not in the ID token); its `sub` must be the ID
        token's (OpenID Connect Core 5.3.2)."""
        try:
            with self._http() as c:
                r = c.get(url, headers={"authorization": f"Bearer {access_token}", "accept": "application/json"})
        except httpx.HTTPError as exc:
            raise BadGateway(f"the identity provider's UserInfo endpoint could not be reached: {exc}") from exc
        info = _answer(r, "UserInfo answer", url)
        if info.get("sub") != claims.get("sub"):
            raise Unauthorized("the provider's UserInfo answer is about another account than the ID token: sign in again")
        return info

    # -- steps ------------------------------------------------------------------------------------

    def _provider(self, tenant: str) -> OidcProvider:
        with self.db.session() as s:
            row = s.scalar(select(OidcProvider).join(Tenant, Tenant.id == OidcProvider.tenant_id).where(Tenant.name == tenant))
            if row is None:
                raise NotFound(f"tenant '{tenant[:64]}' does not sign in through an identity provider: use its password")
            s.expunge(row)
            return row

    def _secret(self, provider: OidcProvider) -> str:
        try:
            return self._fernet.decrypt(provider.client_secret.encode()).decode()
        except InvalidToken as exc:
            raise BadGateway("the provider's client secret cannot be read with this server's secret: set it again") from exc

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            with self._http() as c:
                r = c.get(url, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            raise BadGateway(f"the identity provider's {what} could not be fetched ({url}): {exc}") from exc
        return _answer(r, what, url)

    def _meta(self, issuer: str) -> dict[str, Any]:
        """The provider's discovery document (cached an hour), checked to name this issuer."""
        if (meta := self._discovery.get(issuer)) is not None:
            return meta
        meta = self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration", "discovery document")
        if meta.get("issuer") != issuer:
            raise BadGateway(
                f"the discovery document names issuer {str(meta.get('issuer'))[:200]!r}, not {issuer!r}: fix the issuer"
            )
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(meta.get(key), str):
                raise BadGateway(f"the provider's discovery document has no {key}")
        self._discovery[issuer] = meta
        return meta

    def _keys(self, meta: dict[str, Any], fresh: bool = False) -> KeySet:
        uri = str(meta["jwks_uri"])
        if not fresh and (keys := self._jwks.get(uri)) is not None:
            return keys
        try:
            keys = KeySet.import_key_set(self._get_json(uri, "signing keys (JWKS)"))  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise BadGateway(f"the provider's signing keys (JWKS) cannot be read: {exc}") from exc
        self._jwks[uri] = keys
        return keys

    def _token(
        self, meta: dict[str, Any], client_id: str, secret: str, code: str, redirect_uri: str, verifier: str
    ) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier}
        methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        basic = "client_secret_basic" in methods
        if not basic:
            form |= {"client_id": client_id, "client_secret": secret}
        url, accept = str(meta["token_endpoint"]), {"accept": "application/json"}
        try:
            with self._http() as c:
                if basic:
                    r = c.post(url, data=form, auth=(client_id, secret), headers=accept)
                else:
                    r = c.post(url, data=form, headers=accept)
        except httpx.HTTPError as exc:
            raise BadGateway(f"the identity provider's token endpoint could not be reached: {exc}") from exc
        if r.status_code in (400, 401):
            body = _json_or_none(r)
            why = (body or {}).get("error_description") or (body or {}).get("error") or r.text[:200]
            raise Unauthorized(f"the identity provider refused the code: {str(why)[:300]}: sign in again")
        return _answer(r, "token answer", str(meta["token_endpoint"]))

    def _verify(self, meta: dict[str, Any], provider: OidcProvider, id_token: str, nonce: str) -> dict[str, Any]:
        if not id_token:
            raise BadGateway("the identity provider's token answer has no id_token")
        offered = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [a for a in offered if a in ALGORITHMS]  # never "none" or a shared-secret HS*
        if not algorithms:
            raise BadGateway(f"the provider signs ID tokens only with {offered}: none of them is accepted here")
        try:
            try:
                token = jwt.decode(id_token, self._keys(meta), algorithms=algorithms)
            except JoseError:
                token = jwt.decode(id_token, self._keys(meta, fresh=True), algorithms=algorithms)  # keys rotated
        except (JoseError, ValueError) as exc:
            raise Unauthorized(f"the ID token's signature is not the provider's: {exc}") from exc
        claims = dict(token.claims)
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY,
            iss={"essential": True, "value": provider.issuer},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise Unauthorized(f"the ID token was refused ({exc}): sign in again") from exc
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if provider.client_id not in audiences or (len(audiences) > 1 and claims.get("azp") != provider.client_id):
            raise Unauthorized("the ID token was issued for another client: sign in again")
        return claims

    def _bind(self, provider: OidcProvider, claims: dict[str, Any]) -> tuple[int, str]:
        subject = str(claims["sub"])[:256]
        with self.db.session() as s:
            tenant = s.get(Tenant, provider.tenant_id)
            assert tenant is not None
            system = Principal("system", f"oidc {provider.issuer}"[:200], tenant.id, tenant.name, "admin")
            user = s.scalar(
                select(User)
                .join(UserIdentity, UserIdentity.user_id == User.id)
                .where(UserIdentity.issuer == provider.issuer, UserIdentity.subject == subject, User.tenant_id == tenant.id)
            )
            if user is None:
                user = self._first_sign_in(s, provider, tenant, claims, subject, system)
            return user.id, user.name

    def _first_sign_in(
        self, s: Session, provider: OidcProvider, tenant: Tenant, claims: dict[str, Any], subject: str, system: Principal
    ) -> User:
        if s.scalar(select(UserIdentity.id).where(UserIdentity.issuer == provider.issuer, UserIdentity.subject == subject)):
            raise Unauthorized("this provider account is bound to a user of another tenant")
        name = claims.get(provider.username_claim)
        if not isinstance(name, str) or not _NAME.match(name):
            raise Unauthorized(
                f"the provider's claim {provider.username_claim!r} ({str(name)[:80]!r}) is not a user name here "
                "(1-64 letters, digits, '.', '_' or '-'): ask an admin to choose another username_claim"
            )
        user = s.scalar(select(User).where(User.tenant_id == tenant.id, User.name == name))
        if user is not None:
            taken = s.scalar(
                select(UserIdentity.id).where(UserIdentity.user_id == user.id, UserIdentity.issuer == provider.issuer)
            )
            if taken:
                raise Unauthorized(f"user '{name}' is bound to another account of this provider: ask an admin")
        elif provider.default_role is None:
            audit.record(s, system, "user.login.refused", name, reason="no such user", oidc_subject=subject)
            raise Unauthorized(f"there is no user '{name}' in tenant '{tenant.name}': ask an admin to add you")
        else:
            user = User(tenant_id=tenant.id, name=name, role=provider.default_role)
            s.add(user)
            s.flush()
            audit.record(s, system, "user.create", name, role=user.role, via="oidc")
        s.add(UserIdentity(user_id=user.id, issuer=provider.issuer, subject=subject, created_at=utcnow()))
        s.flush()
        audit.record(s, system, "user.identity.bind", name, issuer=provider.issuer, oidc_subject=subject)
        return user


def _json(row: OidcProvider) -> dict[str, Any]:
    return {
        "issuer": row.issuer,
        "client_id": row.client_id,
        "username_claim": row.username_claim,
        "default_role": row.default_role,
        "client_secret_set": True,
        "updated_by": row.updated_by,
        "updated_at": _aware(row.updated_at).isoformat(),
    }


def _json_or_none(r: httpx.Response) -> dict[str, Any] | None:
    try:
        body = r.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _answer(r: httpx.Response, what: str, url: str) -> dict[str, Any]:
    if r.status_code != 200:
        raise BadGateway(f"the identity provider's {what} answered {r.status_code} ({url})")
    if len(r.content) > MAX_DOCUMENT:
        raise BadGateway(f"the identity provider's {what} is larger than {MAX_DOCUMENT} bytes")
    body = _json_or_none(r)
    if body is None:
        raise BadGateway(f"the identity provider's {what} is not a JSON object ({url})")
    return body
