"""RAUC streams a verity bundle from its signed URL itself; when it cannot, the agent downloads the bundle, installs
that, and tells the server why (a device whose streams always fail costs the whole bundle every time).

RAUC streaming needs device-mapper and NBD, which this machine's kernel does not offer: the QEMU device test
(tests/osbuild/test_qemu_device.py) streams for real. Here RAUC is the stand-in of tests/agent/fakes.py, failing
a stream with the words RAUC 1.13 used in that test's guest before dm-verity was loaded at boot."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from bulkhead.agent.client import Client
from bulkhead.agent.errors import RaucError
from bulkhead.agent.outbox import Outbox
from bulkhead.agent.state import Phase, ReleaseRef, StateStore
from bulkhead.agent.updater import Updater

from .fakes import FakeRauc
from .httpd import Answer, Request, serve

NO_DM_VERITY = (
    "RAUC install failed: 100% Installing failed. | LastError: Failed mounting bundle: Failed to load dm table: "
    "Argument list too long, check DM_VERITY, DM_CRYPT or CRYPTO_AES kernel options."
)


class NoStreamRauc(FakeRauc):
    """RAUC 1.13 whose streams fail (as above) and whose installs of a downloaded bundle succeed."""

    def version(self) -> tuple[int, int] | None:
        return (1, 13)

    def install(self, source: str, on_progress: Callable[[int, str], None] | None = None) -> None:
        if source.startswith("http"):
            raise RaucError(NO_DM_VERITY)
        super().install(source, on_progress)


def test_a_stream_rauc_cannot_mount_is_downloaded_installed_and_reported(tmp_path: Path) -> None:
    body = b"a verity bundle" * 1000

    def handler(r: Request) -> Answer:
        return Answer(200, body, [("etag", '"v"')])

    with serve(handler) as url:
        rauc = NoStreamRauc()
        up = Updater(
            Client(url), rauc, StateStore(tmp_path / "update-state.json"), Outbox(tmp_path / "outbox"),
            tmp_path / "downloads", lambda: None, lambda: [], 5.0, lambda: None, streaming=None,
        )  # fmt: skip
        rel = ReleaseRef(7, "2.0", "lab", hashlib.sha256(body).hexdigest(), len(body), url + "/bundle",
                         signed_url=url + "/dl/x?s=1", format="verity")  # fmt: skip
        assert up.can_stream(rel)  # RAUC 1.13: the agent hands RAUC the signed URL first
        up.step(rel)
    downloaded = tmp_path / "downloads" / f"{rel.sha256}.raucb"
    assert rauc.installed == [str(downloaded)] and downloaded.read_bytes() == body
    assert up.store.load().phase is Phase.REBOOTING and up.store.load().artifact == "full"
    said = [e["details"].get("message", "") for e in up.outbox.pending() if e["kind"] == "update"]
    [why] = [m for m in said if "could not stream" in m]
    assert why.startswith("RAUC could not stream the bundle, downloading it instead: ")
    assert "Failed to load dm table: Argument list too long" in why
