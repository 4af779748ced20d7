"""Reading an uploaded .deb as dpkg does (python-debian's DebFile: the `ar` members and the control tarball):
its control paragraph, checked (name, version, architecture), or a clear refusal; and the CVE ids its own changelog
entry names (what a patched rebuild fixes)."""

from __future__ import annotations

import lzma
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from debian.arfile import ArError
from debian.changelog import Changelog, ChangelogParseError
from debian.debfile import DebError, DebFile

from .errors import Unprocessable

__all__ = ["INDEX_FIELDS", "DebInfo", "read_deb", "valid_suite"]

# Debian policy 5.6.1 (package names) and 5.6.12 (versions: [epoch:]upstream[-revision]).
_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_VERSION = re.compile(r"^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*(?:-[A-Za-z0-9.+~]+)?$")
_ARCH = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_SUITE = re.compile(r"^[a-z][a-z0-9.-]{0,63}$")
# Fields the repository writes into the Packages index itself: never taken from the package.
INDEX_FIELDS = ("Filename", "Size", "MD5sum", "SHA1", "SHA256", "SHA512", "Description-md5")


@dataclass(frozen=True)
class DebInfo:
    name: str
    version: str
    architecture: str
    control: str  # the control paragraph, index fields removed, ending in one newline
    # The CVE ids the changelog entry of this very version names (a patched rebuild says what it fixes).
    fixes: tuple[str, ...] = ()


_CVE = re.compile(r"\bCVE-\d{4}-\d{4,}\b")
MAX_CHANGELOG = 1 << 20  # bytes of the uncompressed changelog read (its newest entry is at the top)


def changelog_fixes(deb: DebFile, name: str, version: str) -> tuple[str, ...]:
    """The CVE ids named by the package's own changelog entry for `version` (/usr/share/doc/NAME/changelog.Debian.gz,
    or changelog.gz for a native package); none when there is no such entry. Reads at most MAX_CHANGELOG bytes."""
    tar = deb.data.tgz()
    for member in (f"./usr/share/doc/{name}/changelog.Debian.gz", f"./usr/share/doc/{name}/changelog.gz"):
        for candidate in (member, member[2:]):
            try:
                info = tar.getmember(candidate)
            except KeyError:
                continue
            f = tar.extractfile(info) if info.isfile() else None
            if f is None:
                return ()
            text = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(f.read(MAX_CHANGELOG), MAX_CHANGELOG)
            blocks = Changelog(text.decode("utf-8", "replace"), max_blocks=1)
            if not len(blocks) or str(blocks[0].version) != version:
                return ()
            return tuple(sorted(set(_CVE.findall("\n".join(blocks[0].changes())))))
    return ()


def valid_suite(suite: str) -> str:
    if not _SUITE.match(suite):
        raise Unprocessable(f"{suite!r} is not a suite name: give a distribution codename such as bookworm or trixie")
    return suite


def read_deb(path: Path, architectures: tuple[str, ...]) -> DebInfo:
    """The package's checked control paragraph; Unprocessable when it is not a Debian binary package fit to serve."""
    try:
        deb = DebFile(str(path))
        try:
            control = deb.debcontrol()
            fixes = changelog_fixes(deb, control.get("Package", "").strip(), control.get("Version", "").strip())
        finally:
            deb.close()
    except (
        DebError, ArError, ChangelogParseError, OSError, EOFError, ValueError, LookupError, tarfile.TarError, zlib.error,
        lzma.LZMAError,
    ) as e:  # fmt: skip
        raise Unprocessable(
            f"not a Debian binary package ({e}): upload a .deb built by dpkg-deb --build or dpkg-buildpackage"
        ) from None
    missing = [f for f in ("Package", "Version", "Architecture", "Maintainer", "Description") if not control.get(f)]
    if missing:
        raise Unprocessable(f"the package's control file lacks {', '.join(missing)}: add them and build it again")
    name, version, arch = control["Package"].strip(), control["Version"].strip(), control["Architecture"].strip()
    if not _NAME.match(name):
        raise Unprocessable(f"{name!r} is not a valid Debian package name (lower case letters, digits, + - .)")
    if not _VERSION.match(version):
        raise Unprocessable(f"{version!r} is not a valid Debian version ([epoch:]upstream[-revision])")
    if not _ARCH.match(arch) or (arch != "all" and arch not in architectures):
        raise Unprocessable(
            f"architecture {arch!r} is not served by this repository (it serves all, {', '.join(architectures)}; "
            "the setting BULKHEAD_OVERLAY_ARCHITECTURES lists them)"
        )
    for field in INDEX_FIELDS:
        if field in control:
            del control[field]
    text = control.dump()
    assert text is not None
    return DebInfo(name, version, arch, text.rstrip("\n") + "\n", fixes)
