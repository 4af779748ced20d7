"""`bulkhead cra notify`: notification subscriptions (webhook or e-mail), test events and the delivery log."""

from __future__ import annotations

import typer

from . import output
from .errors import CliError
from .manage import JsonOpt, client, show

__all__ = ["notify_app"]

notify_app = typer.Typer(help="Notifications: webhook and e-mail subscriptions, test events, deliveries.", no_args_is_help=True)

SUBS = "/api/v1/notifications/subscriptions"
_KINDS = (
    "cra.case.deadline, vuln.kev_exploited, rollout.paused, device.rolled_back, feed.failing, device.integrity_failure, "
    "device.security_event, device.alert"
)


@notify_app.command("add")
def notify_add(
    ctx: typer.Context,
    webhook: str | None = typer.Option(None, "--webhook", help="An http(s) URL to POST signed JSON to"),
    email: str | None = typer.Option(None, "--email", help="An e-mail address (the server's BULKHEAD_SMTP_* settings)"),
    events: list[str] = typer.Option(..., "--event", "-e", help=f"An event kind (repeatable): {_KINDS}"),
    json: bool = JsonOpt,
) -> None:
    """Subscribe a webhook or an e-mail address (admins; audited). A webhook's secret is shown once: keep it."""
    if (webhook is None) == (email is None):
        raise CliError("give exactly one of --webhook URL or --email ADDRESS")
    channel, target = ("webhook", webhook) if webhook is not None else ("email", email)
    sub = client(ctx).request("POST", SUBS, json={"channel": channel, "target": target, "events": events})
    show(sub, json, title=f"subscription {sub['id']}")
    if not json and sub.get("secret"):
        output.line("Keep the secret: it is not shown again. Verify X-Bulkhead-Signature with it (docs/cra.md).")


@notify_app.command("list")
def notify_list(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """The tenant's subscriptions."""
    show(client(ctx).request("GET", SUBS), json, ["id", "channel", "target", "events", "created_by", "created_at"])


@notify_app.command("remove")
def notify_remove(
    ctx: typer.Context, sub_id: int = typer.Argument(..., help="The subscription's id"), json: bool = JsonOpt
) -> None:
    """Remove a subscription and its delivery log (admins; audited)."""
    client(ctx).request("DELETE", f"{SUBS}/{sub_id}")
    show({"removed": sub_id}, json)


@notify_app.command("test")
def notify_test(
    ctx: typer.Context, sub_id: int = typer.Argument(..., help="The subscription's id"), json: bool = JsonOpt
) -> None:
    """Send a test event now; shows the delivery and its attempt (exit 0 even when the receiver refused it)."""
    d = client(ctx).request("POST", f"{SUBS}/{sub_id}/test")
    show(d, json, title=f"delivery {d['uid']}")


@notify_app.command("deliveries")
def notify_deliveries(
    ctx: typer.Context,
    subscription: int | None = typer.Option(None, "--subscription", help="Only this subscription's deliveries"),
    limit: int = typer.Option(100, "--limit", min=1, max=1000, help="At most this many, newest first"),
    json: bool = JsonOpt,
) -> None:
    """The delivery log, newest first: state, and every attempt's status code or error."""
    params: dict[str, int] = {"limit": limit}
    if subscription is not None:
        params["subscription"] = subscription
    rows = client(ctx).request("GET", "/api/v1/notifications/deliveries", params=params)
    if json:
        output.emit_json(rows)
        return
    flat = [
        {**r, "attempts": len(r["attempts"]), "last": (r["attempts"][-1]["error"] or r["attempts"][-1]["status_code"])
         if r["attempts"] else None}
        for r in rows
    ]  # fmt: skip
    show(flat, False, ["id", "subscription_id", "event_kind", "state", "attempts", "last", "next_attempt_at", "created_at"])
