"""The report path as a lean ASGI app: POST /device/v1/reports parsed once, checked, and written by group commit.

Per report: one parse of the body (the inventory's text fingerprinted as sent), the checks of services/reports.py,
and a place in the next batch (groupcommit.py), which finds each report's device by the hash of the credential it
came with, checks it and locks its row in one statement (no lookup per device, no credential cache that a fleet
larger than the cache would keep missing); the answer is sent after the batch committed. A report whose credential
the process has not yet seen accepted waits for one of a bounded number of places, and if its body is refused, its
credential is checked first, so an unknown or disabled device hears 401 or 403 as on the FastAPI route of the same
path (api/device.py), which documents the contract; errors are the same.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..asgi import Receive, Scope, Send, bearer, send_error
from ..errors import Invalid, PayloadTooLarge, ServerError
from ..groupcommit import GroupCommit
from ..limits import SAME, JsonRefused, parse_json_members
from ..security import PREFIX_DEVICE, hash_token
from ..services.inventory import MAX_INVENTORY_KEYS, Inventory
from ..services.reports import MAX_EVENTS, Report
from .deps import Services

__all__ = ["ReportApp"]

PATH = "/device/v1/reports"
_MAX_REMEMBERED = 200_000  # devices whose last inventory's fingerprint a process keeps (about 200 bytes each)
_UNPROVEN = 64  # reports in flight, per process, whose credential no batch of the process has accepted yet


class _Unprocessable(ServerError):
    """A body of the wrong shape: 422, as FastAPI answers a request that does not fit the route's model."""

    status = 422
    code = "invalid"

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"invalid request: {where}: {problem}")


class ReportApp:
    def __init__(self, svc: Services, max_body: int, setting: str = "BULKHEAD_MAX_JSON_BYTES") -> None:
        self.svc, self.max_body, self.setting = svc, max_body, setting
        self.commits: GroupCommit[Report, int] = GroupCommit(svc.reports.write)
        # Per device, the last inventory it sent that passed the checks (its fingerprint, not its text): the same
        # text again is neither parsed nor checked again (devices resend their inventory unchanged).
        self.inventories: dict[int, Inventory] = {}
        # Credentials (their keys) a batch accepted lately; a report with any other is read only while fewer than
        # _UNPROVEN such reports are in flight, so made-up credentials cannot fill the memory or the batches.
        self.proven: set[int] = set()
        self.unproven = asyncio.Semaphore(_UNPROVEN)

    @staticmethod
    def handles(scope: Scope) -> bool:
        return bool(scope["method"] == "POST" and scope["path"] == PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            token = bearer(scope)
            if token is not None and token.startswith(PREFIX_DEVICE):
                credential = hash_token(token)
                key = _key(credential)
                if key in self.proven:
                    accepted = await self._report(token, credential, key, receive, proven=True)
                else:  # bounded: reports whose credential is not known good hold no more than this much memory
                    async with self.unproven:
                        accepted = await self._report(token, credential, key, receive, proven=False)
            else:  # not a device's: refused by prepare (403), or unknown (401)
                who = self.svc.auth.cached(token)
                if who is None:
                    who = await asyncio.to_thread(self.svc.auth.resolve, token)
                value, raw = _parse(await self._body(receive), None)
                events, inventory = _shape(value)
                accepted = await self.commits.submit(self.svc.reports.prepare(who, events, inventory, raw.get("inventory")))
        except ServerError as exc:
            await send_error(send, exc.status, exc.code, exc.message)
            return
        body = b'{"accepted_seq":%d}' % accepted
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _report(self, token: str, credential: str, key: int, receive: Receive, proven: bool) -> int:
        """Read, check and write a device's report; its accepted seq. The device is found, checked and locked by the
        batch that writes the report."""
        before = self.inventories.get(key)
        try:
            value, raw = _parse(await self._body(receive), before)
            events, sent = _shape(value)
            inventory = Inventory.seen_before(raw["inventory"], before) if sent is SAME and before is not None else sent
            report = self.svc.reports.prepare_sent(credential, events, inventory, raw.get("inventory"))
        except ServerError:
            if not proven:  # an unknown or disabled device hears that first (and a 401 counts against its address)
                await asyncio.to_thread(self._check_device, token)
            raise
        accepted = await self.commits.submit(report)
        # The credential proved good: remembered (unknown ones leave no trace here).
        if len(self.proven) >= _MAX_REMEMBERED:
            self.proven.clear()
        self.proven.add(key)
        self._remember(key, report)
        return accepted

    def _check_device(self, token: str) -> None:
        """Raise the 401 or 403 the device's credential earns, if any."""
        self.svc.reports.prepare(self.svc.auth.resolve(token), [], None)

    def _remember(self, key: int, report: Report) -> None:
        inv = report.inventory
        if inv is None or inv.text is None:
            return
        if len(self.inventories) >= _MAX_REMEMBERED:
            self.inventories.clear()
        self.inventories[key] = Inventory(None, inv.sha256, inv.os_version, None, len(inv.text))

    async def _body(self, receive: Receive) -> bytes:
        """The request body, refused as soon as it passes the limit (limits.BodyLimits leaves this route to us)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Invalid("the client went away before the body was complete")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                limit = f"this route's limit of {self.max_body} bytes (set by {self.setting})"
                raise PayloadTooLarge(f"the request body is larger than {limit}; send less")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _key(credential: str) -> int:
    """A device's key in the process's memory: its credential's hash, shortened (the inventory's own fingerprint
    decides whether a text was seen, so two devices sharing a key would only cost a parse, and a made-up credential
    sharing a proven one's key only skips the bound on unproven reports: the batch still checks the whole hash)."""
    return int(credential[:16], 16)


def _parse(body: bytes, before: Inventory | None) -> tuple[Any, dict[str, str]]:
    if not body.strip():
        raise _Unprocessable("body", "Field required")
    known = {"inventory": (before.length, before.sha256)} if before is not None and before.length is not None else None
    try:
        return parse_json_members(body, known=known)
    except JsonRefused as exc:
        raise Invalid(str(exc)) from None


def _shape(value: Any) -> tuple[list[Any], dict[str, Any] | None]:
    """The report's events and inventory, of the shapes api/device.py's ReportIn declares."""
    if not isinstance(value, dict):
        raise _Unprocessable("body", "Input should be a valid dictionary or object to extract fields from")
    events = value.get("events", [])
    if not isinstance(events, list):
        raise _Unprocessable("body.events", "Input should be a valid list")
    if len(events) > MAX_EVENTS:
        raise _Unprocessable("body.events", f"List should have at most {MAX_EVENTS} items after validation, not {len(events)}")
    for i, e in enumerate(events):
        if not isinstance(e, dict):
            raise _Unprocessable(f"body.events.{i}", "Input should be a valid dictionary")
    inventory = value.get("inventory")
    if inventory is SAME:
        return events, inventory
    if inventory is not None and not isinstance(inventory, dict):
        raise _Unprocessable("body.inventory", "Input should be a valid dictionary")
    if inventory is not None and len(inventory) > MAX_INVENTORY_KEYS:
        raise _Unprocessable(
            "body.inventory", f"Dictionary should have at most {MAX_INVENTORY_KEYS} items after validation, not {len(inventory)}"
        )
    return events, inventory
