"""The server's garbage-collection tuning: start-up's objects frozen out of collections, young collections rarer."""

from __future__ import annotations

import gc

from bulkhead.server.heap import YOUNG_THRESHOLD, tune_gc


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
