"""The CVE list feed (cvelistV5 bulk + delta archives) against a local HTTP server laid out like the release downloads.

The archives are built from the real CVE JSON 5 records in ../shared/testdata/cve, shaped as cvelistV5 publishes
them: the bulk `<D>_all_CVEs_at_midnight.zip.zip` holds `cves.zip` with `cves/<year>/<nxxx>/CVE-….json`; a delta
holds `deltaCves/CVE-….json` (and a `delta.json` summary the reader skips).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bulkhead.cra import attribution, cvelist
from bulkhead.cra.archive import ArchiveLimits
from bulkhead.cra.cve5 import parse_datetime
from bulkhead.cra.feed_errors import FeedError
from bulkhead.cra.feed_sources import CVE_LIST
from bulkhead.cra.feed_state import load_state
from bulkhead.cra.feeds import FeedSource, feed_status, fetch, import_file
from tests.conftest import SHARED
from tests.cra.feed_server import Files, serve

CVE_DIR = SHARED / "cve"
D0 = dt.date(2026, 12, 1)
T0 = dt.datetime(2026, 12, 1, 6, 30, tzinfo=dt.UTC)


def records() -> list[dict[str, Any]]:
    files = sorted(CVE_DIR.glob("CVE-*.json"))
    if not files:
        pytest.skip(f"test data not found at {CVE_DIR}")
    return [json.loads(p.read_text()) for p in files]


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _path(doc: dict[str, Any]) -> str:
    cve = doc["cveMetadata"]["cveId"]
    _, year, num = cve.split("-")
    return f"cves/{year}/{num[:-3]}xxx/{cve}.json"


def bulk_zip(docs: list[dict[str, Any]]) -> bytes:
    inner = _zip({_path(d): json.dumps(d, indent=4).encode() for d in docs})
    return _zip({"cves.zip": inner})


def delta_zip(docs: list[dict[str, Any]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    members = {f"deltaCves/{d['cveMetadata']['cveId']}.json": json.dumps(d, indent=4).encode() for d in docs}
    members["deltaCves/delta.json"] = b'{"numberOfChanges": %d}' % len(docs)
    return _zip(members, method)


def changed(doc: dict[str, Any], text: str) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["containers"]["cna"]["descriptions"] = [{"lang": "en", "value": text}]
    out["cveMetadata"]["dateUpdated"] = "2026-12-01T12:00:00.000Z"
    return out


def new_record(cve: str) -> dict[str, Any]:
    return {
        "dataType": "CVE_RECORD",
        "dataVersion": "5.1",
        "cveMetadata": {"cveId": cve, "state": "PUBLISHED", "assignerShortName": "mitre"},
        "containers": {
            "cna": {
                "providerMetadata": {"orgId": "00000000-0000-0000-0000-000000000000"},
                "descriptions": [{"lang": "en", "value": "A new record (derived for the delta test)."}],
                "affected": [{"vendor": "example", "product": "widget", "versions": [{"version": "1.0", "status": "affected"}]}],
                "references": [{"url": "https://example.invalid/"}],
            }
        },
    }


def url(kind: str, day: dt.date, hour: int = 0) -> str:
    return "/" + cvelist.LAYOUT[kind].format(date=day.isoformat(), hour=hour)


@pytest.fixture
def server() -> Iterator[tuple[Files, str]]:
    with serve() as s:
        yield s


def source(base: str) -> FeedSource:
    return dataclasses.replace(CVE_LIST, url=base)


def held(directory: Path) -> dict[str, str]:
    """CVE id -> English description of every record of the held copy."""
    return {r.id: r.description for r in cvelist.iter_records(directory / CVE_LIST.filename)}


def test_first_fetch_takes_the_bulk_archive(server: tuple[Files, str], tmp_path: Path) -> None:
    files, base = server
    docs = records()
    files.files[url("bulk", D0)] = bulk_zip(docs)
    st = fetch(source(base), tmp_path, now=T0)
    assert st.last_error is None and st.records == len(docs) == 32
    assert st.detail["as_of"] == "2026-12-01T00:00:00+00:00"
    assert st.detail["base"] == "2026-12-01_all_CVEs_at_midnight.zip.zip"
    assert "no held copy" in st.detail["why_bulk"]
    assert set(held(tmp_path)) == {d["cveMetadata"]["cveId"] for d in docs}
    assert not list((tmp_path / "cvelist.downloads").iterdir())  # converted, then dropped
    status = feed_status(source(base), tmp_path, now=T0)
    assert status["records"] == 32 and status["ok"] and status["attribution"] == attribution.CVE


def test_bulk_of_the_day_before_when_todays_is_not_published_yet(server: tuple[Files, str], tmp_path: Path) -> None:
    files, base = server
    files.files[url("bulk", D0 - dt.timedelta(days=1))] = bulk_zip(records())
    st = fetch(source(base), tmp_path, now=T0)
    assert st.last_error is None and st.detail["as_of"] == "2026-11-30T00:00:00+00:00"


def test_deltas_are_applied_onto_the_held_copy_then_304(server: tuple[Files, str], tmp_path: Path) -> None:
    files, base = server
    docs = records()
    files.files[url("bulk", D0)] = bulk_zip(docs)
    fetch(source(base), tmp_path, now=T0)
    xz = next(d for d in docs if d["cveMetadata"]["cveId"] == "CVE-2024-3094")
    curl = next(d for d in docs if d["cveMetadata"]["cveId"] == "CVE-2024-2398")
    # day D0's end-of-day delta changes xz's record; today's 10:00 hourly delta adds a new record and changes curl
    files.files[url("end_of_day", D0)] = delta_zip([changed(xz, "xz: changed at end of day")])
    d1 = D0 + dt.timedelta(days=1)
    files.files[url("hourly", d1, 10)] = delta_zip([new_record("CVE-2026-99999"), changed(curl, "curl: changed at 10")])
    t1 = dt.datetime(2026, 12, 2, 10, 20, tzinfo=dt.UTC)
    st = fetch(source(base), tmp_path, now=t1)
    assert st.last_error is None, st.last_error
    assert st.records == 33 and st.last_changed == t1
    assert st.detail["as_of"] == "2026-12-02T10:00:00+00:00"
    assert st.detail["deltas"] == [
        "2026-12-01_delta_CVEs_at_end_of_day.zip: 1 records",
        "2026-12-02_delta_CVEs_at_1000Z.zip: 2 records",
    ]
    h = held(tmp_path)
    assert h["CVE-2024-3094"] == "xz: changed at end of day"
    assert h["CVE-2024-2398"] == "curl: changed at 10"
    assert "CVE-2026-99999" in h and len(h) == 33
    assert not any(p.endswith("all_CVEs_at_midnight.zip.zip") for p in files.paths()[1:])  # no bulk again

    # an hour later nothing newer is published: the 10:00 delta is asked again, conditionally, and is unchanged
    sha = st.sha256
    files.requests.clear()
    t2 = t1 + dt.timedelta(minutes=50)
    st = fetch(source(base), tmp_path, now=t2)
    hourly10 = url("hourly", d1, 10)
    assert st.last_error is None and st.sha256 == sha and st.last_changed == t1 and st.last_success == t2
    assert files.headers_of(hourly10)[-1]["If-None-Match"] == files.etag(hourly10)
    assert url("hourly", d1, 11) in files.paths()  # the newer one was tried first (404: not yet published)


def test_a_missing_end_of_day_delta_falls_back_to_the_bulk_archive(server: tuple[Files, str], tmp_path: Path) -> None:
    files, base = server
    docs = records()
    files.files[url("bulk", D0)] = bulk_zip(docs[:20])
    fetch(source(base), tmp_path, now=T0)
    d2 = D0 + dt.timedelta(days=2)
    files.files[url("end_of_day", D0)] = delta_zip([new_record("CVE-2026-99998")])
    # the end-of-day delta of D0+1 is missing: today's bulk archive is taken instead
    files.files[url("bulk", d2)] = bulk_zip(docs)
    st = fetch(source(base), tmp_path, now=dt.datetime(2026, 12, 3, 0, 40, tzinfo=dt.UTC))
    assert st.last_error is None, st.last_error
    assert st.records == 32 and "CVE-2026-99998" not in held(tmp_path)
    assert "end-of-day delta of 2026-12-02 is not published" in st.detail["why_bulk"]
    assert st.detail["as_of"] == "2026-12-03T00:00:00+00:00" and st.detail["deltas"] == []


def test_a_held_copy_older_than_a_week_is_replaced_from_the_bulk_archive(server: tuple[Files, str], tmp_path: Path) -> None:
    files, base = server
    docs = records()
    files.files[url("bulk", D0)] = bulk_zip(docs[:5])
    fetch(source(base), tmp_path, now=T0)
    later = D0 + dt.timedelta(days=9)
    files.files[url("bulk", later)] = bulk_zip(docs)
    st = fetch(source(base), tmp_path, now=T0 + dt.timedelta(days=9))
    assert st.records == 32 and "older than 7 days" in st.detail["why_bulk"]
    assert not any("end_of_day" in p for p in files.paths())


def test_a_truncated_bulk_download_is_resumed_with_range(server: tuple[Files, str], tmp_path: Path) -> None:
    files, base = server
    body = bulk_zip(records())
    path = url("bulk", D0)
    files.files[path] = body
    files.cut[path] = len(body) // 3
    st = fetch(source(base), tmp_path, now=T0)
    assert "peer closed connection" in (st.last_error or "") and "the next fetch resumes" in (st.last_error or "")
    assert not st.has_data
    st = fetch(source(base), tmp_path, now=T0 + dt.timedelta(minutes=5))
    assert st.last_error is None and st.records == 32
    resumed = files.headers_of(path)[-1]
    assert resumed["Range"] == f"bytes={len(body) // 3}-" and resumed["If-Range"] == files.etag(path)


def _fetched(files: Files, base: str, tmp_path: Path) -> tuple[str | None, dict[str, str]]:
    files.files[url("bulk", D0)] = bulk_zip(records())
    st = fetch(source(base), tmp_path, now=T0)
    return st.sha256, held(tmp_path)


def test_a_zip_bomb_delta_is_refused_and_the_held_copy_kept(server: tuple[Files, str], tmp_path: Path) -> None:
    files, base = server
    sha, before = _fetched(files, base, tmp_path)
    files.files[url("hourly", D0, 7)] = _zip({"deltaCves/CVE-2026-99997.json": b" " * (16 << 20)})  # 16 MiB of blanks
    st = fetch(source(base), tmp_path, now=T0 + dt.timedelta(hours=1))
    assert st.last_error is not None
    assert "deltaCves/CVE-2026-99997.json inflates" in st.last_error and "possible zip bomb" in st.last_error
    assert "the last good copy is kept" in st.last_error
    assert st.sha256 == sha and held(tmp_path) == before and st.detail["as_of"] == "2026-12-01T00:00:00+00:00"


def test_too_many_members_or_a_corrupt_archive_is_refused(
    server: tuple[Files, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, base = server
    sha, before = _fetched(files, base, tmp_path)
    monkeypatch.setattr(cvelist, "LIMITS", ArchiveLimits(max_members=10))
    files.files[url("hourly", D0, 7)] = delta_zip(records()[:12])
    st = fetch(source(base), tmp_path, now=T0 + dt.timedelta(hours=1))
    assert "more than 10 members; refused as a possible zip bomb" in (st.last_error or "")
    monkeypatch.undo()
    files.files[url("hourly", D0, 8)] = b"<html>Service unavailable</html>"
    st = fetch(source(base), tmp_path, now=T0 + dt.timedelta(hours=2))
    assert "not a zip archive" in (st.last_error or "")
    bad = delta_zip([records()[0]], zipfile.ZIP_STORED).replace(b"dataType", b"dataTypo")  # the CRC no longer matches
    files.files[url("hourly", D0, 9)] = bad
    st = fetch(source(base), tmp_path, now=T0 + dt.timedelta(hours=3))
    assert "the archive is corrupt (BadZipFile: Bad CRC-32" in (st.last_error or "")
    assert st.sha256 == sha and held(tmp_path) == before


def test_a_record_the_parser_rejects_is_left_out_and_counted(server: tuple[Files, str], tmp_path: Path) -> None:
    files, base = server
    docs = records()
    broken = copy.deepcopy(docs[0])
    del broken["containers"]["cna"]  # a PUBLISHED record without its CNA container
    files.files[url("bulk", D0)] = bulk_zip([broken, *docs[1:]])
    st = fetch(source(base), tmp_path, now=T0)
    assert st.records == 31 and st.detail["skipped_count"] == 1
    assert st.detail["skipped"] == [broken["cveMetadata"]["cveId"]]


def test_import_for_air_gapped_sites_bulk_then_delta(tmp_path: Path) -> None:
    docs = records()
    bulk = tmp_path / "2026-12-01_all_CVEs_at_midnight.zip.zip"
    bulk.write_bytes(bulk_zip(docs[:10]))
    feeds = tmp_path / "feeds"
    st = import_file(CVE_LIST, feeds, bulk, now=T0)
    assert st.records == 10 and st.origin == f"import {bulk.name}" and st.detail["as_of"] == "2026-12-01T00:00:00+00:00"
    delta = tmp_path / "2026-12-01_delta_CVEs_at_end_of_day.zip"
    delta.write_bytes(delta_zip(docs[10:12]))
    st = import_file(CVE_LIST, feeds, delta, now=T0)
    assert st.records == 12 and st.detail["as_of"] == "2026-12-02T00:00:00+00:00"
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(FeedError, match=r"not a zip archive.*the last good copy is kept"):
        import_file(CVE_LIST, feeds, junk, now=T0)
    assert load_state(feeds, "cvelist").records == 12 and len(held(feeds)) == 12


def test_an_import_without_cvelists_file_name_is_as_of_its_newest_record(tmp_path: Path) -> None:
    docs = records()
    upload = tmp_path / "upload-1234.tmp"  # what the API stores an uploaded body as
    upload.write_bytes(bulk_zip(docs))
    st = import_file(CVE_LIST, tmp_path / "feeds", upload, now=T0)
    newest = max(t for d in docs if (t := parse_datetime(d["cveMetadata"].get("dateUpdated"))))
    assert st.records == 32 and st.detail["as_of"] == newest.replace(minute=0, second=0, microsecond=0).isoformat()
    delta = tmp_path / "upload-5678.tmp"
    delta.write_bytes(
        delta_zip(
            [
                new_record("CVE-2026-99996")
                | {"cveMetadata": {"cveId": "CVE-2026-99996", "state": "PUBLISHED", "dateUpdated": "2026-12-01T05:42:00.000Z"}}
            ]
        )
    )
    st = import_file(CVE_LIST, tmp_path / "feeds", delta, now=T0)
    assert st.records == 33 and st.detail["as_of"] == "2026-12-01T05:00:00+00:00"
