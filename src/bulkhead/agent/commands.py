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
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if not sel.select(min(left, 1.0)):
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
        self._interrupted_reported = False

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

    def _mark(self, cid: int, started: bool) -> None:
        with self._lock:
            doc = self._load()
            if started:
                doc["started"] = [*doc["started"], cid]
            else:
                doc["started"] = [i for i in doc["started"] if i != cid]
                doc["done"] = [*[i for i in doc["done"] if i != cid], cid]
            self._save(doc)

    # -- the agent's loop calls this -----------------------------------------------------
    def handle(self, commands: list[Any]) -> None:
        """Queue the state answer's commands not yet started here; report the ones a stopped agent left running."""
        if not self._interrupted_reported:
            for cid in self._load()["started"]:
                if self._report(cid, {"status": CommandStatus.INTERRUPTED, "output": "the agent stopped while it ran"}):
                    self._mark(cid, started=False)
            self._interrupted_reported = not self._load()["started"]
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
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="commands", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            try:
                c = self._queue.get(timeout=5)
            except queue.Empty:
                return
            try:
                self._run(c)
            except Exception:
                log.exception("remote command %s", c.get("id"))
            finally:
                self._queued.discard(c["id"])

    def _run(self, c: dict[str, Any]) -> None:
        cid, argv = c["id"], c["argv"]
        timeout = float(c.get("timeout_seconds") or 60)
        self._mark(cid, started=True)  # before it runs: a crash from here on reports it interrupted, never runs it twice
        if not self._report(cid, {"status": CommandStatus.RUNNING}):
            self._mark(cid, started=False)  # withdrawn meanwhile (409) or gone: not run
            return
        log.info("remote command %d: %s (at most %.0f s)", cid, " ".join(argv), timeout)
        status, code, text, cut = run_command(argv, timeout)
        body = {"status": status, "exit_code": code, "output": text, "output_truncated": cut}
        for attempt in range(5):  # the result is worth a few tries; after that it stays "started" (interrupted)
            if self._report(cid, body, quiet=attempt < 4):
                self._mark(cid, started=False)
                return
            time.sleep(min(2**attempt, 30))

    def _report(self, cid: int, body: dict[str, Any], quiet: bool = False) -> bool:
        """True when the server took it (or will never take it: the command is gone or finished there)."""
        try:
            self.client.request("POST", f"/device/v1/commands/{cid}", body)
            return True
        except ServerRejected as e:
            if e.status in (404, 409):
                log.info("remote command %d: the server no longer wants its %s report (%s)", cid, body["status"], e)
                return bool(body["status"] != CommandStatus.RUNNING)
            log.warning("remote command %d: the server refused its report: %s", cid, e)
            return False
        except AgentError as e:
            if not quiet:
                log.warning("remote command %d: its report did not reach the server: %s", cid, e)
            return False
