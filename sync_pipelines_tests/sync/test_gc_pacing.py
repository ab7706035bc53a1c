"""A sync raises the gc thresholds while it runs and the last of concurrent syncs puts them back."""

from __future__ import annotations

import gc
import threading

from sync_pipelines.sync.gc_pacing import SYNC_GC_THRESHOLD, sync_gc_pacing


def test_thresholds_are_raised_for_the_block_and_restored_after():
    before = gc.get_threshold()
    with sync_gc_pacing():
        assert gc.get_threshold() == SYNC_GC_THRESHOLD
        assert gc.isenabled()  # paced, not switched off: cyclic garbage is still collected
    assert gc.get_threshold() == before


def test_overlapping_syncs_restore_only_when_the_last_one_ends():
    before = gc.get_threshold()
    first, second = sync_gc_pacing(), sync_gc_pacing()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # not LIFO: syncs on threads end in any order
    assert gc.get_threshold() == SYNC_GC_THRESHOLD
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before


def test_a_failing_sync_restores_them_too():
    before = gc.get_threshold()
    try:
        with sync_gc_pacing():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before


def test_syncs_on_threads_leave_the_process_as_they_found_it():
    before = gc.get_threshold()
    barrier = threading.Barrier(8)
    seen = []

    def sync() -> None:
        with sync_gc_pacing():
            barrier.wait()
            seen.append(gc.get_threshold())

    threads = [threading.Thread(target=sync) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [SYNC_GC_THRESHOLD] * 8
    assert gc.get_threshold() == before
