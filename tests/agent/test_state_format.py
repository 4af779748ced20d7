"""The state file across agent versions: a newer agent's fields survive an older one, a newer major format is set aside."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from bulkhead.agent import state as current
from bulkhead.agent.state import STATE_FORMAT, Phase, ReleaseRef, StateStore, UpdateState

REL = ReleaseRef(7, "2.0", "lab", "ab" * 32, 100, "http://s/device/v1/releases/7/bundle", action_id=3, format="verity")
IN_FLIGHT = UpdateState(Phase.VERIFYING, REL, from_slot="A", target_slot="B", install_attempts=1, delta_refused="slot modified")


def _older_reader(unknown_field: str) -> ModuleType:
    """A copy of this agent's state module whose UpdateState does not have `unknown_field` (an older agent)."""
    src = Path(current.__file__).read_text()
    lines = [ln for ln in src.splitlines(keepends=True) if not ln.startswith(f"    {unknown_field}: ")]
    assert len(lines) == len(src.splitlines()) - 1, "the field's line was not found exactly once"
    name = "bulkhead.agent._older_state"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "bulkhead.agent"
    sys.modules[name] = mod
    try:
        exec(compile("".join(lines), "older_state.py", "exec"), mod.__dict__)
    finally:
        del sys.modules[name]
    return mod


def test_the_state_file_carries_its_format_version(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "update-state.json")
    store.save(IN_FLIGHT)
    assert json.loads(store.path.read_text())["format_version"] == STATE_FORMAT == 1
    assert store.load() == IN_FLIGHT


def test_a_file_from_before_the_format_version_reads_as_format_1(tmp_path: Path) -> None:
    doc = IN_FLIGHT.to_json()
    del doc["format_version"]
    store = StateStore(tmp_path / "update-state.json")
    store.path.write_text(json.dumps(doc))
    assert store.load() == IN_FLIGHT


def test_a_newer_agents_extra_fields_are_read_and_kept(tmp_path: Path) -> None:
    """Written by the current agent, then a newer agent added fields (top level and in the release)."""
    store = StateStore(tmp_path / "update-state.json")
    store.save(IN_FLIGHT)
    doc = json.loads(store.path.read_text())
    doc["boot_deadline"] = "2030-01-01T00:00:00Z"
    doc["release"]["signature_fingerprint"] = {"sha256": "cd" * 32}
    store.path.write_text(json.dumps(doc))

    loaded = store.load()
    assert loaded == IN_FLIGHT  # the update in flight goes on: same phase, release, slots
    assert loaded.release is not None and loaded.release.action_id == 3
    store.save(loaded.to(Phase.VERIFYING, reboot_attempts=1))  # the older agent moves on and writes its state
    again = json.loads(store.path.read_text())
    assert again["boot_deadline"] == "2030-01-01T00:00:00Z"  # round-tripped for the newer agent
    assert again["release"]["signature_fingerprint"] == {"sha256": "cd" * 32}
    assert again["reboot_attempts"] == 1
    assert "boot_deadline" not in store.load().finish().to_json()  # extras belong to the update in flight only


def test_an_older_agent_reads_what_the_current_one_wrote(tmp_path: Path) -> None:
    """The rollback case: the current agent wrote the state; an agent that does not know `delta_refused` reads it."""
    older = _older_reader("delta_refused")
    assert "delta_refused" not in {f.name for f in older.UpdateState.__dataclass_fields__.values()}
    path = tmp_path / "update-state.json"
    StateStore(path).save(IN_FLIGHT)

    old_store = older.StateStore(path)
    seen = old_store.load()  # no TypeError: unknown fields are kept aside
    assert (seen.phase.value, seen.release.id, seen.release.action_id, seen.target_slot) == ("verifying", 7, 3, "B")
    assert seen.extra == {"delta_refused": "slot modified"}
    old_store.save(seen.to(older.Phase.VERIFYING, reboot_attempts=2))

    back = StateStore(path).load()  # and the current agent gets its field back after the older one wrote the file
    assert back.delta_refused == "slot modified" and back.reboot_attempts == 2 and back.release == REL


def test_a_newer_major_format_is_set_aside_and_its_update_given_up(tmp_path: Path) -> None:
    store_path = tmp_path / "update-state.json"
    StateStore(store_path).save(UpdateState(given_up={"5": "rolled_back"}))
    doc = {**IN_FLIGHT.to_json(), "format_version": STATE_FORMAT + 1, "phase": "attesting"}
    doc["given_up"] = {"5": "rolled_back"}
    store_path.write_text(json.dumps(doc))
    resets: list[tuple[str, int | None]] = []
    store = StateStore(store_path, lambda why, rid: resets.append((why, rid)))

    state = store.load()
    assert state.phase is Phase.IDLE and state.release is None
    assert state.given_up["5"] == "rolled_back"  # what was given up stays given up
    assert "newer agent" in state.given_up["7@3"]  # the abandoned attempt is not reinstalled in a loop
    assert json.loads((tmp_path / "update-state.json.unreadable").read_text()) == doc  # kept for a newer agent / a human
    assert resets == [(state.given_up["7@3"], 7)]
    assert json.loads(store_path.read_text())["format_version"] == STATE_FORMAT


@pytest.mark.parametrize("version", ["2", -1, 0, True, None])
def test_a_nonsense_format_version_is_set_aside(tmp_path: Path, version: object) -> None:
    store = StateStore(tmp_path / "update-state.json")
    store.path.write_text(json.dumps({**IN_FLIGHT.to_json(), "format_version": version}))
    assert store.load().phase is Phase.IDLE
