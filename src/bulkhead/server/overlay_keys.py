"""The overlay's repository keys, in GnuPG (one home per tenant, apart from the CSAF keys), with rotation.

A tenant has a current key, made on first use. Rotating makes a new current key and keeps the old one as
*retiring*: every index is then signed by both (InRelease and Release.gpg carry two signatures), and the public
key file devices fetch holds both. A device still holding only the old key keeps verifying (apt accepts a
signature by any key of its Signed-By file; the Debian archive itself is signed by several keys), and the agent
fetches the new file on its next pass. Finishing the rotation deletes the retiring key: indexes are signed by the
new one only. Which key is which is kept in the home (`bulkhead-keys.json`, written atomically); a home from before
rotation existed holds one key, which becomes the current one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import Conflict
from .openpgp import OpenPgp, SigningUnavailable

__all__ = ["RepoKeys", "RepoPgp"]

_STATE = "bulkhead-keys.json"


@dataclass(frozen=True)
class RepoKeys:
    current: str
    retiring: str | None
    rotated_at: str | None  # ISO 8601, when the rotation began
    public: str  # armoured public keys: the current one and the retiring one (one file for apt's Signed-By)

    @property
    def signers(self) -> list[str]:
        return [self.current, *([self.retiring] if self.retiring else [])]


class RepoPgp(OpenPgp):
    """The GnuPG adapter of the overlay: clearsigning (InRelease) and detached signatures by every active key."""

    def __init__(self, root: Path, gpg: str | None = None, enabled: bool = True) -> None:
        super().__init__(root, gpg, enabled)
        self._cache: dict[int, tuple[tuple[int, int, int], RepoKeys]] = {}

    def keys(self, tenant_id: int, uid: str) -> RepoKeys:
        """The tenant's keys (the current one made now when there is none). Kept in memory while the state file
        is unchanged: agents fetch the key on every pass, which must not cost a gpg process each."""
        stamp = self._stamp(tenant_id)
        cached = self._cache.get(tenant_id)
        if stamp is not None and cached is not None and cached[0] == stamp:
            return cached[1]
        with self._locked(tenant_id) as home:
            state = self._state(home)
            if state is None:
                fpr = self._secret_fingerprint(home)
                if fpr is None:
                    fpr = self._generate(home, uid)
                state = {"current": fpr, "retiring": None, "rotated_at": None}
                self._save(home, state)
            keys = self._keys(home, state)
            stamp = self._stamp(tenant_id)
            if stamp is not None:
                self._cache[tenant_id] = (stamp, keys)
            return keys

    def _stamp(self, tenant_id: int) -> tuple[int, int, int] | None:
        """The state file's identity (inode, size, modification time): a rotation elsewhere changes it."""
        try:
            st = os.stat(self.root / f"tenant-{tenant_id}" / _STATE)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def rotate(self, tenant_id: int, uid: str, now: dt.datetime) -> RepoKeys:
        """A new current key; the old one signs along until `finish`. Conflict while a rotation is running."""
        self.keys(tenant_id, uid)
        with self._locked(tenant_id) as home:
            state = self._state(home)
            assert state is not None
            if state["retiring"]:
                raise Conflict(
                    f"a key rotation began at {state['rotated_at']} and is not finished: finish it first "
                    "(bulkhead overlay key --finish), once the devices have fetched the new key"
                )
            new = self._generate(home, f"{uid} ({now:%Y-%m-%d %H:%M:%S})")
            state = {"current": new, "retiring": state["current"], "rotated_at": now.isoformat()}
            self._save(home, state)
            return self._keys(home, state)

    def finish(self, tenant_id: int, uid: str) -> RepoKeys:
        """Delete the retiring key; Conflict when no rotation is running."""
        self.keys(tenant_id, uid)
        with self._locked(tenant_id) as home:
            state = self._state(home)
            assert state is not None
            if not state["retiring"]:
                raise Conflict("no key rotation is running: start one with bulkhead overlay key --rotate")
            self._run(home, ["--yes", "--delete-secret-and-public-key", state["retiring"]])
            state = {"current": state["current"], "retiring": None, "rotated_at": None}
            self._save(home, state)
            return self._keys(home, state)

    def clearsign(self, tenant_id: int, signers: list[str], data: bytes) -> str:
        return self._sign(tenant_id, signers, ["--digest-algo", "SHA512", "--clearsign"], data)

    def detach_sign(self, tenant_id: int, signers: list[str], data: bytes) -> str:
        return self._sign(tenant_id, signers, ["--digest-algo", "SHA512", "--armor", "--detach-sign"], data)

    def _sign(self, tenant_id: int, signers: list[str], args: list[str], data: bytes) -> str:
        users: list[str] = []
        for fpr in signers:
            if not re.fullmatch(r"[0-9A-F]{40,64}", fpr):
                raise SigningUnavailable(f"{fpr!r} is not a key fingerprint")
            users += ["--local-user", f"{fpr}!"]  # "!": exactly this key, not a subkey gpg may prefer
        with self._locked(tenant_id) as home:
            return self._run(home, [*users, *args], data).decode()

    def _generate(self, home: Path, uid: str) -> str:
        before = set(self._list_fprs(home))
        self._run(home, ["--yes", "--quick-gen-key", uid, "ed25519", "sign", "never"])
        made = [f for f in self._list_fprs(home) if f not in before]
        if len(made) != 1:
            raise SigningUnavailable("gpg generated no key")
        return made[0]

    @staticmethod
    def _state(home: Path) -> dict[str, str | None] | None:
        try:
            state = json.loads((home / _STATE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise SigningUnavailable(f"the overlay's key state cannot be read ({e}): restore {home / _STATE}") from None
        return {k: state.get(k) for k in ("current", "retiring", "rotated_at")}

    @staticmethod
    def _save(home: Path, state: dict[str, str | None]) -> None:
        tmp = home / f".{_STATE}.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, home / _STATE)

    def _keys(self, home: Path, state: dict[str, str | None]) -> RepoKeys:
        current = state["current"]
        assert current is not None
        keys = RepoKeys(current, state["retiring"], state["rotated_at"], "")
        public = self._run(home, ["--armor", "--export", *keys.signers]).decode()
        return RepoKeys(keys.current, keys.retiring, keys.rotated_at, public)
