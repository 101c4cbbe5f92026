"""The second phase of a checkpoint: its batch, written (in any thread) and then settled.

:meth:`StateStore.begin_commit <state.store.StateStore.begin_commit>` returns a
:class:`PendingCommit`; its :meth:`~PendingCommit.write` writes the file copy and the synced
RocksDB batch; the store's ``end_commit`` or ``abort_commit`` settles it. The recovery contract
is in :mod:`state.store`.
"""

from __future__ import annotations

import enum
import errno
import logging
import pathlib
import threading
from typing import Any

import rocksdict

from state.checkpoint_files import CheckpointFiles
from state.checkpoint_reader import Checkpoint
from state.database import (
    FORMAT_KEY,
    FORMAT_VALUE,
    LAST_SEQ_KEY,
    SEQ,
    checkpoint_key,
    model_key,
    synced,
)
from state.errors import DiskFullError, StateError
from state.pending import FrozenOverlay
from state.release import release_in_steps

log = logging.getLogger(__name__)


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
        self._garbage: list[Any] = []
        """Set by ``end_commit``: the committing layer's containers, for :meth:`release`."""

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
                self._db.write(self._batch(), synced())
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
        batch.put(LAST_SEQ_KEY, SEQ.pack(self.seq))
        batch.put(checkpoint_key(self.seq), self._encoded_meta)
        batch.put(model_key(self.seq), self._model_blob)
        for old in self._pruned:
            batch.delete(checkpoint_key(old))
            batch.delete(model_key(old))
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

    def release(self) -> int:
        """Free the landed committing layer's memory in steps; return how many items went.

        Call it after ``end_commit``, in any thread (the checkpoint's thread, so that the
        processing loop's thread does not stop for it: see :mod:`state.release`). Nothing to do
        before ``end_commit`` or a second time.
        """
        garbage, self._garbage = self._garbage, []
        return release_in_steps(garbage)

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


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return "no space left on device" in str(exc).lower()
