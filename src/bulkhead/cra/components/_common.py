"""Helpers shared by the SBOM readers: Yocto's CVE notes, kernel detection, purl facts."""

from __future__ import annotations

import re
from collections.abc import Iterable

from packageurl import PackageURL

from ..cpe import parse_cpe
from ..model import FindingStatus, SbomVulnStatement

__all__ = ["DEBIAN_CODENAMES", "distro_release", "hash_algorithm", "is_kernel", "purl_facts", "yocto_cves_fixed"]

_CVE = re.compile(r"CVE-\d{4}-\d{4,}")
# Kernel recipes and packages that are not the kernel itself (headers for the C library, firmware blobs, tools).
_NOT_KERNEL = ("linux-libc-headers", "linux-firmware", "linux-tools")


def yocto_cves_fixed(source_info: str | None) -> tuple[SbomVulnStatement, ...]:
    """Yocto create-spdx (SPDX 2.2) writes `CVEs fixed: CVE-… CVE-…` into the recipe's sourceInfo.

    The list holds the CVEs patched by the recipe's patches and those whose CVE_STATUS maps to "Patched"
    (fixed-version, backported-patch, cpe-stable-backport); CVE_STATUS "Ignored" entries are not written there.
    """
    if not source_info or "CVEs fixed:" not in source_info:
        return ()
    listed = source_info.split("CVEs fixed:", 1)[1]
    return tuple(
        SbomVulnStatement(cve, FindingStatus.FIXED, "yocto-patched", "listed as fixed by Yocto create-spdx (CVEs fixed)")
        for cve in dict.fromkeys(_CVE.findall(listed))
    )


def is_kernel(names: Iterable[str | None], cpes: Iterable[str]) -> bool:
    """A Linux kernel: a CPE for linux:linux_kernel, or a recipe/package named linux-*/kernel-image-*/linux-image-*."""
    for text in cpes:
        cpe = parse_cpe(text)
        if cpe and cpe.product == "linux_kernel":
            return True
    for name in names:
        if not name or name.startswith(_NOT_KERNEL):
            continue
        if name.startswith(("linux-yocto", "linux-image-", "kernel-image")) or name in ("linux", "linux-kernel", "kernel"):
            return True
    return False


def purl_facts(purl: str | None) -> dict[str, str]:
    """What a package URL says beyond name and version: distro, upstream/source package (deb, rpm, apk)."""
    if not purl:
        return {}
    try:
        p = PackageURL.from_string(purl)
    except ValueError:
        return {}
    out: dict[str, str] = {"type": p.type}
    quals = p.qualifiers if isinstance(p.qualifiers, dict) else {}
    if p.namespace:
        out["namespace"] = p.namespace
    if quals.get("distro"):
        out["distro"] = str(quals["distro"])
    if quals.get("upstream"):
        out["upstream"] = str(quals["upstream"])
    return out


# Debian's release numbers and codenames (the security tracker keys its data by codename).
DEBIAN_CODENAMES = {"9": "stretch", "10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie", "14": "forky"}


def distro_release(distro: str | None) -> tuple[str | None, str | None]:
    """A purl `distro` qualifier ("debian-12", "bookworm", "debian-bookworm") as (distro, release codename)."""
    if not distro:
        return None, None
    name, _, release = distro.partition("-")
    if not release:
        if distro in DEBIAN_CODENAMES.values():
            return "debian", distro
        return distro, None
    return name, DEBIAN_CODENAMES.get(release, release) if name == "debian" else release


_SHA_DASH = re.compile(r"^sha-(\d+)$")
_BLAKE2B = re.compile(r"^blake2b(\d+)$")


def hash_algorithm(name: str) -> str:
    """One spelling for a hash algorithm across the standards: SPDX 2 `SHA256`, CycloneDX `SHA-256` and SPDX 3
    `sha256` are all `sha256`; `SHA3_256`/`SHA3-256`/`sha3_256` are `sha3-256`; `BLAKE2b-256`/`blake2b256` are `blake2b-256`."""
    low = name.strip().lower().replace("_", "-")
    if m := _SHA_DASH.match(low):
        return f"sha{m.group(1)}"
    if m := _BLAKE2B.match(low):
        return f"blake2b-{m.group(1)}"
    return low
