"""Peak memory (RSS) of the CVE list feed on a generated archive: unpacking a cvelistV5-shaped bulk archive into the
held copy, applying a delta onto it, and reading every record back as a scan's Knowledge does; and of the OSV feed:
importing an ecosystem's all.zip of N records and indexing it (FeedStore.osv()).

The records are the 32 real CVE JSON 5 records of ../shared/testdata/cve, repeated under new ids (CVE-2030-<n>) to
make N records of the real sizes and shapes (the OSV ones from the Go vuln DB's runc record, one package each); the
bulk archive is shaped as cvelistV5 publishes it (a zip holding
cves.zip with cves/<year>/<nxxx>/CVE-….json). Each step runs in its own process, so each peak is its own.

    PYTHONPATH=src python bench/feed_rss.py [N]        (default 50000; FEED_RSS_STEPS="osv index" runs some steps)
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "cve"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(n: int, out: Path) -> None:
    base = [json.loads(p.read_text()) for p in sorted(SHARED.glob("CVE-*.json"))]
    inner = out.parent / "cves.zip"
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            doc = copy.deepcopy(base[i % len(base)])
            cve = f"CVE-2030-{100000 + i}"
            doc["cveMetadata"]["cveId"] = cve
            zf.writestr(f"cves/2030/{(100000 + i) // 1000}xxx/{cve}.json", json.dumps(doc, indent=4))
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.write(inner, "cves.zip")
    inner.unlink()
    delta = out.parent / "2030-01-01_delta_CVEs_at_end_of_day.zip"
    with zipfile.ZipFile(delta, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(0, n, 50):  # a busy day: 2% of the records change
            doc = copy.deepcopy(base[i % len(base)])
            doc["cveMetadata"]["cveId"] = f"CVE-2030-{100000 + i}"
            zf.writestr(f"deltaCves/CVE-2030-{100000 + i}.json", json.dumps(doc, indent=4))


def generate_osv(n: int, out: Path) -> None:
    base = json.loads((SHARED / "osv" / "GO-2024-2491.json").read_text())
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            doc = copy.deepcopy(base)
            doc["id"] = f"GO-2030-{i}"
            doc["affected"][0]["package"]["name"] = f"example.com/module{i % (n // 3 or 1)}"
            zf.writestr(f"GO-2030-{i}.json", json.dumps(doc, indent=2))


def step(name: str, work: Path) -> None:
    from bulkhead.cra.cvelist import iter_records
    from bulkhead.cra.feed_sources import CVE_LIST, OSV
    from bulkhead.cra.feeds import import_file
    from bulkhead.cra.osv_feed import load_osv_index

    t0 = time.monotonic()
    now = dt.datetime(2030, 1, 2, tzinfo=dt.UTC)
    feeds = work / "feeds"
    if name == "bulk":
        st = import_file(CVE_LIST, feeds, work / "2030-01-01_all_CVEs_at_midnight.zip.zip", now=now)
        what = f"{st.records} records, held copy {st.size} bytes"
    elif name == "delta":
        st = import_file(CVE_LIST, feeds, work / "2030-01-01_delta_CVEs_at_end_of_day.zip", now=now)
        what = f"{st.records} records ({st.detail['deltas'][-1]})"
    elif name == "load":
        records = list(iter_records(feeds / CVE_LIST.filename))
        what = f"{len(records)} VulnRecords held in memory"
    elif name == "osv":
        st = import_file(OSV, feeds, work / "all.zip", now=now)
        what = f"{st.records} OSV records imported ({st.origin})"
    else:
        index = load_osv_index(feeds, OSV.parts)
        what = f"{len(index)} OSV records indexed under {len(index.by_package)} packages"
    print(f"{name:6} peak RSS {_peak_mib():7.1f} MiB  {time.monotonic() - t0:6.1f} s  {what}", flush=True)


def main() -> None:
    if len(sys.argv) == 3:
        step(sys.argv[1], Path(sys.argv[2]))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        archive = work / "2030-01-01_all_CVEs_at_midnight.zip.zip"
        generate(n, archive)
        generate_osv(n, work / "all.zip")
        print(f"bulk archive: {n} records, {archive.stat().st_size} bytes", flush=True)
        baseline = subprocess.run(
            [
                sys.executable,
                "-c",
                "import resource, bulkhead.cra.cvelist, bulkhead.cra.feed_sources;"
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        print(f"baseline (interpreter + modules imported): {float(baseline):.1f} MiB", flush=True)
        for name in os.environ.get("FEED_RSS_STEPS", "bulk delta load osv index").split():
            subprocess.run([sys.executable, __file__, name, str(work)], check=True)


if __name__ == "__main__":
    main()
