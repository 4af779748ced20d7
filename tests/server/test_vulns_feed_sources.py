"""The server's feed store with the CVE list and OSV feeds: fetched from a mirror (BULKHEAD_FEED_MIRROR's layout,
served by http.server from a directory), their status and attribution, and what a scan's Knowledge gets from them:
the CVE list's records next to the imported ones (the later updated CVE 5 copy counts), and `FeedStore.osv()`."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulkhead.cra import attribution, cvelist
from bulkhead.cra.feeds import fetch, import_file
from bulkhead.server.errors import SettingsError
from bulkhead.server.settings import load_settings
from bulkhead.server.vuln_feeds import FeedStore, mirrored
from tests.cra.test_feeds_cvelist import bulk_zip, delta_zip, new_record, records
from tests.cra.test_feeds_osv import exports
from tests.server.conftest import LiveServer
from tests.server.test_schemas import Checker


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *_args: Any) -> None:
        return None


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "mirror"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/feeds"
    httpd.shutdown()
    httpd.server_close()


def test_mirror_layout_and_ecosystems() -> None:
    feeds = mirrored("https://mirror.example/feeds/", "PyPI, Go")
    assert feeds["cvelist"].url == "https://mirror.example/feeds/cvelistV5"
    assert feeds["osv"].url == "https://mirror.example/feeds/osv" and feeds["osv"].parts == ("PyPI", "Go")
    assert feeds["cisa-kev"].url == "https://mirror.example/feeds/cisa-kev.json"
    default = mirrored(None)
    assert default["cvelist"].url == "https://github.com/CVEProject/cvelistV5/releases/download"
    assert default["osv"].url == "https://osv-vulnerabilities.storage.googleapis.com"
    assert default["osv"].parts == ("PyPI", "npm", "Go", "crates.io", "Maven")


def test_fetched_from_the_mirror_into_status_and_knowledge(mirror: tuple[Path, str], tmp_path: Path) -> None:
    root, base = mirror
    today = dt.datetime.now(dt.UTC).date()
    docs = records()
    bulk = root / "feeds" / "cvelistV5" / cvelist.LAYOUT["bulk"].format(date=today.isoformat())
    bulk.parent.mkdir(parents=True)
    bulk.write_bytes(bulk_zip(docs))
    for path, body in exports().items():
        (root / "feeds" / "osv" / path.strip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / "feeds" / "osv" / path.strip("/")).write_bytes(body)

    sources = mirrored(base, "PyPI,npm,Go")
    store = FeedStore(tmp_path / "feeds", sources)
    # an imported CVE 5 copy of xz's record, older than the CVE list's: the list's copy counts
    xz = next(d for d in docs if d["cveMetadata"]["cveId"] == "CVE-2024-3094")
    old = copy.deepcopy(xz)
    old["cveMetadata"]["dateUpdated"] = "2024-01-01T00:00:00.000Z"
    old["containers"]["cna"]["descriptions"] = [{"lang": "en", "value": "the old imported copy"}]
    (tmp_path / "old.json").write_text(json.dumps([old]))
    import_file(sources["cve-records"], store.directory, tmp_path / "old.json")

    for name in ("cvelist", "osv"):
        st = fetch(sources[name], store.directory)
        assert st.last_error is None, (name, st.last_error)

    status = {s["name"]: s for s in store.status()}
    assert status["cvelist"]["records"] == 32 and status["cvelist"]["ok"] and not status["cvelist"]["import_only"]
    assert status["cvelist"]["attribution"] == attribution.CVE and status["cvelist"]["age_seconds"] is not None
    assert status["cvelist"]["detail"]["as_of"] == f"{today.isoformat()}T00:00:00+00:00"
    assert status["osv"]["records"] == 6 and status["osv"]["attribution"] == attribution.OSV
    assert status["osv"]["detail"]["ecosystems"]["Go"]["records"] == 2
    json.dumps(status)  # plain JSON for the API

    k = store.knowledge()
    assert len(k.records) == 32
    assert [r.description for r in k.records["CVE-2024-3094"]] == [
        next(d["value"] for d in xz["containers"]["cna"]["descriptions"] if d["lang"].startswith("en"))
    ]
    assert k.versions["cvelist"]["records"] == 32 and k.versions["osv"]["records"] == 6
    assert k.osv is not None and k.osv is store.osv()  # parsed once per held copy
    assert [r.id for r in k.osv.get("PyPI", "Example_Pkg")] == ["PYSEC-0000-BULKHEAD1"]
    assert len(k.osv.get("Go", "github.com/opencontainers/runc")) == 2


def test_no_osv_held_is_none(tmp_path: Path) -> None:
    store = FeedStore(tmp_path / "feeds", mirrored(None))
    assert store.osv() is None and store.knowledge().osv is None


def test_osv_ecosystems_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BULKHEAD_OSV_ECOSYSTEMS", "PyPI, crates.io")
    settings = load_settings(data_dir=tmp_path)
    assert mirrored(None, settings.osv_ecosystems)["osv"].parts == ("PyPI", "crates.io")
    monkeypatch.setenv("BULKHEAD_OSV_ECOSYSTEMS", "PyPI,../etc")
    with pytest.raises(SettingsError, match=r"BULKHEAD_OSV_ECOSYSTEMS: .*'../etc' is not an OSV ecosystem name"):
        load_settings(data_dir=tmp_path)


def test_import_through_the_api(server: LiveServer, tmp_path: Path) -> None:
    """An air-gapped site's administrator uploads a cvelistV5 delta and an OSV export (fictional records only: the
    server is shared by the session's tests); a zip bomb is refused with 422 and changes nothing."""
    checker = Checker(httpx.get(server.url + "/openapi.json").json())
    with server.client(server.admin) as a:
        a.event_hooks["response"].append(checker)
        delta = delta_zip([new_record("CVE-2026-99999")])
        r = a.post("/api/v1/vulnerability-feeds/cvelist/import", content=delta)
        assert r.status_code == 200, r.text
        assert r.json()["records"] >= 1 and r.json()["detail"]["deltas"][-1].endswith(": 1 records")
        pypi = exports()["/PyPI/all.zip"]
        r = a.post("/api/v1/vulnerability-feeds/osv/import", content=pypi)
        assert r.status_code == 200, r.text
        assert r.json()["detail"]["ecosystems"]["PyPI"]["records"] == 3 and r.json()["attribution"] == attribution.OSV

        before = {f["name"]: f for f in a.get("/api/v1/vulnerability-feeds").json()}
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("deltaCves/CVE-2026-99995.json", b" " * (16 << 20))
        r = a.post("/api/v1/vulnerability-feeds/cvelist/import", content=buf.getvalue())
        assert r.status_code == 422 and "possible zip bomb" in r.json()["message"], r.text
        after = {f["name"]: f for f in a.get("/api/v1/vulnerability-feeds").json()}
        assert after["cvelist"]["records"] == before["cvelist"]["records"]
        assert after["cvelist"]["last_changed"] == before["cvelist"]["last_changed"]
        assert "the last good copy is kept" in after["cvelist"]["last_error"]
