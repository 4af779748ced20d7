"""Which authorized requests the server hands to nginx (X-Accel-Redirect), answers itself (304, 416), or leaves to
the embedded path because nginx's answer could differ (delivery/offload.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from bulkhead.server.db import Database
from bulkhead.server.delivery.app import Artifact
from bulkhead.server.delivery.grants import OffloadGrants
from bulkhead.server.delivery.offload import XAccel
from bulkhead.server.models import Device, Tenant
from bulkhead.server.security import SignedParams

SHA = "ab" * 32


def _answer(
    tmp_path: Path,
    headers: dict[str, str],
    device: int | None = 7,
    grants: OffloadGrants | None = None,
    signed: SignedParams | None = None,
) -> tuple[bool, int | None, dict[bytes, bytes]]:
    store = tmp_path / "artifacts"
    (store / "ab").mkdir(parents=True, exist_ok=True)
    (store / "ab" / SHA).write_bytes(b"x" * 1000)
    art = Artifact(SHA, 1000, str(store / "ab" / SHA))
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    done = asyncio.run(XAccel("/_store/", store, grants).answer(scope, send, art, device, signed))
    if not sent:
        return done, None, {}
    return done, sent[0]["status"], dict(sent[0]["headers"])


def test_whole_files_and_simple_ranges_go_to_nginx(tmp_path: Path) -> None:
    done, status, h = _answer(tmp_path, {})
    assert done and status == 200 and h[b"x-accel-redirect"] == f"/_store/ab/{SHA}".encode()
    assert h[b"x-bulkhead-device"] == b"7" and h[b"etag"] == f'"{SHA}"'.encode() and h[b"content-length"] == b"0"
    assert b"accept-ranges" not in h  # nginx adds it to a whole file
    for rng in ("bytes=0-9", "bytes=10-", "bytes=-10", "bytes=0-99999"):
        done, status, h = _answer(tmp_path, {"range": rng, "if-range": f'"{SHA}"'})
        assert done and status == 200 and h[b"accept-ranges"] == b"bytes", rng
    done, status, h = _answer(tmp_path, {"range": "bytes=0-1,5-6", "if-range": '"stale"'}, device=None)
    assert done and b"accept-ranges" not in h and b"x-bulkhead-device" not in h  # the range does not apply


@pytest.mark.parametrize(
    "headers",
    [
        {"range": "bytes=0-1,5-6"},  # several ranges: the server's multipart answer
        {"range": "bytes=5-3"},  # ignored by the server (200), refused by nginx (416)
        {"range": "Bytes=0-9"},
        {"range": "bytes=0-9", "if-range": "Thu, 03 Dec 2026 12:00:00 GMT"},
        {"if-match": f'"{SHA}"'},
        {"if-unmodified-since": "Thu, 03 Dec 2026 12:00:00 GMT"},
    ],
)
def test_what_nginx_would_answer_differently_stays_embedded(tmp_path: Path, headers: dict[str, str]) -> None:
    assert _answer(tmp_path, headers) == (False, None, {})


def test_304_and_416_are_answered_here(tmp_path: Path) -> None:
    done, status, h = _answer(tmp_path, {"if-none-match": f'"{SHA}"'})
    assert done and status == 304 and b"x-accel-redirect" not in h
    done, status, h = _answer(tmp_path, {"range": "bytes=1000-"})
    assert done and status == 416 and h[b"content-range"] == b"bytes */1000"


def test_a_signed_url_handed_to_nginx_is_granted_to_it_and_only_then(db: Database, tmp_path: Path) -> None:
    with db.session() as s:
        t = Tenant(name="t")
        s.add(t)
        s.flush()
        dev = Device(tenant_id=t.id, name="d", compatible="c", status="active")
        s.add(dev)
        s.flush()
        device = dev.id
    grants = OffloadGrants(db, tmp_path / "grants")
    signed = SignedParams(device, int(time.time()) + 60, 0, "f" * 40)
    assert _answer(tmp_path, {"if-none-match": f'"{SHA}"'}, device, grants, signed)[1] == 304
    assert _answer(tmp_path, {"if-match": f'"{SHA}"'}, device, grants, signed)[0] is False  # the embedded path's
    assert not grants.path(SHA, signed).exists()
    done, status, h = _answer(tmp_path, {"range": "bytes=0-9"}, device, grants, signed)
    assert done and status == 200 and h[b"x-accel-redirect"] == f"/_store/ab/{SHA}".encode()
    assert grants.path(SHA, signed).is_file()
    _answer(tmp_path, {}, device, grants)  # a device's own download (its credential): nothing to grant
    assert [p.name for p in (tmp_path / "grants").rglob("*") if p.is_file()] == [grants.path(SHA, signed).name]


def test_settings_name_what_is_wrong(tmp_path: Path) -> None:
    from bulkhead.server.errors import SettingsError
    from bulkhead.server.settings import load_settings

    s = load_settings(data_dir=tmp_path, delivery_offload="x-accel")
    assert s.delivery_offload_prefix == "/_store/" and s.delivery_offload_log is None
    with pytest.raises(SettingsError, match="BULKHEAD_DELIVERY_OFFLOAD_PREFIX"):
        load_settings(data_dir=tmp_path, delivery_offload="x-accel", delivery_offload_prefix="_store")
    with pytest.raises(SettingsError, match="BULKHEAD_DELIVERY_OFFLOAD"):
        load_settings(data_dir=tmp_path, delivery_offload="sendfile")
