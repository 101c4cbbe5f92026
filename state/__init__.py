"""Riverbed's on-disk state: checkpoints, pending labels and sealed model bytes.

This package knows nothing of Kafka, River, :mod:`stream` or :mod:`learners`; it stores bytes
and small msgpack-able dicts. See :mod:`state.store` for the recovery contract.
"""

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
    ExpiringStore,
    KeyLayout,
    LearnedIds,
    MemoryExpiringStore,
    PendingLabels,
    RocksExpiringStore,
)
from state.sealed import seal, unseal
from state.store import Checkpoint, PendingCommit, StateStore

__all__ = [
    "Checkpoint",
    "CheckpointUnreadable",
    "CorruptStateError",
    "DiskFullError",
    "ExpiringStore",
    "FrozenOverlay",
    "IncompatibleStateError",
    "KeyLayout",
    "LEARNED_LAYOUT",
    "LearnedIds",
    "MemoryExpiringStore",
    "MissingStateError",
    "PENDING_LAYOUT",
    "PendingCommit",
    "PendingLabels",
    "RocksExpiringStore",
    "StateError",
    "StateLockedError",
    "StateStore",
    "seal",
    "unseal",
]
