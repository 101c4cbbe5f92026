"""Tests for :mod:`state`: pending labels, checkpoints, sealed model bytes, isolation."""

from __future__ import annotations

from tests.support import ROOT as REPO_ROOT

import ast
import hashlib
import os
import pathlib
import pickle
import random
import struct
import subprocess
import sys
import textwrap
import threading

import msgpack
import pytest
import rocksdict

import state
from state import (
    Checkpoint,
    CheckpointUnreadable,
    DiskFullError,
    CorruptStateError,
    IncompatibleStateError,
    MemoryExpiringStore,
    MissingStateError,
    PendingCommit,
    ExpiringStore,
    StateError,
    StateLockedError,
    StateStore,
    seal,
    unseal,
)
from state.checkpoint_files import CheckpointFiles
from state.opening import translate_open_error
from state.pending import LEARNED_LAYOUT, PENDING_LAYOUT, decode_ts, encode_ts

STATE_DIR = REPO_ROOT / "state"


# -- helpers ---------------------------------------------------------------------------------


def run_child(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that can import the project."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO_ROOT,
    )


def start_child(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )


class PendingHarness:
    """One ExpiringStore implementation plus the commit/reopen moves that apply to it.

    ``kind`` is ``"memory"``, ``"rocksdb"`` (``StateStore.pending``) or ``"rocksdb-learned"``
    (``StateStore.learned``: same class, other keys).
    """

    def __init__(self, kind: str, path: pathlib.Path) -> None:
        self.kind = kind
        self.path = path
        self.store: StateStore | None = None
        if kind == "memory":
            self.labels: ExpiringStore = MemoryExpiringStore()
        else:
            self.store = StateStore(path)
            self.labels = self._labels_of(self.store)

    def _labels_of(self, store: StateStore) -> ExpiringStore:
        return store.learned if self.kind == "rocksdb-learned" else store.pending

    def commit(self) -> None:
        """Make the changes durable (no-op for the in-memory store)."""
        if self.store is not None:
            self.store.commit({}, b"model")

    def reopen(self) -> None:
        """Close and reopen (no-op for the in-memory store, which has nothing to reopen)."""
        if self.store is not None:
            self.store.close()
            self.store = StateStore(self.path)
            self.labels = self._labels_of(self.store)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


@pytest.fixture(params=["memory", "rocksdb", "rocksdb-learned"])
def pending(request: pytest.FixtureRequest, tmp_path: pathlib.Path):
    harness = PendingHarness(request.param, tmp_path / "state")
    yield harness
    harness.close()


@pytest.fixture
def store_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "state"


# Changes applied to an ExpiringStore and to a plain dict reference at once.
Reference = dict  # event id -> (ts, value)


def put_both(labels, reference: Reference, event_id: str, ts: float, value: bytes) -> None:
    labels.put(event_id, ts, value)
    reference[event_id] = (ts, value)


def delete_both(labels, reference: Reference, event_id: str) -> None:
    labels.delete(event_id)
    reference.pop(event_id, None)


def expire_both(labels, reference: Reference, before: float) -> None:
    """Expire below ``before`` in both, checking the count ``expire`` reports."""
    expected = [k for k, (ts, _) in reference.items() if ts < before]
    assert labels.expire(before) == len(expected)
    for k in expected:
        del reference[k]


# -- ExpiringStore contract (both implementations) -------------------------------------------


def test_get_missing_is_none(pending: PendingHarness) -> None:
    assert pending.labels.get("nope") is None
    assert len(pending.labels) == 0


@pytest.mark.parametrize("commit_first", [False, True], ids=["overlay", "committed"])
def test_put_get_overwrite_delete(pending: PendingHarness, commit_first: bool) -> None:
    labels = pending.labels
    labels.put("a", 10.0, b"first")
    labels.put("b", 11.0, b"other")
    if commit_first:
        pending.commit()
    assert labels.get("a") == b"first"
    assert len(labels) == 2

    labels.put("a", 12.0, b"second")
    assert labels.get("a") == b"second"
    assert len(labels) == 2

    labels.delete("a")
    assert labels.get("a") is None
    assert labels.get("b") == b"other"
    assert len(labels) == 1

    pending.commit()
    pending.reopen()
    labels = pending.labels
    assert labels.get("a") is None
    assert labels.get("b") == b"other"
    assert len(labels) == 1


def test_delete_missing_is_noop(pending: PendingHarness) -> None:
    pending.labels.put("a", 1.0, b"x")
    pending.labels.delete("missing")
    pending.labels.delete("missing")
    assert len(pending.labels) == 1


def test_values_are_bytes_and_ids_are_unicode(pending: PendingHarness) -> None:
    pending.labels.put("événement/🙂", 1.5, bytearray(b"\x00\xff"))
    pending.labels.put("", 2.0, b"")
    pending.commit()
    pending.reopen()
    assert pending.labels.get("événement/🙂") == b"\x00\xff"
    assert type(pending.labels.get("événement/🙂")) is bytes
    assert pending.labels.get("") == b""


def test_rejects_nan_ts_and_non_str_ids(pending: PendingHarness) -> None:
    with pytest.raises(ValueError, match="NaN"):
        pending.labels.put("a", float("nan"), b"x")
    with pytest.raises(ValueError, match="NaN"):
        pending.labels.expire(float("nan"))
    with pytest.raises(TypeError, match="str"):
        pending.labels.put(b"a", 1.0, b"x")  # type: ignore[arg-type]
    assert len(pending.labels) == 0


def test_expire_overlay_only(pending: PendingHarness) -> None:
    for i, ts in enumerate([1.0, 2.0, 3.0]):
        pending.labels.put(f"e{i}", ts, b"v")
    assert pending.labels.expire(2.5) == 2
    assert [pending.labels.get(f"e{i}") for i in range(3)] == [None, None, b"v"]
    assert len(pending.labels) == 1
    assert pending.labels.expire(2.5) == 0


def test_expire_committed(pending: PendingHarness) -> None:
    for i, ts in enumerate([1.0, 2.0, 3.0]):
        pending.labels.put(f"e{i}", ts, b"v")
    pending.commit()
    pending.reopen()
    assert pending.labels.expire(2.5) == 2
    assert len(pending.labels) == 1
    pending.commit()
    pending.reopen()
    assert len(pending.labels) == 1
    assert pending.labels.get("e2") == b"v"
    assert pending.labels.expire(2.5) == 0


def test_expire_is_strict_at_the_boundary(pending: PendingHarness) -> None:
    pending.labels.put("at", 5.0, b"v")
    pending.commit()
    pending.labels.put("at-overlay", 5.0, b"v")
    assert pending.labels.expire(5.0) == 0
    assert pending.labels.expire(5.000001) == 2


def test_expire_mixes_overlay_and_committed_entries(pending: PendingHarness) -> None:
    labels = pending.labels
    labels.put("old-committed", 1.0, b"v")
    labels.put("moved-later", 1.5, b"v")  # committed old, overwritten with a late ts below
    labels.put("deleted", 1.2, b"v")  # committed, deleted in the overlay below
    labels.put("new-committed", 9.0, b"v")
    pending.commit()
    labels.put("old-overlay", 2.0, b"v")
    labels.put("moved-later", 8.0, b"w")
    labels.delete("deleted")
    labels.put("overlay-moved-earlier", 7.0, b"v")
    labels.put("overlay-moved-earlier", 2.5, b"w")
    labels.put("late-overlay", 8.5, b"v")

    assert labels.expire(5.0) == 3  # old-committed, old-overlay, overlay-moved-earlier
    assert len(labels) == 3
    assert labels.get("moved-later") == b"w"
    assert labels.get("new-committed") == b"v"
    assert labels.get("late-overlay") == b"v"
    for gone in ("old-committed", "old-overlay", "overlay-moved-earlier", "deleted"):
        assert labels.get(gone) is None

    pending.commit()
    pending.reopen()
    assert len(pending.labels) == 3
    assert pending.labels.expire(8.2) == 1  # moved-later (at 8.0 now, not 1.5)
    assert pending.labels.expire(100.0) == 2


def test_expire_twice_between_commits_counts_each_entry_once(pending: PendingHarness) -> None:
    for i in range(10):
        pending.labels.put(f"e{i}", float(i), b"v")
    pending.commit()
    assert pending.labels.expire(3.0) == 3
    pending.labels.put("back-in-time", 1.0, b"v")  # below the range already expired
    pending.labels.put("e1", 5.5, b"again")  # re-put an expired committed id
    assert pending.labels.expire(5.0) == 3  # e3, e4, back-in-time
    assert len(pending.labels) == 6
    assert pending.labels.get("e1") == b"again"
    pending.commit()
    pending.reopen()
    assert len(pending.labels) == 6
    assert pending.labels.expire(6.0) == 2  # e5, and e1 at 5.5
    assert len(pending.labels) == 4


def test_negative_and_infinite_times_expire_in_order(pending: PendingHarness) -> None:
    times = [-float("inf"), -1e9, -1.5, -0.0, 0.0, 1e-300, 2.0, 1e12, float("inf")]
    for i, ts in enumerate(times):
        pending.labels.put(f"e{i}", ts, b"v")
    pending.commit()
    assert pending.labels.expire(0.0) == 3  # -0.0 is the same time as 0.0: not expired
    assert pending.labels.expire(1e12) == 4
    assert pending.labels.expire(float("inf")) == 1
    assert len(pending.labels) == 1


def test_len_is_exact_against_a_reference_model(pending: PendingHarness) -> None:
    rng = random.Random(20240611)
    reference: dict[str, tuple[float, bytes]] = {}
    for _ in range(1500):
        labels = pending.labels
        op = rng.random()
        event_id = f"id{rng.randrange(200)}"
        if op < 0.65:
            put_both(labels, reference, event_id, float(rng.randrange(1000)), rng.randbytes(rng.randrange(8)))
        elif op < 0.85:
            delete_both(labels, reference, event_id)
        elif op < 0.97:
            expire_both(labels, reference, float(rng.randrange(1000)))
        elif op < 0.99:  # commits are rare: each one is an fsync
            pending.commit()
        else:
            pending.commit()
            pending.reopen()
        assert len(pending.labels) == len(reference)
        assert pending.labels.get(event_id) == (reference.get(event_id) or (None, None))[1]
    pending.commit()
    pending.reopen()
    assert len(pending.labels) == len(reference)
    for event_id, (_, value) in reference.items():
        assert pending.labels.get(event_id) == value


def test_pending_and_learned_are_separate_and_commit_together(store_path: pathlib.Path) -> None:
    with StateStore(store_path) as store:
        store.pending.put("e1", 1.0, b"pending")
        store.learned.put("e1", 1.0, b"")
        store.learned.put("e2", 2.0, b"")
        assert (len(store.pending), len(store.learned)) == (1, 2)
        store.commit({}, b"m")
        store.learned.put("e3", 3.0, b"")  # not committed
        assert store.pending.expire(10.0) == 1
        assert len(store.learned) == 3
    with StateStore(store_path) as store:
        assert store.pending.get("e1") == b"pending"
        assert store.learned.get("e1") == b""
        assert store.learned.get("e3") is None
        assert (len(store.pending), len(store.learned)) == (1, 2)
        assert store.learned.expire(1.5) == 1
        assert store.pending.get("e1") == b"pending"


def test_ts_encoding_orders_like_numbers() -> None:
    rng = random.Random(7)
    values = [rng.uniform(-1e6, 1e6) for _ in range(500)]
    values += [0.0, 5e-324, -5e-324, 1.7e308, -1.7e308, float("inf"), -float("inf"), 1e-9]
    for ts in values:
        assert decode_ts(encode_ts(ts)) == ts
        assert len(encode_ts(ts)) == 8
    ordered = sorted(values)
    assert sorted(values, key=encode_ts) == ordered
    assert encode_ts(-0.0) == encode_ts(0.0)
    # non-negative times keep the IEEE big-endian bytes apart from the flipped sign bit
    assert encode_ts(1.0) == bytes([struct.pack(">d", 1.0)[0] | 0x80]) + struct.pack(">d", 1.0)[1:]


# -- StateStore ------------------------------------------------------------------------------


def test_empty_store_has_no_checkpoint(store_path: pathlib.Path) -> None:
    with StateStore(store_path) as store:
        assert store.checkpoints() == []
        assert store.load() is None
        assert store.load(1) is None
        assert len(store.pending) == 0


def test_commit_and_reload_round_trip(store_path: pathlib.Path) -> None:
    meta = {
        "offsets": {"in": {0: 17, 3: 2**40}},
        "counts": [1, 2, 3],
        "metric": 0.875,
        "fingerprint": b"\x00\x01",
        "created": "2024-06-11T10:00:00Z",
        "none": None,
    }
    with StateStore(store_path) as store:
        store.pending.put("e1", 100.0, b"pending-1")
        ckpt = store.commit(meta, b"sealed-model")
        assert ckpt == Checkpoint(
            seq=1,
            meta={**meta, "seq": 1},
            model_blob=b"sealed-model",
            size_bytes=len(b"sealed-model") + len(msgpack.packb({**meta, "seq": 1})),
        )
        assert store.load() == ckpt
    with StateStore(store_path) as store:
        assert store.checkpoints() == [1]
        assert store.load() == ckpt
        assert store.load(1) == ckpt
        assert store.pending.get("e1") == b"pending-1"
        assert len(store.pending) == 1
        second = store.commit({"seq": "ignored"}, b"m2")
        assert second.seq == 2
        assert second.meta == {"seq": 2}


def test_commit_rejects_unencodable_meta_and_keeps_the_overlay(store_path: pathlib.Path) -> None:
    with StateStore(store_path) as store:
        store.pending.put("e1", 1.0, b"v")
        with pytest.raises(TypeError, match="msgpack-able"):
            store.commit({"bad": object()}, b"m")
        assert store.checkpoints() == []
        assert store.commit({}, b"m").seq == 1
    with StateStore(store_path) as store:
        assert store.pending.get("e1") == b"v"


def test_overlay_is_gone_after_reopen_without_commit(store_path: pathlib.Path) -> None:
    with StateStore(store_path) as store:
        store.pending.put("kept", 1.0, b"k")
        store.commit({"n": 1}, b"m1")
        store.pending.put("lost", 2.0, b"l")
        store.pending.delete("kept")
        assert len(store.pending) == 1
    with StateStore(store_path) as store:
        assert store.pending.get("lost") is None
        assert store.pending.get("kept") == b"k"
        assert len(store.pending) == 1
        assert store.checkpoints() == [1]


CRASHING_CHILD = """
    import os, sys
    from state import StateStore

    store = StateStore(sys.argv[1])
    store.pending.put("a", 1.0, b"A")
    store.pending.put("b", 2.0, b"B")
    store.commit({"offsets": {"0": 10}}, b"model-1")
    store.pending.put("c", 3.0, b"C")
    store.pending.delete("a")
    store.pending.expire(2.5)
    store.learned.put("a", 1.0, b"")
    if sys.argv[2] == "after-commit":
        store.commit({"offsets": {"0": 20}}, b"model-2")
    os._exit(9)
"""


def test_crash_before_commit_leaves_the_previous_checkpoint(store_path: pathlib.Path) -> None:
    result = run_child(CRASHING_CHILD, str(store_path), "before-commit")
    assert result.returncode == 9, result.stderr
    with StateStore(store_path) as store:
        assert store.checkpoints() == [1]
        ckpt = store.load()
        assert ckpt is not None
        assert ckpt.meta == {"offsets": {"0": 10}, "seq": 1}
        assert ckpt.model_blob == b"model-1"
        assert len(store.pending) == 2
        assert store.pending.get("a") == b"A"
        assert store.pending.get("b") == b"B"
        assert store.pending.get("c") is None
        assert len(store.learned) == 0


def test_crash_after_commit_keeps_the_new_checkpoint(store_path: pathlib.Path) -> None:
    result = run_child(CRASHING_CHILD, str(store_path), "after-commit")
    assert result.returncode == 9, result.stderr
    with StateStore(store_path) as store:
        assert store.checkpoints() == [2, 1]
        ckpt = store.load()
        assert ckpt is not None and ckpt.model_blob == b"model-2"
        assert ckpt.meta["offsets"] == {"0": 20}
        assert len(store.pending) == 1
        assert store.pending.get("c") == b"C"
        assert store.pending.get("a") is None
        assert store.pending.get("b") is None
        assert store.learned.get("a") == b""


def test_keep_prunes_old_checkpoints(store_path: pathlib.Path) -> None:
    with StateStore(store_path, keep=2) as store:
        for n in range(1, 6):
            assert store.commit({"n": n}, f"model-{n}".encode()).seq == n
        assert store.checkpoints() == [5, 4]
        assert store.load(3) is None
        older = store.load(4)
        assert older is not None and older.model_blob == b"model-4"
    with StateStore(store_path, keep=3) as store:
        assert store.checkpoints() == [5, 4]
        store.commit({}, b"model-6")
        assert store.checkpoints() == [6, 5, 4]
        raw_keys = list(store._db.keys())  # noqa: SLF001 -- pruning deletes the model bytes too
        assert not any(k.startswith(b"model/") and k[-1] in (1, 2, 3) for k in raw_keys)
    with StateStore(store_path, keep=1) as store:  # prunes checkpoints it found when it opened
        store.commit({}, b"model-7")
        assert store.checkpoints() == [7]
        assert store.load(4) is None and store.load(6) is None  # gone by design, not damaged


def test_keep_must_be_positive(store_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="keep"):
        StateStore(store_path, keep=0)


def test_older_checkpoint_loads_while_pending_stays_newest(store_path: pathlib.Path) -> None:
    with StateStore(store_path) as store:
        store.pending.put("e1", 1.0, b"v1")
        store.commit({"n": 1}, b"m1")
        store.pending.put("e2", 2.0, b"v2")
        store.commit({"n": 2}, b"m2")
    with StateStore(store_path) as store:
        fallback = store.load(1)
        assert fallback is not None and fallback.meta["n"] == 1
        assert store.pending.get("e2") == b"v2"  # pending labels are the newest checkpoint's


WRITER_CHILD = """
    import sys
    from state import StateStore

    store = StateStore(sys.argv[1])
    store.pending.put("e1", 1.0, b"v1")
    store.commit({"n": 1}, b"model-1")
    print("ready", flush=True)
    sys.stdin.readline()
    store.pending.put("e2", 2.0, b"v2")
    store.commit({"n": 2}, b"model-2")
    store.pending.put("uncommitted", 3.0, b"v3")
    print("committed", flush=True)
    sys.stdin.readline()
    store.close()
    print("closed", flush=True)
"""


def test_read_only_open_while_another_process_writes(store_path: pathlib.Path) -> None:
    writer = start_child(WRITER_CHILD, str(store_path))
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "ready", writer.stderr.read()

        with StateStore(store_path, read_only=True) as reader:
            assert reader.checkpoints() == [1]
            ckpt = reader.load()
            assert ckpt is not None and ckpt.model_blob == b"model-1"
            assert len(reader.pending) == 1
            assert reader.pending.get("e1") == b"v1"

        with pytest.raises(StateLockedError) as locked:
            StateStore(store_path)
        assert str(store_path) in str(locked.value)
        assert "riverbed run" in str(locked.value)
        assert "[state] dir" in str(locked.value)

        writer.stdin.write("\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "committed"
        with StateStore(store_path, read_only=True) as reader:
            assert reader.checkpoints() == [2, 1]
            assert reader.load().model_blob == b"model-2"  # type: ignore[union-attr]
            assert len(reader.pending) == 2
            assert reader.pending.get("uncommitted") is None

        writer.stdin.write("\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "closed"
        assert writer.wait(timeout=20) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()


def test_second_writer_in_the_same_process_is_locked_out(store_path: pathlib.Path) -> None:
    with StateStore(store_path):
        with pytest.raises(StateLockedError, match="in use by another process"):
            StateStore(store_path)


def test_read_only_store_refuses_changes(store_path: pathlib.Path) -> None:
    with StateStore(store_path) as store:
        store.pending.put("e", 1.0, b"v")
        store.commit({}, b"m")
    with StateStore(store_path, read_only=True) as reader:
        assert reader.pending.get("e") == b"v"
        with pytest.raises(StateError, match="read-only"):
            reader.commit({}, b"m")
        with pytest.raises(StateError, match="read-only"):
            reader.pending.put("x", 1.0, b"v")
        with pytest.raises(StateError, match="read-only"):
            reader.pending.delete("e")
        with pytest.raises(StateError, match="read-only"):
            reader.pending.expire(10.0)


def test_read_only_open_of_a_missing_dir(store_path: pathlib.Path) -> None:
    with pytest.raises(MissingStateError, match="nothing was checkpointed"):
        StateStore(store_path, read_only=True)
    assert not store_path.exists()


def test_refuses_a_foreign_directory(tmp_path: pathlib.Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(IncompatibleStateError, match="not a riverbed state dir"):
        StateStore(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    a_file = tmp_path / "notes.txt"
    with pytest.raises(IncompatibleStateError, match="is a file"):
        StateStore(a_file)


def test_accepts_a_dir_left_by_a_crash_during_its_first_open(store_path: pathlib.Path) -> None:
    store_path.mkdir()
    (store_path / "LOCK").write_bytes(b"")
    (store_path / "LOG").write_text("rocksdb log")
    with StateStore(store_path) as store:
        assert store.commit({}, b"m").seq == 1


class RunsCodeWhenUnpickled:
    """A pickle payload whose loading creates ``marker`` (stands in for arbitrary code)."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_values_are_raw_bytes_never_unpickled(tmp_path: pathlib.Path) -> None:
    probe = tmp_path / "probe-ran"
    pickle.loads(pickle.dumps(RunsCodeWhenUnpickled(probe)))
    assert probe.exists(), "the payload must really run code when unpickled"

    marker = tmp_path / "pwned"
    payload = pickle.dumps(RunsCodeWhenUnpickled(marker))
    path = tmp_path / "state"
    with StateStore(path) as store:
        store.pending.put("evil", 1.0, payload)
        store.commit({"blob": payload}, payload)
    with StateStore(path) as store:
        ckpt = store.load()
        assert ckpt is not None
        assert ckpt.model_blob == payload
        assert ckpt.meta["blob"] == payload
        assert store.pending.get("evil") == payload
    with StateStore(path, read_only=True) as reader:
        assert reader.load().model_blob == payload  # type: ignore[union-attr]
    assert not marker.exists()


def test_refuses_a_pickle_mode_rocksdict_database(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "pickled"
    db = rocksdict.Rdict(str(path))  # rocksdict's default mode pickles values
    db["ckpt"] = RunsCodeWhenUnpickled(marker)
    db.close()
    with pytest.raises(IncompatibleStateError, match="pickle mode"):
        StateStore(path)
    with pytest.raises(IncompatibleStateError):
        StateStore(path, read_only=True)
    assert not marker.exists()


def test_refuses_a_foreign_raw_rocksdb(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "foreign"
    db = rocksdict.Rdict(str(path), rocksdict.Options(raw_mode=True))
    db[b"someone"] = b"else"
    db.close()
    with pytest.raises(IncompatibleStateError, match="not a riverbed state dir"):
        StateStore(path)


def test_undecodable_checkpoint_meta_is_corrupt(store_path: pathlib.Path) -> None:
    with StateStore(store_path) as store:
        store.commit({}, b"m")
    db = rocksdict.Rdict(str(store_path), rocksdict.Options(raw_mode=True))
    db[b"ckpt/" + (1).to_bytes(8, "big")] = b"\xc1"  # never used by msgpack
    db.close()
    with StateStore(store_path) as store:
        ckpt = store.load()
        assert (ckpt.copy, ckpt.model_blob) == ("file", b"m")  # the file copy stands in
        assert "does not decode" in ckpt.damage[0]
    (store_path / "checkpoints" / "ckpt-1.sealed").unlink()
    with StateStore(store_path) as store:
        with pytest.raises(CheckpointUnreadable, match="checkpoint 1") as refused:
            store.load()
        assert isinstance(refused.value, CorruptStateError) and refused.value.seq == 1


def test_close_is_idempotent_and_final(store_path: pathlib.Path) -> None:
    store = StateStore(store_path)
    store.close()
    store.close()
    assert store.closed
    with pytest.raises(StateError, match="closed"):
        store.load()
    with pytest.raises(StateError, match="closed"):
        store.commit({}, b"m")


def test_disk_size_grows_with_checkpoints(store_path: pathlib.Path) -> None:
    with StateStore(store_path) as store:
        before = store.disk_size_bytes()
        assert before > 0
        store.commit({}, os.urandom(1 << 20))
        assert store.disk_size_bytes() >= before + (1 << 20)
        assert store.path == store_path


def test_open_errors_are_translated(store_path: pathlib.Path) -> None:
    files = CheckpointFiles(store_path)
    locked = translate_open_error(
        store_path, files, Exception("IO error: While lock file: /x/LOCK: Resource unavailable")
    )
    assert isinstance(locked, StateLockedError)
    corrupt = translate_open_error(store_path, files, Exception("Corruption: block checksum mismatch"))
    assert type(corrupt) is CorruptStateError
    other = translate_open_error(store_path, files, Exception("IO error: disk full"))
    assert type(other) is StateError


def test_state_errors_are_operator_errors() -> None:
    """Every state error is a one-line StateError (exit code 2) that survives pickling intact."""
    errors = [
        CorruptStateError("damaged"),
        IncompatibleStateError("foreign"),
        MissingStateError("missing"),
        DiskFullError("full"),
        StateLockedError("/var/lib/riverbed", "lock hold"),
        CheckpointUnreadable("/var/lib/riverbed", 3, ("its meta does not decode",)),
    ]
    for err in errors:
        assert isinstance(err, StateError) and err.exit_code == 2, type(err)
        clone = pickle.loads(pickle.dumps(err))
        assert type(clone) is type(err) and str(clone) == str(err) and "\n" not in str(err)
    assert pickle.loads(pickle.dumps(errors[4])).path == "/var/lib/riverbed"
    assert pickle.loads(pickle.dumps(errors[5])).seq == 3


# -- sealed model bytes ----------------------------------------------------------------------

PAYLOAD = b"pickled model bytes \x00\x01\x02" * 10
VERSION = "river 0.26.1"
KEY = b"k" * 32


def test_seal_layout() -> None:
    blob = seal(PAYLOAD, producer_version=VERSION, key=KEY)
    n = len(VERSION)
    assert blob[:4] == b"RVBD"
    assert struct.unpack(">HHH", blob[4:10]) == (1, 1, n)
    assert blob[10 : 10 + n] == VERSION.encode()
    assert struct.unpack(">Q", blob[10 + n : 18 + n]) == (len(PAYLOAD),)
    assert blob[18 + n : 50 + n] == hashlib.sha256(PAYLOAD).digest()
    assert blob[82 + n :] == PAYLOAD
    unsigned = seal(PAYLOAD, producer_version=VERSION)
    assert struct.unpack(">H", unsigned[6:8]) == (0,)
    assert len(unsigned) == len(blob) - 32


@pytest.mark.parametrize("key", [None, KEY], ids=["unsigned", "hmac"])
@pytest.mark.parametrize("payload", [PAYLOAD, b""], ids=["payload", "empty"])
def test_seal_round_trip(key: bytes | None, payload: bytes) -> None:
    blob = seal(payload, producer_version=VERSION, key=key)
    assert unseal(blob, key=key) == payload
    assert unseal(blob, expect_version=VERSION, key=key) == payload
    assert unseal(memoryview(blob), key=key) == payload


def test_signed_blob_unseals_without_key() -> None:
    assert unseal(seal(PAYLOAD, producer_version=VERSION, key=KEY)) == PAYLOAD


def test_bad_magic_is_corrupt() -> None:
    blob = seal(PAYLOAD, producer_version=VERSION)
    with pytest.raises(CorruptStateError, match="not sealed model bytes"):
        unseal(b"XXXX" + blob[4:])
    with pytest.raises(CorruptStateError, match="not sealed model bytes"):
        unseal(pickle.dumps({"a": 1}))


@pytest.mark.parametrize("key", [None, KEY], ids=["unsigned", "hmac"])
def test_every_truncation_is_corrupt(key: bytes | None) -> None:
    blob = seal(PAYLOAD, producer_version=VERSION, key=key)
    for cut in range(len(blob)):
        with pytest.raises(CorruptStateError):
            unseal(blob[:cut], key=key)


def test_length_mismatch_is_corrupt() -> None:
    blob = seal(PAYLOAD, producer_version=VERSION)
    with pytest.raises(CorruptStateError, match="padded"):
        unseal(blob + b"\x00")
    with pytest.raises(CorruptStateError, match="truncated"):
        unseal(blob[:-1])


def test_checksum_mismatch_is_corrupt() -> None:
    blob = bytearray(seal(PAYLOAD, producer_version=VERSION))
    blob[-1] ^= 0xFF
    with pytest.raises(CorruptStateError, match="SHA-256"):
        unseal(bytes(blob))


def test_hmac_mismatch_is_corrupt() -> None:
    blob = seal(PAYLOAD, producer_version=VERSION, key=KEY)
    with pytest.raises(CorruptStateError, match="HMAC"):
        unseal(blob, key=b"another key")
    # a signed header field altered (payload and its checksum untouched)
    forged = bytearray(blob)
    forged[10] ^= 0x20  # "river" -> "Rivver"-ish
    with pytest.raises(CorruptStateError, match="HMAC"):
        unseal(bytes(forged), key=KEY)
    # payload and checksum both replaced consistently: only the HMAC catches it
    n = len(VERSION)
    evil = b"evil payload".ljust(len(PAYLOAD))
    replaced = blob[: 18 + n] + hashlib.sha256(evil).digest() + blob[50 + n : 82 + n] + evil
    assert unseal(replaced) == evil  # without a key only integrity, not origin, is checked
    with pytest.raises(CorruptStateError, match="HMAC"):
        unseal(replaced, key=KEY)


def test_missing_hmac_is_corrupt_when_a_key_is_configured() -> None:
    blob = seal(PAYLOAD, producer_version=VERSION)
    with pytest.raises(CorruptStateError, match="not signed"):
        unseal(blob, key=KEY)


def test_unknown_format_version_or_flags_are_incompatible() -> None:
    blob = seal(PAYLOAD, producer_version=VERSION)
    with pytest.raises(IncompatibleStateError, match="format version 2"):
        unseal(blob[:4] + struct.pack(">H", 2) + blob[6:])
    with pytest.raises(IncompatibleStateError, match="flags"):
        unseal(blob[:6] + struct.pack(">H", 0x0002) + blob[8:])


def test_producer_version_mismatch_is_incompatible() -> None:
    blob = seal(PAYLOAD, producer_version="river 0.25.0")
    with pytest.raises(IncompatibleStateError) as excinfo:
        unseal(blob, expect_version="river 0.26.1")
    message = str(excinfo.value)
    assert "river 0.25.0" in message and "river 0.26.1" in message
    assert "install the same version or start from a fresh [state] dir" in message


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        seal(PAYLOAD, producer_version=VERSION, key=b"")
    with pytest.raises(ValueError, match="empty"):
        unseal(seal(PAYLOAD, producer_version=VERSION), key=b"")


# -- isolation -------------------------------------------------------------------------------

FORBIDDEN_IMPORTS = {"kafka", "aiokafka", "confluent_kafka", "river", "stream", "learners"}


def test_state_imports_nothing_from_kafka_river_stream_or_learners() -> None:
    files = sorted(STATE_DIR.glob("*.py"))
    assert files
    offenders = []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [
                f"{path.name}:{node.lineno} imports {name}"
                for name in names
                if name.split(".")[0] in FORBIDDEN_IMPORTS
            ]
    assert offenders == []


def test_importing_state_loads_no_forbidden_module() -> None:
    result = run_child(
        """
        import sys
        import state
        forbidden = %r
        print(sorted(m for m in sys.modules if m.split(".")[0] in forbidden))
        """
        % (sorted(FORBIDDEN_IMPORTS),)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_package_exports() -> None:
    assert set(state.__all__) >= {
        "StateStore",
        "Checkpoint",
        "ExpiringStore",
        "MemoryExpiringStore",
        "RocksExpiringStore",
        "MissingStateError",
        "seal",
        "unseal",
        "StateError",
        "CorruptStateError",
        "IncompatibleStateError",
        "StateLockedError",
    }


# -- two-phase commit (begin_commit / PendingCommit.write / end_commit / abort_commit) -------


class WriteHook:
    """Stands in for a store's database from the next ``begin_commit`` on: ``write`` first runs
    ``before_write`` (which may block or raise), everything else goes to the real database."""

    def __init__(self, store: StateStore, before_write) -> None:
        self.store = store
        self.db = store._db  # noqa: SLF001
        self.before_write = before_write
        store._db = self  # noqa: SLF001 -- begin_commit hands this to the PendingCommit

    def write(self, batch, options) -> None:
        self.before_write()
        self.db.write(batch, options)

    def remove(self) -> None:
        self.store._db = self.db  # noqa: SLF001

    def __getattr__(self, name: str):
        return getattr(self.db, name)


def stored_entries(path: pathlib.Path, which: str = "pending") -> dict[str, tuple[float, bytes]]:
    """``which``'s entries in the database, as a new read-only open sees them.

    Also checks that the time index holds exactly one key per entry and the stored count.
    """
    layout = PENDING_LAYOUT if which == "pending" else LEARNED_LAYOUT
    with StateStore(path, read_only=True) as reader:
        db = reader._db  # noqa: SLF001

        def scan(prefix: bytes) -> list[tuple[bytes, bytes]]:
            items, it = [], db.iter()
            it.seek(prefix)
            while it.valid() and it.key().startswith(prefix):
                items.append((it.key(), it.value()))
                it.next()
            return items

        entries = {
            key[len(layout.entry_prefix) :].decode(): (decode_ts(raw[:8]), raw[8:])
            for key, raw in scan(layout.entry_prefix)
        }
        index = {key for key, _ in scan(layout.time_prefix)}
        assert index == {layout.time_key(ts, event_id) for event_id, (ts, _) in entries.items()}
        count = db.get(layout.count_key)
        assert (0 if count is None else struct.unpack(">Q", count)[0]) == len(entries)
        assert len(getattr(reader, which)) == len(entries)
    return entries


def test_begin_commit_freezes_the_overlays_and_end_commit_lands_them(
    store_path: pathlib.Path,
) -> None:
    with StateStore(store_path) as store:
        store.pending.put("committed", 1.0, b"c")
        store.commit({"n": 1}, b"m1")
        store.pending.put("frozen", 2.0, b"f")
        store.learned.put("frozen", 2.0, b"")
        pending_commit = store.begin_commit({"n": 2}, bytearray(b"m2"))
        assert store.commit_in_flight is pending_commit
        assert pending_commit.seq == 2 and not pending_commit.written
        assert store.pending.overlay_size == 0  # the live overlay starts empty
        assert store.pending.frozen is not None and "frozen" in store.pending.frozen.entries

        store.pending.put("live", 3.0, b"l")
        store.learned.put("live", 3.0, b"")
        assert [store.pending.get(i) for i in ("committed", "frozen", "live")] == [b"c", b"f", b"l"]
        assert (len(store.pending), len(store.learned)) == (3, 2)
        assert store.checkpoints() == [1]  # not written yet

        pending_commit.write()
        assert pending_commit.written
        ckpt = store.end_commit(pending_commit)
        assert ckpt == Checkpoint(
            seq=2,
            meta={"n": 2, "seq": 2},
            model_blob=b"m2",
            size_bytes=2 + len(msgpack.packb({"n": 2, "seq": 2})),
        )
        assert store.load() == ckpt and store.checkpoints() == [2, 1]
        assert store.commit_in_flight is None and store.pending.frozen is None
        assert store.pending.overlay_size == 1  # "live" is still uncommitted
        assert stored_entries(store_path) == {"committed": (1.0, b"c"), "frozen": (2.0, b"f")}
        assert stored_entries(store_path, "learned") == {"frozen": (2.0, b"")}
    with StateStore(store_path) as store:  # closing discarded the live overlay only
        assert store.pending.get("frozen") == b"f"
        assert store.pending.get("live") is None
        assert (len(store.pending), len(store.learned)) == (2, 1)


def test_put_over_the_committing_layer(store_path: pathlib.Path) -> None:
    with StateStore(store_path) as store:
        labels = store.pending
        labels.put("db", 1.0, b"d")
        labels.put("db-deleted", 1.5, b"x")
        store.commit({}, b"m1")
        labels.put("frozen", 2.0, b"f")
        labels.delete("db-deleted")
        pending_commit = store.begin_commit({}, b"m2")

        # Newest value in the committing layer: its ts is the old one, and the id is not fresh
        # (the database will hold it), so deleting it leaves a tombstone.
        labels.put("frozen", 7.0, b"f2")
        assert labels.get("frozen") == b"f2" and len(labels) == 2
        labels.delete("frozen")
        assert labels.overlay_size == 1 and labels.get("frozen") is None and len(labels) == 1
        labels.put("frozen", 8.0, b"f3")
        # Tombstoned in the committing layer: fresh, deleting it just forgets it.
        labels.put("db-deleted", 3.0, b"again")
        assert labels.get("db-deleted") == b"again" and len(labels) == 3
        assert labels.overlay_size == 2
        labels.delete("db-deleted")
        assert labels.overlay_size == 1 and labels.get("db-deleted") is None
        # Absent from the committing layer and the database: fresh.
        labels.put("new", 4.0, b"n")
        labels.delete("new")
        assert labels.overlay_size == 1
        labels.put("new", 4.0, b"n")
        # Only in the database: not fresh.
        labels.put("db", 5.0, b"d2")
        assert len(labels) == 3

        pending_commit.write()
        store.end_commit(pending_commit)
        assert stored_entries(store_path) == {"db": (1.0, b"d"), "frozen": (2.0, b"f")}
        store.commit({}, b"m3")
        assert stored_entries(store_path) == {
            "db": (5.0, b"d2"),
            "frozen": (8.0, b"f3"),
            "new": (4.0, b"n"),
        }
    with StateStore(store_path) as store:
        assert store.pending.expire(7.5) == 2  # db at 5.0, new at 4.0; not frozen's old times
        assert store.pending.get("frozen") == b"f3"


def test_delete_and_expire_during_a_commit(store_path: pathlib.Path) -> None:
    with StateStore(store_path) as store:
        labels = store.pending
        labels.put("db-old", 1.0, b"v")
        labels.put("db-moved-live", 2.0, b"v")
        labels.put("db-moved-frozen", 1.5, b"v")
        labels.put("db-late", 50.0, b"v")
        store.commit({}, b"m1")
        labels.put("db-moved-frozen", 10.0, b"w")  # the database's ts 1.5 is superseded
        labels.put("frozen-deleted", 3.0, b"v")
        labels.put("frozen-moved-live", 4.0, b"v")
        labels.put("frozen-old", 3.5, b"v")
        labels.put("frozen-late", 60.0, b"v")
        pending_commit = store.begin_commit({}, b"m2")
        assert len(labels) == 8

        labels.delete("frozen-deleted")
        assert labels.get("frozen-deleted") is None and labels.overlay_size == 1
        labels.put("frozen-moved-live", 20.0, b"w")
        labels.put("db-moved-live", 30.0, b"w")
        assert len(labels) == 7
        assert labels.expire(5.0) == 2  # db-old, frozen-old
        for gone in ("db-old", "frozen-old", "frozen-deleted"):
            assert labels.get(gone) is None
        for kept in ("db-moved-live", "db-moved-frozen", "frozen-moved-live"):
            assert labels.get(kept) == b"w"
        assert len(labels) == 5
        assert labels.expire(5.0) == 0

        pending_commit.write()
        store.end_commit(pending_commit)
        assert len(labels) == 5
        assert labels.expire(5.0) == 0  # the rescanned database is superseded where it's old
        store.commit({}, b"m3")
        assert set(stored_entries(store_path)) == {
            "db-moved-live",
            "db-moved-frozen",
            "frozen-moved-live",
            "db-late",
            "frozen-late",
        }
    with StateStore(store_path) as store:
        assert store.pending.expire(25.0) == 2  # db-moved-frozen at 10, frozen-moved-live at 20
        assert store.pending.expire(55.0) == 2  # db-moved-live at 30, db-late at 50
        assert len(store.pending) == 1


@pytest.mark.parametrize("when", ["in-flight", "ended", "aborted"])
def test_expire_finds_entries_below_the_scanned_range(store_path: pathlib.Path, when: str) -> None:
    with StateStore(store_path) as store:
        labels = store.pending
        labels.put("old", 1.0, b"v")
        store.commit({}, b"m1")
        assert labels.expire(5.0) == 1  # the database's time index is scanned up to 5.0
        labels.put("late-arrival", 2.0, b"v")  # below the scanned range
        pending_commit = store.begin_commit({}, b"m2")
        if when != "in-flight":
            if when == "ended":
                pending_commit.write()
                store.end_commit(pending_commit)  # "late-arrival" is in the database now
            else:
                store.abort_commit(pending_commit)
        assert labels.expire(5.0) == 1
        assert labels.get("late-arrival") is None and len(labels) == 0
        if store.commit_in_flight is not None:
            pending_commit.write()
            store.end_commit(pending_commit)
        store.commit({}, b"m3")
    assert stored_entries(store_path) == {}


def test_counts_are_stored_as_of_begin_commit(store_path: pathlib.Path) -> None:
    with StateStore(store_path) as store:
        for i in range(5):
            store.pending.put(f"e{i}", float(i), b"v")
        store.commit({}, b"m1")  # 5 committed
        store.pending.delete("e0")
        pending_commit = store.begin_commit({}, b"m2")  # 4 as of now
        store.pending.put("live", 9.0, b"v")
        store.pending.delete("e1")
        assert len(store.pending) == 4
        store.abort_commit(pending_commit)
        assert len(store.pending) == 4
        pending_commit = store.begin_commit({}, b"m2")  # 4
        store.pending.expire(3.0)  # e2 (e0, e1 are gone)
        assert len(store.pending) == 3
        pending_commit.write()
        store.end_commit(pending_commit)
        assert len(store.pending) == 3
        assert len(stored_entries(store_path)) == 4
        store.pending.delete("e3")
        assert len(store.pending) == 2
    with StateStore(store_path) as store:  # close = crash: back to the count of checkpoint 2
        assert len(store.pending) == 4
        assert store.checkpoints() == [2, 1]


def test_failed_write_and_abort_lose_nothing(store_path: pathlib.Path) -> None:
    def fail() -> None:
        raise Exception("IO error: No space left on device")

    with StateStore(store_path) as store:
        store.pending.put("kept", 1.0, b"k")
        store.pending.put("gone", 2.0, b"g")
        store.learned.put("l1", 1.0, b"")
        store.commit({"n": 1}, b"m1")
        store.pending.put("frozen-new", 3.0, b"f")
        store.pending.delete("gone")
        store.pending.put("kept", 4.0, b"k2")
        store.learned.put("l2", 2.0, b"")
        hook = WriteHook(store, fail)
        pending_commit = store.begin_commit({"n": 2}, b"m2")
        store.pending.put("live-new", 5.0, b"l")
        store.pending.put("frozen-new", 6.0, b"f2")  # the live change wins over the frozen one
        store.learned.delete("l1")

        with pytest.raises(DiskFullError, match="could not write checkpoint 2 .*no space left on device; free"):
            pending_commit.write()
        assert not pending_commit.written and store.checkpoints() == [1]
        with pytest.raises(StateError, match="not written.*abort_commit"):
            store.end_commit(pending_commit)
        store.abort_commit(pending_commit)
        assert store.commit_in_flight is None and store.pending.frozen is None
        with pytest.raises(StateError, match="aborted"):
            pending_commit.write()

        expected = {"kept": b"k2", "frozen-new": b"f2", "live-new": b"l", "gone": None}
        assert {i: store.pending.get(i) for i in expected} == expected
        assert (len(store.pending), len(store.learned)) == (3, 1)
        with pytest.raises(StateError, match="could not write checkpoint 2"):
            store.commit({"n": 2}, b"m2")  # commit aborts by itself
        assert store.commit_in_flight is None
        assert {i: store.pending.get(i) for i in expected} == expected
        hook.remove()

        assert store.pending.expire(3.5) == 0  # the database's kept@1.0, gone@2.0 are superseded
        assert store.commit({"n": 2}, b"m2").seq == 2  # the failed seq is not skipped
    assert stored_entries(store_path) == {
        "frozen-new": (6.0, b"f2"),
        "kept": (4.0, b"k2"),
        "live-new": (5.0, b"l"),
    }
    assert stored_entries(store_path, "learned") == {"l2": (2.0, b"")}


def test_abort_merges_the_committing_layer_back_under_the_live_overlay(
    store_path: pathlib.Path,
) -> None:
    with StateStore(store_path) as store:
        labels = store.pending
        labels.put("x", 1.0, b"x")
        labels.put("y", 2.0, b"y")
        labels.put("w", 10.0, b"w")
        store.commit({}, b"m1")
        labels.delete("x")  # frozen tombstone over the database
        labels.put("z", 3.0, b"z")  # frozen fresh put
        labels.put("y", 4.0, b"y2")  # frozen put over the database
        pending_commit = store.begin_commit({}, b"m2")
        labels.put("x", 5.0, b"x2")  # fresh over the frozen tombstone, not over the database
        labels.put("z", 6.0, b"z2")
        store.abort_commit(pending_commit)
        assert len(labels) == 4

        labels.delete("x")  # must not uncover the database's "x"
        assert labels.get("x") is None
        labels.delete("z")
        assert labels.get("z") is None
        assert len(labels) == 2
        assert labels.expire(4.5) == 1  # y at 4.0; the database's y at 2.0 is superseded
        assert len(labels) == 1
        store.commit({}, b"m2")
    assert stored_entries(store_path) == {"w": (10.0, b"w")}


def test_commit_protocol_misuse_is_refused(store_path: pathlib.Path) -> None:
    with StateStore(store_path) as store:
        store.pending.put("e", 1.0, b"v")
        with pytest.raises(TypeError, match="msgpack-able"):
            store.begin_commit({"bad": object()}, b"m")
        assert store.commit_in_flight is None and store.pending.overlay_size == 1
        pending_commit = store.begin_commit({}, b"m")
        with pytest.raises(StateError, match="checkpoint 1 is still in flight"):
            store.begin_commit({}, b"m")
        with pytest.raises(StateError, match="still in flight"):
            store.commit({}, b"m")
        with pytest.raises(StateError, match="call its write"):
            store.end_commit(pending_commit)
        pending_commit.write()
        with pytest.raises(StateError, match="already written; call end_commit"):
            pending_commit.write()
        with pytest.raises(StateError, match="already written; call end_commit"):
            store.abort_commit(pending_commit)
        assert store.end_commit(pending_commit).seq == 1
        with pytest.raises(StateError, match="not the commit in flight"):
            store.end_commit(pending_commit)
        with pytest.raises(StateError, match="not the commit in flight"):
            store.abort_commit(pending_commit)
    with StateStore(store_path, read_only=True) as reader:
        with pytest.raises(StateError, match="read-only"):
            reader.begin_commit({}, b"m")
    with pytest.raises(StateError, match="closed"):
        store.begin_commit({}, b"m")
    assert {"PendingCommit", "FrozenOverlay"} <= set(state.__all__)


@pytest.mark.parametrize("when", ["not-written", "written", "writing"])
def test_close_with_a_commit_in_flight(store_path: pathlib.Path, when: str) -> None:
    store = StateStore(store_path)
    store.pending.put("committed", 1.0, b"c")
    store.commit({}, b"m1")
    store.pending.put("frozen", 2.0, b"f")
    writing, release = threading.Event(), threading.Event()
    WriteHook(store, lambda: writing.set() or release.wait(20))
    pending_commit = store.begin_commit({}, b"m2")
    store.pending.put("live", 3.0, b"l")
    if when == "not-written":
        store.close()
        with pytest.raises(StateError, match="closed before it was written"):
            pending_commit.write()
    elif when == "written":
        release.set()
        pending_commit.write()
        store.close()
        assert pending_commit.written
        with pytest.raises(StateError, match="already written"):
            pending_commit.write()
    else:
        writer = threading.Thread(target=pending_commit.write)
        writer.start()
        assert writing.wait(20)  # write() holds the commit now
        closer = threading.Thread(target=store.close)
        closer.start()
        closer.join(0.3)
        assert closer.is_alive(), "close() must wait for the running write()"
        release.set()
        writer.join(20)
        closer.join(20)
        assert not writer.is_alive() and not closer.is_alive()
        assert pending_commit.written
    assert store.closed
    with pytest.raises(StateError, match="closed"):
        store.end_commit(pending_commit)
    with StateStore(store_path) as reopened:
        landed = when != "not-written"
        assert reopened.checkpoints() == ([2, 1] if landed else [1])
        assert reopened.pending.get("frozen") == (b"f" if landed else None)
        assert reopened.pending.get("live") is None
        assert len(reopened.pending) == (2 if landed else 1)


def test_write_runs_in_a_thread_while_the_owner_changes_the_overlays(
    store_path: pathlib.Path,
) -> None:
    rng = random.Random(424242)
    ids = [f"e{i}" for i in range(30000)]
    reference: dict[str, tuple[float, bytes]] = {}
    with StateStore(store_path) as store:
        labels = store.pending
        for i, event_id in enumerate(ids[:10000]):
            put_both(labels, reference, event_id, float(i), b"committed")
        store.commit({}, b"m1")
        for i, event_id in enumerate(ids):  # a big committing layer: staging takes a while
            if i % 3 == 0:
                delete_both(labels, reference, event_id)
            else:
                put_both(labels, reference, event_id, float(i) + 0.5, b"frozen")
        snapshot = dict(reference)

        owner_worked = threading.Event()
        WriteHook(store, lambda: owner_worked.wait(20))  # the write lands after the owner ran
        pending_commit = store.begin_commit({"n": 2}, b"m2")
        errors: list[BaseException] = []

        def write() -> None:
            try:
                pending_commit.write()
            except BaseException as exc:  # noqa: BLE001 -- reported by the owner thread
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        ops = 0
        while writer.is_alive() or ops < 2000:
            if ops == 2000:
                assert writer.is_alive()  # all 2000 ops ran while write() was in progress
                owner_worked.set()
            event_id = rng.choice(ids)
            op = rng.random()
            if op < 0.5:
                put_both(labels, reference, event_id, float(rng.randrange(40000)), b"live")
            elif op < 0.7:
                delete_both(labels, reference, event_id)
            elif op < 0.72:
                expire_both(labels, reference, float(rng.randrange(3000)))
            assert labels.get(event_id) == (reference.get(event_id) or (None, None))[1]
            assert len(labels) == len(reference)
            ops += 1
        writer.join()
        assert errors == []
        assert store.end_commit(pending_commit).seq == 2
        assert stored_entries(store_path) == snapshot
        store.commit({"n": 3}, b"m3")
    assert stored_entries(store_path) == reference


@pytest.mark.parametrize("which", ["pending", "learned"])
def test_two_phase_commit_against_a_reference_model(store_path: pathlib.Path, which: str) -> None:
    rng = random.Random(20240612)
    failing = False

    def maybe_fail() -> None:
        if failing:
            raise Exception("IO error: injected")

    store = StateStore(store_path)
    WriteHook(store, maybe_fail)
    labels = getattr(store, which)
    reference: dict[str, tuple[float, bytes]] = {}
    pending_commit: PendingCommit | None = None
    snapshot: dict[str, tuple[float, bytes]] = {}
    seq = 0
    ended = aborted = 0
    releaser: threading.Thread | None = None
    for step in range(4000):
        now = step // 4
        event_id = f"id{rng.randrange(150)}"
        op = rng.random()
        if op < 0.45:
            ts = float(rng.randrange(now, now + 300))
            put_both(labels, reference, event_id, ts, rng.randbytes(rng.randrange(6)))
        elif op < 0.6:
            delete_both(labels, reference, event_id)
        elif op < 0.7:
            expire_both(labels, reference, float(rng.randrange(max(0, now - 50), now + 100)))
        elif op < 0.85:
            assert labels.get(event_id) == (reference.get(event_id) or (None, None))[1]
        elif pending_commit is None:
            pending_commit = store.begin_commit({"step": step}, b"model")
            assert pending_commit.seq == seq + 1
            snapshot = dict(reference)
        elif not pending_commit.written:
            choice = rng.random()
            if choice < 0.6:
                pending_commit.write()
            elif choice < 0.75:
                failing = True
                with pytest.raises(StateError, match="injected"):
                    pending_commit.write()
                failing = False
                if rng.random() < 0.5:
                    pending_commit.write()  # a retry after a failure
            else:
                store.abort_commit(pending_commit)
                pending_commit = None
                aborted += 1
        else:
            ckpt = store.end_commit(pending_commit)
            seq += 1
            ended += 1
            assert ckpt.seq == seq
            if releaser is not None:
                releaser.join()
            # as the checkpointer does: free the landed layer in another thread while the
            # store goes on (it must read nothing of what is freed)
            releaser = threading.Thread(target=pending_commit.release)
            releaser.start()
            pending_commit = None
            if ended % 4 == 0:  # a fresh read-only open sees the state as of begin_commit
                assert stored_entries(store_path, which) == snapshot
        assert len(labels) == len(reference)
        if rng.random() < 0.3:
            probe = f"id{rng.randrange(150)}"
            assert labels.get(probe) == (reference.get(probe) or (None, None))[1]
    assert ended > 50 and aborted > 10
    if pending_commit is not None:
        if not pending_commit.written:
            pending_commit.write()
        store.end_commit(pending_commit)
        assert stored_entries(store_path, which) == snapshot
    store.commit({}, b"final")
    store.close()
    assert stored_entries(store_path, which) == reference
    with StateStore(store_path) as reopened:
        labels = getattr(reopened, which)
        assert len(labels) == len(reference)
        for i in range(150):
            assert labels.get(f"id{i}") == (reference.get(f"id{i}") or (None, None))[1]
        before = float(rng.randrange(1000, 1300))
        assert labels.expire(before) == sum(ts < before for ts, _ in reference.values())
