"""The GnuPG adapter of the overlay's repository keys (one home per tenant under `DATA_DIR/openpgp-apt`, apart from
the CSAF keys): InRelease clearsigned and Release.gpg signed by every active key.

A tenant has a current key and, while a rotation runs, a *retiring* one (services/signing_keys.py keeps them in
the database): every index is then signed by both (InRelease and Release.gpg carry two signatures), and the public
key file devices fetch holds both. A device still holding only the old key keeps verifying (apt accepts a
signature by any key of its Signed-By file; the Debian archive itself is signed by several keys), and the agent
fetches the new file on its next pass. Before the database kept the keys, which key was which was kept in the home
(`bulkhead-keys.json`); :meth:`RepoPgp.rotation_state` reads it once, when the home's keys are taken into the
database.
"""

from __future__ import annotations

import json

from .openpgp import KeyBundle, OpenPgp, SigningUnavailable

__all__ = ["RepoPgp"]

_STATE = "bulkhead-keys.json"


class RepoPgp(OpenPgp):
    """Clearsigning (InRelease) and detached signatures by every key of a bundle (the current and the retiring)."""

    def clearsign(self, tenant_id: int, keys: KeyBundle, data: bytes) -> str:
        return self._sign(tenant_id, keys, list(keys.fingerprints), ["--digest-algo", "SHA512", "--clearsign"], data, True)

    def detach_sign(self, tenant_id: int, keys: KeyBundle, data: bytes) -> str:
        args = ["--digest-algo", "SHA512", "--armor", "--detach-sign"]
        return self._sign(tenant_id, keys, list(keys.fingerprints), args, data, True)

    def rotation_state(self, tenant_id: int) -> tuple[str, str | None, str | None] | None:
        """The current key, the retiring one and when the rotation began (ISO 8601), as the home recorded them."""
        path = self.root / f"tenant-{tenant_id}" / _STATE
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise SigningUnavailable(f"the overlay's key state cannot be read ({e}): restore {path}") from None
        if not isinstance(state, dict) or not isinstance(state.get("current"), str):
            raise SigningUnavailable(f"the overlay's key state names no current key: restore {path}")
        return state["current"], state.get("retiring"), state.get("rotated_at")
