"""Rebuild a Debian source package with a patch, for the package overlay: "patch it yourself, today".

`rebuild()` runs one mmdebstrap of a clean `buildd` chroot of the suite, with deb-src, and does everything inside
it through mmdebstrap's customize hooks (mmdebstrap sets up and tears down /proc, /dev and the rest; the chroot
is thrown away, so nothing of one build leaks into the next):

1. `apt-get source SOURCE` fetches the suite's source package (its signature checked by dpkg-source against the
   Debian keyring apt trusts);
2. the patch goes into debian/patches and the quilt series (format 3.0 (quilt)), or is applied with patch -p1
   (other formats); a patch that does not apply stops the build with patch's own words;
3. a changelog entry (`changelog_entry`) bumps the version of the source apt fetched (`next_version`: +bulkhead1,
   then +bulkhead2, ...) and names the CVEs it fixes, which the overlay turns into `fixed` VEX statements for the
   new version; a hook between the chroot's two stages runs this module on the host (`write_entry`), so the entry
   comes from the same pure functions as the tests';
4. `apt-get build-dep`, then `dpkg-buildpackage -b -uc -us` (tests skipped: DEB_BUILD_OPTIONS=nocheck);
5. the binary packages (not the -dbgsym ones) are copied out.

The pure parts (version, changelog text, the scripts run in the chroot) are tested on their own; the shell is the
mmdebstrap call.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from debian.debian_support import Version

from .errors import OsBuildError

__all__ = [
    "RebuildSpec",
    "build_script",
    "changelog_entry",
    "entry_args",
    "fetch_script",
    "next_version",
    "rebuild",
    "write_entry",
]

TAG = "bulkhead"
MAINTAINER = "Bulkhead overlay rebuild <overlay@bulkhead.invalid>"
_SOURCE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")
_SUITE = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
_PATCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
PACKAGES = ("ca-certificates", "dpkg-dev", "quilt", "patch")


@dataclass(frozen=True)
class RebuildSpec:
    source: str  # the Debian source package
    patch: Path
    suite: str = "bookworm"
    cves: tuple[str, ...] = ()
    mirror: str = "http://deb.debian.org/debian"
    security_mirror: str = "http://deb.debian.org/debian-security"
    reason: str = ""  # words for the changelog entry (default: the patch's name)
    when: float = field(default_factory=time.time)  # the changelog entry's date (SOURCE_DATE_EPOCH of the build)

    def check(self) -> None:
        if not _SOURCE.match(self.source):
            raise OsBuildError(f"{self.source!r} is not a Debian source package name (lower case letters, digits, + - .)")
        if not _SUITE.match(self.suite):
            raise OsBuildError(f"{self.suite!r} is not a suite: give a codename such as bookworm or trixie")
        bad = [c for c in self.cves if not _CVE.match(c)]
        if bad:
            raise OsBuildError(f"not CVE ids: {', '.join(bad)} (write them as CVE-2024-5535)")
        if not self.patch.is_file():
            raise OsBuildError(f"the patch {self.patch} is not a file")
        if not _PATCH.match(self.patch.name):
            raise OsBuildError(f"name the patch file with letters, digits, '.', '_', '+' or '-' only: {self.patch.name!r}")

    def sources(self) -> list[str]:
        lines = []
        for suite in (self.suite, f"{self.suite}-updates"):
            lines += [f"deb {self.mirror} {suite} main", f"deb-src {self.mirror} {suite} main"]
        security = f"{self.suite}-security"
        lines += [f"deb {self.security_mirror} {security} main", f"deb-src {self.security_mirror} {security} main"]
        return lines


def next_version(version: str, tag: str = TAG) -> str:
    """The overlay's version after `version`: +bulkhead1, or the next number when it already is one. It sorts after
    the version it patches (dpkg order) and before the next Debian revision that fixes the CVE upstream."""
    Version(version)  # refuses what is not a Debian version
    m = re.search(rf"\+{tag}(\d+)$", version)
    new = version[: m.start()] + f"+{tag}{int(m.group(1)) + 1}" if m else f"{version}+{tag}1"
    assert Version(new) > Version(version)
    return new


def changelog_entry(source: str, version: str, suite: str, patch: str, cves: Sequence[str], reason: str, when: float) -> str:
    """The debian/changelog entry of the rebuild (newest first: it goes on top)."""
    lines = [
        f"  * {reason} (Bulkhead overlay rebuild, patch {patch})." if reason else f"  * Apply {patch} (Bulkhead overlay rebuild)."
    ]
    lines += [f"  * Fixes {cve}." for cve in cves]
    date = email.utils.format_datetime(dt.datetime.fromtimestamp(when, dt.UTC))
    return f"{source} ({version}) {suite}; urgency=high\n\n" + "\n".join(lines) + f"\n\n -- {MAINTAINER}  {date}\n\n"


def fetch_script(spec: RebuildSpec) -> str:
    """The chroot's first stage: the source fetched, the patch applied, the source's version in /rebuild/version and
    its directory in /rebuild/srcdir. /rebuild holds the patch and receives the built packages in out/."""
    patch, q = spec.patch.name, shlex.quote
    return f"""#!/bin/sh
set -eu
cd /rebuild
apt-get update -q
apt-get source -q --only-source {q(spec.source)} > source.log 2>&1 || {{ cat source.log >&2; exit 10; }}
dir=$(find . -mindepth 1 -maxdepth 1 -type d ! -name out | head -n 1)
[ -n "$dir" ] || {{ echo "apt-get source unpacked nothing" >&2; exit 10; }}
cd "$dir"
version=$(dpkg-parsechangelog -S Version)
format=$(cat debian/source/format 2>/dev/null || echo "1.0")
patch -p1 --dry-run --forward < /rebuild/{q(patch)} > /rebuild/patch.log 2>&1 || {{
  echo "the patch does not apply to {spec.source} $version:" >&2; cat /rebuild/patch.log >&2; exit 11; }}
if [ "$format" = "3.0 (quilt)" ]; then
  mkdir -p debian/patches
  cp /rebuild/{q(patch)} debian/patches/{q(patch)}
  echo {q(patch)} >> debian/patches/series
  QUILT_PATCHES=debian/patches quilt push -q {q(patch)} > /rebuild/patch.log 2>&1 || {{ cat /rebuild/patch.log >&2; exit 11; }}
else
  patch -p1 --forward < /rebuild/{q(patch)}
fi
echo "$version" > /rebuild/version
echo "/rebuild/$dir" > /rebuild/srcdir
"""


def build_script() -> str:
    """The chroot's second stage: the entry written by `write_entry` on top of the changelog, then the build."""
    return """#!/bin/sh
set -eu
cd "$(cat /rebuild/srcdir)"
[ -s /rebuild/entry ] || { echo "no changelog entry was prepared" >&2; exit 12; }
cat /rebuild/entry debian/changelog > /rebuild/changelog.new
cp /rebuild/changelog.new debian/changelog
apt-get build-dep -y -q ./ > /rebuild/build-dep.log 2>&1 || { tail -n 40 /rebuild/build-dep.log >&2; exit 13; }
export DEB_BUILD_OPTIONS=nocheck
dpkg-buildpackage -b -uc -us > /rebuild/build.log 2>&1 || { tail -n 60 /rebuild/build.log >&2; exit 14; }
cd /rebuild
for deb in *.deb; do case "$deb" in *-dbgsym_*) ;; *) cp "$deb" out/ ;; esac; done
"""


def rebuild(spec: RebuildSpec, out: Path, run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> list[Path]:
    """Build the patched packages of `spec` into `out` (created); returns the .deb files. Needs root and mmdebstrap."""
    spec.check()
    if shutil.which("mmdebstrap") is None:
        raise OsBuildError("mmdebstrap is missing: apt install mmdebstrap")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bulkhead-rebuild-") as tmp:
        work = Path(tmp)
        shutil.copy(spec.patch, work / spec.patch.name)
        (work / "entry.json").write_text(json.dumps(entry_args(spec)))
        (work / "fetch.sh").write_text(fetch_script(spec))
        (work / "build.sh").write_text(build_script())
        (work / "out").mkdir()
        entry = f'{shlex.quote(sys.executable)} -m bulkhead.osbuild.overlay_rebuild "$1/rebuild"'
        r = run(
            [
                "mmdebstrap", "--variant=buildd", f"--include={','.join(PACKAGES)}",
                f"--customize-hook=mkdir -p \"$1/rebuild\" && cp -a {shlex.quote(str(work))}/. \"$1/rebuild/\"",
                '--customize-hook=chroot "$1" sh /rebuild/fetch.sh',
                f"--customize-hook={entry}",
                '--customize-hook=chroot "$1" sh /rebuild/build.sh',
                f"--customize-hook=cp -a \"$1/rebuild/out/.\" {shlex.quote(str(out))}/",
                spec.suite, "/dev/null", *spec.sources(),
            ],
            capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
        if r.returncode != 0:
            raise OsBuildError(f"the rebuild of {spec.source} failed:\n{_tail(r.stderr)}")
    debs = sorted(out.glob("*.deb"))
    if not debs:
        raise OsBuildError(f"the rebuild of {spec.source} built no package")
    return debs


def entry_args(spec: RebuildSpec) -> dict[str, object]:
    return {
        "source": spec.source, "suite": spec.suite, "patch": spec.patch.name, "cves": list(spec.cves),
        "reason": spec.reason, "when": spec.when,
    }  # fmt: skip


def write_entry(rebuild_dir: Path) -> str:
    """Between the chroot's stages (run on the host by a hook): the changelog entry after the version apt fetched
    (`version`, written by the fetch stage) into `entry`; returns the new version."""
    args = json.loads((rebuild_dir / "entry.json").read_text())
    version = (rebuild_dir / "version").read_text().strip()
    new = next_version(version)
    text = changelog_entry(args["source"], new, args["suite"], args["patch"], args["cves"], args["reason"], float(args["when"]))
    (rebuild_dir / "entry").write_text(text)
    return new


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


if __name__ == "__main__":  # the hook between the chroot's stages: python -m bulkhead.osbuild.overlay_rebuild DIR
    try:
        print(f"rebuilding as {write_entry(Path(sys.argv[1]))}", file=sys.stderr)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        sys.exit(f"no changelog entry could be prepared: {exc}")
