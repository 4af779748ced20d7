"""The S3 artifact store against a real S3 server (SeaweedFS): multipart uploads, aborts that leave nothing, ranged
reads with read-ahead, clear errors for missing objects, readiness, and presigned delivery through a live server."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from bulkhead.agent.client import Client
from bulkhead.server.errors import Invalid, PayloadTooLarge
from bulkhead.server.readiness import check
from bulkhead.server.services.releases import Upload
from bulkhead.server.store import ArtifactMissing
from bulkhead.server.store_s3 import PART_BYTES, READ_AHEAD, S3Store
from tests.conftest import RAUC_DATA
from tests.live import live_server
from tests.seaweed import S3Server
from tests.server.conftest import LiveServer, pg_url

GOOD = RAUC_DATA / "good-verity-bundle.raucb"


@pytest.fixture
def store(s3: S3Server, tmp_path: Path) -> S3Store:
    return S3Store(s3.client(), s3.bucket(), "art", tmp_path / "artifacts")


def _objects(store: S3Store) -> set[str]:
    """Object names and multipart uploads in progress under the store's prefix."""
    c, b, prefix = store.client, store.bucket, store.prefix
    names = {o["Key"].rsplit("/", 1)[-1] for o in c.list_objects_v2(Bucket=b, Prefix=prefix).get("Contents", [])}
    return names | {"multipart:" + u["Key"] for u in c.list_multipart_uploads(Bucket=b, Prefix=prefix).get("Uploads", [])}


async def _chunks(data: bytes, size: int = 1 << 16) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_a_large_upload_goes_up_in_parts_and_is_committed_under_its_digest(store: S3Store) -> None:
    data = os.urandom(2 * PART_BYTES + 12345)
    sha = hashlib.sha256(data).hexdigest()
    staging = store.stage()
    sent = []
    for i in range(0, len(data), 1 << 20):
        staging.write(data[i : i + (1 << 20)])
        assert len(staging.buf) <= PART_BYTES + (1 << 20)  # type: ignore[attr-defined]  # memory stays bounded
        if staging.needs_flush:
            staging.flush()
            sent.append(len(staging.parts))  # type: ignore[attr-defined]
    assert sent == [1, 2]  # two full parts went up while writing
    staged = staging.finish()
    assert staged.size == len(data)
    with staged.reader() as r:  # verification reads the incoming object by range
        assert r.read_at(PART_BYTES - 3, 6) == data[PART_BYTES - 3 : PART_BYTES + 3]
    store.commit(staged, sha)
    staged.discard()  # after a commit: nothing to do
    assert _objects(store) == {sha}
    assert store.stat(sha).size == len(data)
    body = store.get_range(sha, PART_BYTES * 2, 12345)
    assert body.read() == data[-12345:]
    body.close()
    with store.open(sha) as f:
        assert hashlib.sha256(f.read()).hexdigest() == sha


def test_an_aborted_upload_leaves_nothing(store: S3Store) -> None:
    data = os.urandom(PART_BYTES + 1000)

    async def too_big() -> None:
        await Upload.receive(store, _chunks(data), max_bytes=PART_BYTES + 10, declared=None)

    with pytest.raises(PayloadTooLarge):
        asyncio.run(too_big())  # one part was uploaded before the limit was hit: the multipart upload is aborted
    assert _objects(store) == set()

    async def truncated() -> None:
        await Upload.receive(store, _chunks(data[:5000]), max_bytes=1 << 30, declared=10_000)

    with pytest.raises(Invalid, match="truncated"):
        asyncio.run(truncated())
    assert _objects(store) == set()

    async def good() -> Upload:
        return await Upload.receive(store, _chunks(data), max_bytes=1 << 30, declared=len(data))

    upload = asyncio.run(good())
    assert upload.sha256 == hashlib.sha256(data).hexdigest() and upload.size == len(data)
    assert len(_objects(store)) == 1  # the staged upload, under .incoming
    upload.discard()  # a rejected upload (bad signature): nothing stays
    assert _objects(store) == set()


def test_ranged_reads_read_ahead_and_match_the_bytes(store: S3Store) -> None:
    data = os.urandom(3 * READ_AHEAD + 777)
    sha = hashlib.sha256(data).hexdigest()
    store.commit(store.stage_bytes(data), sha)
    reader = store.reader(sha)
    gets = 0
    real = store._get

    def counting(key: str, start: int, length: int) -> bytes:
        nonlocal gets
        gets += 1
        return real(key, start, length)

    store._get = counting  # type: ignore[method-assign]
    pos = 0
    while pos < len(data):  # the bundle library's pattern: many small sequential reads
        assert reader.read_at(pos, 4096) == data[pos : pos + 4096]
        pos += 4096
    assert gets == 4  # one GET per READ_AHEAD, not one per read
    for off, n in [(0, 1), (READ_AHEAD - 1, 2), (len(data) - 5, 50), (READ_AHEAD, 2 * READ_AHEAD)]:
        assert reader.read_at(off, n) == data[off : off + n]
    assert reader.read_at(len(data), 10) == b""
    reader.close()


def test_a_missing_object_is_a_clear_not_found(store: S3Store) -> None:
    sha = "ab" * 32
    for call in (store.stat, store.reader, lambda s: store.get_range(s, 0, 10)):
        with pytest.raises(ArtifactMissing, match=f"artifact {sha} is not in the artifact store \\(bucket {store.bucket}\\)"):
            call(sha)
    with pytest.raises(ArtifactMissing), store.local(sha):
        pass
    assert ArtifactMissing(sha, "x").status == 404
    store.remove(sha)  # removing what is not there is fine


def test_a_deltas_local_copy_is_a_temporary_file_under_the_data_dir(store: S3Store) -> None:
    data = os.urandom(100_000)
    sha = hashlib.sha256(data).hexdigest()
    store.commit(store.stage_bytes(data), sha)
    with store.local(sha) as p:
        assert p.read_bytes() == data and store.root in p.parents
    assert not p.exists()


def test_clean_incoming_keeps_uploads_in_progress(store: S3Store) -> None:
    staging = store.stage()
    staging.write(os.urandom(PART_BYTES))
    staging.flush()  # a multipart upload another server process might be running
    store.clean_incoming()
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads")
    staging.abort()
    assert not store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads")


def test_readiness_checks_the_bucket(s3: S3Server, store: S3Store, tmp_path: Path) -> None:
    from bulkhead.server.db import Database, migrate

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    db = Database(url)
    assert check(db, store, lambda: (0, 0))["store"] == "ok"
    gone = S3Store(s3.client(), "no-such-bucket-here", "", tmp_path / "x")
    assert check(db, gone, lambda: (0, 0))["store"].startswith("bucket does not answer")
    db.dispose()


@pytest.fixture(scope="module")
def presigning(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    bucket = s3.bucket()
    env = {
        **s3.env(bucket, "p"),
        "BULKHEAD_S3_PRESIGN": "1",
        "BULKHEAD_DATABASE_URL": pg_url(),
    }
    with live_server(tmp_path_factory.mktemp("presign"), env) as srv:
        srv.s3 = (s3, bucket, "p/")
        yield srv


def test_presigned_delivery_redirects_devices_and_estimates_their_bytes(presigning: LiveServer) -> None:
    srv = presigning
    data = GOOD.read_bytes()
    token = srv.tenant()
    with srv.client(token) as c:
        rel = c.post("/api/v1/releases", content=data).json()
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()["token"]
        dev = c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": "d0", "compatible": "Test Config"}).json()
        c.put("/api/v1/devices/d0/desired-release", json={"release_id": rel["id"]}).raise_for_status()
        # a user's download still streams through the server
        full = c.get(f"/api/v1/releases/{rel['id']}/bundle")
        assert full.status_code == 200 and full.content == data
        assert (srv.data_dir / "artifacts").is_dir() and not list((srv.data_dir / "artifacts").glob("??/*"))
    u = f"{srv.url}/device/v1/releases/{rel['id']}/bundle"
    headers = {"authorization": f"Bearer {dev['credential']}", "range": "bytes=100-199"}
    r = httpx.get(u, headers=headers)
    assert r.status_code == 307 and r.headers["location"].startswith(f"{srv.s3[0].endpoint}/{srv.s3[1]}/p/")
    ranged = httpx.get(r.headers["location"], headers={"range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.content == data[100:200]
    assert httpx.head(u, headers=headers).status_code == 206  # HEAD answers here (no body to redirect)
    # the device agent follows the redirect (without its credential) and resumes with a range
    agent = Client(srv.url)
    agent.credential = dev["credential"]
    out = io.BytesIO(data[:1000])
    out.seek(1000)
    got = agent.download(u, out, 1000, f'"{rel["sha256"]}"')
    assert out.getvalue() == data and got.written == len(data) - 1000 and not got.restarted
    assert got.etag == f'"{rel["sha256"]}"'
    deadline = time.monotonic() + 15
    with srv.client(token) as c:
        while time.monotonic() < deadline:
            served = c.get("/api/v1/devices/d0").json()["bytes_served"]
            if served >= 100 + len(data) - 1000:
                break
            time.sleep(0.3)
    assert served == 100 + len(data) - 1000  # the requested ranges, counted when the device was redirected


@pytest.mark.parametrize("server", ["postgresql-granian-s3"], indirect=True, scope="session")
def test_a_release_lives_in_the_bucket_and_a_vanished_object_is_a_404(server: LiveServer) -> None:
    assert server.s3 is not None
    s3, bucket, prefix = server.s3
    data = GOOD.read_bytes()
    token = server.tenant()
    with server.client(token) as c:
        rel = c.post("/api/v1/releases", content=data).json()
        boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b"}).json()["token"]
        dev = c.post("/device/v1/enroll", json={"bootstrap_token": boot, "name": "v0", "compatible": "Test Config"}).json()
        c.put("/api/v1/devices/v0/desired-release", json={"release_id": rel["id"]}).raise_for_status()
    key = f"{prefix}{rel['sha256'][:2]}/{rel['sha256']}"
    assert s3.client().head_object(Bucket=bucket, Key=key)["ContentLength"] == len(data)
    assert not list((server.data_dir / "artifacts").glob("??/*"))  # nothing on the server's disk
    u = f"{server.url}/device/v1/releases/{rel['id']}/bundle"
    auth = {"authorization": f"Bearer {dev['credential']}"}
    r = httpx.get(u, headers=auth)
    assert r.status_code == 200 and r.content == data and r.headers["etag"] == f'"{rel["sha256"]}"'
    s3.client().delete_object(Bucket=bucket, Key=key)
    r = httpx.get(u, headers={**auth, "range": "bytes=0-9"})
    assert r.status_code == 404 and r.json()["error"] == "not_found" and "deleted" in r.json()["message"]


def test_a_store_that_does_not_answer_is_a_503_and_not_ready(tmp_path: Path) -> None:
    from bulkhead.server.db import Database, migrate
    from bulkhead.server.settings import Settings
    from bulkhead.server.store_s3 import StoreUnavailable
    from tests.live import free_port

    settings = Settings(
        data_dir=tmp_path, store="s3", s3_bucket="bucket", s3_endpoint=f"http://127.0.0.1:{free_port()}",
        s3_access_key="k", s3_secret_key="s", s3_region="us-east-1",
    )  # fmt: skip
    down = S3Store.from_settings(settings)
    with pytest.raises(StoreUnavailable, match=r"does not answer.*BULKHEAD_S3_ENDPOINT") as info:
        down.stat("ab" * 32)
    assert info.value.status == 503
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    db = Database(url)
    assert check(db, down, lambda: (0, 0))["store"] == "does not answer (EndpointConnectionError)"
    db.dispose()
