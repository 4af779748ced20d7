"""The GnuPG adapter with the real gpg: a key generated once per tenant, detached signatures that verify, an
administrator's key imported in its place, and keys that cannot sign unattended refused with nothing changed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bulkhead.server.errors import Invalid
from bulkhead.server.openpgp import OpenPgp, SigningUnavailable

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed (apt install gnupg)")


def _gpg(home: Path, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    home.mkdir(mode=0o700, exist_ok=True)
    env = {"GNUPGHOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", *args], input=data, env=env, capture_output=True)


def _verifies(tmp: Path, public: str, data: bytes, signature: str) -> bool:
    home = tmp / f"verify-{len(list(tmp.glob('verify-*')))}"
    assert _gpg(home, "--import", data=public.encode()).returncode == 0
    (home / "sig.asc").write_text(signature)
    (home / "data").write_bytes(data)
    return _gpg(home, "--verify", str(home / "sig.asc"), str(home / "data")).returncode == 0


def test_key_generated_once_signs_and_an_imported_key_replaces_it(tmp_path: Path) -> None:
    pgp = OpenPgp(tmp_path / "homes")
    fpr, public = pgp.ensure_key(7, "Acme CSAF <csaf@acme.example>")
    assert pgp.ensure_key(7, "other uid")[0] == fpr  # generated once
    assert pgp.ensure_key(8, "Other tenant <x@y.example>")[0] != fpr  # one key per tenant
    sig = pgp.sign(7, fpr, b"document")
    assert sig.startswith("-----BEGIN PGP SIGNATURE-----")
    assert _verifies(tmp_path, public, b"document", sig) and not _verifies(tmp_path, public, b"documenT", sig)

    admin = tmp_path / "admin"
    assert (
        _gpg(
            admin, "--passphrase", "", "--quick-gen-key", "Acme PSIRT <psirt@acme.example>", "ed25519", "sign", "never"
        ).returncode
        == 0
    )
    secret = _gpg(admin, "--armor", "--export-secret-keys").stdout.decode()
    new_fpr, new_public = pgp.import_key(7, secret)
    assert new_fpr != fpr
    sig = pgp.sign(7, new_fpr, b"document")
    assert _verifies(tmp_path, new_public, b"document", sig)
    with pytest.raises(SigningUnavailable):
        pgp.sign(7, fpr, b"document")  # the old key is gone


def test_bad_keys_are_refused_and_change_nothing(tmp_path: Path) -> None:
    pgp = OpenPgp(tmp_path / "homes")
    fpr, _ = pgp.ensure_key(1, "Acme <a@acme.example>")
    with pytest.raises(Invalid, match="ASCII-armoured OpenPGP secret key"):
        pgp.import_key(1, "not a key")
    locked = tmp_path / "locked"
    assert _gpg(locked, "--passphrase", "pw", "--quick-gen-key", "L <l@x.example>", "ed25519", "sign", "never").returncode == 0
    secret = _gpg(locked, "--passphrase", "pw", "--armor", "--export-secret-keys").stdout.decode()
    with pytest.raises(Invalid, match="passphrase"):
        pgp.import_key(1, secret)
    assert pgp.ensure_key(1, "x")[0] == fpr
    assert not OpenPgp(tmp_path / "none", enabled=False).available


def test_a_key_is_made_and_used_in_a_gnupg_home_deeper_than_a_socket_path_allows(tmp_path: Path) -> None:
    """gpg-agent puts its sockets in the home when /run/user/<uid> is absent; a Unix socket path is at most 107 bytes."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    pgp = OpenPgp(deep)
    if not pgp.available:
        pytest.fail("gpg is not installed (apt install gnupg)")
    fpr, public = pgp.ensure_key(7, "deep <deep@example.com>")
    assert len(str(deep / "tenant-7" / "S.gpg-agent.extra")) > 107 and fpr and "BEGIN PGP PUBLIC KEY BLOCK" in public
