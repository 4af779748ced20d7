"""Reports buffered on disk: events get a sequence number and are kept until the server acknowledges them."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from bulkhead.protocol import bounded_details

from .client import Client
from .errors import BadResponse, ServerRejected
from .inventory import digest
from .state import write_atomic

__all__ = ["Outbox"]

BATCH = 200
MAX_BUFFERED = 10_000  # oldest events are dropped beyond this (a device offline for months)
TAIL_BYTES = 64 * 1024


class Outbox:
    """`events.jsonl` (append + fsync) and `inventory.json` (latest, with the digest last acknowledged)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.events_path = directory / "events.jsonl"
        self.seq_path = directory / "seq"
        self.inventory_path = directory / "inventory.json"
        self.sent_path = directory / "inventory.sent"

    def _recorded_seq(self) -> int:
        try:
            return int(self.seq_path.read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def _last_buffered_seq(self) -> int:
        """The seq of the last complete event in `events.jsonl` (read from its tail), 0 if there is none."""
        try:
            with self.events_path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - TAIL_BYTES))
                tail = f.read()
        except FileNotFoundError:
            return 0
        lines = tail.splitlines()
        if size > TAIL_BYTES:
            lines = lines[1:]  # the first one is probably cut by the seek
        for line in reversed(lines):
            try:
                return int(json.loads(line)["seq"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a power failure
        return max((int(e["seq"]) for e in self.pending()), default=0) if size > TAIL_BYTES else 0

    def add(self, kind: str, phase: str | None = None, release_id: int | None = None, **details: Any) -> None:
        """Append an event (fsync'd), then record its seq.

        In that order a kill between the two steps cannot lose a number: the next seq is one past the larger
        of the recorded one and the last buffered event's (a seq taken before its event was on disk would leave
        a gap the server cannot tell from a lost report).
        """
        seq = max(self._recorded_seq(), self._last_buffered_seq()) + 1
        event = {
            "seq": seq,
            "kind": kind,
            "phase": phase,
            "release_id": release_id,
            "details": bounded_details(details),
            "at": dt.datetime.now(dt.UTC).isoformat(),
        }
        with self.events_path.open("a+") as f:
            f.seek(0, os.SEEK_END)
            if f.tell():
                f.seek(f.tell() - 1)
                if f.read(1) != "\n":  # a line cut short by a power failure: do not glue the next event onto it
                    f.write("\n")
            f.write(json.dumps(event) + "\n")
            f.flush()
            os.fsync(f.fileno())
        write_atomic(self.seq_path, str(seq).encode())

    def pending(self) -> list[dict[str, Any]]:
        try:
            lines = self.events_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines[-MAX_BUFFERED:]:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a power failure
        return out

    def set_inventory(self, inventory: dict[str, Any]) -> None:
        if self._sent_digest() != digest(inventory):
            write_atomic(self.inventory_path, json.dumps(inventory).encode())

    def _sent_digest(self) -> str | None:
        try:
            return self.sent_path.read_text().strip()
        except FileNotFoundError:
            return None

    def flush(self, client: Client) -> int:
        """Send what is buffered; returns the number of events acknowledged. Raises ServerUnreachable when offline."""
        events = self.pending()
        inventory = None
        if self.inventory_path.exists():
            inventory = json.loads(self.inventory_path.read_text())
        sent = 0
        while events or inventory is not None:
            batch, events = events[:BATCH], events[BATCH:]
            try:
                r = client.request("POST", "/device/v1/reports", {"events": batch, "inventory": inventory})
            except ServerRejected as e:
                if e.status in (401, 403):
                    raise
                # The server cannot take this batch (e.g. an older server that does not know an event kind):
                # drop it rather than block every later report behind it.
                self._drop_through(max((ev["seq"] for ev in batch), default=0))
                self.inventory_path.unlink(missing_ok=True)
                raise
            accepted = r.json().get("accepted_seq", 0)
            if isinstance(accepted, bool) or not isinstance(accepted, int):
                raise BadResponse(f"the reports answer has no integer accepted_seq: {accepted!r}")
            sent += len(batch)
            if inventory is not None:
                write_atomic(self.sent_path, digest(inventory).encode())
                self.inventory_path.unlink(missing_ok=True)
                inventory = None
            self._drop_through(accepted)
        return sent

    def _drop_through(self, seq: int) -> None:
        pending = self.pending()
        last = max((e["seq"] for e in pending), default=0)
        if last > self._recorded_seq():  # killed between an append and its seq record: keep the number taken
            write_atomic(self.seq_path, str(last).encode())
        remaining = [e for e in pending if e["seq"] > seq]
        write_atomic(self.events_path, "".join(json.dumps(e) + "\n" for e in remaining).encode(), 0o644)
