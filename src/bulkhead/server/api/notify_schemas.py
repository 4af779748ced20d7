"""Wire models of notifications: subscriptions (webhook or e-mail) and the delivery log."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .wire import Out, Time

__all__ = ["AttemptOut", "DeliveryOut", "SubscriptionIn", "SubscriptionOut", "SubscriptionWithSecret"]

EventKind = Literal[
    "cra.case.deadline", "vuln.kev_exploited", "rollout.paused", "device.rolled_back", "feed.failing",
    "device.integrity_failure", "device.security_event", "device.alert",
]  # fmt: skip


class SubscriptionIn(BaseModel):
    """A new subscription: where to send (a webhook URL or an e-mail address) and which events."""

    model_config = ConfigDict(extra="forbid")
    channel: Literal["webhook", "email"] = Field(description="webhook (HTTP POST, HMAC-signed) or email (SMTP)")
    target: str = Field(min_length=1, max_length=2048, description="the http(s) URL, or the e-mail address")
    # Any strings here: the service names the known kinds when one is not (a clearer error than a schema's).
    events: list[str] = Field(min_length=1, max_length=16, description="event kinds to deliver")


class SubscriptionOut(Out):
    """A subscription (its webhook secret is shown only once, when it is made)."""

    id: int
    channel: Literal["webhook", "email"]
    target: str = Field(description="the URL or e-mail address")
    events: list[EventKind]
    created_by: str
    created_at: Time


class SubscriptionWithSecret(SubscriptionOut):
    """A new subscription; `secret` (webhooks) signs every body: X-Bulkhead-Signature: sha256=HMAC-SHA256(secret, body)."""

    secret: str | None = Field(description="the webhook's HMAC key, shown only now; null for e-mail")


class AttemptOut(Out):
    """One attempt of a delivery."""

    at: Time
    ok: bool
    status_code: int | None = Field(description="the HTTP status or SMTP reply code; null when no answer came")
    error: str | None = Field(description="why it failed (connection error, HTTP or SMTP code)")


class DeliveryOut(Out):
    """One event sent (or being sent) to one subscription, with every attempt."""

    id: int
    uid: str = Field(description="the delivery id sent as X-Bulkhead-Delivery (the same on every retry)")
    subscription_id: int
    event_kind: str
    state: Literal["pending", "delivered", "failed", "skipped"]
    attempts: list[AttemptOut]
    next_attempt_at: Time | None = Field(description="when it is tried again (pending deliveries)")
    created_at: Time
    payload: dict[str, Any] = Field(description="the JSON body sent: kind, tenant, at, summary, data, id")
