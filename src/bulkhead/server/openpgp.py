"""OpenPGP signing with GnuPG (`gpg`): keys made and checked in scratch homes, signatures made in one home per tenant.

A tenant's keys are kept in the database (services/signing_keys.py), so that every server host signs with the same
ones; this adapter makes them (Ed25519, signing only, no expiry, no passphrase), checks an administrator's, and
hands them over as a :class:`KeyBundle` of armoured text. A tenant's home under `root` is this host's copy: before
each signature it is made to hold the bundle it is given (imported when it lacks a key). Homes are mode 700: with
the server secret, they are the server's secret. Documents get ASCII-armoured detached or clear signatures.
Without `gpg` on the server, :attr:`OpenPgp.available` is False and callers publish unsigned, saying so.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import Invalid, ServerError

__all__ = ["KeyBundle", "OpenPgp", "SigningUnavailable"]

_TIMEOUT = 120
_SHORT_HOME = 60  # longer GnuPG homes are reached through a short link (gpg-agent's socket paths)
_HELD = "bulkhead-held.json"  # in a tenant's home: the keys it was given (deleted from it when no longer given)
_FPR = re.compile(r"[0-9A-F]{40,64}")


class SigningUnavailable(ServerError):
    status = 503
    code = "signing_unavailable"


@dataclass(frozen=True)
class KeyBundle:
    """Secret keys as they go between GnuPG and the database: their fingerprints (the current key first), and the
    armoured secret keys and public keys, one block each (the public block is what apt's Signed-By file holds)."""

    fingerprints: tuple[str, ...]
    secret: str
    public: str


class OpenPgp:
    def __init__(self, root: Path, gpg: str | None = None, enabled: bool = True) -> None:
        """`gpg`: the program (default: `gpg` on PATH); `enabled` False: behave as if it were not installed."""
        self.root = root
        self.gpg = (gpg or shutil.which("gpg")) if enabled else None
        self._links: Path | None = None  # a private directory of short names for long GnuPG homes (see _short)
        self._held: dict[int, tuple[tuple[int, int, int], frozenset[str]]] = {}  # tenant -> (_HELD's stamp, its keys)

    @property
    def available(self) -> bool:
        return self.gpg is not None

    # -- keys, made and checked apart from the tenants' homes ------------------------------------------------------

    def make(self, uid: str, beside: KeyBundle | None = None) -> KeyBundle:
        """A new signing key; with `beside`, the bundle holds the new key first and `beside`'s keys after it."""
        with self._scratch() as home:
            if beside is not None:
                self._run(home, ["--import"], beside.secret.encode())
            before = set(self._list_fprs(home))
            self._run(home, ["--yes", "--quick-gen-key", uid, "ed25519", "sign", "never"])
            made = [f for f in self._list_fprs(home) if f not in before]
            if len(made) != 1:
                raise SigningUnavailable("gpg generated no key")
            return self._bundle(home, [made[0], *(beside.fingerprints if beside else ())])

    def only(self, keys: KeyBundle, fingerprints: list[str]) -> KeyBundle:
        """`keys` without the keys not in `fingerprints`."""
        with self._scratch() as home:
            self._run(home, ["--import"], keys.secret.encode())
            return self._bundle(home, fingerprints)

    def read(self, armored_secret_key: str) -> KeyBundle:
        """An administrator's key (an armoured secret key without passphrase), checked: Invalid when it is none or
        cannot sign unattended."""
        if "BEGIN PGP PRIVATE KEY BLOCK" not in armored_secret_key:
            raise Invalid("the key must be an ASCII-armoured OpenPGP secret key (gpg --armor --export-secret-keys FPR)")
        with self._scratch() as home:
            try:
                self._run(home, ["--import"], armored_secret_key.encode())
            except SigningUnavailable as e:
                raise Invalid(f"the key cannot be imported: {e}") from None
            fpr = self._secret_fingerprint(home)
            if fpr is None:
                raise Invalid("the key holds no secret key: export it with gpg --armor --export-secret-keys FPR")
            try:  # a key protected by a passphrase cannot sign unattended
                self._run(home, ["--local-user", fpr, "--armor", "--detach-sign"], b"test")
            except SigningUnavailable:
                raise Invalid("the key cannot sign without a passphrase: remove it (gpg --passwd) first") from None
            return self._bundle(home, [fpr])

    def local(self, tenant_id: int, fingerprints: list[str] | None = None) -> KeyBundle | None:
        """The keys this host's home of the tenant holds from before the database kept them: `fingerprints` when it
        holds them all, else (none given) its first secret key; None when it has no such key."""
        if not (self.root / f"tenant-{tenant_id}").is_dir():
            return None
        with self._locked(tenant_id) as home:
            held = self._list_fprs(home)
            wanted = fingerprints or held[:1]
            if not wanted or not set(wanted) <= set(held):
                return None
            return self._bundle(home, wanted)

    def rotation_state(self, tenant_id: int) -> tuple[str, str | None, str | None] | None:
        """What a home recorded about its keys' rotation before the database kept it (overlay_keys.py): none here."""
        return None

    # -- signing in the tenant's home ------------------------------------------------------------------------------

    def sign(self, tenant_id: int, keys: KeyBundle, data: bytes) -> str:
        """An ASCII-armoured detached signature of `data` by the current key of `keys`."""
        return self._sign(tenant_id, keys, [keys.fingerprints[0]], ["--armor", "--detach-sign"], data, exact=False)

    def _sign(self, tenant_id: int, keys: KeyBundle, signers: list[str], args: list[str], data: bytes, exact: bool) -> str:
        users: list[str] = []
        for fpr in signers:
            if not _FPR.fullmatch(fpr):
                raise SigningUnavailable(f"{fpr!r} is not a key fingerprint")
            users += ["--local-user", f"{fpr}!" if exact else fpr]  # "!": exactly this key, not a subkey gpg prefers
        with self._locked(tenant_id) as home:
            self._hold(tenant_id, home, keys)
            return self._run(home, [*users, *args], data).decode()

    def _hold(self, tenant_id: int, home: Path, keys: KeyBundle) -> None:
        """Make the home hold `keys`: imported when it lacks one; a key it was given before and is not given now
        (rotated out, replaced by an import on any host) is deleted. Keys the home made itself before the database
        kept them, and that were not taken into it, stay. Checked once per change of _HELD (another process)."""
        want = frozenset(keys.fingerprints)
        marker = home / _HELD
        stamp = _stamp(marker)
        if stamp is not None and self._held.get(tenant_id) == (stamp, want):
            return
        try:
            given = set(json.loads(marker.read_text()))
        except (OSError, ValueError, TypeError):
            given = set()
        have = set(self._list_fprs(home))
        if not want <= have:
            self._run(home, ["--import"], keys.secret.encode())
            have = set(self._list_fprs(home))
            if not want <= have:
                raise SigningUnavailable(f"the signing keys {sorted(want - have)} could not be imported into {home}")
        for old in sorted((given & have) - want):
            self._run(home, ["--yes", "--delete-secret-and-public-key", old])
        tmp = home / f".{_HELD}.tmp"
        tmp.write_text(json.dumps(sorted(want)))
        os.replace(tmp, marker)
        stamp = _stamp(marker)
        if stamp is not None:
            self._held[tenant_id] = (stamp, want)

    # -- GnuPG homes -----------------------------------------------------------------------------------------------

    def _home(self, tenant_id: int) -> Path:
        home = self.root / f"tenant-{tenant_id}"
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return home

    @contextmanager
    def _locked(self, tenant_id: int) -> Iterator[Path]:
        """The tenant's GnuPG home, locked against the server's other processes on this host."""
        home = self._home(tenant_id)
        with (home / ".bulkhead.lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield home
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @contextmanager
    def _scratch(self) -> Iterator[Path]:
        """A new GnuPG home of this process's own, removed afterwards with its agent."""
        if self.gpg is None:
            raise SigningUnavailable("gpg is not installed on the server (apt install gnupg): documents are not signed")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        home = Path(tempfile.mkdtemp(prefix=".scratch-", dir=self.root))
        try:
            yield home
        finally:
            gpgconf = Path(self.gpg).with_name("gpgconf")
            if gpgconf.exists():
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    env = {"GNUPGHOME": str(self._short(home)), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
                    subprocess.run([str(gpgconf), "--kill", "gpg-agent"], env=env, capture_output=True, timeout=10)
            shutil.rmtree(home, ignore_errors=True)
            if self._links is not None:
                (self._links / _link_name(home)).unlink(missing_ok=True)

    def _short(self, home: Path) -> Path:
        """`home`, or a short symbolic link to it: without /run/user/<uid>, gpg-agent puts its sockets in the home,
        and a Unix socket's path is at most 107 bytes (a deep data directory made the agent fail to start)."""
        if len(str(home)) <= _SHORT_HOME:
            return home
        if self._links is None:
            self._links = Path(tempfile.mkdtemp(prefix="bh-gpg-"))  # 0700, this process's own
        link = self._links / _link_name(home)
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

    def _bundle(self, home: Path, fingerprints: list[str]) -> KeyBundle:
        secret = self._run(home, ["--armor", "--export-secret-keys", *fingerprints]).decode()
        public = self._run(home, ["--armor", "--export", *fingerprints]).decode()
        return KeyBundle(tuple(fingerprints), secret, public)

    def _secret_fingerprint(self, home: Path) -> str | None:
        out = self._run(home, ["--with-colons", "--list-secret-keys"]).decode()
        fprs = [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]
        return fprs[0] if fprs else None

    def _list_fprs(self, home: Path) -> list[str]:
        out = self._run(home, ["--with-colons", "--list-secret-keys"]).decode()
        lines = out.splitlines()
        return [lines[i + 1].split(":")[9] for i, line in enumerate(lines) if line.startswith("sec:") and i + 1 < len(lines)]


def _link_name(home: Path) -> str:
    return hashlib.sha256(str(home).encode()).hexdigest()[:12]


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """A file's identity (inode, size, modification time): another process's rewrite changes it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns
