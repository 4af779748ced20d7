"""Signing keys shared by every server host (services/signing_keys.py), on SQLite and PostgreSQL with the real gpg.

Two hosts (two data directories, one database) sign advisories and the overlay's indexes with one key, through a
rotation too; two hosts that make the first key at once end with one; the keys a host's GnuPG home held from before
are taken into the database, not replaced; the stored secret keys are sealed with the server secret; a bad key
import is refused and stores nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from bulkhead.server.advisory_models import CraProvider
from bulkhead.server.db import Database
from bulkhead.server.errors import Conflict, Invalid
from bulkhead.server.key_models import SigningKey
from bulkhead.server.models import AuditEvent, Tenant
from bulkhead.server.openpgp import OpenPgp, SigningUnavailable
from bulkhead.server.overlay_keys import RepoPgp
from bulkhead.server.security import unseal
from bulkhead.server.services.auth import Principal
from bulkhead.server.services.cra_advisories import AdvisoryService
from bulkhead.server.services.overlay import OverlayService
from bulkhead.server.services.releases import Upload
from bulkhead.server.services.signing_keys import ADVISORIES, APT, SharedKeys
from bulkhead.server.settings import Settings
from bulkhead.server.store import FsStore
from tests.overlay_debs import make_deb

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed (apt install gnupg)")

SECRET = b"the cluster's BULKHEAD_SECRET..."
ORIGIN = "https://updates.example"
T = dt.datetime(2026, 9, 22, 8, 30, tzinfo=dt.UTC)


def _tenant(db: Database, name: str = "acme") -> int:
    with db.session() as s:
        t = Tenant(name=name)
        s.add(t)
        s.flush()
        return t.id


def _admin(tid: int) -> Principal:
    return Principal("user", "root", tid, "acme", "admin")


def _advisories(db: Database, host: Path, secret: bytes = SECRET) -> AdvisoryService:
    """One host's advisory service: its own data directory, the cluster's database and secret."""
    return AdvisoryService(db, OpenPgp(host / "openpgp"), secret, Settings(data_dir=host), clock=lambda: T)


def _sign(svc: AdvisoryService, tid: int, data: bytes) -> tuple[str, str]:
    """What publishing an advisory does: the provider's key (made at the first publication) signs the document."""
    with svc.db.session() as s:
        signed = svc.providers.sign(s, svc.providers.provider(s, tid, ORIGIN), _admin(tid), data)
        assert signed is not None
        return signed


def _provider_key(db: Database, tid: int) -> tuple[str | None, str | None]:
    with db.session() as s:
        row = s.get(CraProvider, tid)
        return (row.key_fingerprint, row.public_key) if row else (None, None)


def _key_audits(db: Database, tid: int) -> list[dict[str, Any]]:
    with db.session() as s:
        q = select(AuditEvent).where(AuditEvent.tenant_id == tid, AuditEvent.action == "cra.provider.key")
        return [e.details for e in s.scalars(q.order_by(AuditEvent.id))]


def _rows(db: Database) -> list[dict[str, Any]]:
    with db.session() as s:
        return [dict(r._mapping) for r in s.execute(text("SELECT * FROM signing_keys ORDER BY tenant_id, purpose"))]


def _signers(tmp: Path, public: str, signed: str, data: bytes | None = None) -> set[str]:
    """The fingerprints of the valid signatures (gpgv, the way apt verifies) by the keys of `public`."""
    work = tmp / f"verify-{len(list(tmp.glob('verify-*')))}"
    work.mkdir()
    keyring = work / "keyring.gpg"
    subprocess.run(["gpg", "--dearmor", "--yes", "-o", str(keyring)], input=public.encode(), check=True)
    (work / "signed.asc").write_text(signed)
    files = [work / "signed.asc"]
    if data is not None:
        (work / "data").write_bytes(data)
        files.append(work / "data")
    r = subprocess.run(["gpgv", "--status-fd", "1", "--keyring", str(keyring), *map(str, files)], capture_output=True, text=True)
    return {line.split()[2] for line in r.stdout.splitlines() if line.startswith("[GNUPG:] VALIDSIG ")}


def _legacy_key(home: Path, uid: str) -> tuple[str, str]:
    """A key made in a GnuPG home the way the server made it before the database kept keys: fingerprint, public key."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    short = Path(tempfile.mkdtemp(prefix="bh-test-")) / "home"  # gpg-agent's socket paths are at most 107 bytes
    short.symlink_to(home, target_is_directory=True)
    env = {"GNUPGHOME": str(short), "PATH": "/usr/bin:/bin"}
    gpg = ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run([*gpg, "--quick-gen-key", uid, "ed25519", "sign", "never"], env=env, check=True, capture_output=True)
    out = subprocess.run([*gpg, "--with-colons", "--list-secret-keys", uid], env=env, check=True, capture_output=True).stdout
    fpr = next(line.split(":")[9] for line in out.decode().splitlines() if line.startswith("fpr:"))
    public = subprocess.run([*gpg, "--armor", "--export", fpr], env=env, check=True, capture_output=True).stdout.decode()
    return fpr, public


def _held(pgp: OpenPgp, tid: int) -> set[str]:
    return set(pgp._list_fprs(pgp.root / f"tenant-{tid}"))


def test_two_hosts_sign_advisories_with_one_key(db: Database, tmp_path: Path) -> None:
    tid = _tenant(db)
    host_a, host_b = _advisories(db, tmp_path / "host-a"), _advisories(db, tmp_path / "host-b")
    fpr_a, sig_a = _sign(host_a, tid, b"document 1")
    fpr_b, sig_b = _sign(host_b, tid, b"document 2")
    assert fpr_a == fpr_b
    served_fpr, public = _provider_key(db, tid)  # what provider-metadata.json names and openpgp/FPR.asc serves
    assert served_fpr == fpr_a and public is not None
    assert _signers(tmp_path, public, sig_a, b"document 1") == {fpr_a} == _signers(tmp_path, public, sig_b, b"document 2")
    assert _held(host_b.pgp, tid) == {fpr_a}, "host b's GnuPG home got the stored key"
    assert _key_audits(db, tid) == [{"fingerprint": fpr_a, "origin": "generated"}]
    assert [(r["tenant_id"], r["purpose"], r["fingerprint"]) for r in _rows(db)] == [(tid, ADVISORIES, fpr_a)]


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_two_hosts_publish_the_overlay_with_one_key_through_a_rotation(db: Database, tmp_path: Path) -> None:
    tid = _tenant(db)
    store = FsStore(tmp_path / "store")  # shared by the hosts (S3 or a shared mount)
    hosts = [OverlayService(db, store, RepoPgp(tmp_path / h / "openpgp-apt"), SECRET, ("amd64",), 7, 1 << 20) for h in "ab"]
    ops, device = Principal("user", "root", tid, "acme", "admin"), Principal("device", "d1", tid, "acme", "device", 1)

    def upload(host: OverlayService, name: str) -> set[str]:
        """Upload on `host`; the keys that signed the suite's InRelease, verified against the key devices fetch."""
        host.upload(ops, "bookworm", Upload.from_file(store, make_deb(tmp_path / name, name, "1.0-1")))
        inrelease = host.release_file(device, "bookworm", "InRelease")
        return _signers(tmp_path, hosts[0].device_key(device), inrelease)

    first = upload(hosts[0], "hello-a")
    assert upload(hosts[1], "hello-b") == first and len(first) == 1
    assert hosts[0].key(ops) == hosts[1].key(ops)

    rotating = hosts[0].rotate_key(ops)  # host a rotates; host b signs with both keys
    assert rotating["retiring_fingerprint"] in first and hosts[1].key(ops) == rotating
    both = {rotating["fingerprint"], rotating["retiring_fingerprint"]}
    assert upload(hosts[1], "hello-c") == both
    with pytest.raises(Conflict, match="not finished"):
        hosts[1].rotate_key(ops)

    done = hosts[1].finish_rotation(ops)  # host b finishes; host a signs with the new key only, and drops the old
    assert done["fingerprint"] == rotating["fingerprint"] and done["retiring_fingerprint"] is None
    assert _held(hosts[0].pgp, tid) == both
    assert upload(hosts[0], "hello-d") == {done["fingerprint"]}
    assert _held(hosts[0].pgp, tid) == {done["fingerprint"]}


def test_hosts_making_the_first_key_at_once_end_with_one(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both hosts find no key and make one before either stores it: one insert wins, the other host uses its key."""
    tid = _tenant(db)
    pgps = [RepoPgp(tmp_path / h / "openpgp-apt") for h in "ab"]
    hosts = [SharedKeys(db, SECRET, pgp, APT) for pgp in pgps]
    made: list[str] = []
    both_made = threading.Barrier(2, timeout=60)
    for pgp in pgps:

        def make(uid: str, beside: Any = None, real: Any = pgp.make) -> Any:
            key = real(uid, beside)
            made.append(key.fingerprints[0])
            both_made.wait()
            return key

        monkeypatch.setattr(pgp, "make", make)
    with ThreadPoolExecutor(2) as pool:
        keys = list(pool.map(lambda h: h.keys(tid, "Bulkhead overlay repository of acme"), hosts))
    assert len(set(made)) == 2, "both hosts made a key"
    assert keys[0] == keys[1] and keys[0].current in made
    assert [r["fingerprint"] for r in _rows(db)] == [keys[0].current]
    for host, pgp in zip(hosts, pgps, strict=True):
        assert _signers(tmp_path, keys[0].public, pgp.clearsign(tid, host.bundle(keys[0]), b"Suite: x\n")) == {keys[0].current}


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)  # SQLite runs one writing transaction at a time
def test_publications_making_the_first_advisory_key_at_once_end_with_one(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same inside two publications' transactions (PostgreSQL: SQLite runs one writing transaction at a time)."""
    tid = _tenant(db)
    hosts = [_advisories(db, tmp_path / h) for h in "ab"]
    both_made = threading.Barrier(2, timeout=60)
    for host in hosts:

        def make(uid: str, beside: Any = None, real: Any = host.pgp.make) -> Any:
            key = real(uid, beside)
            both_made.wait()
            return key

        monkeypatch.setattr(host.pgp, "make", make)
    with ThreadPoolExecutor(2) as pool:
        signed = list(pool.map(lambda h: _sign(h, tid, b"doc"), hosts))
    assert signed[0][0] == signed[1][0] == _provider_key(db, tid)[0]
    public = _provider_key(db, tid)[1]
    assert public is not None and all(_signers(tmp_path, public, sig, b"doc") == {fpr} for fpr, sig in signed)
    assert [a["origin"] for a in _key_audits(db, tid)] == ["generated"]


def test_keys_a_home_held_before_are_taken_into_the_database_not_replaced(db: Database, tmp_path: Path) -> None:
    """An existing deployment: host a's GnuPG homes hold the advisory key its provider publishes and the overlay's
    keys in mid-rotation; host b has none. They keep signing, on both hosts; nothing new is made."""
    tid = _tenant(db)
    old_fpr, old_public = _legacy_key(tmp_path / "host-a" / "openpgp" / f"tenant-{tid}", "Acme CSAF <csaf@acme.bulkhead>")
    with db.session() as s:
        s.add(CraProvider(tenant_id=tid, key_fingerprint=old_fpr, public_key=old_public))
    host_a, host_b = _advisories(db, tmp_path / "host-a"), _advisories(db, tmp_path / "host-b")
    with pytest.raises(SigningUnavailable, match=f"{old_fpr} is neither in the database nor in this host's GnuPG home"):
        _sign(host_b, tid, b"doc")  # host b must not make a key of its own
    assert _rows(db) == []
    assert _sign(host_a, tid, b"doc")[0] == old_fpr
    fpr, sig = _sign(host_b, tid, b"doc")
    assert fpr == old_fpr and _signers(tmp_path, old_public, sig, b"doc") == {old_fpr}
    assert _provider_key(db, tid) == (old_fpr, old_public) and _key_audits(db, tid) == []

    apt_home = tmp_path / "host-a" / "openpgp-apt" / f"tenant-{tid}"
    retiring, _ = _legacy_key(apt_home, "Bulkhead overlay repository of acme")
    current, _ = _legacy_key(apt_home, "Bulkhead overlay repository of acme (2026-09-01 10:00:00)")
    state = {"current": current, "retiring": retiring, "rotated_at": "2026-09-01T10:00:00+00:00"}
    (apt_home / "bulkhead-keys.json").write_text(json.dumps(state))
    apt_a = SharedKeys(db, SECRET, RepoPgp(tmp_path / "host-a" / "openpgp-apt"), APT)
    keys = apt_a.keys(tid, "Bulkhead overlay repository of acme")
    assert (keys.current, keys.retiring) == (current, retiring)
    assert keys.rotated_at == dt.datetime(2026, 9, 1, 10, tzinfo=dt.UTC)
    pgp_b = RepoPgp(tmp_path / "host-b" / "openpgp-apt")
    apt_b = SharedKeys(db, SECRET, pgp_b, APT)
    assert apt_b.keys(tid, "x") == keys
    assert _signers(tmp_path, keys.public, pgp_b.clearsign(tid, apt_b.bundle(keys), b"Suite: x\n")) == {current, retiring}

    other = _tenant(db, "other")  # a home from before rotation existed: its one key is the current one
    only, _ = _legacy_key(tmp_path / "host-b" / "openpgp-apt" / f"tenant-{other}", "Bulkhead overlay repository of other")
    assert apt_b.keys(other, "x").current == only and apt_a.keys(other, "x").current == only


def test_stored_secret_keys_are_sealed_with_the_server_secret(db: Database, tmp_path: Path) -> None:
    tid = _tenant(db)
    host = _advisories(db, tmp_path / "host-a")
    _sign(host, tid, b"doc")
    SharedKeys(db, SECRET, RepoPgp(tmp_path / "host-a" / "openpgp-apt"), APT).keys(tid, "x")
    rows = _rows(db)
    assert [r["purpose"] for r in rows] == [ADVISORIES, APT]
    for row in rows:
        secret = unseal(SECRET, row["secret_sealed"])
        assert "BEGIN PGP PRIVATE KEY BLOCK" in secret and row["secret_sealed"].startswith("v1:")
        body = [line for line in secret.splitlines() if len(line) > 40]  # the armour's base64 lines
        stored = " ".join(str(value) for value in row.values())
        assert "PRIVATE KEY" not in stored and not any(line in stored for line in body)
    if db.engine.dialect.name == "sqlite":
        files = b"".join(p.read_bytes() for p in tmp_path.glob("db.sqlite*"))
        assert b"PRIVATE KEY" not in files and rows[0]["secret_sealed"].encode() in files

    # a host given another server secret cannot open them, and says what to do
    stranger = _advisories(db, tmp_path / "host-c", secret=b"another secret")
    with pytest.raises(SigningUnavailable, match="BULKHEAD_SECRET"):
        _sign(stranger, tid, b"doc")


def test_a_bad_key_import_is_refused_and_stores_nothing(db: Database, tmp_path: Path) -> None:
    tid = _tenant(db)
    host_a, host_b = _advisories(db, tmp_path / "host-a"), _advisories(db, tmp_path / "host-b")
    admin = _admin(tid)
    for bad, message in (
        ("not a key", "ASCII-armoured OpenPGP secret key"),
        ("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nAAAA\n-----END PGP PRIVATE KEY BLOCK-----\n", "cannot be imported"),
    ):
        with pytest.raises(Invalid, match=message) as refused:
            host_a.providers.import_key(admin, bad, ORIGIN)
        assert refused.value.status == 400
    assert _rows(db) == [] and _provider_key(db, tid) == (None, None) and _key_audits(db, tid) == []

    generated, _ = _sign(host_a, tid, b"doc")
    before, provider = _rows(db), _provider_key(db, tid)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    env = {"GNUPGHOME": str(locked), "PATH": "/usr/bin:/bin"}
    gpg = ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "pw"]
    subprocess.run(
        [*gpg, "--quick-gen-key", "L <l@x.example>", "ed25519", "sign", "never"], env=env, check=True, capture_output=True
    )
    with pytest.raises(Invalid, match="passphrase") as refused:
        host_b.providers.import_key(
            admin, subprocess.run([*gpg, "--armor", "--export-secret-keys"], env=env, capture_output=True).stdout.decode(), ORIGIN
        )
    assert refused.value.status == 400
    assert _rows(db) == before and _provider_key(db, tid) == provider and len(_key_audits(db, tid)) == 1
    assert _sign(host_b, tid, b"doc")[0] == generated

    # a good key imported on host b signs on host a from then on; host a's home drops the key it had been given
    fpr, public = _legacy_key(tmp_path / "admin", "Acme PSIRT <psirt@acme.example>")
    env["GNUPGHOME"] = str(tmp_path / "admin")
    armored = subprocess.run([*gpg[:-2], "--armor", "--export-secret-keys"], env=env, capture_output=True, check=True)
    shown = host_b.providers.import_key(admin, armored.stdout.decode(), ORIGIN)
    assert shown["signing"]["fingerprint"] == fpr
    signed_fpr, sig = _sign(host_a, tid, b"doc")
    assert signed_fpr == fpr and _signers(tmp_path, public, sig, b"doc") == {fpr}
    assert _held(host_a.pgp, tid) == {fpr}
    assert [a["origin"] for a in _key_audits(db, tid)] == ["generated", "imported"]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(SigningKey)) == 1
