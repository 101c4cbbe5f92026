from __future__ import annotations

import pathlib
import threading

import pytest

import state.release
from state import StateStore
from state.release import release_in_steps


def test_release_in_steps_empties_every_kind_and_counts_what_went(monkeypatch: pytest.MonkeyPatch) -> None:
    naps: list[float] = []
    monkeypatch.setattr(state.release.time, "sleep", naps.append)
    heap = [(float(i), f"id{i}") for i in range(1000)]
    entries = {f"id{i}": (float(i), b"v") for i in range(700)}
    fresh = {f"id{i}" for i in range(300)}
    assert release_in_steps([heap, entries, fresh, []], step=256) == 2000
    assert heap == [] and entries == {} and fresh == set()
    # one hand-over of the GIL per step: 4 + 3 + 2 steps
    assert naps == [0] * 9


def test_release_in_steps_refuses_a_step_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        release_in_steps([[1]], step=0)


def test_a_landed_commit_releases_its_layer_once_and_the_store_reads_the_database(
    tmp_path: pathlib.Path,
) -> None:
    with StateStore(tmp_path / "state") as store:
        for i in range(3000):
            store.pending.put(f"p{i}", float(i), b"x%d" % i)
            store.learned.put(f"l{i}", float(i), b"")
        pending_commit = store.begin_commit({"n": 1}, b"model")
        assert pending_commit.release() == 0  # nothing landed yet
        frozen = store.pending.frozen
        assert frozen is not None and len(frozen.entries) == 3000
        pending_commit.write()
        store.pending.put("live", 5000.0, b"live")
        store.end_commit(pending_commit)

        worker = threading.Thread(target=lambda: released.append(pending_commit.release()))
        released: list[int] = []
        worker.start()
        # the loop's side goes on meanwhile: reads find the entries in the database
        assert [store.pending.get(f"p{i}") for i in (0, 1500, 2999)] == [b"x0", b"x1500", b"x2999"]
        assert store.learned.get("l2999") == b""
        worker.join()
        # per store: the old heap, the layer's entries and its fresh ids (3,000 each), and the
        # pending heap's entry for "live" (the rebuilt heap has its own)
        assert released == [2 * 3 * 3000 + 1] and frozen.entries == {} and frozen.fresh == set()
        assert pending_commit.release() == 0  # a second call has nothing left
        assert store.pending.expire(1000.0) == 1000  # the rebuilt heap and the database still expire
        assert (len(store.pending), len(store.learned)) == (2001, 3000)
