"""The RAUC adapter against the real RAUC service of the lab: status, install with progress, marks."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkhead.agent.errors import RaucError
from bulkhead.agent.rauc import Rauc, parse_progress, parse_status
from bulkhead.lab.images import build_release
from bulkhead.lab.pki import make_pki
from bulkhead.lab.rauc_service import RaucDevice
from tests.e2e.conftest import need_lab


def test_parse_progress_and_status() -> None:
    assert parse_progress(" 40% Verifying signature done.") == (40, "Verifying signature done.")
    assert parse_progress("installing") is None
    doc = {
        "compatible": "c", "booted": "A", "boot_primary": "rootfs.1",
        "slots": [{"rootfs.1": {"bootname": "B", "state": "inactive", "boot_status": "good",
                                "slot_status": {"bundle": {"version": "2"}, "status": "ok"}}},
                  {"rootfs.0": {"bootname": "A", "state": "booted", "boot_status": "good"}}],
    }  # fmt: skip
    s = parse_status(doc)
    assert (s.booted, s.primary, s.booted_version(), s.slot("B").version) == ("A", "B", None, "2")  # type: ignore[union-attr]


def test_real_service(tmp_path: Path) -> None:
    need_lab()
    pki = make_pki(tmp_path / "pki")
    bundle = build_release(tmp_path, "lab", "2.0", pki.cert, pki.key)
    with RaucDevice(tmp_path / "dev", "lab", pki.ca, slot_size=8 << 20) as dev:
        dev.start("A")
        rauc = Rauc(env=dev.env)
        before = rauc.status()
        assert (before.compatible, before.booted) == ("lab", "A")
        seen: list[int] = []
        rauc.install(str(bundle), lambda pct, _msg: seen.append(pct))
        assert seen[-1] == 100 and seen == sorted(seen)
        after = rauc.status()
        assert after.primary == "B" and after.slot("B").version == "2.0"  # type: ignore[union-attr]
        rauc.mark_good()
        with pytest.raises(RaucError, match="RAUC install failed"):
            broken = tmp_path / "broken.raucb"
            data = bytearray(bundle.read_bytes())
            data[100] ^= 0xFF
            broken.write_bytes(data)
            rauc.install(str(broken))


def test_streaming_is_auto_from_the_installed_rauc(tmp_path: Path) -> None:
    """Debian's RAUC 1.8 cannot stream: `auto` (the default) resolves to downloading first."""
    import shutil as _shutil

    from bulkhead.agent.config import parse_config
    from bulkhead.agent.state import ReleaseRef
    from bulkhead.agent.updater import Updater

    if _shutil.which("rauc") is None:
        pytest.skip("rauc is missing: install the Debian package rauc")
    cfg = parse_config({"server": "http://s", "name": "n", "data_dir": str(tmp_path)}, tmp_path)
    assert cfg.rauc_streaming is None
    rauc = Rauc()
    assert rauc.version() == (1, 8)
    up = Updater(None, rauc, None, None, tmp_path, lambda: None, list, 1.0, lambda: None, streaming=cfg.rauc_streaming)  # type: ignore[arg-type]
    rel = ReleaseRef(1, "2", "c", "a" * 64, 10, "http://s/b", "http://s/dl/x", format="verity")
    assert up.can_stream(rel) is False
    up.streaming = True  # configured on: verity bundles stream, plain ones cannot
    assert up.can_stream(rel) is True and up.can_stream(ReleaseRef(1, "2", "c", "a" * 64, 10, "u", "s")) is False
    with pytest.raises(Exception, match="rauc_streaming"):
        parse_config({"server": "http://s", "name": "n", "data_dir": str(tmp_path), "rauc_streaming": "yes"}, tmp_path)
