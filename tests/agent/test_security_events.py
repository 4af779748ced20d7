"""Security events (CRA Annex I): the agent reports a refused bundle, a tampered download, a rejected credential,
an unexpected slot change and a rollback as events of kind `security`, once each, kept on disk until acknowledged."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bulkhead.agent.agent import Agent
from bulkhead.agent.client import Client
from bulkhead.agent.config import AgentConfig, PodmanConfig
from bulkhead.agent.errors import IntegrityError, RaucError, ServerRejected
from bulkhead.agent.outbox import Outbox
from bulkhead.agent.security import rauc_refusal
from bulkhead.agent.state import Phase, ReleaseRef, StateStore, UpdateState
from bulkhead.agent.updater import Updater
from bulkhead.protocol import MAX_SECURITY_MESSAGE, SecurityEvent

from .fakes import FakeRauc
from .httpd import Answer, Request, serve

# RAUC 1.8's own words (captured from `rauc install` / `rauc info` here): a bundle with flipped payload bytes, and
# one signed by a key the keyring does not trust.
TAMPERED = (
    "RAUC install failed: signature verification failed: error:1700009E:CMS routines::verification failure | "
    "80FF537D727F0000:error:1700006D:CMS routines:CMS_verify:content verify error:../crypto/cms/cms_smime.c:455:"
)
UNTRUSTED = (
    "RAUC install failed: signature verification failed: error:06880006:asn1 encoding routines::EVP lib | "
    "803F7A03697F0000:error:17000064:CMS routines:cms_signerinfo_verify_cert:certificate verify error"
)


def test_rauc_refusals_are_told_from_other_install_errors() -> None:
    assert rauc_refusal(TAMPERED) and rauc_refusal(UNTRUSTED)
    assert rauc_refusal("RAUC install failed: Failed to verify bundle: verity hash mismatch at block 12")
    assert not rauc_refusal("RAUC install failed: Compatible mismatch: Expected 'a' but bundle manifest has 'b'")
    assert not rauc_refusal("RAUC install failed: Verifying bundle signature... | Failed writing slot: No space left on device")
    assert not rauc_refusal("RAUC install failed: slot hook: Child process exited with code 3")


class RefusingRauc(FakeRauc):
    error: str = TAMPERED

    def install(self, source: str, on_progress: Callable[[int, str], None] | None = None) -> None:
        raise RaucError(self.error)


def _release(body: bytes, url: str = "http://127.0.0.1:9/bundle") -> ReleaseRef:
    return ReleaseRef(7, "2.0", "lab", hashlib.sha256(body).hexdigest(), len(body), url)


def _updater(tmp_path: Path, rauc: FakeRauc, client: Client | None = None) -> Updater:
    return Updater(
        client or Client("http://127.0.0.1:9"), rauc, StateStore(tmp_path / "update-state.json"), Outbox(tmp_path / "outbox"),
        tmp_path / "downloads", lambda: None, lambda: [], 5.0, lambda: None, slot_path=tmp_path / "booted-slot",
    )  # fmt: skip


def _security(outbox: Outbox) -> list[dict[str, Any]]:
    return [e for e in outbox.pending() if e["kind"] == "security"]


def test_a_bundle_rauc_refuses_is_one_security_event_with_raucs_words(tmp_path: Path) -> None:
    body = b"bundle bytes"
    rel = _release(body)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / f"{rel.sha256}.raucb").write_bytes(body)  # downloaded and verified already
    up = _updater(tmp_path, RefusingRauc())
    with pytest.raises(RaucError):
        up.step(rel)
    [ev] = _security(up.outbox)
    assert ev["details"]["event"] == SecurityEvent.SIGNATURE_REFUSED and ev["release_id"] == 7
    assert ev["details"]["version"] == "2.0" and "signature verification failed" in ev["details"]["message"]
    assert ev["phase"] is None and ev["at"] and ev["details"]["sha256"] == rel.sha256  # the bundle RAUC refused
    update = [e for e in up.outbox.pending() if e["kind"] == "update"]
    assert update[-1]["phase"] == "failure"  # the update event says it failed, as before
    up.step(rel)  # given up: not installed again, so not reported again
    assert len(_security(up.outbox)) == 1
    # Kept on disk until the server acknowledges it: a restarted agent (a new outbox on the same directory) has it.
    assert _security(Outbox(tmp_path / "outbox")) == [ev]


def test_a_long_message_is_bounded(tmp_path: Path) -> None:
    rauc = RefusingRauc()
    rauc.error = TAMPERED + " | " + "x" * 5000
    body = b"other bytes"
    rel = _release(body)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / f"{rel.sha256}.raucb").write_bytes(body)
    up = _updater(tmp_path, rauc)
    with pytest.raises(RaucError):
        up.step(rel)
    [ev] = _security(up.outbox)
    assert len(ev["details"]["message"]) == MAX_SECURITY_MESSAGE and ev["details"]["message"].endswith("...")


def test_an_install_error_that_is_not_a_refusal_is_no_security_event(tmp_path: Path) -> None:
    rauc = RefusingRauc()
    rauc.error = "RAUC install failed: Failed writing slot: No space left on device"
    body = b"bundle"
    rel = _release(body)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / f"{rel.sha256}.raucb").write_bytes(body)
    up = _updater(tmp_path, rauc)
    with pytest.raises(RaucError):
        up.step(rel)
    assert _security(up.outbox) == []


def test_a_download_that_does_not_match_its_sha256_is_a_tampered_bundle_once(tmp_path: Path) -> None:
    good = b"the bundle the server announced" * 10
    bad = bytearray(good)
    bad[40] ^= 0xFF

    def handler(r: Request) -> Answer:
        return Answer(200, bytes(bad), [("etag", '"x"')])

    with serve(handler) as url:
        up = _updater(tmp_path, FakeRauc(), Client(url))
        up.sleep = lambda s: None
        rel = _release(good, url + "/bundle")
        for _ in range(2):  # the main loop tries again at its next pass: still one event
            with pytest.raises(IntegrityError):
                up.step(rel)
    [ev] = _security(up.outbox)
    assert ev["details"]["event"] == SecurityEvent.TAMPERED_BUNDLE and ev["release_id"] == 7
    assert "do not match sha256" in ev["details"]["message"]
    assert ev["details"]["sha256"] == rel.sha256 and ev["details"]["artifact"] == "full bundle"


def test_a_boot_into_a_slot_no_update_asked_for_is_reported_once(tmp_path: Path) -> None:
    rauc = FakeRauc(versions={"A": "1.0", "B": "0.9"})
    up = _updater(tmp_path, rauc)
    up.step(None)
    assert _security(up.outbox) == []  # the first slot seen is the known one
    rauc.booted = "B"  # someone switched slots (a bootloader command, another tool)
    up.step(None)
    up.step(None)
    up2 = _updater(tmp_path, rauc)  # a restarted agent does not report it again
    up2.step(None)
    [ev] = _security(up.outbox)
    assert ev["details"]["event"] == SecurityEvent.UNEXPECTED_SLOT_CHANGE
    assert ev["details"]["slot"] == "B" and ev["details"]["expected_slot"] == "A" and ev["details"]["version"] == "0.9"


def test_an_update_of_the_agents_own_changes_slot_without_a_security_event(tmp_path: Path) -> None:
    rauc = FakeRauc()
    up = _updater(tmp_path, rauc)
    up.step(None)
    rel = _release(b"v2")
    state = UpdateState(Phase.VERIFYING, rel, from_slot="A", target_slot="B")
    up.store.save(state)
    rauc.booted, rauc.versions["B"] = "B", "2.0"
    up.step(rel)  # health checks pass: success, and B is now the known slot
    up.step(None)
    assert _security(up.outbox) == []
    assert (tmp_path / "booted-slot").read_text() == "B"


def test_a_rollback_is_a_security_event(tmp_path: Path) -> None:
    rauc = FakeRauc()
    up = _updater(tmp_path, rauc)
    rel = _release(b"v2")
    up.store.save(UpdateState(Phase.ROLLING_BACK, rel, from_slot="A", target_slot="B", reason="health check failed: x"))
    up.resume_after_start()  # back on A after the reboot
    [ev] = _security(up.outbox)
    assert ev["details"]["event"] == SecurityEvent.HEALTH_ROLLBACK and ev["release_id"] == 7
    up.step(None)
    assert len(_security(up.outbox)) == 1  # back on the known slot: nothing unexpected


def test_a_credential_the_server_rejects_is_one_security_event(tmp_path: Path) -> None:
    def handler(r: Request) -> Answer:
        return Answer(401, b'{"error":"unauthorized","message":"unknown credential"}', [("content-type", "application/json")])

    with serve(handler) as url:
        cfg = AgentConfig(
            server=url, data_dir=tmp_path / "data", name="d", compatible="lab",
            files_root=tmp_path / "root", podman=PodmanConfig(enabled=False), os_release=tmp_path / "os-release",
        )  # fmt: skip
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "credential").write_text("old-credential")
        agent = Agent(cfg)
        for _ in range(3):
            with pytest.raises(ServerRejected):
                agent.poll()
    [ev] = _security(agent.outbox)
    assert ev["details"]["event"] == SecurityEvent.CREDENTIAL_REJECTED and "401" in ev["details"]["message"]
    assert ev["release_id"] is None


def test_a_security_event_survives_an_offline_period_and_a_reboot_and_is_stored_once(tmp_path: Path) -> None:
    """Reported while the server is unreachable, kept through a restart (a new outbox on the same directory), sent
    when the server is back, and not stored twice when the same batch arrives again (the agent missed the answer)."""
    from bulkhead.agent.errors import ServerUnreachable
    from tests.live import free_port, live_server

    outbox = Outbox(tmp_path / "outbox")
    rauc = FakeRauc()
    up = Updater(
        Client("http://127.0.0.1:9"), rauc, StateStore(tmp_path / "update-state.json"), outbox, tmp_path / "downloads",
        lambda: None, lambda: [], 5.0, lambda: None, slot_path=tmp_path / "booted-slot",
    )  # fmt: skip
    up.step(None)
    rauc.booted = "B"
    up.step(None)  # the slot changed while the device was offline
    offline = Client(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ServerUnreachable):
        outbox.flush(offline)
    [pending] = _security(outbox)

    with live_server(tmp_path / "server", http_server="uvicorn") as srv:
        admin = srv.tenant(keyring=False)
        with srv.client(admin) as c:
            boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()["token"]
            cred = c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": "d", "compatible": "lab"}).json()
            online = Client(srv.url)
            online.credential = cred["credential"]
            rebooted = Outbox(tmp_path / "outbox")  # after a reboot: what is on disk
            assert rebooted.flush(online) == 1 and rebooted.pending() == []
            again = online.request("POST", "/device/v1/reports", {"events": [pending], "inventory": None})
            assert again.json() == {"accepted_seq": pending["seq"]}
            [stored] = c.get("/api/v1/devices/d/security-events").json()
            assert stored["kind"] == "unexpected_slot_change" and stored["seq"] == pending["seq"]
            assert stored["details"] == {"slot": "B", "expected_slot": "A"}
