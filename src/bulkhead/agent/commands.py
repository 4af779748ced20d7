"""Remote commands on the device: an administrator's command line from the state answer, run once, reported.

One at a time, in a thread of its own (a command may run up to an hour; the agent keeps polling and updating
meanwhile). Before a command starts, its id is written to `commands.json` in the data directory; after its result
reached the server, it is moved to the ids done. A command whose id is still "started" when the agent starts again
(a reboot, a crash while it ran) is reported `interrupted` and never run again. The program runs without a shell
(argv as given), stdin closed, stdout and stderr together; only the first and last 32 KiB are kept in memory
(`bulkhead.protocol.commands.output_text`), whatever the command writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import selectors
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bulkhead.protocol.commands import MAX_OUTPUT_BYTES, CommandStatus, output_text

from .client import Client
from .errors import AgentError, ServerRejected
from .state import write_atomic

__all__ = ["CommandRunner", "run_command"]

log = logging.getLogger(__name__)

FILE_NAME = "commands.json"
_KEEP_DONE = 200  # ids remembered as done (the server lists at most 20 pending per device)


def run_command(argv: list[str], timeout: float, limit: int = MAX_OUTPUT_BYTES) -> tuple[str, int | None, str, bool]:
    """Run `argv`: (status, exit code, output as text, whether output was left out). Beyond `limit` bytes the output
    keeps its first and last halves; the middle is read and dropped."""
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
    except OSError as e:
        return CommandStatus.FAILED, None, f"{argv[0]} could not be started: {e}", False
    assert proc.stdout is not None
    half = limit // 2
    head, tail, total = bytearray(), bytearray(), 0
    deadline = time.monotonic() + timeout
    timed_out = False
    exited_at: float | None = None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now  # a child it left behind may hold the pipe open: read what is there, then stop
            if exited_at is not None and now - exited_at > 0.5:
                break
            left = deadline - now
            if left <= 0 and exited_at is None:
                timed_out = True
                break
            if not sel.select(min(max(left, 0.05), 0.2)):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            total += len(chunk)
            if len(head) < half:
                take = half - len(head)
                head += chunk[:take]
                chunk = chunk[take:]
            tail += chunk
            if len(tail) > half:
                del tail[: len(tail) - half]
    if timed_out:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the whole session: a shell's children too
    proc.stdout.close()
    code = proc.wait()
    text, cut = output_text(bytes(head), bytes(tail), total)
    return (CommandStatus.TIMED_OUT if timed_out else CommandStatus.EXITED), (None if timed_out else code), text, cut


class CommandRunner:
    def __init__(self, client: Client, data_dir: Path) -> None:
        self.client, self.path = client, data_dir / FILE_NAME
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._queued: set[int] = set()
        self._thread: threading.Thread | None = None
        # Commands a stopped agent left running: reported interrupted, only these (not one this agent starts).
        self._leftover = list(self._load()["started"])

    # -- what was started and done, on disk --------------------------------------------
    def _load(self) -> dict[str, list[int]]:
        try:
            doc = json.loads(self.path.read_text())
            return {"started": [int(i) for i in doc.get("started", [])], "done": [int(i) for i in doc.get("done", [])]}
        except (OSError, ValueError, TypeError, AttributeError):
            return {"started": [], "done": []}

    def _save(self, doc: dict[str, list[int]]) -> None:
        doc["done"] = doc["done"][-_KEEP_DONE:]
        write_atomic(self.path, json.dumps(doc).encode(), 0o600)

    def _mark(self, cid: int, state: str) -> None:
        """Record the command as `started`, `done`, or neither (`retry`: a later poll hands it out again)."""
        with self._lock:
            doc = self._load()
            doc["started"] = [i for i in doc["started"] if i != cid] + ([cid] if state == "started" else [])
            doc["done"] = [i for i in doc["done"] if i != cid] + ([cid] if state == "done" else [])
            self._save(doc)

    # -- the agent's loop calls this -----------------------------------------------------
    def handle(self, commands: list[Any]) -> None:
        """Queue the state answer's commands not yet started here; report the ones a stopped agent left running."""
        for cid in list(self._leftover):
            if self._report(cid, {"status": CommandStatus.INTERRUPTED, "output": "the agent stopped while it ran"}) != _RETRY:
                self._mark(cid, "done")
                self._leftover.remove(cid)
        if not commands:
            return
        doc = self._load()
        seen = set(doc["started"]) | set(doc["done"])
        for c in commands:
            if not isinstance(c, dict) or not isinstance(c.get("id"), int) or not isinstance(c.get("argv"), list):
                continue
            cid = c["id"]
            if cid in seen or cid in self._queued or not c["argv"] or not all(isinstance(a, str) for a in c["argv"]):
                continue
            self._queued.add(cid)
            self._queue.put(c)
        with self._lock:
            if self._thread is None:  # one worker for the agent's life: it waits on the queue
                self._thread = threading.Thread(target=self._work, name="commands", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            c = self._queue.get()
            try:
                self._run(c)
            except Exception:
                log.exception("remote command %s", c.get("id"))
            finally:
                self._queued.discard(c["id"])

    def _run(self, c: dict[str, Any]) -> None:
        cid, argv = c["id"], c["argv"]
        timeout = float(c.get("timeout_seconds") or 60)
        self._mark(cid, "started")  # before it runs: a crash from here on reports it interrupted, never runs it twice
        said = self._report(cid, {"status": CommandStatus.RUNNING})
        if said != _TAKEN:
            # Withdrawn meanwhile, or gone (409, 404): not run. The server unreachable: not run now, asked again.
            self._mark(cid, "done" if said == _REFUSED else "retry")
            return
        log.info("remote command %d: %s (at most %.0f s)", cid, " ".join(argv), timeout)
        status, code, text, cut = run_command(argv, timeout)
        body = {"status": status, "exit_code": code, "output": text, "output_truncated": cut}
        for attempt in range(5):  # the result is worth a few tries; after that it stays "started" (interrupted)
            if self._report(cid, body, quiet=attempt < 4) != _RETRY:
                self._mark(cid, "done")
                return
            time.sleep(min(2**attempt, 30))

    def _report(self, cid: int, body: dict[str, Any], quiet: bool = False) -> str:
        """_TAKEN, _REFUSED (the server will never take it: the command is gone or past this status there), or
        _RETRY (it did not get there, or the server failed)."""
        try:
            self.client.request("POST", f"/device/v1/commands/{cid}", body)
            return _TAKEN
        except ServerRejected as e:
            if e.status in (404, 409):
                log.info("remote command %d: the server no longer wants its %s report (%s)", cid, body["status"], e)
                return _REFUSED
            log.warning("remote command %d: the server refused its report: %s", cid, e)
            return _RETRY
        except AgentError as e:
            if not quiet:
                log.warning("remote command %d: its report did not reach the server: %s", cid, e)
            return _RETRY


_TAKEN, _REFUSED, _RETRY = "taken", "refused", "retry"
