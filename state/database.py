"""How riverbed keeps a checkpoint in RocksDB: its keys, and the one write option it needs.

rocksdict is opened **always in raw mode** (its default mode pickles values and unpickles them
on read, so a crafted value would run code). Every key and value is plain bytes; the layout is
in :mod:`state.store`. The pending labels' and learned ids' keys are in :mod:`state.pending`.
"""

from __future__ import annotations

import struct
from typing import Final

import rocksdict

FORMAT_KEY: Final = b"meta/format"
FORMAT_VALUE: Final = b"riverbed-state 1"
CHECKPOINT_PREFIX: Final = b"ckpt/"
MODEL_PREFIX: Final = b"model/"
LAST_SEQ_KEY: Final = b"meta/last_seq"

SEQ: Final = struct.Struct(">Q")
"""A checkpoint's sequence number in a key: u64 big-endian, so keys sort by seq."""


def checkpoint_key(seq: int) -> bytes:
    """The key of checkpoint ``seq``'s encoded meta."""
    return CHECKPOINT_PREFIX + SEQ.pack(seq)


def model_key(seq: int) -> bytes:
    """The key of checkpoint ``seq``'s model bytes."""
    return MODEL_PREFIX + SEQ.pack(seq)


def synced() -> rocksdict.WriteOptions:
    """Write options whose write returns only once the write-ahead log is fsync'ed."""
    options = rocksdict.WriteOptions()
    options.sync = True
    return options


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (RocksDB's messages may hold newlines)."""
    return " ".join(str(exc).split())
