"""The generator's choices: which source offsets a changed block is compared with, and what it becomes."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import pytest

from bulkhead.delta.errors import DeltaError
from bulkhead.delta.generate import _candidates, make_patch
from bulkhead.delta.patch import BLOCK, apply_patch


def test_candidates_are_distinct_and_inside_the_source() -> None:
    size = BLOCK * 10
    assert _candidates([], None, None, size) == []
    # voted first, then the previous block's alignment continued, then the next one's stepped back
    assert _candidates([100, 7], 3 * BLOCK, 9 * BLOCK, size) == [100, 7, 4 * BLOCK, 8 * BLOCK]
    assert _candidates([4 * BLOCK], 3 * BLOCK, 5 * BLOCK, size) == [4 * BLOCK]  # one offset, tried once
    assert _candidates([], 9 * BLOCK, 0, size) == []  # past the end, before the start


def _table(rng: random.Random, count: int, shift: int) -> bytes:
    """A relocation-like table: 8-byte addresses that a rebuild moves by `shift`."""
    return b"".join(struct.pack("<Q", 0x1000_0000 + rng.randrange(1 << 24) * 8 + shift) for _ in range(count))


def test_a_table_whose_every_word_changed_is_diffed_against_its_file_neighbour(tmp_path: Path) -> None:
    # A file's unchanged head (copied), then a table in which every 8-byte word changed: no content
    # anchor matches, but continuing the head's alignment gives a difference of one repeated pattern.
    head = os.urandom(BLOCK * 4)
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    src.write_bytes(os.urandom(BLOCK * 8) + head + _table(random.Random(1), BLOCK * 4 // 8, 0))
    tgt.write_bytes(os.urandom(BLOCK * 8) + head + _table(random.Random(1), BLOCK * 4 // 8, 0x40))
    patch = tmp_path / "p"
    stats = make_patch(src, tgt, patch)
    assert (stats.copy_blocks, stats.diff_blocks) == (4, 4)
    out = tmp_path / "out"
    apply_patch(str(patch), str(src), str(out))
    assert out.read_bytes() == tgt.read_bytes()
    # the 8 new random blocks are stored as they are; the changed table costs next to nothing
    assert stats.stored_blocks == 8 and patch.stat().st_size < 8 * BLOCK + 1500


def test_an_unwritable_output_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    src.write_bytes(os.urandom(BLOCK * 4))
    tgt.write_bytes(os.urandom(BLOCK * 4))
    with pytest.raises(DeltaError, match="cannot write the patch"):
        make_patch(src, tgt, tmp_path / "missing" / "p.bhdelta")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "tgt"]
