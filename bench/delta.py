"""Delta updates side by side on real image pairs (bench/delta_images.py builds them with mmdebstrap).

For each pair, in one run:
- full bundle: the new release's signed verity bundle as the reference builder made it (zstd squashfs);
- RAUC adaptive: computed exactly from the new image's block-hash-index (4 KiB blocks) against the old
  image's blocks: the bundle's squashfs blocks (128 KiB, zstd) holding any missing 4 KiB block are what
  RAUC's streaming reads (it fetches whole squashfs blocks through its HTTP Range NBD backend);
- casync (64 KiB average chunks, the old image as seed): the compressed chunks the seed lacks;
- xdelta3 -9 -B <image size>, zstd -19 --long=31 --patch-from, and Bulkhead's patch.

Bytes, generation time, apply time and the applier's peak memory (GNU time's max RSS), written to
bench/results/delta.md. Apply of each tool is timed against a full install's work on this machine:
RAUC writing the image from the bundle (`unsquashfs` of the image: a floor), and, with `--rauc` (root,
Debian's rauc and dbus), the real thing: Debian's RAUC 1.8 service installing a plain copy of the full
bundle and the Bulkhead delta bundle into file-backed slots (the lab's RaucDevice; no dm-verity here).
Run: `.venv/bin/python bench/delta.py [--pairs security,packages]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import CACHE, write_result
from delta_images import PAIRS, Pair, image

from bulkhead.delta import patch as patch_module
from bulkhead.delta.patch import sha256_prefix
from bulkhead.rauc import FileReader, open_bundle


def sha256(path: Path) -> str:
    return sha256_prefix(str(path), path.stat().st_size)


PY = sys.executable


@dataclass
class Row:
    method: str
    size: int
    gen_s: float | None = None
    apply_s: float | None = None
    apply_mib: float | None = None
    note: str = ""


def timed(cmd: list[str], **kw: object) -> tuple[float, float]:
    """Run under GNU time; return (seconds, peak RSS in MiB)."""
    t = time.monotonic()
    res = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    secs = time.monotonic() - t
    if res.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {res.stderr[-800:]}")
    rss_kib = int(res.stderr.strip().splitlines()[-1])
    return secs, rss_kib / 1024


def rauc_adaptive(old: Path, new: Path, bundle: Path) -> int:
    """Bytes RAUC's block-hash-index adaptive mode fetches: every squashfs data block of the bundle that
    holds a 4 KiB block of the new image the old slot lacks (by hash), plus the index and metadata."""
    have = set()
    with old.open("rb") as f:
        while chunk := f.read(4096):
            have.add(hashlib.sha256(chunk).digest())
    with FileReader(bundle) as r:
        b = open_bundle(r)
        fs = b.squashfs()
        name = b.manifest.images[0].filename
        stored = fs.data_blocks(name)  # bytes in the bundle of each squashfs block of the image
        block_size = fs.block_size
        index_size = fs.stat(name + ".block-hash-index").size
    need_blocks = set()
    with new.open("rb") as f:
        pos = 0
        while chunk := f.read(4096):
            if hashlib.sha256(chunk).digest() not in have:
                need_blocks.add(pos // block_size)
            pos += len(chunk)
    return int(sum(stored[i] for i in need_blocks if i < len(stored)) + index_size)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", default=",".join(p.name for p in PAIRS))
    ap.add_argument("--rauc", action="store_true", help="also time real RAUC installs of the full and the delta bundle")
    args = ap.parse_args()
    rows_out = [["pair", "method", "bytes", "% of full", "generate s", "apply s", "apply peak MiB"]]
    notes = []
    for pair in PAIRS:
        if pair.name not in args.pairs.split(","):
            continue
        rows, info = run_pair(pair, args.rauc)
        full = rows[0].size
        for r in rows:
            rows_out.append([
                pair.name, r.method, f"{r.size:,}", f"{100 * r.size / full:.1f}",
                "" if r.gen_s is None else f"{r.gen_s:.1f}", "" if r.apply_s is None else f"{r.apply_s:.1f}",
                "" if r.apply_mib is None else f"{r.apply_mib:.0f}",
            ])  # fmt: skip
        notes.append(f"- {pair.name}: {pair.what}; {info}")
    chosen = args.pairs.split(",")
    name = "delta" if set(chosen) >= {p.name for p in PAIRS} else "delta-" + "-".join(chosen)  # a subset: its own file
    write_result(name, "Delta updates: bytes to download, generation and apply cost", rows_out, "\n".join(notes))


def rauc_installs(work: Path, old: Path, new: Path, patch: Path) -> tuple[float, float, int]:
    """Seconds for Debian's RAUC service to install a plain full bundle of `new`, and the delta bundle carrying
    `patch`, into a slot next to a slot holding `old`; and the plain full bundle's size."""
    from bulkhead.delta.bundle import HOOK_NAME
    from bulkhead.lab.pki import make_pki
    from bulkhead.lab.rauc_service import RaucDevice
    from bulkhead.rauc import Image, Manifest, create_bundle

    pki = make_pki(CACHE / "pki")
    bundles = {}
    for kind in ("full", "delta"):
        content = work / f"rauc-{kind}"
        content.mkdir()
        if kind == "full":
            os.link(new, content / "rootfs.ext4")
            img = Image(slotclass="rootfs", filename="rootfs.ext4")
            manifest = Manifest(compatible="bench-delta", version="2", images=(img,))
        else:
            os.link(patch, content / "rootfs.ext4.bhdelta")
            shutil.copy(str(patch_module.__file__), content / HOOK_NAME)
            (content / HOOK_NAME).chmod(0o755)
            img = Image(slotclass="rootfs", filename="rootfs.ext4.bhdelta", hooks=("install",))
            manifest = Manifest(compatible="bench-delta", version="2", hook_filename=HOOK_NAME, images=(img,))
        (content / "manifest.raucm").write_text(manifest.to_text())
        bundles[kind] = work / f"{kind}.raucb"
        create_bundle(content, bundles[kind], pki.cert.read_bytes(), pki.key.read_bytes(), fmt="plain",
                      mksquashfs_args=["-comp", "zstd"])  # fmt: skip
    secs = {}
    for kind, bundle in bundles.items():
        dev = RaucDevice(work / f"dev-{kind}", "bench-delta", pki.ca, slot_size=new.stat().st_size)
        dev.root.mkdir(parents=True)
        shutil.copyfile(old, dev.slot("A"))
        subprocess.run(["sync"], check=True)
        with dev:
            dev.start("A")
            t = time.monotonic()
            res = dev.install(bundle)
            subprocess.run(["sync"], check=True)  # the slot's bytes on disk, as on a device
            secs[kind] = time.monotonic() - t
            if res.returncode != 0:
                raise RuntimeError(f"rauc install of the {kind} bundle failed: {res.stderr[-800:]}")
        if sha256(dev.slot("B")) != sha256(new):
            raise RuntimeError(f"after the {kind} install slot B is not the new image")
        shutil.rmtree(dev.root)
    return secs["full"], secs["delta"], bundles["full"].stat().st_size


def run_pair(pair: Pair, with_rauc: bool = False) -> tuple[list[Row], str]:
    old, new = image(pair, "old"), image(pair, "new")
    bundle = next(new.parent.glob("*.raucb"))
    work = Path(tempfile.mkdtemp(prefix=f"delta-{pair.name}-", dir=CACHE))
    want = sha256(new)
    rows = []
    try:
        out = work / "out.img"
        # full install's work: RAUC copies the image out of the bundle's squashfs into the slot
        t_full, m_full = timed(["unsquashfs", "-f", "-d", str(work / "x"), str(bundle), "rootfs.ext4"])
        rows.append(Row("full bundle", bundle.stat().st_size, None, t_full, m_full, "unsquashfs of the image"))
        shutil.rmtree(work / "x")
        rows.append(Row("RAUC adaptive (block-hash-index)", rauc_adaptive(old, new, bundle), note="computed"))

        store = work / "casync.castr"
        t = time.monotonic()
        subprocess.run(["casync", "make", "--store", str(store), "--chunk-size=65536", str(work / "new.caibx"), str(new)],
                       check=True, capture_output=True)  # fmt: skip
        gen = time.monotonic() - t
        seed_store = work / "seed.castr"
        subprocess.run(["casync", "make", "--store", str(seed_store), "--chunk-size=65536", str(work / "old.caibx"), str(old)],
                       check=True, capture_output=True)  # fmt: skip
        have = {p.name for p in seed_store.rglob("*.cacnk")}
        missing = [p for p in store.rglob("*.cacnk") if p.name not in have]
        cas_bytes = sum(p.stat().st_size for p in missing) + (work / "new.caibx").stat().st_size
        a_s, a_m = timed(["casync", "extract", "--store", str(store), "--seed", str(old), str(work / "new.caibx"), str(out)])
        assert sha256(out) == want
        rows.append(Row("casync 64 KiB chunks, old slot as seed", cas_bytes, gen, a_s, a_m))

        size = max(old.stat().st_size, new.stat().st_size)
        xd = work / "p.xd3"
        g, _ = timed(["xdelta3", "-e", "-9", "-f", "-B", str(size), "-s", str(old), str(new), str(xd)])
        out.unlink(missing_ok=True)
        a_s, a_m = timed(["xdelta3", "-d", "-f", "-B", str(size), "-s", str(old), str(xd), str(out)])
        assert sha256(out) == want
        rows.append(Row(f"xdelta3 -9 -B {size >> 20}MiB", xd.stat().st_size, g, a_s, a_m))

        zs = work / "p.zst"
        g, _ = timed(["zstd", "-q", "-f", "-19", "--long=31", f"--patch-from={old}", str(new), "-o", str(zs)])
        out.unlink(missing_ok=True)
        a_s, a_m = timed(["zstd", "-q", "-d", "-f", "--long=31", f"--patch-from={old}", str(zs), "-o", str(out)])
        assert sha256(out) == want
        rows.append(Row("zstd -19 --long=31 --patch-from", zs.stat().st_size, g, a_s, a_m))

        bh = work / "p.bhdelta"
        t = time.monotonic()
        res = subprocess.run([PY, "-m", "bulkhead.cli", "delta", "patch", str(old), str(new), str(bh), "--json"],
                             capture_output=True, text=True, check=True)  # fmt: skip
        g = time.monotonic() - t
        stats = json.loads(res.stdout)
        out.unlink(missing_ok=True)
        applier = Path(str(patch_module.__file__))  # the install hook, as on a device
        a_s, a_m = timed(["python3", str(applier), "apply", str(bh), str(old), str(out)])
        assert sha256(out) == want
        rows.append(Row("Bulkhead delta", bh.stat().st_size, g, a_s, a_m))
        info = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in stats.items() if k.endswith("blocks"))
        if with_rauc:
            try:
                t_full, t_delta, plain_size = rauc_installs(work, old, new, bh)
            except Exception as exc:  # the other rows still stand; say why these are missing
                return rows, info + f"; RAUC installs failed: {exc}"[:600]
            rows.append(Row("RAUC 1.8 install: full bundle (plain)", plain_size, None, t_full, None, "real RAUC service"))
            rows.append(Row("RAUC 1.8 install: Bulkhead delta bundle", bh.stat().st_size, None, t_delta, None, "install hook"))
            info += f"; RAUC installs: delta {t_delta:.1f} s = {t_delta / t_full:.2f}x the full bundle's {t_full:.1f} s"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows, info


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parent)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
