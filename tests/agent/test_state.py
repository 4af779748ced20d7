"""The update state machine: what an interrupted phase means after a restart, and atomic persistence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bulkhead.agent.state import Phase, ReleaseRef, StateStore, UpdateState, resume, wants_update

REL = ReleaseRef(7, "2.0", "lab", "ab" * 32, 100, "http://s/device/v1/releases/7/bundle")


def st(phase: Phase, **kw: object) -> UpdateState:
    return UpdateState(phase, REL, from_slot="A", target_slot=kw.pop("target_slot", "B"), **kw)  # type: ignore[arg-type]


def test_wants_update_only_when_idle_different_and_not_given_up() -> None:
    assert wants_update(UpdateState(), REL, "1.0")
    assert not wants_update(UpdateState(), REL, "2.0")
    assert not wants_update(UpdateState(), None, "1.0")
    assert not wants_update(UpdateState(given_up={"7": "rolled_back"}), REL, "1.0")
    assert not wants_update(st(Phase.DOWNLOADING), REL, "1.0")


@pytest.mark.parametrize(
    ("phase", "booted", "primary", "installed", "attempts", "expect", "outcome"),
    [
        (Phase.DOWNLOADING, "A", "A", False, 0, Phase.DOWNLOADING, None),  # resume the download
        (Phase.INSTALLING, "A", "A", False, 1, Phase.INSTALLING, None),  # cut mid-install: install again
        (Phase.INSTALLING, "A", "A", False, 3, Phase.IDLE, "failure"),  # ... but not forever
        (Phase.INSTALLING, "A", "B", True, 1, Phase.REBOOTING, None),  # RAUC finished, reboot not yet done
        (Phase.INSTALLING, "B", "B", True, 1, Phase.VERIFYING, None),  # finished and rebooted before we noted it
        (Phase.REBOOTING, "B", "B", True, 0, Phase.VERIFYING, None),
        (Phase.REBOOTING, "A", "B", True, 0, Phase.REBOOTING, None),  # power failed before the reboot
        (Phase.REBOOTING, "A", "A", True, 0, Phase.IDLE, "rolled_back"),  # bootloader gave up on B
        (Phase.VERIFYING, "B", "B", True, 0, Phase.VERIFYING, None),  # cut during the health check: check again
        (Phase.VERIFYING, "A", "A", True, 0, Phase.IDLE, "rolled_back"),  # boot counting fell back
        (Phase.ROLLING_BACK, "A", "B", True, 0, Phase.IDLE, "rolled_back"),
        (Phase.ROLLING_BACK, "B", "B", True, 0, Phase.ROLLING_BACK, None),  # still on the bad slot: reboot again
    ],
)
def test_resume(
    phase: Phase, booted: str, primary: str, installed: bool, attempts: int, expect: Phase, outcome: str | None
) -> None:
    r = resume(st(phase, install_attempts=attempts), booted, primary, installed)
    assert (r.phase, r.outcome) == (expect, outcome)
    if outcome is not None:
        assert r.reason


def test_rebooting_gives_up_after_three_reboots_that_did_not_happen() -> None:
    r = resume(st(Phase.REBOOTING, reboot_attempts=3), "A", "B", True)
    assert (r.phase, r.outcome) == (Phase.IDLE, "rolled_back")


def test_finish_remembers_failed_releases_only() -> None:
    assert st(Phase.VERIFYING).finish("rolled_back").given_up == {"7": "rolled_back"}
    assert st(Phase.VERIFYING).finish(None) == UpdateState()


def test_store_round_trip_is_atomic(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s" / "update-state.json")
    assert store.load() == UpdateState()
    s = st(Phase.INSTALLING, install_attempts=2)
    store.save(s)
    assert store.load() == s
    assert json.loads(store.path.read_text())["phase"] == "installing"
    assert [p.name for p in store.path.parent.iterdir()] == ["update-state.json"]  # no temp files left
    assert store.path.stat().st_mode & 0o777 == 0o600


def test_a_new_rollout_action_is_a_new_attempt_and_install_flag_comes_from_the_wire() -> None:
    wire = {"id": 7, "version": "2.0", "compatible": "c", "sha256": "0" * 64, "size": 1, "url": "u"}
    plain = ReleaseRef.from_wire(wire)
    first = ReleaseRef.from_wire({**wire, "action": {"id": 3, "type": "soft", "install": False}})
    retry = ReleaseRef.from_wire({**wire, "action": {"id": 4, "type": "soft", "install": True}})
    assert plain.install and plain.attempt == "7"
    assert not first.install and first.attempt == "7@3"
    failed = UpdateState(Phase.DOWNLOADING, first).finish("rolled_back")
    assert not wants_update(failed, first, "1.0")  # that attempt is not retried in a loop
    assert wants_update(failed, retry, "1.0")  # the operator's retry is a new action


def test_a_downloaded_bundle_waits_across_restarts() -> None:
    rel = ReleaseRef(7, "2.0", "c", "0" * 64, 1, "u", install=False, action_id=3)
    st = UpdateState(Phase.DOWNLOADED, rel, from_slot="A")
    assert resume(st, booted="A", primary="A", target_installed=False).phase is Phase.DOWNLOADED
    assert UpdateState.from_json(json.loads(json.dumps(st.to_json()))) == st


def test_delta_applies_only_to_the_version_it_was_made_from() -> None:
    from bulkhead.agent.state import ReleaseRef

    wire = {
        "id": 7, "version": "2", "compatible": "c", "sha256": "f" * 64, "size": 1000, "url": "http://s/full",
        "delta": {"id": 3, "from_version": "1", "sha256": "d" * 64, "size": 100, "url": "http://s/delta", "signed_url": "u"},
    }  # fmt: skip
    rel = ReleaseRef.from_wire(wire)
    delta = rel.delta_for("1")
    assert delta is not None and (delta.sha256, delta.size, delta.url, delta.version) == ("d" * 64, 100, "http://s/delta", "2")
    assert rel.delta_for("1.1") is None and rel.delta_for(None) is None
    assert ReleaseRef.from_wire({k: v for k, v in wire.items() if k != "delta"}).delta_for("1") is None


def test_delta_refusal_names_the_hooks_reason() -> None:
    from bulkhead.agent.updater import delta_refusal

    err = (
        "LastError: Installation error: Failed updating slot rootfs.1: failed to run slot hook: Child process exited with code {}"
    )
    assert "not the image this delta was made from" in delta_refusal(err.format(3))
    assert "patch is damaged" in delta_refusal(err.format(4))
    assert "cannot tell which slot is booted" in delta_refusal(err.format(5))
    assert delta_refusal(err.format(1)) == err.format(1)  # unknown: RAUC's own words


def test_the_agent_reads_the_hooks_exit_codes_as_the_hook_means_them() -> None:
    from bulkhead.agent.updater import DELTA_REFUSALS
    from bulkhead.delta import patch

    assert set(DELTA_REFUSALS) == {patch.EXIT_SOURCE, patch.EXIT_DAMAGED, patch.EXIT_SETUP}
    assert "not the image this delta was made from" in DELTA_REFUSALS[patch.EXIT_SOURCE]
    assert "damaged" in DELTA_REFUSALS[patch.EXIT_DAMAGED] and "booted" in DELTA_REFUSALS[patch.EXIT_SETUP]


@pytest.mark.parametrize(
    "text", ["{not json", "[1]", '{"phase": "exploded"}', '{"release": {"id": "x"}}', '{"install_attempts": "many"}']
)
def test_an_unreadable_state_file_is_set_aside_not_a_crash(tmp_path: Path, text: str) -> None:
    resets: list[tuple[str, int | None]] = []
    store = StateStore(tmp_path / "update-state.json", lambda why, rid: resets.append((why, rid)))
    store.path.write_text(text)
    assert store.load() == UpdateState()
    assert (tmp_path / "update-state.json.unreadable").read_text() == text
    assert store.load() == UpdateState()  # the fresh state was saved: reported once
    assert len(resets) == 1 and "abandoned" in resets[0][0]


def test_a_state_file_that_cannot_be_written_is_a_state_error(tmp_path: Path) -> None:
    from bulkhead.agent.errors import StateError

    (tmp_path / "data").write_text("a file where the data directory should be")
    store = StateStore(tmp_path / "data" / "update-state.json")
    with pytest.raises(StateError, match="writable"):
        store.save(UpdateState())
