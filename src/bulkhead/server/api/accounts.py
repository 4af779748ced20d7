"""Management API for web UI accounts: an admin sets or resets a user's password (`bulkhead user reset-password`) and
sets the tenant's OpenID Connect provider for web sign-in (services/oidc.py)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from ..services.auth import Principal
from ..services.oidc import OidcService
from ..services.ui_accounts import MAX_PASSWORD
from .deps import Services, principal, services

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")


class PasswordIn(BaseModel):
    """A user's new web UI password."""

    model_config = ConfigDict(extra="forbid")
    password: str = Field(max_length=MAX_PASSWORD, description="The user's new web UI password (at least 10 characters)")


class PasswordSetOut(BaseModel):
    """The user whose password was set, and how many of their browser sessions ended with it."""

    name: str
    role: str
    password_set: bool
    sessions_ended: int = Field(description="How many of the user's web UI sessions this ended")


@router.put("/users/{name}/password", tags=["users"], response_model=PasswordSetOut)
def set_password(
    name: str, body: PasswordIn, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Set or reset a user's web UI password (admins); every web session of that user ends."""
    assert svc.accounts is not None
    return svc.accounts.set_password(who, name, body.password)


class OidcIn(BaseModel):
    """The tenant's OpenID Connect provider for web sign-in."""

    model_config = ConfigDict(extra="forbid")
    issuer: str = Field(min_length=8, max_length=512, description="the provider's issuer URL (https; http only on this host)")
    client_id: str = Field(min_length=1, max_length=256, description="this server's client id at the provider")
    client_secret: str | None = Field(
        None, min_length=1, max_length=1024, description="its secret (needed the first time; omitted: the stored one stays)"
    )
    username_claim: str = Field(
        "preferred_username", max_length=64, description="the ID token claim that names the user here (first sign-in)"
    )
    default_role: Literal["viewer", "operator", "admin"] | None = Field(
        None, description="the role of a user the provider vouches for who has no account yet (null: existing users only)"
    )


class OidcOut(BaseModel):
    """The tenant's OpenID Connect provider as set (its client secret is stored encrypted and never shown)."""

    issuer: str
    client_id: str
    username_claim: str
    default_role: str | None
    client_secret_set: bool = Field(description="a secret is stored (it is never shown)")
    updated_by: str
    updated_at: str


def _oidc(svc: Services) -> OidcService:
    assert svc.oidc is not None, "the OpenID Connect service is made by create_app"
    return svc.oidc


@router.put("/oidc", tags=["users"], response_model=OidcOut, responses={201: {"model": OidcOut}})
def set_oidc(
    body: OidcIn, response: Response, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Set the tenant's OpenID Connect provider (admins): its users may then sign in to the web UI through it. The
    redirect URI to register at the provider is `<server>/ui/oidc/callback`. Audited `oidc.set`."""
    out, created = _oidc(svc).configure(who, body.model_dump())
    response.status_code = 201 if created else 200
    return out


@router.get("/oidc", tags=["users"], response_model=OidcOut)
def show_oidc(who: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """The tenant's OpenID Connect provider (admins; the secret is never shown)."""
    return _oidc(svc).show(who)


@router.delete("/oidc", tags=["users"], status_code=204)
def delete_oidc(who: Principal = Depends(principal), svc: Services = Depends(services)) -> Response:
    """Stop signing in through the provider (admins); passwords keep working. Audited `oidc.delete`."""
    _oidc(svc).remove(who)
    return Response(status_code=204)
