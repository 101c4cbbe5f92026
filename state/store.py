"""Checkpoints: the model, its metadata and the pending labels, written atomically.

Recovery contract
=================

A checkpoint is what riverbed restarts from. It holds

* ``meta``: a msgpack-able dict chosen by the caller (the next offset of every consumed
  partition, counts, metrics, fingerprints, times, ...), stored with its ``"seq"``;
* ``model_blob``: the sealed model bytes (see :mod:`state.sealed`; the caller seals and
  unseals), stored under its own key;
* the pending labels and the learned ids (two :class:`~state.pending.RocksPendingLabels`) as
  of that checkpoint.

Between checkpoints, every change to the pending labels and learned ids stays in an in-memory
overlay; nothing is written to disk.

**What is atomic.** :meth:`StateStore.commit` writes *one* RocksDB ``WriteBatch`` holding the
overlays' changes and live counts, the new checkpoint's meta and model, and the
deletion of checkpoints beyond the newest ``keep``. RocksDB applies a batch entirely or not at
all, also across a crash (its write-ahead log records the batch as one unit). The batch is
written with ``sync=True``: when ``commit`` returns, the write-ahead log is fsync'ed and the
checkpoint survives a crash of the process *and* of the machine.

**Two phases.** ``commit`` is :meth:`StateStore.begin_commit` (freeze the overlays, as of now,
into a committing layer; changes from then on go to fresh overlays), :meth:`PendingCommit.write`
(the synced batch; may run in another thread while the owner keeps using ``pending`` and
``learned``) and :meth:`StateStore.end_commit` (drop the committing layer), or
:meth:`StateStore.abort_commit` after a failed write (merge the layer back; nothing is lost).
The checkpoint holds the pending labels and learned ids as of ``begin_commit``.

**A crash at each point.**

1. *Between commits* (the overlay holds changes): the changes are lost. On restart the state is
   exactly the last checkpoint; the caller seeks each partition to the offsets in its meta and
   replays, which rebuilds the lost changes.
2. *During* ``commit``, before the batch is durable (also: anywhere between ``begin_commit``
   and the end of ``write``): as 1. The previous checkpoint, its model and the previous pending
   labels are intact; the half-written batch is dropped when RocksDB replays its log.
3. *After* ``commit`` (or ``write``) returned, before the caller committed the same offsets to
   Kafka: the new checkpoint is the truth. Its offsets, not the consumer group's, decide where
   to resume, so nothing is processed twice into the model and nothing is skipped.
4. *During* :meth:`StateStore.close`: commits are already durable; close only flushes RocksDB's
   memtable to table files and discards the uncommitted overlay.

Closing without a commit is the same as a crash: the overlay is discarded. Closing with a commit
in flight waits for a running ``write`` to return, then discards the overlays and the committing
layer: the checkpoint is durable exactly when ``write`` succeeded (case 3, else case 2).

**What commit guarantees.** After ``commit`` returns ``Checkpoint(seq=n, ...)``: ``load()``
(in this or any later process) returns checkpoint ``n`` with the same meta and model bytes,
``pending`` and ``learned`` hold exactly their entries as of ``commit``, and checkpoints
``n-keep+1 .. n`` are present (older ones are deleted in the same batch). Sequence numbers
increase by one per commit and are never reused.

**Falling back.** The newest ``keep`` checkpoints are kept so that a caller whose newest model
blob fails to unseal can :meth:`~StateStore.load` an older ``seq`` and use its meta and model.
Pending labels and learned ids are *not* versioned: ``pending`` and ``learned`` always reflect
the newest checkpoint. After a fallback, events between the two checkpoints may therefore
already be pending (their re-prediction overwrites them) or already learned (their labels then
count as duplicates and are not learned again by the older model).

**Read-only view.** ``StateStore(path, read_only=True)`` works while another process holds the
store open for writing (``riverbed status`` does this). It sees the checkpoints durable at the
moment it was opened; open it again to see newer ones.

Storage
=======

One RocksDB database per state dir, opened through rocksdict **always in raw mode**: rocksdict's
default mode pickles values and unpickles them on read, so a crafted value would run code. Every
key and value here is plain bytes::

    b"meta/format"            -> b"riverbed-state 1"
    b"ckpt/" + seq(u64 BE)    -> msgpack(meta + {"seq": seq})
    b"model/" + seq(u64 BE)   -> model_blob
    b"meta/pending_count", b"p/...", b"t/..."    pending labels (see state.pending)
    b"meta/learned_count", b"l/...", b"lt/..."   learned ids
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import struct
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Iterator

import msgpack
import rocksdict

from state.errors import (
    CorruptStateError,
    IncompatibleStateError,
    MissingStateError,
    StateError,
    StateLockedError,
)
from state.pending import (
    LEARNED_LAYOUT,
    PENDING_LAYOUT,
    FrozenOverlay,
    PendingLabels,
    RocksPendingLabels,
)

FORMAT_KEY: Final = b"meta/format"
FORMAT_VALUE: Final = b"riverbed-state 1"
CHECKPOINT_PREFIX: Final = b"ckpt/"
MODEL_PREFIX: Final = b"model/"

_SEQ = struct.Struct(">Q")
_READ_ONLY_OPEN_ATTEMPTS = 3


@dataclass(frozen=True)
class Checkpoint:
    """One stored checkpoint.

    Attributes
    ----------
    seq
        1, 2, 3, ... increasing by one per commit.
    meta
        The caller's dict, with ``"seq"`` added. msgpack round trip: tuples come back as lists.
    model_blob
        The sealed model bytes exactly as committed.
    size_bytes
        ``len(model_blob)`` plus the size of the encoded meta.
    """

    seq: int
    meta: dict[Any, Any]
    model_blob: bytes
    size_bytes: int


class PendingCommit:
    """A checkpoint between :meth:`StateStore.begin_commit` and ``end_commit``/``abort_commit``.

    Holds everything its batch needs: the encoded meta, the model bytes, the checkpoints to
    prune and the frozen pending/learned layers, which nobody changes while it is in flight.
    Do not construct this yourself.

    Attributes
    ----------
    seq : int
        The sequence number the checkpoint gets once written.
    """

    def __init__(
        self,
        *,
        path: pathlib.Path,
        db: rocksdict.Rdict,
        seq: int,
        meta: dict[Any, Any],
        encoded_meta: bytes,
        model_blob: bytes,
        kept: list[int],
        pruned: list[int],
        layers: tuple[FrozenOverlay, ...],
    ) -> None:
        self.seq = seq
        self._path = path
        self._db = db
        self._meta = meta
        self._encoded_meta = encoded_meta
        self._model_blob = model_blob
        self._kept = kept
        self._pruned = pruned
        self._layers = layers
        self._lock = threading.Lock()  # held by write(); close() waits on it
        # "begun" -> "writing" -> "written" | "failed" ("failed" may write again); then "ended",
        # "aborted", or, when the store was closed, "closed" (written) or "discarded" (not).
        self._state = "begun"

    def write(self) -> None:
        """Write the checkpoint batch (synced). May run in any thread; again only after a failure.

        The owner thread may keep using ``store.pending`` and ``store.learned`` meanwhile;
        ``end_commit`` and ``abort_commit`` refuse until this returns, ``close`` waits for it.

        Raises
        ------
        StateError
            RocksDB failed to write: the previous checkpoint is intact; call
            :meth:`StateStore.abort_commit` (or retry ``write``). Also when called after a
            successful write, or after the commit ended, was aborted or the store was closed.
        """
        with self._lock:
            if self._state not in ("begun", "failed"):
                raise StateError(self._not_writable())
            self._state = "writing"
            written = False
            try:
                batch = rocksdict.WriteBatch(raw_mode=True)
                for layer in self._layers:
                    layer.stage_into(batch)
                batch.put(FORMAT_KEY, FORMAT_VALUE)
                batch.put(CHECKPOINT_PREFIX + _SEQ.pack(self.seq), self._encoded_meta)
                batch.put(MODEL_PREFIX + _SEQ.pack(self.seq), self._model_blob)
                for old in self._pruned:
                    batch.delete(CHECKPOINT_PREFIX + _SEQ.pack(old))
                    batch.delete(MODEL_PREFIX + _SEQ.pack(old))
                options = rocksdict.WriteOptions()
                options.sync = True
                self._db.write(batch, options)
                written = True
            except Exception as exc:  # rocksdict raises plain Exception
                raise StateError(
                    f"could not write checkpoint {self.seq} to {self._path}: {exc}; the previous "
                    f"checkpoint is intact (check free disk space and permissions)"
                ) from exc
            finally:
                self._state = "written" if written else "failed"

    @property
    def written(self) -> bool:
        """Whether :meth:`write` succeeded (the checkpoint is durable)."""
        return self._state in ("written", "ended", "closed")

    def __repr__(self) -> str:
        return f"PendingCommit(seq={self.seq}, {self._state})"

    def _not_writable(self) -> str:
        what = f"checkpoint {self.seq} to {self._path}"
        if self._state in ("written", "ended"):
            return f"cannot write {what}: it was already written; call end_commit"
        if self._state == "closed":
            return f"cannot write {what}: it was already written (the store is closed since)"
        if self._state == "writing":
            return f"cannot write {what}: write() is already running in another thread"
        if self._state == "aborted":
            return f"cannot write {what}: its commit was aborted; begin a new commit"
        return (
            f"cannot write {what}: the state store was closed before it was written, so it "
            f"was not; reopen the store and commit again"
        )

    def _checkpoint(self) -> Checkpoint:
        return Checkpoint(
            seq=self.seq,
            meta=self._meta,
            model_blob=self._model_blob,
            size_bytes=len(self._model_blob) + len(self._encoded_meta),
        )


class StateStore:
    """Checkpoints and pending labels in one RocksDB directory.

    Parameters
    ----------
    path
        The state dir (``[state] dir``). Created if missing, unless ``read_only``.
    keep
        How many of the newest checkpoints to keep (at least 1).
    read_only
        Open without taking the write lock, e.g. while ``riverbed run`` holds it. ``commit`` and
        pending-label changes are refused.

    Attributes
    ----------
    path : pathlib.Path
        The state dir.
    pending : PendingLabels
        The overlay-backed pending labels (see :mod:`state.pending`). Changes become durable
        with the next :meth:`commit`; reads always reflect the *newest* state, whichever
        checkpoint the caller loads its model from.
    learned : PendingLabels
        Same semantics, separate keys: ids whose label was learned (values are typically
        ``b""``), kept until they expire, to recognise duplicate labels.

    Raises
    ------
    StateLockedError
        Another process (or another open store) holds the state dir for writing.
    MissingStateError
        ``read_only`` and there is no state at ``path``.
    IncompatibleStateError
        ``path`` is not a riverbed state dir (a non-empty directory of other files, a rocksdict
        database in pickle mode, another format version).
    CorruptStateError
        RocksDB reports corruption.
    StateError
        Any other failure to open the database.

    Notes
    -----
    The recovery contract is in the module docstring. Not thread-safe: use it from one owner
    thread, except :meth:`PendingCommit.write`, which may run in any thread.
    """

    pending: PendingLabels
    learned: PendingLabels

    def __init__(
        self, path: str | os.PathLike[str], *, keep: int = 3, read_only: bool = False
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1 checkpoint, got {keep}")
        self.path = pathlib.Path(path)
        self.keep = keep
        self.read_only = read_only
        self._check_directory()
        self._db: rocksdict.Rdict | None = self._open()
        try:
            self._check_format()
            self._pending = RocksPendingLabels(
                self._db, read_only=read_only, layout=PENDING_LAYOUT
            )
            self._learned = RocksPendingLabels(
                self._db, read_only=read_only, layout=LEARNED_LAYOUT
            )
            self._seqs = self._scan_seqs()
            self._in_flight: PendingCommit | None = None
        except BaseException:
            self._db.close()
            self._db = None
            raise
        self.pending = self._pending
        self.learned = self._learned

    # -- checkpoints ---------------------------------------------------------------------------

    def commit(self, meta: dict[Any, Any], model_blob: bytes) -> Checkpoint:
        """Write a new checkpoint and the pending/learned changes in one synced atomic batch.

        :meth:`begin_commit`, :meth:`PendingCommit.write` and :meth:`end_commit` in one go
        (:meth:`abort_commit` if the write fails).

        Parameters
        ----------
        meta
            msgpack-able dict (str/int keys; dict, list, str, bytes, int, float, bool, None
            values). The key ``"seq"`` is reserved and set to the new sequence number.
        model_blob
            Sealed model bytes.

        Returns
        -------
        Checkpoint
            The checkpoint as stored (``meta`` includes ``"seq"``).

        Raises
        ------
        TypeError
            ``meta`` is not a dict or not msgpack-able.
        StateError
            The store is read-only or closed, a commit is in flight, or RocksDB failed to write
            (the previous checkpoint and the overlay are then unchanged, and commit may be
            retried).
        """
        pending_commit = self.begin_commit(meta, model_blob)
        try:
            pending_commit.write()
        except BaseException:
            if not pending_commit.written:
                self.abort_commit(pending_commit)
            raise
        return self.end_commit(pending_commit)

    def begin_commit(self, meta: dict[Any, Any], model_blob: bytes) -> PendingCommit:
        """Start a checkpoint: freeze the pending/learned changes as of now.

        The overlays' contents become the commit's committing layer; ``pending`` and
        ``learned`` continue with fresh overlays on top of it, so the owner thread may keep
        changing them while :meth:`PendingCommit.write` runs in another thread. Then call
        :meth:`end_commit` (after ``write`` returned) or :meth:`abort_commit` (after it failed).

        Parameters
        ----------
        meta, model_blob
            As for :meth:`commit`.

        Returns
        -------
        PendingCommit
            Call its ``write()`` (in any thread), then ``end_commit`` or ``abort_commit``.

        Raises
        ------
        TypeError
            ``meta`` is not a dict or not msgpack-able (nothing was frozen).
        StateError
            The store is read-only or closed, or another commit is in flight.
        """
        db = self._require_open("commit")
        if self.read_only:
            raise StateError(
                f"cannot commit a checkpoint to {self.path}: the state store was opened read-only"
            )
        if self._in_flight is not None:
            raise StateError(
                f"cannot commit a checkpoint to {self.path}: checkpoint {self._in_flight.seq} is "
                f"still in flight; call end_commit (after its write succeeded) or abort_commit "
                f"first"
            )
        if not isinstance(meta, dict):
            raise TypeError(f"checkpoint meta must be a dict, got {type(meta).__name__}")
        seq = (self._seqs[0] if self._seqs else 0) + 1
        stored_meta = {**meta, "seq": seq}
        try:
            encoded_meta = msgpack.packb(stored_meta, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(
                f"checkpoint meta must be msgpack-able (dict, list, str, bytes, int, float, "
                f"bool, None): {exc}"
            ) from exc
        kept = [seq, *self._seqs][: self.keep]
        pending_commit = PendingCommit(
            path=self.path,
            db=db,
            seq=seq,
            meta=stored_meta,
            encoded_meta=encoded_meta,
            model_blob=bytes(model_blob),
            kept=kept,
            pruned=[old for old in self._seqs if old not in kept],
            layers=(self._pending.freeze(), self._learned.freeze()),
        )
        self._in_flight = pending_commit
        return pending_commit

    def end_commit(self, pending_commit: PendingCommit) -> Checkpoint:
        """Finish a commit whose :meth:`PendingCommit.write` succeeded.

        Drops the committing layer (the database holds it now).

        Returns
        -------
        Checkpoint
            The checkpoint as stored, as :meth:`commit` returns it.

        Raises
        ------
        StateError
            The store is closed, ``pending_commit`` is not the commit in flight, or its write
            has not succeeded (still running, failed, or never called).
        """
        with self._settling(pending_commit, "end"):
            if pending_commit._state != "written":
                raise StateError(
                    f"cannot end checkpoint {pending_commit.seq} of {self.path}: it was not "
                    f"written; call its write() first, or abort_commit if the write failed"
                )
            self._pending.mark_committed()
            self._learned.mark_committed()
            self._seqs = pending_commit._kept
            self._in_flight = None
            pending_commit._state = "ended"
        return pending_commit._checkpoint()

    def abort_commit(self, pending_commit: PendingCommit) -> None:
        """Give up a commit that was not written: merge its committing layer back.

        Nothing is lost: ``pending`` and ``learned`` end as if :meth:`begin_commit` had never
        been called, plus the changes made since (which win over the frozen ones). The next
        commit writes everything and gets the same ``seq``.

        Raises
        ------
        StateError
            The store is closed, ``pending_commit`` is not the commit in flight, its write is
            still running, or it was written (call :meth:`end_commit`).
        """
        with self._settling(pending_commit, "abort"):
            if pending_commit._state == "written":
                raise StateError(
                    f"cannot abort checkpoint {pending_commit.seq} of {self.path}: it was "
                    f"already written; call end_commit"
                )
            self._pending.unfreeze()
            self._learned.unfreeze()
            self._in_flight = None
            pending_commit._state = "aborted"

    @property
    def commit_in_flight(self) -> PendingCommit | None:
        """The commit between :meth:`begin_commit` and its end or abort, else ``None``."""
        return self._in_flight

    def checkpoints(self) -> list[int]:
        """Sequence numbers of the stored checkpoints, newest first."""
        self._require_open("list checkpoints of")
        return list(self._seqs)

    def load(self, seq: int | None = None) -> Checkpoint | None:
        """Read a checkpoint.

        Parameters
        ----------
        seq
            Which one; the newest when ``None``.

        Returns
        -------
        Checkpoint or None
            ``None`` when the store has no checkpoint (or none with that ``seq``).

        Raises
        ------
        CorruptStateError
            Its meta does not decode, or its model bytes are missing.
        """
        db = self._require_open("load a checkpoint from")
        if seq is None:
            if not self._seqs:
                return None
            seq = self._seqs[0]
        encoded_meta = db.get(CHECKPOINT_PREFIX + _SEQ.pack(seq))
        if encoded_meta is None:
            return None
        try:
            meta = msgpack.unpackb(encoded_meta, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated types
            raise CorruptStateError(
                f"checkpoint {seq} in {self.path} has metadata that does not decode ({exc}): "
                f"load an older checkpoint or start from a fresh [state] dir"
            ) from exc
        if not isinstance(meta, dict):
            raise CorruptStateError(
                f"checkpoint {seq} in {self.path} has metadata that is not a map: load an "
                f"older checkpoint or start from a fresh [state] dir"
            )
        model_blob = db.get(MODEL_PREFIX + _SEQ.pack(seq))
        if model_blob is None:
            raise CorruptStateError(
                f"checkpoint {seq} in {self.path} has no model bytes: load an older checkpoint "
                f"or start from a fresh [state] dir"
            )
        return Checkpoint(
            seq=seq,
            meta=meta,
            model_blob=model_blob,
            size_bytes=len(model_blob) + len(encoded_meta),
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Discard the uncommitted overlay, flush RocksDB's memtable and close. Idempotent.

        With a commit in flight: waits for its running :meth:`PendingCommit.write` (if any) to
        return, then discards the committing layer too; the checkpoint is durable exactly when
        that write succeeded (as a crash at this point, see the module docstring). A later
        ``write`` of that commit raises :class:`StateError`.
        """
        db, self._db = self._db, None
        if db is None:
            return
        pending_commit, self._in_flight = self._in_flight, None
        if pending_commit is not None:
            with pending_commit._lock:  # waits for a write() running in another thread
                written = pending_commit._state == "written"
                pending_commit._state = "closed" if written else "discarded"
        self._pending.discard_overlay()
        self._learned.discard_overlay()
        try:
            if not self.read_only:
                db.flush(True)
        finally:
            db.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._db is None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        state = "closed" if self.closed else f"checkpoints={self._seqs}"
        return f"StateStore({str(self.path)!r}, {mode}, {state})"

    def disk_size_bytes(self) -> int:
        """Total size in bytes of the files in the state dir."""
        total = 0
        for root, _dirs, files in os.walk(self.path):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_size
                except FileNotFoundError:  # RocksDB deleted it meanwhile (compaction)
                    pass
        return total

    # -- internals -----------------------------------------------------------------------------

    def _require_open(self, action: str) -> rocksdict.Rdict:
        if self._db is None:
            raise StateError(f"cannot {action} {self.path}: the state store is closed")
        return self._db

    @contextlib.contextmanager
    def _settling(self, pending_commit: PendingCommit, action: str) -> Iterator[None]:
        """Hold ``pending_commit``'s lock while ending or aborting it; refuse if it is not the
        commit in flight or its ``write()`` is still running."""
        self._require_open(f"{action} a commit to")
        if pending_commit is not self._in_flight:
            raise StateError(
                f"cannot {action} checkpoint {pending_commit.seq} of {self.path}: it is not the "
                f"commit in flight (it already ended or was aborted, or belongs to another "
                f"store)"
            )
        if not pending_commit._lock.acquire(blocking=False):
            raise StateError(
                f"cannot {action} checkpoint {pending_commit.seq} of {self.path}: its write() is "
                f"still running; wait for it to return"
            )
        try:
            yield
        finally:
            pending_commit._lock.release()

    def _check_directory(self) -> None:
        """Refuse paths that are not (and cannot become) a riverbed state dir, before opening."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise IncompatibleStateError(
                f"[state] dir {path} is a file, not a directory: point [state] dir elsewhere"
            )
        is_database = (path / "CURRENT").is_file()
        if self.read_only and not is_database:
            raise MissingStateError(
                f"no riverbed state in {path}: nothing was checkpointed there yet (check "
                f"[state] dir, or run `riverbed run` first)"
            )
        foreign = _foreign_files(path) if path.is_dir() and not is_database else []
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise IncompatibleStateError(
                f"[state] dir {path} is not a riverbed state dir (it holds {shown}): point "
                f"[state] dir at a new or empty directory"
            )
        config = path / "rocksdict-config.json"
        if config.is_file():
            try:
                raw_mode = json.loads(config.read_text()).get("raw_mode")
            except (OSError, ValueError, AttributeError):
                raw_mode = None
            if raw_mode is False:
                raise IncompatibleStateError(
                    f"{path} is a rocksdict database in pickle mode, not a riverbed state dir "
                    f"(riverbed never unpickles database values): point [state] dir at a new "
                    f"or empty directory"
                )

    def _open(self) -> rocksdict.Rdict:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(not self.read_only)
        options.set_keep_log_file_num(3)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(10, False)  # most pending-label lookups are for new ids
        options.set_block_based_table_factory(table)
        if self.read_only:
            # A writer holds the database: its write-ahead log exists and must be replayed.
            access = rocksdict.AccessType.read_only(False)
            attempts = _READ_ONLY_OPEN_ATTEMPTS
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            access = rocksdict.AccessType.read_write()
            attempts = 1
        for attempt in range(1, attempts + 1):
            try:
                return rocksdict.Rdict(str(self.path), options, access_type=access)
            except Exception as exc:  # rocksdict raises plain Exception
                error = self._translate_open_error(exc)
                # A read-only open can race the writer deleting a file compaction replaced.
                if attempt == attempts or type(error) is not StateError:
                    raise error from exc
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def _translate_open_error(self, exc: Exception) -> StateError:
        message = str(exc)
        lowered = message.lower()
        if re.search(r"\block\b", lowered):  # the LOCK file; not "block checksum mismatch"
            return StateLockedError(self.path, message)
        if "comparator" in lowered:
            return IncompatibleStateError(
                f"{self.path} is a RocksDB database written by something other than riverbed "
                f"({message}): point [state] dir at a new or empty directory"
            )
        if "corruption" in lowered:
            return CorruptStateError(
                f"RocksDB reports the state dir {self.path} is damaged ({message}): start from "
                f"a fresh [state] dir (move this one aside)"
            )
        return StateError(f"cannot open the state dir {self.path}: {message}")

    def _check_format(self) -> None:
        db = self._db
        assert db is not None
        stored = db.get(FORMAT_KEY)
        if stored == FORMAT_VALUE:
            return
        if stored is not None:
            raise IncompatibleStateError(
                f"{self.path} holds state format {stored!r}, this riverbed reads "
                f"{FORMAT_VALUE!r}: run the riverbed version that wrote it, or start from a "
                f"fresh [state] dir"
            )
        if next(iter(db.keys()), None) is not None:
            raise IncompatibleStateError(
                f"{self.path} is a RocksDB database but not a riverbed state dir: point "
                f"[state] dir at a new or empty directory"
            )
        if not self.read_only:  # a fresh database: claim it
            options = rocksdict.WriteOptions()
            options.sync = True
            db.put(FORMAT_KEY, FORMAT_VALUE, options)

    def _scan_seqs(self) -> list[int]:
        db = self._db
        assert db is not None
        seqs = []
        it = db.iter()
        it.seek(CHECKPOINT_PREFIX)
        while it.valid():
            key = it.key()
            if not key.startswith(CHECKPOINT_PREFIX):
                break
            suffix = key[len(CHECKPOINT_PREFIX) :]
            if len(suffix) != _SEQ.size:
                raise CorruptStateError(
                    f"checkpoint key {key!r} in {self.path} is malformed: the state dir is "
                    f"damaged; start from a fresh [state] dir"
                )
            seqs.append(_SEQ.unpack(suffix)[0])
            it.next()
        seqs.sort(reverse=True)
        return seqs


_ROCKSDB_FILE = re.compile(
    r"LOCK|IDENTITY|CURRENT|LOG(\.old\.\d+)?|MANIFEST-\d+|OPTIONS-\d+(\.dbtmp)?"
    r"|\d+\.(log|sst|dbtmp)|rocksdict-config\.json"
)


def _foreign_files(path: pathlib.Path) -> list[str]:
    """Names in ``path`` that RocksDB does not write (a crashed first open leaves only its own)."""
    return sorted(p.name for p in path.iterdir() if not _ROCKSDB_FILE.fullmatch(p.name))
