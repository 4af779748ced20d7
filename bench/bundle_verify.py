"""Verifying a 1 GiB verity bundle vs. sha256sum over the same file, side by side in one run.

Goal (issue #3): bulkhead's verification runs at >= 80% of sha256sum's speed.
Usage: .venv/bin/python bench/bundle_verify.py [--size-mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, run, write_result

from bulkhead.lab.pki import make_pki
from bulkhead.rauc import FileReader, create_bundle, load_keyring, open_bundle


def build(size_mib: int) -> tuple[Path, Path]:
    pki = make_pki(CACHE / "pki")
    bundle = CACHE / f"verify-{size_mib}m.raucb"
    if not bundle.exists():
        content = CACHE / f"verify-content-{size_mib}"
        content.mkdir(parents=True, exist_ok=True)
        img = content / "rootfs.img"
        with img.open("wb") as f:
            for _ in range(size_mib):
                f.write(os.urandom(1 << 20))
        (content / "manifest.raucm").write_text("[update]\ncompatible=bench\nversion=1\n\n[image.rootfs]\nfilename=rootfs.img\n")
        # uncompressed squashfs: random data does not compress, and it keeps the build fast
        create_bundle(
            content,
            bundle,
            pki.cert.read_bytes(),
            pki.key.read_bytes(),
            fmt="verity",
            mksquashfs_args=["-noI", "-noD", "-noF", "-noX"],
        )
        img.unlink()
    return bundle, pki.ca


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    bundle, ca = build(args.size_mib)
    keyring = load_keyring(ca.read_bytes())
    size = bundle.stat().st_size
    bundle.read_bytes()  # warm the page cache for both tools
    best_sha = best_ours = float("inf")
    for _ in range(args.runs):
        t = time.perf_counter()
        run(["sha256sum", str(bundle)])
        best_sha = min(best_sha, time.perf_counter() - t)
        t = time.perf_counter()
        with FileReader(bundle) as r:
            open_bundle(r).verify(keyring)
        best_ours = min(best_ours, time.perf_counter() - t)
    mb = size / 1e6
    ratio = best_sha / best_ours
    write_result(
        "bundle_verify",
        f"Verifying a {args.size_mib} MiB verity bundle",
        [
            ["tool", "best of runs (s)", "MB/s", "relative to sha256sum"],
            ["sha256sum (coreutils)", f"{best_sha:.2f}", f"{mb / best_sha:.0f}", "100%"],
            [
                "bulkhead bundle verify (CMS + full dm-verity tree)",
                f"{best_ours:.2f}",
                f"{mb / best_ours:.0f}",
                f"{ratio * 100:.0f}%",
            ],
        ],
        notes=f"Goal: >= 80% of sha256sum. Result: {'met' if ratio >= 0.8 else 'NOT met'}. "
        f"File cached in RAM; {args.runs} runs each, best taken.",
    )


if __name__ == "__main__":
    main()
