"""Per-vulnerability digests (cra/cve_digest.py): what incremental re-matching compares between two feed versions."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

from bulkhead.cra.cve5 import parse_cve5
from bulkhead.cra.cve_digest import changed_ids, cve_digests, record_digests, tracker_digests, tracker_subset
from bulkhead.cra.debian_tracker import read_tracker
from tests.conftest import SHARED
from tests.server.vuln_fixtures import TRACKER


def _records() -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for p in sorted((SHARED / "cve").glob("CVE-*.json"))[:6]:
        r = parse_cve5(json.loads(p.read_text()))
        out.setdefault(r.id, []).append(r)
    return out


def test_a_digest_moves_only_with_what_matching_reads() -> None:
    records = _records()
    before = record_digests(records)
    assert before == record_digests(_records())  # the same data, the same digests
    cve = sorted(records)[0]
    changed = dict(records)
    changed[cve] = [dataclasses.replace(records[cve][0], affected=())]
    now = record_digests(changed)
    assert changed_ids(before, now) == {cve}
    gone = {k: v for k, v in now.items() if k != cve}
    assert changed_ids(now, gone) == {cve} and changed_ids(gone, now) == {cve}


def test_tracker_digests_and_subset() -> None:
    with TRACKER.open("rb") as f:
        tracker = read_tracker(f, ["bookworm"])
    digests = tracker_digests(tracker)
    assert "CVE-2024-2398" in digests and "CVE-2024-5535" in digests
    doc = json.loads(TRACKER.read_text())
    doc["curl"]["CVE-2024-2398"]["releases"]["bookworm"]["urgency"] = "high"
    doc["curl"]["CVE-2024-2398"]["description"] = "a description matching never reads"
    doc["openssl"]["CVE-2024-5535"]["description"] = "changed too, and ignored"
    moved = tracker_digests(read_tracker(io.BytesIO(json.dumps(doc).encode()), ["bookworm"]))
    assert changed_ids(digests, moved) == {"CVE-2024-2398"}
    sub = tracker_subset(tracker, {"CVE-2024-2398"})
    assert list(sub.packages()) == ["curl"] and list(sub.issues("curl")) == ["CVE-2024-2398"]
    both = cve_digests({"CVE-2024-2398": "r"}, digests)
    assert set(both) == set(digests) and both["CVE-2024-2398"] != cve_digests({}, digests)["CVE-2024-2398"]
