"""Listing and reading checkpoints: the RocksDB copy, checked against the file copy.

A checkpoint has two copies (see :mod:`state.store`): its meta and model under their keys in
RocksDB, and ``checkpoints/ckpt-<seq>.sealed`` with a SHA-256. :class:`CheckpointReader` lists
the union of both and reads a checkpoint from whichever copy is intact, saying why it refused
the other.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

import msgpack
import rocksdict

from state.checkpoint_files import CheckpointFiles
from state.database import CHECKPOINT_PREFIX, LAST_SEQ_KEY, SEQ, checkpoint_key, model_key, one_line
from state.errors import CheckpointUnreadable, CorruptStateError
from state.opening import damaged

_Copy = tuple[bytes, dict, bytes]  # (encoded meta, meta, model bytes)


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


class CheckpointReader:
    """The checkpoints of one open state dir: which there are, and reading one.

    Parameters
    ----------
    db
        The open database (raw mode).
    path
        The state dir, for messages.
    files
        Its file copies.

    Attributes
    ----------
    seqs : list of int
        The stored checkpoints, newest first: every one with a RocksDB or a file copy.
    damage : list of str
        Problems the scan met that did not stop it.

    Raises
    ------
    CorruptStateError
        The checkpoint-key scan stopped with an error and no file copy can list the checkpoints,
        or a checkpoint key is malformed.
    """

    def __init__(self, db: rocksdict.Rdict, path: pathlib.Path, files: CheckpointFiles) -> None:
        self._db = db
        self._path = path
        self._files = files
        self.damage: list[str] = []
        db_seqs, scan_error = self._scan_db_seqs()
        file_seqs = files.seqs()
        if scan_error is not None:
            self.damage.append(f"the checkpoint list in RocksDB is unreadable ({scan_error})")
            if not file_seqs:
                raise CorruptStateError(damaged(path, files, Exception(scan_error)))
        self._db_seqs = set(db_seqs)
        self._last_seq = self._read_last_seq(db_seqs)
        self.seqs = sorted(self._db_seqs | set(file_seqs), reverse=True)

    def committed(self, seq: int, kept: list[int], pruned: list[int]) -> None:
        """Note that checkpoint ``seq``'s batch landed, keeping ``kept`` and deleting ``pruned``."""
        self._db_seqs = (self._db_seqs | {seq}) - set(pruned)
        self._last_seq = seq
        self.seqs = list(kept)

    def load(self, seq: int) -> Checkpoint | None:
        """Checkpoint ``seq`` from its RocksDB copy, else its file copy (see :meth:`StateStore.load`).

        Raises
        ------
        CheckpointUnreadable
            Neither copy can be read.
        """
        reasons: list[str] = []
        db_copy = self._read_db_copy(seq, reasons)
        file_digest = self._files.digest_of(seq)
        if db_copy is not None and file_digest in (None, _digest(seq, db_copy)):
            return _checkpoint(seq, db_copy, "rocksdb", reasons)
        if db_copy is not None:
            reasons.append("its RocksDB copy differs from the SHA-256 of its file copy")
        file_copy = self._read_file_copy(seq, reasons)
        if file_copy is not None:
            return _checkpoint(seq, file_copy, "file", reasons)
        if db_copy is not None:  # the file copy is the damaged one
            return _checkpoint(seq, db_copy, "rocksdb", reasons)
        if not reasons:
            return None
        raise CheckpointUnreadable(self._path, seq, tuple(reasons))

    def _read_db_copy(self, seq: int, reasons: list[str]) -> _Copy | None:
        try:
            encoded_meta = self._db.get(checkpoint_key(seq))
            model_blob = self._db.get(model_key(seq))
        except Exception as exc:  # rocksdict raises plain Exception (checksum mismatch, I/O)
            reasons.append(f"its RocksDB copy is unreadable ({one_line(exc)})")
            return None
        if encoded_meta is None:
            if seq in self._db_seqs:
                reasons.append("its RocksDB copy is gone")
            return None
        if model_blob is None:
            reasons.append("its RocksDB copy has no model bytes")
            return None
        meta = _decoded_meta(seq, encoded_meta, "RocksDB", reasons)
        return None if meta is None else (encoded_meta, meta, model_blob)

    def _read_file_copy(self, seq: int, reasons: list[str]) -> _Copy | None:
        path = self._files.path_of(seq)
        try:
            encoded_meta, model_blob = self._files.read(seq)
        except FileNotFoundError:
            if seq in self.seqs and seq not in self._db_seqs:
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
        meta = _decoded_meta(seq, encoded_meta, "file", reasons)
        return None if meta is None else (encoded_meta, meta, model_blob)

    def _scan_db_seqs(self) -> tuple[list[int], str | None]:
        seqs = []
        it = self._db.iter()
        it.seek(CHECKPOINT_PREFIX)
        while it.valid():
            key = it.key()
            if not key.startswith(CHECKPOINT_PREFIX):
                break
            suffix = key[len(CHECKPOINT_PREFIX) :]
            if len(suffix) != SEQ.size:
                raise CorruptStateError(
                    f"checkpoint key {key!r} in {self._path} is malformed: the state dir is "
                    f"damaged; start from a fresh [state] dir"
                )
            seqs.append(SEQ.unpack(suffix)[0])
            it.next()
        try:
            it.status()  # valid() is False both at the end and after an error
        except Exception as exc:  # rocksdict raises plain Exception
            return seqs, one_line(exc)
        return seqs, None

    def _read_last_seq(self, db_seqs: list[int]) -> int | None:
        """The seq of the newest batch that landed; ``None`` if RocksDB cannot say."""
        try:
            raw = self._db.get(LAST_SEQ_KEY)
        except Exception as exc:  # rocksdict raises plain Exception
            self.damage.append(f"the last checkpoint number is unreadable ({one_line(exc)})")
            return None
        stored = SEQ.unpack(raw)[0] if raw is not None and len(raw) == SEQ.size else 0
        return max([stored, *db_seqs])


def _decoded_meta(seq: int, encoded_meta: bytes, copy: str, reasons: list[str]) -> dict | None:
    try:
        meta = msgpack.unpackb(encoded_meta, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        reasons.append(f"the metadata of its {copy} copy does not decode ({exc})")
        return None
    if not isinstance(meta, dict) or meta.get("seq") != seq:
        reasons.append(f"the metadata of its {copy} copy is not checkpoint {seq}'s")
        return None
    return meta


def _digest(seq: int, copy: _Copy) -> bytes:
    return CheckpointFiles.digest(seq, copy[0], copy[2])


def _checkpoint(seq: int, copy: _Copy, source: str, reasons: list[str]) -> Checkpoint:
    encoded_meta, meta, model_blob = copy
    return Checkpoint(
        seq=seq,
        meta=meta,
        model_blob=model_blob,
        size_bytes=len(model_blob) + len(encoded_meta),
        copy=source,
        damage=tuple(reasons),
    )
