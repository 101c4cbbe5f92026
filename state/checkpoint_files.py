"""A second, independent copy of every checkpoint: one checksummed file per checkpoint.

RocksDB keeps all checkpoints in the same database, so one damaged table file or one damaged
block can take several checkpoints down together. :class:`CheckpointFiles` keeps each
checkpoint's encoded meta and model bytes *also* as ``checkpoints/ckpt-<seq>.sealed`` in the
state dir, which :class:`state.store.StateStore` reads when the RocksDB copy is unreadable.

File layout (integers big-endian)::

    offset  size  field
    0       8     magic b"RVBDCKP1"
    8       8     seq (u64)
    16      4     meta length m (u32)
    20      8     model length n (u64)
    28      32    SHA-256 of bytes[0:28] + meta + model
    60      m     meta (msgpack, exactly as in RocksDB)
    60+m    n     model bytes

A file appears under its final name only after its RocksDB batch landed (it is written to
``ckpt-<seq>.sealed.tmp`` and fsync'ed before the batch, renamed and the folder fsync'ed after
it): a ``.sealed`` file therefore always describes a checkpoint that was committed.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import struct
from typing import Final

from state.errors import CorruptStateError

FOLDER: Final = "checkpoints"
MAGIC: Final = b"RVBDCKP1"
_HEADER = struct.Struct(">8sQIQ")
_DIGEST_SIZE = 32
_NAME = re.compile(r"ckpt-(\d+)\.sealed")


class CheckpointFiles:
    """The ``checkpoints/`` folder of a state dir.

    Parameters
    ----------
    state_dir
        The state dir; the folder is ``state_dir / "checkpoints"``.
    """

    def __init__(self, state_dir: pathlib.Path) -> None:
        self.folder = state_dir / FOLDER

    def path_of(self, seq: int) -> pathlib.Path:
        """Where checkpoint ``seq``'s file copy lives."""
        return self.folder / f"ckpt-{seq}.sealed"

    def seqs(self) -> list[int]:
        """Sequence numbers of the published file copies, newest first (``[]`` if no folder)."""
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        matches = (_NAME.fullmatch(name) for name in names)
        return sorted((int(m.group(1)) for m in matches if m), reverse=True)

    def write_unpublished(self, seq: int, encoded_meta: bytes, model_blob: bytes) -> pathlib.Path:
        """Write ``ckpt-<seq>.sealed.tmp`` and fsync it; :meth:`publish` renames it.

        Raises
        ------
        OSError
            The file could not be written (the partial file is removed).
        """
        self.folder.mkdir(exist_ok=True)
        tmp = self.path_of(seq).with_suffix(".sealed.tmp")
        header = _HEADER.pack(MAGIC, seq, len(encoded_meta), len(model_blob))
        digest = hashlib.sha256(header + encoded_meta + model_blob).digest()
        try:
            with open(tmp, "wb") as out:
                out.write(header + digest)
                out.write(encoded_meta)
                out.write(model_blob)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def publish(self, tmp: pathlib.Path, seq: int) -> None:
        """Rename a written file to its final name and fsync the folder."""
        os.replace(tmp, self.path_of(seq))
        self._sync_folder()

    def read(self, seq: int) -> tuple[bytes, bytes]:
        """The verified ``(encoded_meta, model_blob)`` of checkpoint ``seq``'s file copy.

        Raises
        ------
        FileNotFoundError
            There is no file copy.
        CorruptStateError
            The file is truncated, not a checkpoint file, of another seq, or its SHA-256 fails.
        OSError
            The file could not be read.
        """
        path = self.path_of(seq)
        data = path.read_bytes()
        start = _HEADER.size + _DIGEST_SIZE
        if len(data) < start:
            raise CorruptStateError(f"{path} is truncated ({len(data)} bytes)")
        magic, stored_seq, meta_size, model_size = _HEADER.unpack_from(data)
        if magic != MAGIC or stored_seq != seq:
            raise CorruptStateError(f"{path} is not the file copy of checkpoint {seq}")
        if len(data) != start + meta_size + model_size:
            raise CorruptStateError(
                f"{path} is {len(data)} bytes, its header says {start + meta_size + model_size}"
            )
        digest = data[_HEADER.size : start]
        if hashlib.sha256(data[: _HEADER.size] + data[start:]).digest() != digest:
            raise CorruptStateError(f"{path} fails its SHA-256 check")
        return data[start : start + meta_size], data[start + meta_size :]

    def digest_of(self, seq: int) -> bytes | None:
        """The SHA-256 stored in the file copy's header, or ``None`` if it cannot be read."""
        try:
            with open(self.path_of(seq), "rb") as src:
                head = src.read(_HEADER.size + _DIGEST_SIZE)
        except OSError:
            return None
        if len(head) < _HEADER.size + _DIGEST_SIZE or head[:8] != MAGIC:
            return None
        return head[_HEADER.size :]

    @staticmethod
    def digest(seq: int, encoded_meta: bytes, model_blob: bytes) -> bytes:
        """The SHA-256 a file copy of these bytes carries (to check a RocksDB copy against)."""
        header = _HEADER.pack(MAGIC, seq, len(encoded_meta), len(model_blob))
        return hashlib.sha256(header + encoded_meta + model_blob).digest()

    def remove(self, seqs: list[int]) -> None:
        """Delete the file copies of ``seqs`` (missing ones are fine)."""
        for seq in seqs:
            self.path_of(seq).unlink(missing_ok=True)

    def remove_unpublished(self) -> None:
        """Delete ``.tmp`` files left by a crash before their batch landed (or before rename)."""
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return
        for name in names:
            if name.endswith(".sealed.tmp"):
                (self.folder / name).unlink(missing_ok=True)

    def _sync_folder(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
