"""kas lock files: written in kas's format (checked by kas's own loader), read back, refused when damaged."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkhead.osbuild.errors import OsBuildError
from bulkhead.osbuild.kasconfig import load_kas, lock_path, read_lock, render_lock, repos_of, write_lock

A, B = "a" * 40, "0123456789abcdef0123456789abcdef01234567"


def test_lock_round_trip_and_kas_accepts_it(tmp_path: Path) -> None:
    kas_file = tmp_path / "machine.yml"
    kas_file.write_text(
        "header:\n  version: 14\nmachine: qemux86-64\nrepos:\n"
        "  poky:\n    url: https://git.yoctoproject.org/poky\n    branch: scarthgap\n    layers:\n      meta:\n"
    )
    lock = lock_path(kas_file)
    assert lock.name == "machine.lock.yml"
    write_lock(lock, render_lock({"poky": A, "meta-rauc": B}))
    assert read_lock(lock) == {"poky": A, "meta-rauc": B}
    assert list(read_lock(lock)) == ["meta-rauc", "poky"]  # sorted: small diffs
    assert load_kas(lock)["overrides"]["repos"]["poky"]["commit"] == A  # kas's schema takes the lock file
    assert [(r.name, r.branch) for r in repos_of(load_kas(kas_file))] == [("poky", "scarthgap")]


def test_no_lock_file_pins_nothing(tmp_path: Path) -> None:
    assert read_lock(tmp_path / "absent.lock.yml") == {}


@pytest.mark.parametrize(
    "text, message",
    [
        ("header: [", "not valid YAML"),
        ("header:\n  version: 14\n", "no overrides.repos"),
        ("overrides:\n  repos:\n    poky:\n      commit: main\n", "no 40-hex commit"),
    ],
)
def test_damaged_lock_file_is_refused_with_what_to_do(tmp_path: Path, text: str, message: str) -> None:
    lock = tmp_path / "m.lock.yml"
    lock.write_text(text)
    with pytest.raises(OsBuildError, match=message) as err:
        read_lock(lock)
    assert "lock anew" in str(err.value) or "kas lock file" in str(err.value)


def test_render_refuses_a_branch_name_for_a_commit() -> None:
    with pytest.raises(ValueError, match="40-hex"):
        render_lock({"poky": "scarthgap"})


def test_write_lock_replaces_atomically_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    lock = tmp_path / "m.lock.yml"
    write_lock(lock, render_lock({"poky": A}))
    write_lock(lock, render_lock({"poky": B}))
    assert read_lock(lock) == {"poky": B}
    assert [p.name for p in tmp_path.iterdir()] == ["m.lock.yml"]


def test_repos_without_branch_are_refused() -> None:
    with pytest.raises(OsBuildError, match="no branch"):
        repos_of({"repos": {"poky": {"url": "https://example.invalid/poky"}}})
