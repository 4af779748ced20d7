"""Realistic image pairs for bench/delta.py, built with the reference builder (mmdebstrap) and cached.

- `security`: bookworm as released (v1) -> bookworm + bookworm-updates + bookworm-security (v2), same packages.
- `packages`: v1 with curl and nano -> v2 with those removed and nginx-light, vim-tiny and jq added (all suites).
- `trixie-kernel`: trixie + trixie-updates (v1) -> the same with trixie-security (v2): a newer kernel ABI when
  trixie-security has one (on 2026-12-05: 6.12.117 -> 6.12.118) with the other security updates of the day;
  the builder's default image (kernel modules uncompressed, an initramfs of the boot drivers: osbuild/kmods.py).
- `trixie-kernel-xz`: the same pair with the modules and the initramfs as Debian makes them (the reference).

Each image is built once into bench/.cache/delta/<pair>-<v>/ and reused while its inputs stay the same.
Run it alone to prepare the cache: `python bench/delta_images.py`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from _common import CACHE

from bulkhead.lab.pki import make_pki
from bulkhead.osbuild import BuildSpec, build_image

ALL_SUITES = ("bookworm", "bookworm-updates", "bookworm-security")


@dataclass(frozen=True)
class Pair:
    name: str
    what: str
    old: dict[str, tuple[str, ...]]
    new: dict[str, tuple[str, ...]]
    uncompressed_modules: bool = True  # the builder's default (osbuild/kmods.py); False: Debian's .ko.xz


TRIXIE = ("trixie", "trixie-updates")
PAIRS = (
    Pair("security", "bookworm -> bookworm + updates + security", {"suites": ("bookworm",)}, {"suites": ALL_SUITES}),
    Pair(
        "trixie-kernel",
        "trixie + updates -> + trixie-security (a newer kernel ABI, with the other security updates of the day)",
        {"suites": TRIXIE},
        {"suites": (*TRIXIE, "trixie-security")},
    ),
    Pair(
        "trixie-kernel-xz",
        "the same with the kernel modules as Debian packages them (.ko.xz) and its initramfs (MODULES=most)",
        {"suites": TRIXIE},
        {"suites": (*TRIXIE, "trixie-security")},
        uncompressed_modules=False,
    ),
    Pair(
        "packages",
        "-curl -nano, +nginx-light +vim-tiny +jq",
        {"suites": ALL_SUITES, "packages": ("curl", "nano")},
        {"suites": ALL_SUITES, "packages": ("nginx-light", "vim-tiny", "jq")},
    ),
)


def image(pair: Pair, which: str) -> Path:
    """The cached rootfs.ext4 of `pair`'s old or new side; built when missing or when its inputs changed."""
    inputs = pair.old if which == "old" else pair.new
    version = "1" if which == "old" else "2"
    out = CACHE / "delta" / f"{pair.name}-{which}"
    stamp = out / "inputs.json"
    pki = make_pki(CACHE / "pki")
    spec = BuildSpec(
        version=version, out=out, cert=pki.cert, key=pki.key, compatible="bench-delta",
        suites=inputs["suites"], packages=inputs.get("packages", ()), cache=CACHE / "delta" / "base",
        make_disk=False,  # the benchmark compares images and bundles
        uncompressed_modules=pair.uncompressed_modules,
    )  # fmt: skip
    want = json.dumps(spec.base_inputs(), sort_keys=True)
    rootfs = out / "rootfs.ext4"
    if rootfs.exists() and stamp.exists() and stamp.read_text() == want:
        return rootfs
    print(f"building {pair.name}/{which} ({pair.what}) with mmdebstrap ...", file=sys.stderr, flush=True)
    build_image(spec, progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    stamp.write_text(want)
    return rootfs


if __name__ == "__main__":
    for p in PAIRS:
        for side in ("old", "new"):
            print(image(p, side))
