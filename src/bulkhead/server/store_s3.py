"""The S3 artifact store (boto3): objects `{prefix}ab/abcd…` in one bucket, uploads streamed as multipart uploads.

An upload goes to `{prefix}.incoming/{random}` in parts of PART_BYTES (memory stays bounded by one part) while the
caller hashes it; a commit copies it server-side to its digest's key and deletes the incoming object; an aborted
upload aborts its multipart upload, so nothing stays. Reads are ranged GETs (a read-ahead buffer for the bundle
library's small reads); tools that need a path get a temporary download under the data directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bulkhead.rauc import Reader

from .errors import ServerError
from .settings import Settings
from .store import MIN_FREE_BYTES, ArtifactMissing, ArtifactStore, Body, ReaderIO, Staged, Staging, Stored, check_sha256

__all__ = ["PART_BYTES", "READ_AHEAD", "S3Store", "StoreUnavailable"]

PART_BYTES = 8 * 1024 * 1024  # multipart part size (S3's minimum is 5 MiB); the memory an upload holds
READ_AHEAD = 4 * 1024 * 1024  # a reader fetches at least this much per GET
_MISSING = {"404", "NoSuchKey", "NotFound"}
_STALE = dt.timedelta(days=1)  # incoming uploads older than this are a crash's leftovers


class StoreUnavailable(ServerError, OSError):
    status = 503
    code = "store_unavailable"


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in _MISSING


class S3Reader:
    """Random access over one object by ranged GETs, with a read-ahead buffer (the bundle library reads in small
    pieces: headers, then the payload in blocks)."""

    def __init__(self, store: S3Store, key: str, size: int) -> None:
        self._s, self._key, self._size = store, key, size
        self._buf, self._at = b"", 0

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self._size - offset))
        if length == 0:
            return b""
        if self._at <= offset and offset + length <= self._at + len(self._buf):
            return self._buf[offset - self._at : offset - self._at + length]
        want = max(length, READ_AHEAD)
        data = self._s._get(self._key, offset, min(want, self._size - offset))
        if length < want:
            self._buf, self._at = data, offset
        return data[:length]

    def close(self) -> None:
        self._buf = b""


class _S3Staged(Staged):
    def __init__(self, store: S3Store, key: str, size: int) -> None:
        self.s, self.key, self.size = store, key, size
        self.committed = False

    @contextmanager
    def reader(self) -> Iterator[Reader]:
        r = S3Reader(self.s, self.key, self.size)
        try:
            yield r
        finally:
            r.close()

    def open(self) -> BinaryIO:
        return io.BufferedReader(ReaderIO(S3Reader(self.s, self.key, self.size)), 1 << 20)

    @contextmanager
    def local(self) -> Iterator[Path]:
        with self.s._download(self.key, self.size) as p:
            yield p

    def discard(self) -> None:
        if not self.committed:
            self.s._call(self.s.client.delete_object, Bucket=self.s.bucket, Key=self.key)


class _S3Staging(Staging):
    def __init__(self, store: S3Store) -> None:
        self.s, self.key = store, f"{store.prefix}.incoming/{uuid.uuid4().hex}"
        self.buf = bytearray()
        self.size = 0
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.buf += data
        self.size += len(data)
        self.needs_flush = len(self.buf) >= PART_BYTES

    def flush(self) -> None:
        c, b = self.s.client, self.s.bucket
        while len(self.buf) >= PART_BYTES:
            if self.upload_id is None:
                self.upload_id = self.s._call(c.create_multipart_upload, Bucket=b, Key=self.key)["UploadId"]
            part = bytes(self.buf[:PART_BYTES])
            del self.buf[:PART_BYTES]
            self._part(part)
        self.needs_flush = False

    def _part(self, data: bytes) -> None:
        n = len(self.parts) + 1
        r = self.s._call(
            self.s.client.upload_part, Bucket=self.s.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=n, Body=data
        )
        self.parts.append({"PartNumber": n, "ETag": r["ETag"]})

    def finish(self) -> Staged:
        c, b = self.s.client, self.s.bucket
        if self.upload_id is None:
            self.s._call(c.put_object, Bucket=b, Key=self.key, Body=bytes(self.buf))
        else:
            if self.buf:
                self._part(bytes(self.buf))
            self.s._call(
                c.complete_multipart_upload, Bucket=b, Key=self.key, UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )  # fmt: skip
            self.upload_id = None
        self.buf = bytearray()
        return _S3Staged(self.s, self.key, self.size)

    def abort(self) -> None:
        self.buf = bytearray()
        if self.upload_id is not None:
            upload_id, self.upload_id = self.upload_id, None
            with contextlib.suppress(ClientError, BotoCoreError):  # clean_incoming removes what is left
                self.s.client.abort_multipart_upload(Bucket=self.s.bucket, Key=self.key, UploadId=upload_id)


class _S3Body:
    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.stream.read(None if n < 0 else n)
        return data

    def close(self) -> None:
        self.stream.close()


class S3Store(ArtifactStore):
    kind = "s3"

    def __init__(self, client: Any, bucket: str, prefix: str, root: Path) -> None:
        self.client, self.bucket = client, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.root = root  # local scratch: downloads for tools that need a path
        self.root.mkdir(parents=True, exist_ok=True)
        self.scratch = root / ".incoming"
        self.scratch.mkdir(exist_ok=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        assert settings.s3_bucket
        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint or None,
            region_name=settings.s3_region or None,
            aws_access_key_id=settings.s3_access_key or None,
            aws_secret_access_key=settings.s3_secret_key or None,
            config=Config(
                s3={"addressing_style": "path"} if settings.s3_endpoint else {},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,  # a store that does not answer fails a request fast (readiness names it)
                read_timeout=60,
                max_pool_connections=32,
                signature_version="s3v4",
            ),
        )
        return cls(client, settings.s3_bucket, settings.s3_prefix, settings.artifacts_dir)

    # -- plumbing ---------------------------------------------------------------------------
    def key(self, sha256: str) -> str:
        return f"{self.prefix}{check_sha256(sha256)[:2]}/{sha256}"

    def _call(self, fn: Any, **kw: Any) -> Any:
        """A boto3 call whose failures say what to do (a missing object is the caller's to map)."""
        try:
            return fn(**kw)
        except ClientError as exc:
            if _missing(exc):
                raise
            raise StoreUnavailable(
                f"the S3 artifact store refused a request ({exc.response.get('Error', {}).get('Code')}): check "
                f"BULKHEAD_S3_BUCKET={self.bucket}, the credentials and the bucket's permissions"
            ) from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"the S3 artifact store does not answer ({exc}); check BULKHEAD_S3_ENDPOINT") from exc

    def _get(self, key: str, start: int, length: int) -> bytes:
        try:
            r = self._call(self.client.get_object, Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")
        except ClientError as exc:
            raise ArtifactMissing(key.rsplit("/", 1)[-1], f"bucket {self.bucket}") from exc
        data: bytes = r["Body"].read()
        return data

    @contextmanager
    def _download(self, key: str, size: int) -> Iterator[Path]:
        """A temporary local copy under the data directory (refused when it would fill the disk)."""
        free = shutil.disk_usage(self.scratch).free
        if size + MIN_FREE_BYTES > free:
            raise OSError(
                f"not enough space in {self.scratch} for a {size}-byte artifact from S3 ({free} bytes free); free space"
            )
        with tempfile.TemporaryDirectory(prefix="s3-", dir=self.scratch) as tmp:
            path = Path(tmp) / "artifact"
            try:
                self._call(self.client.download_file, Bucket=self.bucket, Key=key, Filename=str(path))
            except ClientError as exc:
                raise ArtifactMissing(key.rsplit("/", 1)[-1], f"bucket {self.bucket}") from exc
            yield path

    # -- the interface ----------------------------------------------------------------------
    def stage(self) -> Staging:
        return _S3Staging(self)

    def commit(self, staged: Staged, sha256: str) -> None:
        assert isinstance(staged, _S3Staged)
        dst = self.key(sha256)
        try:
            self.client.head_object(Bucket=self.bucket, Key=dst)
        except ClientError as exc:
            if not _missing(exc):
                raise StoreUnavailable(f"the S3 artifact store refused a HEAD of {dst}") from exc
            # A server-side copy (multipart above 5 GiB: s3transfer decides), then the incoming object goes.
            self._call(self.client.copy, CopySource={"Bucket": self.bucket, "Key": staged.key}, Bucket=self.bucket, Key=dst)
        self._call(self.client.delete_object, Bucket=self.bucket, Key=staged.key)
        staged.committed = True

    def remove(self, sha256: str) -> None:
        self._call(self.client.delete_object, Bucket=self.bucket, Key=self.key(sha256))

    def clean_incoming(self) -> None:
        """Abort multipart uploads and delete incoming objects older than a day (other server processes sharing
        the bucket may have uploads in progress)."""
        incoming = f"{self.prefix}.incoming/"
        cutoff = dt.datetime.now(dt.UTC) - _STALE
        try:
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=incoming):
                for u in page.get("Uploads", []):
                    if u["Initiated"] < cutoff:
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"])
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=incoming):
                for o in page.get("Contents", []):
                    if o["LastModified"] < cutoff:
                        self.client.delete_object(Bucket=self.bucket, Key=o["Key"])
        except (ClientError, BotoCoreError):
            pass  # readiness reports a store that does not answer
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(exist_ok=True)

    def stat(self, sha256: str) -> Stored:
        try:
            h = self._call(self.client.head_object, Bucket=self.bucket, Key=self.key(sha256))
        except ClientError:
            raise ArtifactMissing(sha256, f"bucket {self.bucket}") from None
        return Stored(int(h["ContentLength"]), h["LastModified"].timestamp())

    def reader(self, sha256: str) -> S3Reader:
        return S3Reader(self, self.key(sha256), self.stat(sha256).size)

    def get_range(self, sha256: str, start: int, length: int) -> Body:
        try:
            r = self._call(
                self.client.get_object, Bucket=self.bucket, Key=self.key(sha256), Range=f"bytes={start}-{start + length - 1}"
            )
        except ClientError:
            raise ArtifactMissing(sha256, f"bucket {self.bucket}") from None
        return _S3Body(r["Body"])

    @contextmanager
    def local(self, sha256: str) -> Iterator[Path]:
        with self._download(self.key(sha256), self.stat(sha256).size) as p:
            yield p

    def presign(self, sha256: str, seconds: int) -> str | None:
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.key(sha256)}, ExpiresIn=seconds
        )
        return url

    def check(self) -> str:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            return f"bucket does not answer ({exc.response.get('Error', {}).get('Code', 'error')})"
        except BotoCoreError as exc:
            return f"does not answer ({type(exc).__name__})"
        return "ok"
