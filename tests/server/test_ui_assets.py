"""The web UI's browser assets are the files of the pinned npm packages their lock names (docs/adr/0007-web-ui.md)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCKS = [ROOT / "src/bulkhead/server/ui/static/vendor/vendor.lock.json", ROOT / "tests/data/vendor/vendor.lock.json"]


def entries() -> list[tuple[Path, dict[str, str]]]:
    return [(lock.parent, e) for lock in LOCKS for e in json.loads(lock.read_text())]


@pytest.mark.parametrize(("folder", "entry"), entries(), ids=lambda v: v["package"] if isinstance(v, dict) else "")
def test_every_vendored_file_has_the_hash_its_lock_names(folder: Path, entry: dict[str, str]) -> None:
    data = (folder / entry["file"]).read_bytes()
    assert "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode() == entry["sha512"], (
        f"{entry['file']} is not {entry['package']}@{entry['version']}'s file: run scripts/vendor_assets.py again"
    )
    assert entry["integrity"].startswith("sha512-") and entry["version"].count(".") == 2


def test_no_file_in_the_vendor_folders_is_missing_from_a_lock() -> None:
    for lock in LOCKS:
        named = {e["file"] for e in json.loads(lock.read_text())} | {lock.name}
        assert {p.name for p in lock.parent.iterdir()} == named


def test_htmx_is_pinned_and_no_template_loads_from_another_host() -> None:
    assert any(e["package"] == "htmx.org" for _f, e in entries())
    for page in (ROOT / "src/bulkhead/server/ui/templates").glob("*.html"):
        text = page.read_text()
        assert "://" not in text.replace("http://www.w3.org", ""), f"{page.name} names another host"
