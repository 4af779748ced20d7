"""Management API for web UI accounts: an admin sets or resets a user's password (`bulkhead user reset-password`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from ..services.auth import Principal
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
