"""Files (checksum, templates, on_change, removal), the on-disk report buffer, and os-release parsing."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from bulkhead.agent.files import apply_files
from bulkhead.agent.inventory import digest, parse_os_release, root_filesystem
from bulkhead.agent.outbox import Outbox


def spec(path: str, text: str, **kw: object) -> dict[str, object]:
    data = text.encode()
    return {"path": path, "content_b64": base64.b64encode(data).decode(), "sha256": hashlib.sha256(data).hexdigest(),
            "mode": "0600", "template": False, "on_change": None, **kw}  # fmt: skip


def test_files_written_templated_and_removed(tmp_path: Path) -> None:
    root, ledger = tmp_path / "root", tmp_path / "files.json"
    marker = tmp_path / "changed"
    specs = [spec("/etc/a.conf", "site=${site}\n", template=True, on_change=f"echo x >> {marker}")]
    res = apply_files(root, specs, {"site": "plant-7"}, ledger)
    assert [(r.path, r.changed, r.error) for r in res] == [("/etc/a.conf", True, None)]
    assert (root / "etc/a.conf").read_text() == "site=plant-7\n" and (root / "etc/a.conf").stat().st_mode & 0o777 == 0o600
    assert apply_files(root, specs, {"site": "plant-7"}, ledger)[0].changed is False  # unchanged: on_change not run again
    assert marker.read_text() == "x\n"
    res = apply_files(root, [], {}, ledger)
    assert [(r.path, r.changed) for r in res] == [("/etc/a.conf", True)] and not (root / "etc/a.conf").exists()


def test_file_errors_change_nothing(tmp_path: Path) -> None:
    bad_sum = {**spec("/x", "hello"), "sha256": "0" * 64}
    missing_var = spec("/y", "${nope}", template=True)
    res = apply_files(tmp_path, [bad_sum, missing_var], {}, tmp_path / "l.json")
    assert "sha256" in (res[0].error or "") and "nope" in (res[1].error or "")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_outbox_survives_torn_line_and_keeps_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.add("update", "downloading", 1, progress=10)
    with box.events_path.open("a") as f:
        f.write('{"seq": 99, "ki')  # a power cut in the middle of a write
    box.add("update", "installing", 1)
    events = box.pending()
    assert [(e["seq"], e["phase"]) for e in events] == [(1, "downloading"), (2, "installing")]
    box._drop_through(1)
    assert [e["seq"] for e in Outbox(tmp_path).pending()] == [2]


def test_outbox_seq_has_no_gap_when_killed_between_append_and_seq_record(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.add("update", "downloading", 1, progress=10)
    box.add("update", "downloading", 1, progress=70)
    box.seq_path.write_text("1")  # the kill came after the event was on disk, before its seq was recorded
    box = Outbox(tmp_path)  # the agent restarts
    box.add("update", "downloading", 1, progress=80)
    assert [e["seq"] for e in box.pending()] == [1, 2, 3]


def test_outbox_seq_not_reused_after_acknowledged_events_are_dropped(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    for p in (10, 20, 30):
        box.add("update", "downloading", 1, progress=p)
    box.seq_path.write_text("2")  # the seq record of the last event never made it to disk
    box._drop_through(3)  # the server acknowledged all three
    assert box.pending() == []
    box.add("update", "installing", 1)
    assert [e["seq"] for e in box.pending()] == [4]  # 3 was taken: the server would drop a second 3 as a duplicate


def test_outbox_finds_last_seq_beyond_the_tail_it_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bulkhead.agent.outbox.TAIL_BYTES", 64)
    box = Outbox(tmp_path)
    box.add("update", "downloading", 1, note="x" * 200)  # one event longer than the tail
    box.seq_path.unlink()
    box.add("update", "installing", 1)
    assert [e["seq"] for e in box.pending()] == [1, 2]


def test_inventory_only_resent_when_changed(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.set_inventory({"a": 1})
    assert json.loads(box.inventory_path.read_text()) == {"a": 1}
    box.sent_path.write_text(digest({"a": 1}))
    box.inventory_path.unlink()
    box.set_inventory({"a": 1})
    assert not box.inventory_path.exists()


def test_parse_os_release() -> None:
    assert parse_os_release("# c\nNAME=\"Debian GNU/Linux\"\nVERSION_ID='12'\nID=debian\n\n") == {
        "NAME": "Debian GNU/Linux",
        "VERSION_ID": "12",
        "ID": "debian",
    }


def test_an_event_with_huge_details_is_cut_to_what_the_server_accepts(tmp_path: Path) -> None:
    """A very long RAUC error must not make a report the server refuses (it would block every later report)."""
    from bulkhead.protocol import MAX_EVENT_DETAILS_BYTES

    box = Outbox(tmp_path)
    box.add("update", "failure", 7, reason="E" * 100_000, version="2.0")
    (event,) = box.pending()
    assert len(json.dumps(event["details"])) <= MAX_EVENT_DETAILS_BYTES
    assert event["details"]["version"] == "2.0" and event["details"]["reason"].startswith("EEEE")


def test_the_root_file_systems_mounts_are_reported(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 254:2 / / ro,relatime shared:1 - ext4 /dev/vda2 ro\n"
        "23 22 0:21 / /run rw,nosuid - tmpfs tmpfs rw\n"
        "30 22 254:4 / /data rw,relatime shared:9 - ext4 /dev/vda4 rw\n"
        "31 22 0:30 / /etc rw,relatime shared:10 - overlay etc-overlay rw,lowerdir=/etc,upperdir=/data/overlay/etc/upper\n"
        "32 22 0:31 / /var rw,relatime shared:11 - overlay var-overlay rw,lowerdir=/var\n"
    )
    mid = tmp_path / "machine-id"
    mid.write_text("7c137c437a8a446c948ea1b4456b293b\n")
    assert root_filesystem(info, mid) == {"read_only": True, "overlays": ["/etc", "/var"], "machine_id": mid.read_text().strip()}
    info.write_text("22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n")
    mid.write_text("uninitialized\n")  # systemd's word before the first boot wrote one
    assert root_filesystem(info, mid) == {"read_only": False, "overlays": [], "machine_id": None}
    assert root_filesystem(tmp_path / "absent") == {}
    assert root_filesystem()["read_only"] is False  # this machine's own root
