"""The server's garbage-collection tuning: start-up's objects frozen out of collections, young collections rarer."""

from __future__ import annotations

import gc

import pytest

from bulkhead.server.heap import YOUNG_THRESHOLD, paused_gc, tune_gc


def test_tune_gc_freezes_what_exists_and_collects_the_young_generation_less_often() -> None:
    before = gc.get_threshold()
    try:
        kept = [{"built": "at start-up"}]
        tune_gc()
        assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert not any(o is kept for o in gc.get_objects()), "frozen objects are not tracked by later collections"
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_paused_gc_stops_collections_inside_and_restores_the_state_it_found_even_on_error() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), paused_gc():
        raise RuntimeError("a feed that fails to parse")
    assert gc.isenabled(), "collections resume after a failed load"
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled(), "a caller that had collections off keeps them off"
    finally:
        gc.enable()
