"""Delta bundles installed by Debian's real RAUC 1.8 service (lab slots, plain bundles: no dm-verity here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkhead.delta.bundle import create_delta_bundle, read_delta_info
from bulkhead.delta.errors import DeltaError
from bulkhead.lab.pki import make_pki
from bulkhead.lab.rauc_service import RaucDevice
from bulkhead.rauc import FileReader, load_keyring, open_bundle
from tests.delta.conftest import damaged_delta, ext4, full_bundle
from tests.e2e.conftest import need_lab

SLOT = 16 << 20


def _device(tmp_path: Path, name: str, ca: Path, source: Path) -> RaucDevice:
    dev = RaucDevice(tmp_path / name, "delta-lab", ca, slot_size=SLOT)
    dev.root.mkdir(parents=True)
    with dev.slot("A").open("wb") as f:  # slot A holds v1, as after a full install of it
        f.write(source.read_bytes())
        f.truncate(SLOT)
    dev.start("A")
    return dev


def test_delta_bundle_installs_with_real_rauc_and_refuses_wrong_sources(tmp_path: Path) -> None:
    need_lab()
    pki = make_pki(tmp_path / "pki")
    v1, v2 = ext4(tmp_path, 1), ext4(tmp_path, 2)
    full1 = full_bundle(tmp_path, v1, "1", pki.cert, pki.key)
    full2 = full_bundle(tmp_path, v2, "2", pki.cert, pki.key)
    delta = tmp_path / "delta-1-2.raucb"
    keyring = load_keyring(pki.ca.read_bytes())
    manifest, stats = create_delta_bundle(full1, full2, delta, pki.cert.read_bytes(), pki.key.read_bytes(), keyring, fmt="plain")
    assert manifest.version == "2" and manifest.images[0].hooks == ("install",)
    assert delta.stat().st_size < full2.stat().st_size / 4, (delta.stat().st_size, full2.stat().st_size, stats)
    with FileReader(delta) as r:
        info = read_delta_info(open_bundle(r))
    assert info is not None and info.version == "2"
    assert info.images[0].header.source_size == v1.stat().st_size
    with FileReader(full2) as r:
        assert read_delta_info(open_bundle(r)) is None

    # the device on v1 installs the delta: slot B holds exactly v2 and becomes primary
    with _device(tmp_path, "good", pki.ca, v1) as dev:
        res = dev.install(delta)
        assert res.returncode == 0, res.stderr + (dev.root / "rauc-service.log").read_text()[-2000:]
        assert dev.slot("B").read_bytes()[: v2.stat().st_size] == v2.read_bytes()
        assert dev.primary() == "B"

    # a device whose booted slot was modified: refused before anything is written, slot A stays primary
    with _device(tmp_path, "modified", pki.ca, v1) as dev:
        with dev.slot("A").open("r+b") as f:
            f.seek(1 << 20)
            f.write(b"tampered")
        before_b = dev.slot("B").read_bytes()
        res = dev.install(delta)
        assert res.returncode != 0
        log = (dev.root / "rauc-service.log").read_text()
        assert "not the image this patch was made from" in log
        assert dev.slot("B").read_bytes() == before_b
        assert not (dev.root / "boot" / "primary").exists() or dev.primary() == "A"

    # a damaged patch that is still signed (a broken generator): the target's sha256 stops it
    bad = damaged_delta(tmp_path, v1, v2, "2", pki.cert, pki.key)
    with _device(tmp_path, "damaged", pki.ca, v1) as dev:
        res = dev.install(bad)
        assert res.returncode != 0
        assert "patch" in (dev.root / "rauc-service.log").read_text()
        assert not (dev.root / "boot" / "primary").exists() or dev.primary() == "A"

    # a bit flipped in transit: RAUC's signature check refuses the bundle itself
    flipped = tmp_path / "flipped.raucb"
    data = bytearray(delta.read_bytes())
    data[len(data) // 3] ^= 0xFF
    flipped.write_bytes(bytes(data))
    with _device(tmp_path, "flipped", pki.ca, v1) as dev:
        assert dev.install(flipped).returncode != 0
        assert not (dev.root / "boot" / "primary").exists() or dev.primary() == "A"


def test_create_refuses_mismatched_bundles(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    v1 = ext4(tmp_path, 1)
    a = full_bundle(tmp_path, v1, "1", pki.cert, pki.key)
    other = tmp_path / "o"
    other.mkdir()
    b = full_bundle(other, v1, "2", pki.cert, pki.key, compatible="other-board")
    out = tmp_path / "d.raucb"
    with pytest.raises(DeltaError, match="different devices"):
        create_delta_bundle(a, b, out, pki.cert.read_bytes(), pki.key.read_bytes())
    with pytest.raises(DeltaError, match="both bundles have version 1"):
        create_delta_bundle(a, a, out, pki.cert.read_bytes(), pki.key.read_bytes())
    with pytest.raises(DeltaError, match="does not exist"):
        create_delta_bundle(tmp_path / "nope.raucb", a, out, pki.cert.read_bytes(), pki.key.read_bytes())
    assert not out.exists()
