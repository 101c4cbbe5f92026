"""Storage failures of the state dir, on real rocksdict files: what each one costs.

The documented outcomes (the failure table in :mod:`state.store`): fall back to the file copy or
an older checkpoint with the reason available, or one clear StateError at open; never a silent
"no checkpoint".
"""

from __future__ import annotations

from tests.support import ROOT as REPO_ROOT

import errno
import os
import pathlib
import random
import subprocess
import sys
import textwrap

import pytest

from state import CheckpointUnreadable, CorruptStateError, DiskFullError, StateError, StateStore
from state.sealed import seal, unseal



def model_blob(seq: int, size: int = 20_000) -> bytes:
    """Incompressible, recognisable, seeded model bytes (so they can be found in an SST)."""
    payload = b"MODEL-%d-" % seq + random.Random(seq).randbytes(size)
    return seal(payload, producer_version="test 1")


def write_three_checkpoints(path: pathlib.Path) -> None:
    """Three checkpoints plus enough learned ids that the checkpoint metas and the pending
    counts/format key sit in different SST blocks, as in a real state dir."""
    with StateStore(path) as store:
        for seq in (1, 2, 3):
            for i in range(300):
                store.learned.put(f"id-{seq}-{i:04d}", float(seq), b"")
            store.pending.put(f"event-{seq}", float(seq), b"features")
            store.commit(checkpoint_meta(seq), model_blob(seq))


def checkpoint_meta(seq: int) -> dict:
    """Meta with a seeded random tag, findable in an SST (compression leaves random bytes)."""
    return {"offsets": [["events", 0, seq * 100]], "tag": random.Random(f"tag-{seq}").randbytes(32)}


def flip_byte_at(path: pathlib.Path, needle: bytes, delta: int = 0) -> pathlib.Path:
    """Flip one byte of the SST file that contains ``needle``; returns the file."""
    for sst in sorted(path.glob("*.sst")):
        data = bytearray(sst.read_bytes())
        offset = data.find(needle)
        if offset >= 0:
            assert data.find(needle, offset + 1) < 0, "needle must be unique"
            data[offset + delta] ^= 0x01
            sst.write_bytes(bytes(data))
            return sst
    raise AssertionError(f"{needle!r} is in no SST of {path}")


def test_changed_model_bytes_fall_back_to_the_file_copy(tmp_path: pathlib.Path) -> None:
    # (a) the RocksDB value is intact to RocksDB (no checksum fails) but is not what was written
    path = tmp_path / "state"
    write_three_checkpoints(path)
    import rocksdict

    db = rocksdict.Rdict(str(path), rocksdict.Options(raw_mode=True))
    db[b"model/" + (3).to_bytes(8, "big")] = b"changed" + model_blob(3)[7:]
    db.close()
    with StateStore(path, read_only=True) as store:
        ckpt = store.load()
    assert (ckpt.seq, ckpt.copy, ckpt.model_blob) == (3, "file", model_blob(3))
    assert "differs from the SHA-256 of its file copy" in ckpt.damage[0]
    assert unseal(ckpt.model_blob).startswith(b"MODEL-3-")


def test_flipped_byte_in_the_newest_model_block(tmp_path: pathlib.Path) -> None:
    # (b) RocksDB raises "block checksum mismatch": the file copy of the same checkpoint stands in
    path = tmp_path / "state"
    write_three_checkpoints(path)
    flip_byte_at(path, b"MODEL-3-", delta=100)
    with StateStore(path) as store:
        assert store.checkpoints() == [3, 2, 1]
        ckpt = store.load()
        assert (ckpt.seq, ckpt.copy, ckpt.model_blob) == (3, "file", model_blob(3))
        assert "block checksum mismatch" in ckpt.damage[0]
        assert store.pending.get("event-3") == b"features"  # pending labels are elsewhere
        # without the file copy, checkpoint 3 is refused with the reason; 2 still loads
        (path / "checkpoints" / "ckpt-3.sealed").unlink()
        with pytest.raises(CheckpointUnreadable, match="block checksum mismatch") as refused:
            store.load(3)
        assert refused.value.seq == 3
        assert store.load(2).model_blob == model_blob(2)


def test_flipped_byte_in_the_newest_checkpoint_metadata(tmp_path: pathlib.Path) -> None:
    # (c) the scan over the checkpoint keys stops with an error status: never "no checkpoint"
    path = tmp_path / "state"
    write_three_checkpoints(path)
    flip_byte_at(path, checkpoint_meta(3)["tag"], delta=3)
    with StateStore(path, read_only=True) as store:
        assert store.checkpoints() == [3, 2, 1]
        assert any("checkpoint list in RocksDB is unreadable" in d for d in store.damage)
        ckpt = store.load()
        assert (ckpt.seq, ckpt.copy) == (3, "file")
        assert ckpt.meta["offsets"] == [["events", 0, 300]]
    with StateStore(path) as store:  # the writer resumes and commits checkpoint 4
        store.commit({"offsets": [["events", 0, 400]]}, model_blob(4))
    with StateStore(path, read_only=True) as store:
        assert store.load().seq == 4


def test_flipped_checkpoint_metadata_without_file_copies_fails_at_open(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "state"
    write_three_checkpoints(path)
    for copy in (path / "checkpoints").iterdir():  # a state dir from before the file copies
        copy.unlink()
    sst = flip_byte_at(path, checkpoint_meta(3)["tag"], delta=3)
    damaged = sst.read_bytes()
    for read_only in (True, False):
        expected = f"damaged .*{sst.name}.*move the directory aside"
        with pytest.raises(CorruptStateError, match=expected):
            StateStore(path, read_only=read_only)
    assert sst.read_bytes() == damaged  # left as it is, for the operator to inspect


def test_truncated_sst_fails_at_open_with_one_clear_error(tmp_path: pathlib.Path) -> None:
    # (d) RocksDB refuses the whole database: one line naming the file and what to do
    path = tmp_path / "state"
    write_three_checkpoints(path)
    (sst,) = path.glob("*.sst")
    sst.write_bytes(sst.read_bytes()[: sst.stat().st_size // 2])
    for read_only in (False, True):
        with pytest.raises(CorruptStateError) as error:
            StateStore(path, read_only=read_only)
        message = str(error.value)
        assert "\n" not in message
        assert sst.name in message and "move the directory aside" in message
        assert "ckpt-3.sealed" not in message and "checkpoints 3, 2, 1" in message
    assert sst.stat().st_size > 0 and (path / "checkpoints" / "ckpt-3.sealed").is_file()


CRASH_AFTER_COMMITS = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[2])
    from test_state_failures import model_blob
    from state import StateStore
    store = StateStore(sys.argv[1])
    for seq in (1, 2, 3):
        store.pending.put(f"event-{seq}", float(seq), b"features")
        store.commit({"offsets": [["events", 0, seq * 100]]}, model_blob(seq))
    os._exit(0)  # a crash: nothing flushed, the checkpoints live only in the write-ahead log
    """
)


def test_truncated_wal_falls_back_to_the_newest_checkpoint_that_landed(
    tmp_path: pathlib.Path,
) -> None:
    # (e) RocksDB's point-in-time recovery drops the torn tail: checkpoint 3's batch is gone,
    # only its file copy is left; it is refused (its pending labels are lost), 2 is used.
    path = tmp_path / "state"
    subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_COMMITS, str(path), str(pathlib.Path(__file__).resolve().parent)],
        check=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    (wal,) = path.glob("*.log")
    data = wal.read_bytes()
    wal.write_bytes(data[: data.find(b"MODEL-3-") + 1000])
    with StateStore(path) as store:
        assert store.checkpoints() == [3, 2, 1]
        with pytest.raises(CheckpointUnreadable, match="batch .* was lost") as refused:
            store.load(3)
        assert refused.value.seq == 3
        ckpt = store.load(2)
        assert (ckpt.seq, ckpt.copy, ckpt.damage) == (2, "rocksdb", ())
        assert store.pending.get("event-2") == b"features"
        assert store.pending.get("event-3") is None
        assert store.commit({}, model_blob(4)).seq == 4  # numbers are never reused


@pytest.fixture
def small_tmpfs(tmp_path: pathlib.Path):
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(filler: pathlib.Path) -> None:
    """Write ``filler`` until the filesystem is full."""
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_disk_full_is_one_error_close_does_not_mask_it_and_nothing_is_lost(
    small_tmpfs: pathlib.Path,
) -> None:
    path = small_tmpfs / "state"
    filler = small_tmpfs / "filler"
    store = StateStore(path)
    store.pending.put("before", 1.0, b"x")
    store.commit({"n": 1}, model_blob(1, size=50_000))
    fill(filler)
    store.pending.put("after", 2.0, b"y")
    with pytest.raises(DiskFullError) as error:
        store.commit({"n": 2}, model_blob(2, size=400_000))
    assert str(error.value) == (
        f"could not write checkpoint 2 to {path}: no space left on device; free disk space and "
        f"restart riverbed (nothing is lost: it resumes from checkpoint 1)"
    )
    store.close()  # does not raise a second error over the first
    filler.unlink()
    with StateStore(path) as store:
        assert store.load().meta["n"] == 1
        assert store.pending.get("before") == b"x"
        assert store.commit({"n": 2}, model_blob(2, size=400_000)).seq == 2
    with StateStore(path, read_only=True) as store:
        assert store.load().meta["n"] == 2 and store.load(1).meta["n"] == 1


def test_read_only_store_on_a_read_only_filesystem(small_tmpfs: pathlib.Path) -> None:
    path = small_tmpfs / "state"
    with StateStore(path) as store:
        store.pending.put("e", 1.0, b"x")
        store.commit({"n": 1}, model_blob(1))
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    files_before = sorted(p.name for p in path.iterdir())
    with StateStore(path, read_only=True) as store:
        ckpt = store.load()
        assert (ckpt.seq, ckpt.copy, ckpt.model_blob) == (1, "rocksdb", model_blob(1))
        assert store.pending.get("e") == b"x"
    assert sorted(p.name for p in path.iterdir()) == files_before
    with pytest.raises(StateError):
        StateStore(path)  # a writer cannot open it, with one StateError


def test_status_falls_back_and_names_the_refused_checkpoints(tmp_path: pathlib.Path) -> None:
    from types import SimpleNamespace

    from stream.errors import RiverbedError
    from stream.ops.status import newest_readable_checkpoint

    path = tmp_path / "state"
    write_three_checkpoints(path)
    flip_byte_at(path, b"MODEL-3-", delta=100)
    (path / "checkpoints" / "ckpt-3.sealed").unlink()
    cfg = SimpleNamespace(state=SimpleNamespace(dir=str(path)))  # only [state] dir is read
    ckpt, _, disk, refused = newest_readable_checkpoint(cfg, with_disk_size=True)
    assert ckpt.seq == 2 and disk > 0
    assert [r["seq"] for r in refused] == [3]
    assert "block checksum mismatch" in refused[0]["reason"]
    import rocksdict

    db = rocksdict.Rdict(str(path), rocksdict.Options(raw_mode=True))
    del db[b"model/" + (1).to_bytes(8, "big")]
    db.close()
    for seq in (1, 2):
        (path / "checkpoints" / f"ckpt-{seq}.sealed").write_bytes(b"damaged")
    flip_byte_at(path, b"MODEL-2-", delta=100)
    every_one = "no readable checkpoint .*checkpoint 3: .*checkpoint 1:"
    with pytest.raises(RiverbedError, match=every_one) as error:
        newest_readable_checkpoint(cfg)
    assert "\n" not in str(error.value)
