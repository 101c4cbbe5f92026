"""Errors raised by :mod:`state` (checkpoints, pending labels, sealed model bytes).

Every message names what is wrong *and* what the operator can do about it; the CLI prints it on
one line and exits with :attr:`StateError.exit_code`. :mod:`state` knows nothing of Kafka, River
or the CLI, so these do not derive from ``stream.errors.RiverbedError``; callers catch
:class:`StateError` alongside it.
"""

from __future__ import annotations

import os


class StateError(Exception):
    """Root of the errors about riverbed's on-disk state."""

    exit_code = 2


class CorruptStateError(StateError):
    """Stored bytes are damaged: truncated, checksum or HMAC mismatch, undecodable metadata."""


class IncompatibleStateError(StateError):
    """Stored bytes are intact but were written by another format or producer version."""


class MissingStateError(StateError):
    """A read-only open found no state at the given directory (nothing was checkpointed there)."""


class StateLockedError(StateError):
    """The state directory is held open for writing by another process (or store).

    Parameters
    ----------
    path
        The state directory that is locked.
    detail
        The underlying RocksDB message, appended for diagnosis.
    """

    def __init__(self, path: str | os.PathLike[str], detail: str = "") -> None:
        self.path = os.fspath(path)
        self.detail = detail
        message = (
            f"state dir {self.path} is in use by another process: stop the other `riverbed run` "
            f"that uses it, or point [state] dir at another directory"
        )
        if detail:
            message += f" (rocksdb: {detail})"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[StateLockedError], tuple[str, str]]:
        # Rebuild from the constructor's arguments, not the formatted message.
        return (type(self), (self.path, self.detail))


class CheckpointUnreadable(CorruptStateError):
    """A checkpoint is refused: neither its RocksDB copy nor its file copy can be read.

    The caller falls back to the next older checkpoint (:meth:`state.store.StateStore.load`).

    Parameters
    ----------
    path
        The state directory.
    seq
        The refused checkpoint.
    reasons
        Why each copy was refused, one short sentence each.
    """

    def __init__(self, path: str | os.PathLike[str], seq: int, reasons: tuple[str, ...]) -> None:
        self.path = os.fspath(path)
        self.seq = seq
        self.reasons = tuple(reasons)
        super().__init__(
            f"checkpoint {seq} in {self.path} is unreadable ({'; '.join(self.reasons)}): fall "
            f"back to an older checkpoint"
        )

    @property
    def reason(self) -> str:
        """The reasons as one line (for ``"refused": [{"seq", "reason"}]``)."""
        return "; ".join(self.reasons)

    def __reduce__(self) -> tuple[type[CheckpointUnreadable], tuple[str, int, tuple[str, ...]]]:
        return (type(self), (self.path, self.seq, self.reasons))


class DiskFullError(StateError):
    """A checkpoint could not be written because the disk is full (nothing committed is lost)."""
