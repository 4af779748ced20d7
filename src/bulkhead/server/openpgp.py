"""OpenPGP signing of CSAF documents with GnuPG (`gpg`): one GnuPG home per tenant under the data directory.

A tenant's key is generated on first use (Ed25519, signing only, no expiry, no passphrase: the home directory is
the server's secret, mode 700) or imported by an administrator; documents get an ASCII-armoured detached signature.
Without `gpg` on the server, :attr:`OpenPgp.available` is False and callers publish unsigned, saying so.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import Invalid, ServerError

__all__ = ["OpenPgp", "SigningUnavailable"]

_TIMEOUT = 120
_SHORT_HOME = 60  # longer GnuPG homes are reached through a short link (gpg-agent's socket paths)


class SigningUnavailable(ServerError):
    status = 503
    code = "signing_unavailable"


class OpenPgp:
    def __init__(self, root: Path, gpg: str | None = None, enabled: bool = True) -> None:
        """`gpg`: the program (default: `gpg` on PATH); `enabled` False: behave as if it were not installed."""
        self.root = root
        self.gpg = (gpg or shutil.which("gpg")) if enabled else None
        self._links: Path | None = None  # a private directory of short names for long GnuPG homes (see _short)

    @property
    def available(self) -> bool:
        return self.gpg is not None

    def _home(self, tenant_id: int) -> Path:
        home = self.root / f"tenant-{tenant_id}"
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return home

    @contextmanager
    def _locked(self, tenant_id: int) -> Iterator[Path]:
        """The tenant's GnuPG home, locked against the server's other processes (key generation is not atomic)."""
        home = self._home(tenant_id)
        with (home / ".bulkhead.lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield home
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _short(self, home: Path) -> Path:
        """`home`, or a short symbolic link to it: without /run/user/<uid>, gpg-agent puts its sockets in the home,
        and a Unix socket's path is at most 107 bytes (a deep data directory made the agent fail to start)."""
        if len(str(home)) <= _SHORT_HOME:
            return home
        if self._links is None:
            self._links = Path(tempfile.mkdtemp(prefix="bh-gpg-"))  # 0700, this process's own
        link = self._links / hashlib.sha256(str(home).encode()).hexdigest()[:12]
        if not link.is_symlink():
            with contextlib.suppress(FileExistsError):
                link.symlink_to(home, target_is_directory=True)
        return link

    def _run(self, home: Path, args: list[str], data: bytes | None = None) -> bytes:
        if self.gpg is None:
            raise SigningUnavailable("gpg is not installed on the server (apt install gnupg): documents are not signed")
        env = {"GNUPGHOME": str(self._short(home)), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
        cmd = [self.gpg, "--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", "", *args]
        try:
            r = subprocess.run(cmd, input=data, capture_output=True, env=env, timeout=_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SigningUnavailable(f"gpg could not run: {e}") from None
        if r.returncode != 0:
            raise SigningUnavailable(f"gpg failed: {r.stderr.decode(errors='replace').strip()[-500:]}")
        return r.stdout

    def _secret_fingerprint(self, home: Path) -> str | None:
        out = self._run(home, ["--with-colons", "--list-secret-keys"]).decode()
        fprs = [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]
        return fprs[0] if fprs else None

    def ensure_key(self, tenant_id: int, uid: str) -> tuple[str, str]:
        """The tenant's signing key (generated now when it has none): its fingerprint and armoured public key."""
        with self._locked(tenant_id) as home:
            fpr = self._secret_fingerprint(home)
            if fpr is None:
                self._run(home, ["--quick-gen-key", uid, "ed25519", "sign", "never"])
                fpr = self._secret_fingerprint(home)
                if fpr is None:
                    raise SigningUnavailable("gpg generated no key")
            public = self._run(home, ["--armor", "--export", fpr]).decode()
        return fpr, public

    def import_key(self, tenant_id: int, armored_secret_key: str) -> tuple[str, str]:
        """Replace the tenant's signing key by an administrator's (an armoured secret key without passphrase)."""
        if "BEGIN PGP PRIVATE KEY BLOCK" not in armored_secret_key:
            raise Invalid("the key must be an ASCII-armoured OpenPGP secret key (gpg --armor --export-secret-keys FPR)")
        with self._locked(tenant_id) as home:
            staging = home / "import"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(mode=0o700)
            try:
                try:
                    self._run(staging, ["--import"], armored_secret_key.encode())
                except SigningUnavailable as e:
                    raise Invalid(f"the key cannot be imported: {e}") from None
                fpr = self._secret_fingerprint(staging)
                if fpr is None:
                    raise Invalid("the key holds no secret key: export it with gpg --armor --export-secret-keys FPR")
                # a key protected by a passphrase cannot sign unattended: try it before it replaces the current one
                try:
                    self._run(staging, ["--local-user", fpr, "--armor", "--detach-sign"], b"test")
                except SigningUnavailable:
                    raise Invalid("the key cannot sign without a passphrase: remove it (gpg --passwd) first") from None
                for old in self._list_fprs(home):
                    self._run(home, ["--yes", "--delete-secret-and-public-key", old])
                self._run(home, ["--import"], armored_secret_key.encode())
                public = self._run(home, ["--armor", "--export", fpr]).decode()
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return fpr, public

    def _list_fprs(self, home: Path) -> list[str]:
        out = self._run(home, ["--with-colons", "--list-secret-keys"]).decode()
        lines = out.splitlines()
        return [lines[i + 1].split(":")[9] for i, line in enumerate(lines) if line.startswith("sec:") and i + 1 < len(lines)]

    def sign(self, tenant_id: int, fingerprint: str, data: bytes) -> str:
        """An ASCII-armoured detached signature of `data` by the tenant's key `fingerprint`."""
        if not re.fullmatch(r"[0-9A-F]{40,64}", fingerprint):
            raise SigningUnavailable(f"{fingerprint!r} is not a key fingerprint")
        with self._locked(tenant_id) as home:
            return self._run(home, ["--local-user", fingerprint, "--armor", "--detach-sign"], data).decode()
