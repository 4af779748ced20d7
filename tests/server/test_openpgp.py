"""The GnuPG adapter with the real gpg: keys made apart from the tenants' homes, detached signatures that verify, a
home made to hold the keys it is given (a key given before and not now deleted, a key of its own from before left),
an administrator's key checked, and keys that cannot sign unattended refused."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bulkhead.server.errors import Invalid
from bulkhead.server.openpgp import OpenPgp, SigningUnavailable

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed (apt install gnupg)")


def _gpg(home: Path, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {"GNUPGHOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", *args], input=data, env=env, capture_output=True)


def _verifies(tmp: Path, public: str, data: bytes, signature: str) -> bool:
    home = tmp / f"verify-{len(list(tmp.glob('verify-*')))}"
    assert _gpg(home, "--import", data=public.encode()).returncode == 0
    (home / "sig.asc").write_text(signature)
    (home / "data").write_bytes(data)
    return _gpg(home, "--verify", str(home / "sig.asc"), str(home / "data")).returncode == 0


def _held(pgp: OpenPgp, tenant_id: int) -> list[str]:
    return pgp._list_fprs(pgp.root / f"tenant-{tenant_id}")


def test_keys_are_made_apart_and_a_home_holds_what_it_is_given(tmp_path: Path) -> None:
    pgp = OpenPgp(tmp_path / "homes")
    key = pgp.make("Acme CSAF <csaf@acme.example>")
    assert len(key.fingerprints) == 1 and "BEGIN PGP PRIVATE KEY BLOCK" in key.secret and "PUBLIC KEY" in key.public
    assert not (tmp_path / "homes" / "tenant-7").exists() and not list((tmp_path / "homes").iterdir()), "no scratch home left"
    sig = pgp.sign(7, key, b"document")
    assert sig.startswith("-----BEGIN PGP SIGNATURE-----")
    assert _verifies(tmp_path, key.public, b"document", sig) and not _verifies(tmp_path, key.public, b"documenT", sig)
    assert _held(pgp, 7) == list(key.fingerprints)

    # another process of the host (or a host whose home was filled before) signs with the same key
    other = OpenPgp(tmp_path / "homes")
    assert _verifies(tmp_path, key.public, b"x", other.sign(7, key, b"x"))

    # an administrator's key: checked apart, then the home is given it in place of the key it was given before
    admin = tmp_path / "admin"
    made = _gpg(admin, "--passphrase", "", "--quick-gen-key", "Acme PSIRT <psirt@acme.example>", "ed25519", "sign", "never")
    assert made.returncode == 0
    imported = pgp.read(_gpg(admin, "--armor", "--export-secret-keys").stdout.decode())
    assert imported.fingerprints != key.fingerprints
    assert _verifies(tmp_path, imported.public, b"document", other.sign(7, imported, b"document"))
    assert _held(pgp, 7) == list(imported.fingerprints), "the key given before is deleted"

    # a bundle of two keys (the overlay's rotation) and the same without the old one
    both = pgp.make("Acme repo (new)", beside=key)
    assert both.fingerprints[1:] == key.fingerprints and both.fingerprints[0] not in key.fingerprints
    assert pgp.only(both, [both.fingerprints[0]]).fingerprints == both.fingerprints[:1]


def test_a_key_a_home_made_before_is_found_and_stays(tmp_path: Path) -> None:
    """A home from before the database kept keys: its key is found (to be taken into the database); given another
    key, the home keeps its own, which it was never given."""
    pgp = OpenPgp(tmp_path / "homes")
    assert pgp.local(3) is None and not (tmp_path / "homes" / "tenant-3").exists()
    home = tmp_path / "homes" / "tenant-3"
    assert _gpg(home, "--passphrase", "", "--quick-gen-key", "Old <old@x.example>", "ed25519", "sign", "never").returncode == 0
    old = pgp.local(3)
    assert old is not None and len(old.fingerprints) == 1 and "PRIVATE KEY" in old.secret
    assert pgp.local(3, [old.fingerprints[0]]) == old
    assert pgp.local(3, ["A" * 40]) is None
    new = pgp.make("New <new@x.example>")
    assert _verifies(tmp_path, new.public, b"d", pgp.sign(3, new, b"d"))
    assert sorted(_held(pgp, 3)) == sorted([*old.fingerprints, *new.fingerprints])


def test_bad_keys_are_refused(tmp_path: Path) -> None:
    pgp = OpenPgp(tmp_path / "homes")
    with pytest.raises(Invalid, match="ASCII-armoured OpenPGP secret key"):
        pgp.read("not a key")
    with pytest.raises(Invalid, match="cannot be imported"):
        pgp.read("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nAAAA\n-----END PGP PRIVATE KEY BLOCK-----\n")
    locked = tmp_path / "locked"
    assert _gpg(locked, "--passphrase", "pw", "--quick-gen-key", "L <l@x.example>", "ed25519", "sign", "never").returncode == 0
    secret = _gpg(locked, "--passphrase", "pw", "--armor", "--export-secret-keys").stdout.decode()
    with pytest.raises(Invalid, match="passphrase"):
        pgp.read(secret)
    assert not list((tmp_path / "homes").iterdir()), "no scratch home left"
    off = OpenPgp(tmp_path / "none", enabled=False)
    assert not off.available
    with pytest.raises(SigningUnavailable, match="apt install gnupg"):
        off.make("x")


def test_a_key_is_made_and_used_in_a_gnupg_home_deeper_than_a_socket_path_allows(tmp_path: Path) -> None:
    """gpg-agent puts its sockets in the home when /run/user/<uid> is absent; a Unix socket path is at most 107 bytes."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    pgp = OpenPgp(deep)
    if not pgp.available:
        pytest.fail("gpg is not installed (apt install gnupg)")
    key = pgp.make("deep <deep@example.com>")
    assert _verifies(tmp_path, key.public, b"deep", pgp.sign(7, key, b"deep"))
    assert len(str(deep / "tenant-7" / "S.gpg-agent.extra")) > 107
