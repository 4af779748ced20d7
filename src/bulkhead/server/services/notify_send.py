"""Sending one notification: a webhook POST (HMAC-SHA256 signed body) with httpx, or an e-mail with smtplib.

Each sender returns an `Outcome` (ok, status code, error) and never raises for the remote end's failures; whether to
retry is decided here too (connection errors, HTTP 5xx and SMTP 4xx are worth another attempt).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx

__all__ = ["SIGNATURE_HEADER", "Outcome", "SmtpConfig", "send_email", "send_webhook", "sign"]

SIGNATURE_HEADER = "X-Bulkhead-Signature"  # "sha256=" + hex HMAC-SHA256 of the raw body with the subscription's secret
DELIVERY_HEADER = "X-Bulkhead-Delivery"  # the delivery id (the same on every retry: receivers deduplicate by it)
TIMESTAMP_HEADER = "X-Bulkhead-Timestamp"  # when this attempt was sent, Unix seconds
EVENT_HEADER = "X-Bulkhead-Event"  # the event kind
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    retry: bool = False  # a failure worth another attempt


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 25
    user: str | None = None
    password: str | None = None
    sender: str = "bulkhead@localhost"
    starttls: bool = False


def body_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send_webhook(url: str, secret: str, delivery: str, kind: str, payload: dict[str, Any], now: int) -> Outcome:
    body = body_bytes(payload)
    headers = {
        "content-type": "application/json",
        "user-agent": "bulkhead-notify",
        SIGNATURE_HEADER: sign(secret, body),
        DELIVERY_HEADER: delivery,
        TIMESTAMP_HEADER: str(now),
        EVENT_HEADER: kind,
    }
    try:
        r = httpx.post(url, content=body, headers=headers, timeout=TIMEOUT, follow_redirects=False)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return Outcome(False, None, f"{type(exc).__name__}: {exc}", retry=True)
    if 200 <= r.status_code < 300:
        return Outcome(True, r.status_code)
    return Outcome(False, r.status_code, f"HTTP {r.status_code}", retry=r.status_code >= 500 or r.status_code == 429)


def send_email(cfg: SmtpConfig | None, to: str, kind: str, payload: dict[str, Any], delivery: str) -> Outcome:
    if cfg is None:
        return Outcome(False, None, "no SMTP server configured: set BULKHEAD_SMTP_HOST (and _PORT, _FROM)", retry=True)
    msg = EmailMessage()
    msg["From"], msg["To"] = cfg.sender, to
    msg["Subject"] = f"[Bulkhead] {kind}: {payload.get('summary', '')}"[:200]
    msg["X-Bulkhead-Delivery"] = delivery
    msg.set_content(str(payload.get("summary", kind)) + "\n\n" + json.dumps(payload, indent=2, sort_keys=True) + "\n")
    try:
        with smtplib.SMTP(cfg.host, cfg.port, timeout=10) as smtp:
            if cfg.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if cfg.user:
                smtp.login(cfg.user, cfg.password or "")
            smtp.send_message(msg)
    except smtplib.SMTPResponseException as exc:
        return Outcome(False, exc.smtp_code, f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", retry=400 <= exc.smtp_code < 500)
    except (smtplib.SMTPException, OSError) as exc:
        return Outcome(False, None, f"{type(exc).__name__}: {exc}", retry=True)
    return Outcome(True, 250)
