"""Release version order (which of two versions is newer) and the downgrade guard built on it.

PEP 440 order (packaging.version) when both versions parse as PEP 440 (1.0, 2.0rc1, 2024.5.1); otherwise the
Debian/dpkg order (1.0-r3, 2024.05~rc1, 1.2.3+git5), which every version string has.
"""

from __future__ import annotations

import re

from packaging.version import InvalidVersion, Version

from ..errors import Invalid

__all__ = ["compare_versions", "refuse_downgrade"]

_PARTS = re.compile(r"(\d+|\D+)")


def _dpkg_order(c: str) -> int:
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _dpkg_cmp(a: str, b: str) -> int:
    """dpkg's verrevcmp: alternate non-digit runs (letters before other characters, '~' before everything,
    even the end) and digit runs (numerically)."""
    ia = ib = 0
    while ia < len(a) or ib < len(b):
        # non-digit prefix
        while (ia < len(a) and not a[ia].isdigit()) or (ib < len(b) and not b[ib].isdigit()):
            ca = _dpkg_order(a[ia]) if ia < len(a) and not a[ia].isdigit() else 0
            cb = _dpkg_order(b[ib]) if ib < len(b) and not b[ib].isdigit() else 0
            if ca != cb:
                return -1 if ca < cb else 1
            ia += 1
            ib += 1
        ja, jb = ia, ib
        while ia < len(a) and a[ia].isdigit():
            ia += 1
        while ib < len(b) and b[ib].isdigit():
            ib += 1
        na, nb = int(a[ja:ia] or 0), int(b[jb:ib] or 0)
        if na != nb:
            return -1 if na < nb else 1
    return 0


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as version `a` is older than, equal to or newer than `b`."""
    try:
        va, vb = Version(a), Version(b)
    except InvalidVersion:
        return _dpkg_cmp(a, b)
    return (va > vb) - (va < vb)


def refuse_downgrade(new: str, current: str | None, what: str, allow: bool) -> None:
    """Raise Invalid when `new` is older than `current` (and the caller did not allow a downgrade)."""
    if allow or current is None or compare_versions(new, current) >= 0:
        return
    raise Invalid(
        f"{what}: version {new} is older than {current} (a downgrade); "
        "pass allow_downgrade (CLI --allow-downgrade) if that is what you want"
    )
