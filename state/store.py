"""Checkpoints: the model, its metadata and the pending labels, written atomically.

Recovery contract
=================

A checkpoint is what riverbed restarts from. It holds

* ``meta``: a msgpack-able dict chosen by the caller (the next offset of every consumed
  partition, counts, metrics, fingerprints, times, ...), stored with its ``"seq"``;
* ``model_blob``: the sealed model bytes (see :mod:`state.sealed`; the caller seals and
  unseals), stored under its own key;
* the pending labels and the learned ids (two :class:`~state.pending.RocksExpiringStore`) as
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
blob fails to unseal, or whose newest checkpoint :meth:`~StateStore.load` refuses
(:class:`~state.errors.CheckpointUnreadable`), can load an older ``seq`` and use its meta and
model. Pending labels and learned ids are *not* versioned: ``pending`` and ``learned`` always
reflect the newest checkpoint. After a fallback, events between the two checkpoints may therefore
already be pending (their re-prediction overwrites them) or already learned (their labels then
count as duplicates and are not learned again by the older model).

**Read-only view.** ``StateStore(path, read_only=True)`` works while another process holds the
store open for writing (``riverbed status`` does this), and on a read-only filesystem (rocksdict
writes ``rocksdict-config.json`` on every open, so there it opens a temporary directory of
symlinks to the database files). It sees the checkpoints durable at the moment it was opened;
open it again to see newer ones.

Storage
=======

Two copies of every checkpoint, one copy of everything else::

    DIR/                          one RocksDB database, opened through rocksdict in raw mode
        CURRENT, MANIFEST-*, OPTIONS-*, *.sst, *.log, LOCK, LOG, IDENTITY, rocksdict-config.json
    DIR/checkpoints/ckpt-<seq>.sealed
                                  a file copy of each kept checkpoint's meta and model bytes,
                                  with a SHA-256 (layout in :mod:`state.checkpoint_files`)

rocksdict is opened **always in raw mode**: its default mode pickles values and unpickles them
on read, so a crafted value would run code. Every key and value is plain bytes::

    b"meta/format"            -> b"riverbed-state 1"
    b"meta/last_seq"          -> seq(u64 BE) of the newest checkpoint whose batch landed
    b"ckpt/" + seq(u64 BE)    -> msgpack(meta + {"seq": seq})
    b"model/" + seq(u64 BE)   -> model_blob
    b"meta/pending_count", b"p/...", b"t/..."    pending labels (see state.pending)
    b"meta/learned_count", b"l/...", b"lt/..."   learned ids

**Order of a commit.** (1) ``checkpoints/ckpt-<seq>.sealed.tmp`` is written and fsync'ed (a full
disk fails here, before RocksDB sees anything); (2) the synced RocksDB batch lands (it also sets
``meta/last_seq``); (3) the file is renamed to ``ckpt-<seq>.sealed``, the folder fsync'ed, and
the file copies of pruned checkpoints deleted. So a ``.sealed`` file always describes a batch
that landed; a crash between (2) and (3) leaves that checkpoint with its RocksDB copy only (the
``.tmp`` is deleted at the next read-write open).

**Reading.** :meth:`StateStore.checkpoints` lists the union of the RocksDB and file copies;
:meth:`StateStore.load` uses the RocksDB copy when it reads and matches the file copy's SHA-256,
else the file copy (:attr:`Checkpoint.copy` says which, :attr:`Checkpoint.damage` why), else
raises :class:`~state.errors.CheckpointUnreadable` with both reasons. A file copy newer than
``meta/last_seq`` is refused: its batch, with the pending labels it belongs with, was lost.

Failures and what they cost
===========================

==========================================  ===================================================
what broke                                  outcome
==========================================  ===================================================
model bytes changed in RocksDB (no          ``load`` returns the file copy of the same
checksum fails)                             checkpoint; nothing is lost
a block of a checkpoint's model or meta     same; with no file copy either, ``load(seq)``
(``block checksum mismatch``)               raises ``CheckpointUnreadable`` and the caller falls
                                            back to the next older checkpoint
the checkpoint-key scan stops with an       the file copies list the checkpoints (noted in
error (iterator status)                     :attr:`StateStore.damage`); without any file copy,
                                            the open fails with one ``CorruptStateError``
a damaged file copy                         the RocksDB copy is used; nothing is lost
truncated write-ahead log (torn tail after  RocksDB recovers to the last intact batch; newer
a crash, or damage)                         file-only checkpoints are refused ("batch lost"):
                                            resume from the newest checkpoint that landed and
                                            replay; nothing is lost
a damaged block of pending labels or        reads raise one ``CorruptStateError`` (the
learned ids                                 processor stops with one line); the checkpoints are
                                            intact; a fresh state dir loses those entries: their
                                            labels count as unmatched
a damaged block holding ``meta/format`` or  the open fails with one ``CorruptStateError``
the counts (they sort next to the oldest    naming the file; the file copies are kept
model), a truncated SST or MANIFEST
disk full while committing                  one ``DiskFullError``: "could not write checkpoint N
                                            to DIR: no space left on device; free disk space
                                            and restart riverbed (nothing is lost: it resumes
                                            from checkpoint M)"; ``close`` does not mask it
read-only filesystem                        ``read_only=True`` works; a writer gets one
                                            ``StateError``
==========================================  ===================================================

An open that fails changes no data file (RocksDB may have written its own LOG); the message
names the damaged file and says to move the directory aside (the file copies in
``checkpoints/`` stay with it, for inspection).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import logging
import os
import shutil
import tempfile
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

from state.checkpoint_files import FOLDER as CHECKPOINT_FOLDER
from state.checkpoint_files import CheckpointFiles
from state.errors import (
    CheckpointUnreadable,
    CorruptStateError,
    DiskFullError,
    IncompatibleStateError,
    MissingStateError,
    StateError,
    StateLockedError,
)
from state.pending import (
    LEARNED_LAYOUT,
    PENDING_LAYOUT,
    FrozenOverlay,
    LearnedIds,
    PendingLabels,
    RocksExpiringStore,
)

FORMAT_KEY: Final = b"meta/format"
FORMAT_VALUE: Final = b"riverbed-state 1"
CHECKPOINT_PREFIX: Final = b"ckpt/"
MODEL_PREFIX: Final = b"model/"
LAST_SEQ_KEY: Final = b"meta/last_seq"

log = logging.getLogger(__name__)

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
    copy
        Which copy it was read from: ``"rocksdb"``, or ``"file"``
        (``checkpoints/ckpt-<seq>.sealed``).
    damage
        Why the other copy was not used, when it was refused (empty when all is well): log it.
    """

    seq: int
    meta: dict[Any, Any]
    model_blob: bytes
    size_bytes: int
    copy: str = "rocksdb"
    damage: tuple[str, ...] = ()


class CommitState(enum.Enum):
    """Where a :class:`PendingCommit` is in the two-phase commit.

    ``BEGUN`` -> ``WRITING`` -> ``WRITTEN`` | ``FAILED`` (a failed write may be retried); then
    ``ENDED`` (``end_commit``), ``ABORTED`` (``abort_commit``), or, when the store was closed
    first, ``CLOSED`` (it was written) or ``DISCARDED`` (it was not).
    """

    BEGUN = "begun"
    WRITING = "writing"
    WRITTEN = "written"
    FAILED = "failed"
    ENDED = "ended"
    ABORTED = "aborted"
    CLOSED = "closed"
    DISCARDED = "discarded"


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
        files: CheckpointFiles,
        previous: int | None,
        note_failure: Any,
    ) -> None:
        self.seq = seq
        self._files = files
        self._previous = previous
        self._note_failure = note_failure
        self._path = path
        self._db = db
        self._meta = meta
        self._encoded_meta = encoded_meta
        self._model_blob = model_blob
        self._kept = kept
        self._pruned = pruned
        self._layers = layers
        self._lock = threading.Lock()  # held by write(); close() waits on it
        self._state = CommitState.BEGUN

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
            if self._state not in (CommitState.BEGUN, CommitState.FAILED):
                raise StateError(self._not_writable())
            self._state = CommitState.WRITING
            written = False
            unpublished = None
            try:
                unpublished = self._files.write_unpublished(
                    self.seq, self._encoded_meta, self._model_blob
                )
                self._db.write(self._batch(), _synced())
                written = True
            except Exception as exc:  # rocksdict raises plain Exception; files raise OSError
                if unpublished is not None:
                    unpublished.unlink(missing_ok=True)
                self._note_failure()
                raise self._write_error(exc) from exc
            finally:
                self._state = CommitState.WRITTEN if written else CommitState.FAILED
            self._publish(unpublished)

    def _batch(self) -> rocksdict.WriteBatch:
        batch = rocksdict.WriteBatch(raw_mode=True)
        for layer in self._layers:
            layer.stage_into(batch)
        batch.put(FORMAT_KEY, FORMAT_VALUE)
        batch.put(LAST_SEQ_KEY, _SEQ.pack(self.seq))
        batch.put(CHECKPOINT_PREFIX + _SEQ.pack(self.seq), self._encoded_meta)
        batch.put(MODEL_PREFIX + _SEQ.pack(self.seq), self._model_blob)
        for old in self._pruned:
            batch.delete(CHECKPOINT_PREFIX + _SEQ.pack(old))
            batch.delete(MODEL_PREFIX + _SEQ.pack(old))
        return batch

    def _publish(self, unpublished: pathlib.Path) -> None:
        """Give the landed checkpoint its file copy and prune old ones (a failure only costs
        the redundancy of the file copy, so it is logged, not raised)."""
        try:
            self._files.publish(unpublished, self.seq)
            self._files.remove(self._pruned)
        except OSError as exc:
            log.warning(
                "checkpoint %d of %s is committed, but its file copy could not be published "
                "(%s): only its RocksDB copy protects it", self.seq, self._path, exc
            )

    def _write_error(self, exc: Exception) -> StateError:
        what = f"could not write checkpoint {self.seq} to {self._path}"
        if self._previous is None:
            resumes = "no checkpoint was written yet, so it starts from the beginning"
        else:
            resumes = f"it resumes from checkpoint {self._previous}"
        if _is_disk_full(exc):
            return DiskFullError(
                f"{what}: no space left on device; free disk space and restart riverbed "
                f"(nothing is lost: {resumes})"
            )
        return StateError(
            f"{what}: {exc}; check free disk space and permissions, then restart riverbed "
            f"(nothing is lost: {resumes})"
        )

    @property
    def written(self) -> bool:
        """Whether :meth:`write` succeeded (the checkpoint is durable)."""
        return self._state in (CommitState.WRITTEN, CommitState.ENDED, CommitState.CLOSED)

    def __repr__(self) -> str:
        return f"PendingCommit(seq={self.seq}, {self._state.value})"

    def _not_writable(self) -> str:
        what = f"checkpoint {self.seq} to {self._path}"
        if self._state in (CommitState.WRITTEN, CommitState.ENDED):
            return f"cannot write {what}: it was already written; call end_commit"
        if self._state is CommitState.CLOSED:
            return f"cannot write {what}: it was already written (the store is closed since)"
        if self._state is CommitState.WRITING:
            return f"cannot write {what}: write() is already running in another thread"
        if self._state is CommitState.ABORTED:
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


def _synced() -> rocksdict.WriteOptions:
    options = rocksdict.WriteOptions()
    options.sync = True
    return options


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return "no space left on device" in str(exc).lower()


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
    learned : LearnedIds
        Same semantics, separate keys: ids whose label was learned (values are typically
        ``b""``), kept until they expire, to recognise duplicate labels.
    damage : list of str
        Problems found while opening that did not stop it (e.g. the checkpoint-key scan stopped
        with a RocksDB error, so the file copies listed the checkpoints): log them.

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
        RocksDB reports corruption, or cannot read what the open needs (one line naming the
        damaged file and what to do; nothing is changed).
    StateError
        Any other failure to open the database.

    Notes
    -----
    The recovery contract is in the module docstring. Not thread-safe: use it from one owner
    thread, except :meth:`PendingCommit.write`, which may run in any thread.
    """

    pending: PendingLabels
    learned: LearnedIds

    def __init__(
        self, path: str | os.PathLike[str], *, keep: int = 3, read_only: bool = False
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1 checkpoint, got {keep}")
        self.path = pathlib.Path(path)
        self.keep = keep
        self.read_only = read_only
        self.damage: list[str] = []
        self._files = CheckpointFiles(self.path)
        self._write_failed = False
        self._linked_view: pathlib.Path | None = None
        self._check_directory()
        self._db: rocksdict.Rdict | None = self._open()
        try:
            with self._storage_errors_at_open():
                self._check_format()
                self._pending = RocksExpiringStore(
                    self._db, read_only=read_only, layout=PENDING_LAYOUT
                )
                self._learned = RocksExpiringStore(
                    self._db, read_only=read_only, layout=LEARNED_LAYOUT
                )
                self._scan_checkpoints()
            if not read_only:
                self._files.remove_unpublished()
            self._in_flight: PendingCommit | None = None
        except BaseException:
            self._db.close()
            self._db = None
            self._remove_linked_view()
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
            files=self._files,
            previous=self._seqs[0] if self._seqs else None,
            note_failure=self._note_write_failure,
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
            if pending_commit._state is not CommitState.WRITTEN:
                raise StateError(
                    f"cannot end checkpoint {pending_commit.seq} of {self.path}: it was not "
                    f"written; call its write() first, or abort_commit if the write failed"
                )
            self._pending.mark_committed()
            self._learned.mark_committed()
            self._seqs = pending_commit._kept
            self._in_flight = None
            pending_commit._state = CommitState.ENDED
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
            if pending_commit._state is CommitState.WRITTEN:
                raise StateError(
                    f"cannot abort checkpoint {pending_commit.seq} of {self.path}: it was "
                    f"already written; call end_commit"
                )
            self._pending.unfreeze()
            self._learned.unfreeze()
            self._in_flight = None
            pending_commit._state = CommitState.ABORTED

    @property
    def commit_in_flight(self) -> PendingCommit | None:
        """The commit between :meth:`begin_commit` and its end or abort, else ``None``."""
        return self._in_flight

    def checkpoints(self) -> list[int]:
        """Sequence numbers of the stored checkpoints, newest first.

        Every checkpoint that has a RocksDB copy or a file copy, whether or not it is readable:
        an unreadable one is listed (and :meth:`load` refuses it with
        :class:`~state.errors.CheckpointUnreadable`), never silently left out. Empty only when
        nothing was checkpointed (or everything was pruned).
        """
        self._require_open("list checkpoints of")
        return list(self._seqs)

    def load(self, seq: int | None = None) -> Checkpoint | None:
        """Read a checkpoint: its RocksDB copy, else its file copy.

        The RocksDB copy is used when it reads without a storage error, decodes, and matches the
        SHA-256 of the file copy (when there is one); otherwise the file copy
        (``checkpoints/ckpt-<seq>.sealed``, verified by its own SHA-256), with the reason in
        :attr:`Checkpoint.damage`.

        Parameters
        ----------
        seq
            Which one; the newest listed by :meth:`checkpoints` when ``None``.

        Returns
        -------
        Checkpoint or None
            ``None`` when the store has no checkpoint (or none with that ``seq``).

        Raises
        ------
        CheckpointUnreadable
            Neither copy can be read (``.seq`` and ``.reasons`` say which and why): load the
            next older seq from :meth:`checkpoints`.
        """
        self._require_open("load a checkpoint from")
        if seq is None:
            if not self._seqs:
                return None
            seq = self._seqs[0]
        reasons: list[str] = []
        db_copy = self._read_db_copy(seq, reasons)
        file_digest = self._files.digest_of(seq)
        if db_copy is not None and file_digest in (None, _digest(seq, db_copy)):
            return self._checkpoint(seq, db_copy, "rocksdb", reasons)
        if db_copy is not None:
            reasons.append("its RocksDB copy differs from the SHA-256 of its file copy")
        file_copy = self._read_file_copy(seq, reasons)
        if file_copy is not None:
            return self._checkpoint(seq, file_copy, "file", reasons)
        if db_copy is not None:  # the file copy is the damaged one
            return self._checkpoint(seq, db_copy, "rocksdb", reasons)
        if not reasons:
            return None
        raise CheckpointUnreadable(self.path, seq, tuple(reasons))

    def _read_db_copy(self, seq: int, reasons: list[str]) -> tuple[bytes, dict, bytes] | None:
        db = self._require_open("load a checkpoint from")
        try:
            encoded_meta = db.get(CHECKPOINT_PREFIX + _SEQ.pack(seq))
            model_blob = db.get(MODEL_PREFIX + _SEQ.pack(seq))
        except Exception as exc:  # rocksdict raises plain Exception (checksum mismatch, I/O)
            reasons.append(f"its RocksDB copy is unreadable ({_one_line(exc)})")
            return None
        if encoded_meta is None:
            if seq in self._db_seqs:
                reasons.append("its RocksDB copy is gone")
            return None
        if model_blob is None:
            reasons.append("its RocksDB copy has no model bytes")
            return None
        meta = self._decoded_meta(seq, encoded_meta, "RocksDB", reasons)
        return None if meta is None else (encoded_meta, meta, model_blob)

    def _read_file_copy(self, seq: int, reasons: list[str]) -> tuple[bytes, dict, bytes] | None:
        path = self._files.path_of(seq)
        try:
            encoded_meta, model_blob = self._files.read(seq)
        except FileNotFoundError:
            if seq in self._seqs and seq not in self._db_seqs:
                reasons.append(f"its file copy {path} is gone")
            return None
        except (OSError, CorruptStateError) as exc:
            reasons.append(f"its file copy is unreadable ({exc})")
            return None
        if self._last_seq is not None and seq > self._last_seq and seq not in self._db_seqs:
            reasons.append(
                f"only its file copy exists and it is newer than the database's last checkpoint "
                f"{self._last_seq}: its RocksDB batch (with the pending labels) was lost, e.g. a "
                f"truncated write-ahead log"
            )
            return None
        meta = self._decoded_meta(seq, encoded_meta, "file", reasons)
        return None if meta is None else (encoded_meta, meta, model_blob)

    def _decoded_meta(
        self, seq: int, encoded_meta: bytes, copy: str, reasons: list[str]
    ) -> dict | None:
        try:
            meta = msgpack.unpackb(encoded_meta, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated types
            reasons.append(f"the metadata of its {copy} copy does not decode ({exc})")
            return None
        if not isinstance(meta, dict) or meta.get("seq") != seq:
            reasons.append(f"the metadata of its {copy} copy is not checkpoint {seq}'s")
            return None
        return meta

    @staticmethod
    def _checkpoint(
        seq: int, copy: tuple[bytes, dict, bytes], source: str, reasons: list[str]
    ) -> Checkpoint:
        encoded_meta, meta, model_blob = copy
        return Checkpoint(
            seq=seq,
            meta=meta,
            model_blob=model_blob,
            size_bytes=len(model_blob) + len(encoded_meta),
            copy=source,
            damage=tuple(reasons),
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
                written = pending_commit._state is CommitState.WRITTEN
                pending_commit._state = CommitState.CLOSED if written else CommitState.DISCARDED
        self._pending.discard_overlay()
        self._learned.discard_overlay()
        try:
            if not self.read_only:
                db.flush(True)
            db.close()
        except Exception as exc:  # rocksdict raises plain Exception
            self._close_failed(db, exc)
        finally:
            self._remove_linked_view()

    def _close_failed(self, db: rocksdict.Rdict, exc: Exception) -> None:
        """Finish closing after a failed flush; raise unless a write failed before."""
        with contextlib.suppress(Exception):
            db.close()
        if not self._write_failed:
            raise StateError(
                f"could not flush the state dir {self.path} on close: {_one_line(exc)}; "
                f"every committed checkpoint is durable (check free disk space)"
            ) from exc
        # The write that failed first was already reported (the caller holds it): do not mask it.
        log.debug("flush on close of %s failed after a failed write: %s", self.path, exc)

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

    def _note_write_failure(self) -> None:
        self._write_failed = True

    @contextlib.contextmanager
    def _storage_errors_at_open(self) -> Iterator[None]:
        """Turn a RocksDB read error while opening into one :class:`CorruptStateError`."""
        try:
            yield
        except StateError:
            raise
        except Exception as exc:  # rocksdict raises plain Exception
            raise CorruptStateError(self._damaged(exc)) from exc

    def _damaged(self, exc: BaseException) -> str:
        newest = self._files.seqs()
        kept = (
            f"; the file copies of checkpoints {', '.join(map(str, newest))} in "
            f"{self._files.folder} are kept"
            if newest
            else ""
        )
        return (
            f"RocksDB reports the state dir {self.path} is damaged ({_one_line(exc)}): move "
            f"the directory aside (mv {self.path} {self.path}.damaged) and restart riverbed to "
            f"start from scratch{kept}; nothing was changed"
        )

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
        # The same for the memtable: a put of a new pending entry or learned id first looks the
        # id up, and a miss in the unflushed table now costs a filter probe instead of a skip-list
        # search (0.88 -> 0.41 us per missing key, 200,000 keys). In memory only: the files on
        # disk do not change.
        options.set_memtable_prefix_bloom_ratio(0.1)
        options.set_memtable_whole_key_filtering(True)
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
                return self._open_rdict(options, access)
            except Exception as exc:  # rocksdict raises plain Exception
                error = self._translate_open_error(exc)
                # A read-only open can race the writer deleting a file compaction replaced.
                if attempt == attempts or type(error) is not StateError:
                    raise error from exc
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def _open_rdict(
        self, options: rocksdict.Options, access: rocksdict.AccessType
    ) -> rocksdict.Rdict:
        try:
            return rocksdict.Rdict(str(self.path), options, access_type=access)
        except OSError as exc:
            # rocksdict writes rocksdict-config.json into the directory on every open, also a
            # read-only one: on a read-only filesystem, open a linked view in a temporary dir.
            if not self.read_only or not _is_not_writable(exc):
                raise
        self._remove_linked_view()
        self._linked_view = _linked_view_of(self.path)
        return rocksdict.Rdict(str(self._linked_view), options, access_type=access)

    def _remove_linked_view(self) -> None:
        view, self._linked_view = self._linked_view, None
        if view is not None:
            shutil.rmtree(view, ignore_errors=True)

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
            return CorruptStateError(self._damaged(exc))
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
            db.put(FORMAT_KEY, FORMAT_VALUE, _synced())

    def _scan_checkpoints(self) -> None:
        """List the checkpoints: the union of RocksDB's and the file copies'.

        A scan that RocksDB stops with an error (its iterator status) is noted in
        :attr:`damage`; the file copies then list the checkpoints. Without file copies (a state
        dir from before they existed) nothing can vouch for the list, so the open fails.
        """
        db_seqs, scan_error = self._scan_db_seqs()
        file_seqs = self._files.seqs()
        if scan_error is not None:
            self.damage.append(f"the checkpoint list in RocksDB is unreadable ({scan_error})")
            if not file_seqs:
                raise CorruptStateError(self._damaged(Exception(scan_error)))
        self._db_seqs = set(db_seqs)
        self._last_seq = self._read_last_seq(db_seqs)
        self._seqs = sorted(self._db_seqs | set(file_seqs), reverse=True)

    def _scan_db_seqs(self) -> tuple[list[int], str | None]:
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
        try:
            it.status()  # valid() is False both at the end and after an error
        except Exception as exc:  # rocksdict raises plain Exception
            return seqs, _one_line(exc)
        return seqs, None

    def _read_last_seq(self, db_seqs: list[int]) -> int | None:
        """The seq of the newest batch that landed; ``None`` if RocksDB cannot say."""
        db = self._db
        assert db is not None
        try:
            raw = db.get(LAST_SEQ_KEY)
        except Exception as exc:  # rocksdict raises plain Exception
            self.damage.append(f"the last checkpoint number is unreadable ({_one_line(exc)})")
            return None
        stored = _SEQ.unpack(raw)[0] if raw is not None and len(raw) == _SEQ.size else 0
        return max([stored, *db_seqs])


def _is_not_writable(exc: OSError) -> bool:
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return True
    return re.search(r"os error (30|13|1)\)", str(exc)) is not None  # rocksdict leaves errno unset


def _digest(seq: int, copy: tuple[bytes, dict, bytes]) -> bytes:
    return CheckpointFiles.digest(seq, copy[0], copy[2])


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


_NOT_LINKED = re.compile(r"LOCK|LOG(\.old\.\d+)?|rocksdict-config\.json")


def _linked_view_of(path: pathlib.Path) -> pathlib.Path:
    """A temporary dir of symlinks to ``path``'s RocksDB files, for a read-only open."""
    view = pathlib.Path(tempfile.mkdtemp(prefix="riverbed-state-view-"))
    for entry in path.iterdir():
        if not _NOT_LINKED.fullmatch(entry.name):
            (view / entry.name).symlink_to(entry.resolve())
    return view


_ROCKSDB_FILE = re.compile(
    r"LOCK|IDENTITY|CURRENT|LOG(\.old\.\d+)?|MANIFEST-\d+|OPTIONS-\d+(\.dbtmp)?"
    r"|\d+\.(log|sst|dbtmp)|rocksdict-config\.json|" + CHECKPOINT_FOLDER
)


def _foreign_files(path: pathlib.Path) -> list[str]:
    """Names in ``path`` that RocksDB does not write (a crashed first open leaves only its own)."""
    return sorted(p.name for p in path.iterdir() if not _ROCKSDB_FILE.fullmatch(p.name))
