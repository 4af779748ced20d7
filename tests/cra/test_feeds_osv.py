"""The OSV feed (OSV.dev's `<ecosystem>/all.zip` exports) against a local HTTP server, and its index by package.

Go's export is built from the real Go vuln DB records in ../shared/testdata/cve/osv; PyPI's and npm's from the
derived records in data/osv (see its README: the shared test data has no PyPI or npm record).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkhead.cra import attribution, osv_feed
from bulkhead.cra.feed_errors import FeedError
from bulkhead.cra.feed_sources import OSV
from bulkhead.cra.feed_state import load_state
from bulkhead.cra.feeds import FeedSource, feed_status, fetch, import_file
from bulkhead.cra.match_osv import match_osv
from bulkhead.cra.model import Component, ComponentOrigin, FindingStatus
from tests.conftest import SHARED
from tests.cra.feed_server import Files, serve

DERIVED = Path(__file__).parent / "data" / "osv"
REAL = SHARED / "cve" / "osv"
T0 = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)
ECOSYSTEMS = ("PyPI", "npm", "Go")


def _zip(paths: list[Path]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in paths:
            zf.writestr(p.name, p.read_bytes())
    return buf.getvalue()


def exports() -> dict[str, bytes]:
    go = [REAL / "GO-2024-2491.json", REAL / "GO-2024-3110.json"]
    if not all(p.is_file() for p in go):
        pytest.skip(f"test data not found at {REAL}")
    return {
        "/PyPI/all.zip": _zip(sorted(DERIVED.glob("*.json"))),
        "/npm/all.zip": _zip([DERIVED / "GHSA-bhd2-0000-0002.json"]),
        "/Go/all.zip": _zip(go),
    }


@pytest.fixture
def server() -> Iterator[tuple[Files, str]]:
    with serve() as s:
        s[0].files.update(exports())
        yield s


def source(base: str) -> FeedSource:
    return dataclasses.replace(OSV, url=base, parts=ECOSYSTEMS)


def test_each_ecosystem_is_fetched_and_indexed_by_package(server: tuple[Files, str], tmp_path: Path) -> None:
    files, base = server
    st = fetch(source(base), tmp_path, now=T0)
    assert st.last_error is None and st.last_success == T0 and st.last_changed == T0
    assert st.records == 6  # PyPI 3, npm 1, Go 2: records per export, as published
    assert {e: d["records"] for e, d in st.detail["ecosystems"].items()} == {"PyPI": 3, "npm": 1, "Go": 2}
    assert sorted(files.paths()) == ["/Go/all.zip", "/PyPI/all.zip", "/npm/all.zip"]

    index = osv_feed.load_osv_index(tmp_path, ECOSYSTEMS)
    assert len(index) == 4  # the withdrawn PYSEC record is left out; the GHSA in two exports counts once
    assert [r.id for r in index.get("PyPI", "Example_Pkg")] == ["PYSEC-0000-BULKHEAD1"]
    assert index.get("PyPI", "example.pkg") == index.get("PyPI", "example-pkg")  # PEP 503 names
    twin = index.get("PyPI", "Twin_Lib")
    assert [r.id for r in twin] == ["GHSA-bhd2-0000-0002"] and index.get("npm", "@twin/lib") == twin
    assert sorted(r.id for r in index.get("Go", "github.com/opencontainers/runc")) == ["GO-2024-2491", "GO-2024-3110"]
    assert index.get("npm", "Twin_Lib") == [] and index.get("Maven", "x:y") == []

    # the records are the OSV parser's: the OSV matcher takes them as they are
    app = Component("example-pkg", "2.4.0", ComponentOrigin.CYCLONEDX, purl="pkg:pypi/example-pkg@2.4.0")
    findings = match_osv([app], index.get("PyPI", "example-pkg"))
    assert [(f.cve, f.status) for f in findings] == [("CVE-2026-99001", FindingStatus.AFFECTED)]

    status = feed_status(source(base), tmp_path, now=T0)
    assert status["ok"] and status["records"] == 6 and status["attribution"] == attribution.OSV
    assert "CC" in attribution.OSV and "creativecommons.org/licenses/by/4.0" in attribution.OSV


def test_unchanged_exports_are_304_and_keep_the_data(server: tuple[Files, str], tmp_path: Path) -> None:
    files, base = server
    first = fetch(source(base), tmp_path, now=T0)
    files.requests.clear()
    t1 = T0 + dt.timedelta(days=1)
    st = fetch(source(base), tmp_path, now=t1)
    assert st.last_error is None and st.sha256 == first.sha256 and st.last_changed == T0 and st.last_success == t1
    for path in ("/PyPI/all.zip", "/npm/all.zip", "/Go/all.zip"):
        assert files.headers_of(path)[-1]["If-None-Match"] == files.etag(path)


def test_a_failing_ecosystem_keeps_its_copy_and_the_others_update(server: tuple[Files, str], tmp_path: Path) -> None:
    files, base = server
    first = fetch(source(base), tmp_path, now=T0)
    files.fail.add("/npm/all.zip")
    files.files["/Go/all.zip"] = _zip([REAL / "GO-2024-2491.json"])  # Go changed: one record
    t1 = T0 + dt.timedelta(days=1)
    st = fetch(source(base), tmp_path, now=t1)
    assert st.last_error is not None and st.last_error.startswith("npm: ")
    assert "answered HTTP 500" in st.last_error and "the last good copy is kept" in st.last_error
    assert st.last_success == T0  # not all of it confirmed current
    assert st.records == 5 and st.sha256 != first.sha256 and st.last_changed == t1
    assert st.detail["ecosystems"]["npm"]["records"] == 1 and st.detail["ecosystems"]["Go"]["records"] == 1
    index = osv_feed.load_osv_index(tmp_path, ECOSYSTEMS)
    assert index.get("npm", "@twin/lib") and len(index.get("Go", "github.com/opencontainers/runc")) == 1


def test_a_zip_bomb_or_a_bad_record_is_refused_and_the_held_export_kept(server: tuple[Files, str], tmp_path: Path) -> None:
    files, base = server
    fetch(source(base), tmp_path, now=T0)
    files.files["/PyPI/all.zip"] = _zip_bytes({"PYSEC-BOMB.json": b" " * (32 << 20)})
    st = fetch(source(base), tmp_path, now=T0 + dt.timedelta(hours=1))
    assert "PyPI: " in (st.last_error or "") and "possible zip bomb" in (st.last_error or "")
    files.files["/PyPI/all.zip"] = _zip_bytes({"PYSEC-X.json": b'{"id": "PYSEC-X", "affected": [{"package": {}}]}'})
    st = fetch(source(base), tmp_path, now=T0 + dt.timedelta(hours=2))
    assert "holds no OSV records (1 members are not OSV records the parser reads, such as PYSEC-X.json)" in (st.last_error or "")
    files.files["/PyPI/all.zip"] = _zip_bytes({"PYSEC-Y.json": b'{"id": "PYSEC-Y", "affected": [{"package": {'})
    st = fetch(source(base), tmp_path, now=T0 + dt.timedelta(hours=3))
    assert "member PYSEC-Y.json is not JSON" in (st.last_error or "")
    assert st.records == 6 and [r.id for r in osv_feed.load_osv_index(tmp_path, ECOSYSTEMS).get("PyPI", "example-pkg")] == [
        "PYSEC-0000-BULKHEAD1"
    ]


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_a_truncated_export_is_resumed(server: tuple[Files, str], tmp_path: Path) -> None:
    files, base = server
    body = files.files["/Go/all.zip"]
    files.cut["/Go/all.zip"] = len(body) // 2
    st = fetch(source(base), tmp_path, now=T0)
    assert st.last_error is not None and st.last_error.startswith("Go: ") and "the next fetch resumes" in st.last_error
    st = fetch(source(base), tmp_path, now=T0 + dt.timedelta(minutes=10))
    assert st.last_error is None and st.records == 6
    assert files.headers_of("/Go/all.zip")[-1]["Range"] == f"bytes={len(body) // 2}-"


def test_import_for_air_gapped_sites(tmp_path: Path) -> None:
    go = tmp_path / "all.zip"
    go.write_bytes(exports()["/Go/all.zip"])
    src = dataclasses.replace(OSV, parts=ECOSYSTEMS)
    st = import_file(src, tmp_path / "feeds", go, now=T0)
    assert st.origin == "import all.zip (Go)" and st.records == 2 and st.detail["ecosystems"]["Go"]["records"] == 2
    assert st.detail["ecosystems"]["PyPI"]["records"] is None
    index = osv_feed.load_osv_index(tmp_path / "feeds", ECOSYSTEMS)
    assert len(index.get("Go", "github.com/opencontainers/runc")) == 2

    only_maven = dataclasses.replace(OSV, parts=("Maven",))
    with pytest.raises(FeedError, match="not one of the configured Maven"):
        import_file(only_maven, tmp_path / "feeds2", go, now=T0)
    assert load_state(tmp_path / "feeds2" / "osv", "osv-Go").records is None


def test_ecosystem_list_parsing() -> None:
    assert osv_feed.parse_ecosystems(None) == ("PyPI", "npm", "Go", "crates.io", "Maven")
    assert osv_feed.parse_ecosystems(" PyPI, crates.io ,,PyPI") == ("PyPI", "crates.io")
    assert osv_feed.osv_key("PyPI", "Foo__Bar.baz") == ("PyPI", "foo-bar-baz")
    assert osv_feed.osv_key("Maven", "org.Apache:Foo") == ("Maven", "org.Apache:Foo")


def test_a_record_the_parser_rejects_is_left_out_of_an_export(server: tuple[Files, str], tmp_path: Path) -> None:
    files, base = server
    git_only = {"id": "OSV-GIT-1", "affected": [{"ranges": [{"type": "GIT", "repo": "https://x.invalid", "events": []}]}]}
    files.files["/Go/all.zip"] = _zip_bytes(
        {"OSV-GIT-1.json": json.dumps(git_only).encode(), "GO-2024-2491.json": (REAL / "GO-2024-2491.json").read_bytes()}
    )
    st = fetch(source(base), tmp_path, now=T0)
    assert st.last_error is None and st.detail["ecosystems"]["Go"]["records"] == 1
    assert [r.id for r in osv_feed.load_osv_index(tmp_path, ECOSYSTEMS).get("Go", "github.com/opencontainers/runc")] == [
        "GO-2024-2491"
    ]
