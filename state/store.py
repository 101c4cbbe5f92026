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

Parts
=====

:class:`StateStore` (this module) owns the lifecycle and the commit protocol;
:mod:`state.opening` refuses what is not a state dir and opens RocksDB;
:mod:`state.checkpoint_reader` lists checkpoints and reads the intact copy;
:mod:`state.commit` writes one checkpoint's batch (:class:`~state.commit.PendingCommit`);
:mod:`state.database` holds the keys; :mod:`state.pending` the pending labels and learned ids.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
from types import TracebackType
from typing import Any, Iterator

import msgpack
import rocksdict

from state import opening
from state.checkpoint_files import CheckpointFiles
from state.checkpoint_reader import Checkpoint, CheckpointReader
from state.commit import CommitState, PendingCommit
from state.database import one_line
from state.errors import StateError
from state.pending import (
    LEARNED_LAYOUT,
    PENDING_LAYOUT,
    LearnedIds,
    PendingLabels,
    RocksExpiringStore,
)

__all__ = ["Checkpoint", "CommitState", "PendingCommit", "StateStore"]

log = logging.getLogger(__name__)


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
        self._in_flight: PendingCommit | None = None
        opening.check_directory(self.path, read_only=read_only)
        db, self._linked_view = opening.open_database(self.path, self._files, read_only=read_only)
        self._db: rocksdict.Rdict | None = db
        try:
            with opening.storage_errors_at_open(self.path, self._files):
                opening.check_format(db, self.path, read_only=read_only)
                self._pending = RocksExpiringStore(db, read_only=read_only, layout=PENDING_LAYOUT)
                self._learned = RocksExpiringStore(db, read_only=read_only, layout=LEARNED_LAYOUT)
                self._checkpoints = CheckpointReader(db, self.path, self._files)
            self.damage.extend(self._checkpoints.damage)
            if not read_only:
                self._files.remove_unpublished()
        except BaseException:
            db.close()
            self._db = None
            opening.remove_linked_view(self._linked_view)
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
        seq = (self._checkpoints.seqs[0] if self._checkpoints.seqs else 0) + 1
        stored_meta = {**meta, "seq": seq}
        try:
            encoded_meta = msgpack.packb(stored_meta, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(
                f"checkpoint meta must be msgpack-able (dict, list, str, bytes, int, float, "
                f"bool, None): {exc}"
            ) from exc
        kept = [seq, *self._checkpoints.seqs][: self.keep]
        pending_commit = PendingCommit(
            path=self.path,
            db=db,
            seq=seq,
            meta=stored_meta,
            encoded_meta=encoded_meta,
            model_blob=bytes(model_blob),
            kept=kept,
            pruned=[old for old in self._checkpoints.seqs if old not in kept],
            layers=(self._pending.freeze(), self._learned.freeze()),
            files=self._files,
            previous=self._checkpoints.seqs[0] if self._checkpoints.seqs else None,
            note_failure=self._note_write_failure,
        )
        self._in_flight = pending_commit
        return pending_commit

    def end_commit(self, pending_commit: PendingCommit) -> Checkpoint:
        """Finish a commit whose :meth:`PendingCommit.write` succeeded.

        Drops the committing layer (the database holds it now). Its memory is freed when
        ``pending_commit`` goes, or earlier, in steps and in any thread, by
        :meth:`PendingCommit.release`.

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
            pending_commit._garbage = self._pending.mark_committed() + self._learned.mark_committed()
            self._checkpoints.committed(
                pending_commit.seq, pending_commit._kept, pending_commit._pruned
            )
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
    def changes(self) -> int:
        """Event ids changed in ``pending`` and ``learned`` since the last :meth:`begin_commit`:
        about what the next checkpoint's batch holds."""
        return self._pending.overlay_size + self._learned.overlay_size

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
        return list(self._checkpoints.seqs)

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
            if not self._checkpoints.seqs:
                return None
            seq = self._checkpoints.seqs[0]
        return self._checkpoints.load(seq)

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
            opening.remove_linked_view(self._linked_view)
            self._linked_view = None

    def _close_failed(self, db: rocksdict.Rdict, exc: Exception) -> None:
        """Finish closing after a failed flush; raise unless a write failed before."""
        with contextlib.suppress(Exception):
            db.close()
        if not self._write_failed:
            raise StateError(
                f"could not flush the state dir {self.path} on close: {one_line(exc)}; "
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
        state = "closed" if self.closed else f"checkpoints={self._checkpoints.seqs}"
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

