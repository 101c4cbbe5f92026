"""Expiring stores: the pending labels and the learned ids, kept by event id until they expire.

An :class:`ExpiringStore` holds opaque bytes keyed by event id (``str``), each with an event
time ``ts`` (float seconds), and removes the entries older than a time on :meth:`~ExpiringStore.expire`.
riverbed keeps two, under two names for the one contract:

:data:`PendingLabels`
    What was predicted for an event, kept until its label arrives: the runtime puts an entry
    when it predicts, gets and deletes it when the label arrives, and expires entries whose
    label never came.
:data:`LearnedIds`
    The ids whose label was learned (values ``b""``), kept for ``[labels] ttl_s`` to recognise
    duplicate labels.

Two implementations:

:class:`MemoryExpiringStore`
    A plain dict plus a min-heap on ``ts``; for tests and for running without a state dir.
:class:`RocksExpiringStore`
    Backed by the checkpoint database (``StateStore.pending`` and ``StateStore.learned``, one
    :class:`KeyLayout` each). Every change stays in an in-memory overlay until
    ``StateStore.commit`` writes it in the same atomic batch as the model and the offsets, so
    the entries on disk always match the newest checkpoint.

Two-phase commit (``StateStore.begin_commit`` / ``end_commit``): ``begin_commit`` freezes the
overlay into a :class:`FrozenOverlay` (the *committing layer*) and starts a fresh, empty live
overlay. While the checkpoint batch is written (in another thread), reads consult the live
overlay, then the committing layer, then the database; changes go to the live overlay only, and
nobody changes the committing layer. ``end_commit`` drops the layer (the database now holds it);
``abort_commit`` merges it back under the live overlay (live changes win).

RocksDB layout (all keys and values are raw bytes; see :mod:`state.store`). A
:class:`KeyLayout` names the three key kinds; the store keeps two sets in one database,
:data:`PENDING_LAYOUT` (``StateStore.pending``) and :data:`LEARNED_LAYOUT`
(``StateStore.learned``)::

    b"p/" + id_utf8             -> ts8 + value         (b"l/" for learned ids)
    b"t/" + ts8 + id_utf8       -> b""                 (b"lt/") time index, scanned by expire()
    b"meta/pending_count"       -> u64 big-endian      (b"meta/learned_count") live entries at
                                                       the last commit

``ts8`` is the IEEE-754 double in big-endian order with the sign bit flipped for non-negative
numbers and every bit flipped for negative ones, so that byte order equals numeric order (see
:func:`encode_ts`).

Hot path: an id put and removed again before the next commit never had a key in the database,
so no time-index key is built for it at all: the overlay writes the index keys of *fresh* ids
(put since the last commit, absent from the database) only when a commit stages them
(:meth:`FrozenOverlay.stage_into`). The database keys and values are the same as when every
put built its index key at once.

Neither implementation is thread-safe: use one from a single thread (or one asyncio loop).
Only a :class:`FrozenOverlay` may be read from another thread (it is never changed).
"""

from __future__ import annotations

import abc
import heapq
import itertools
import math
import struct
import time
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import rocksdict

from state.errors import CorruptStateError, StateError

TS_SIZE: Final = 8


YIELD_EVERY: Final = 256
""":meth:`FrozenOverlay.stage_into` runs in the checkpoint's thread; every 256 entries it sleeps
for 0 s, which releases the GIL, so the processing loop waits at most that long (0.2-0.5 ms) for
it instead of Python's 5 ms switch interval."""


@dataclass(frozen=True)
class KeyLayout:
    """Where one :class:`RocksExpiringStore` keeps its entries in the shared database.

    Attributes
    ----------
    name
        What the entries are, for messages (``"pending labels"``).
    entry_prefix
        ``entry_prefix + id_utf8 -> ts8 + value``.
    time_prefix
        ``time_prefix + ts8 + id_utf8 -> b""``; must not be a prefix of any other key kind.
    count_key
        The live count as of the last commit.
    """

    name: str
    entry_prefix: bytes
    time_prefix: bytes
    count_key: bytes

    def entry_key(self, event_id: str) -> bytes:
        return self.entry_prefix + event_id.encode("utf-8")

    def time_key(self, ts: float, event_id: str) -> bytes:
        return self.time_prefix + encode_ts(ts) + event_id.encode("utf-8")

    def parse_time_key(self, key: bytes) -> tuple[float, str]:
        header = len(self.time_prefix) + TS_SIZE
        if len(key) < header:
            raise CorruptStateError(
                f"time-index key {key!r} in the state dir is too short: the state dir is "
                f"damaged; start from a fresh [state] dir"
            )
        try:
            event_id = key[header:].decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptStateError(
                f"time-index key {key!r} in the state dir holds an id that is not UTF-8: the "
                f"state dir is damaged; start from a fresh [state] dir"
            ) from None
        return decode_ts(key[len(self.time_prefix) : header]), event_id


PENDING_LAYOUT: Final = KeyLayout("pending labels", b"p/", b"t/", b"meta/pending_count")
"""Pending labels: what was predicted for an event, until its label arrives."""
LEARNED_LAYOUT: Final = KeyLayout("learned ids", b"l/", b"lt/", b"meta/learned_count")
"""Learned ids: events whose label was learned, until they expire (duplicate detection)."""

_DOUBLE = struct.Struct(">d")
_U64 = struct.Struct(">Q")
_SIGN_BIT: Final = 1 << 63
_ALL_BITS: Final = (1 << 64) - 1


_pack_double = _DOUBLE.pack
_from_bytes = int.from_bytes


def encode_ts(ts: float) -> bytes:
    """Encode an event time as 8 bytes whose byte order equals numeric order.

    Parameters
    ----------
    ts
        Event time in seconds; any float except NaN. ``-0.0`` is stored as ``0.0``.

    Returns
    -------
    bytes
        8 bytes; ``encode_ts(a) < encode_ts(b)`` exactly when ``a < b``.
    """
    bits = _from_bytes(_pack_double(ts + 0.0), "big")  # + 0.0 turns -0.0 into 0.0
    return (bits | _SIGN_BIT if bits < _SIGN_BIT else bits ^ _ALL_BITS).to_bytes(8, "big")


def decode_ts(raw: bytes) -> float:
    """Inverse of :func:`encode_ts`."""
    (bits,) = _U64.unpack(raw)
    bits = bits ^ _SIGN_BIT if bits & _SIGN_BIT else bits ^ _ALL_BITS
    return _DOUBLE.unpack(_U64.pack(bits))[0]


def _checked_ts(ts: float, name: str = "ts") -> float:
    ts = float(ts)
    if math.isnan(ts):
        raise ValueError(f"{name} is NaN: pending labels need a comparable event time")
    return ts + 0.0


def _checked_id(event_id: str) -> str:
    if not isinstance(event_id, str):
        raise TypeError(f"event ids are str, got {type(event_id).__name__}")
    return event_id


class ExpiringStore(abc.ABC):
    """Opaque bytes keyed by event id, each with an event time, expirable by time."""

    @abc.abstractmethod
    def get(self, event_id: str) -> bytes | None:
        """Return the value stored for ``event_id``, or ``None`` if there is none."""

    @abc.abstractmethod
    def put(self, event_id: str, ts: float, value: bytes) -> None:
        """Store ``value`` for ``event_id`` at event time ``ts``, replacing any earlier entry."""

    @abc.abstractmethod
    def delete(self, event_id: str) -> None:
        """Remove the entry for ``event_id``; no-op if there is none."""

    @abc.abstractmethod
    def expire(self, before_ts: float) -> int:
        """Remove every entry whose ``ts < before_ts``.

        Returns
        -------
        int
            How many entries were removed.
        """

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of live entries (exact)."""


PendingLabels: TypeAlias = ExpiringStore
"""The pending-label store: event id -> what was predicted, until the label arrives."""
LearnedIds: TypeAlias = ExpiringStore
"""The learned-id store: event id -> ``b""`` once its label was learned, until it expires."""


class MemoryExpiringStore(ExpiringStore):
    """An in-memory expiring store: a dict and a lazily cleaned min-heap on ``ts``.

    Nothing survives the process; use :class:`RocksExpiringStore` (via ``StateStore.pending``)
    for state that must.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, bytes]] = {}
        self._by_time: list[tuple[float, str]] = []

    def get(self, event_id: str) -> bytes | None:
        entry = self._entries.get(event_id if event_id.__class__ is str else _checked_id(event_id))
        return None if entry is None else entry[1]

    def put(self, event_id: str, ts: float, value: bytes) -> None:
        if event_id.__class__ is not str:
            event_id = _checked_id(event_id)
        ts = float(ts)
        if ts != ts:
            _checked_ts(ts)  # raises
        ts += 0.0
        self._entries[event_id] = (ts, value if value.__class__ is bytes else bytes(value))
        heapq.heappush(self._by_time, (ts, event_id))
        if len(self._by_time) > 2 * len(self._entries) + 1024:
            self._rebuild_heap()

    def delete(self, event_id: str) -> None:
        self._entries.pop(_checked_id(event_id), None)

    def expire(self, before_ts: float) -> int:
        before_ts = _checked_ts(before_ts, "before_ts")
        removed = 0
        heap = self._by_time
        while heap and heap[0][0] < before_ts:
            ts, event_id = heapq.heappop(heap)
            entry = self._entries.get(event_id)
            if entry is not None and entry[0] == ts:  # else a stale heap item: overwritten/deleted
                del self._entries[event_id]
                removed += 1
        return removed

    def __len__(self) -> int:
        return len(self._entries)

    def _rebuild_heap(self) -> None:
        self._by_time = [(ts, event_id) for event_id, (ts, _) in self._entries.items()]
        heapq.heapify(self._by_time)


class _Tombstone:
    """Overlay marker: the entry is deleted (in the overlay; maybe still in the database)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TOMBSTONE"


TOMBSTONE: Final = _Tombstone()


@dataclass(frozen=True, eq=False)
class FrozenOverlay:
    """One :class:`RocksExpiringStore`'s changes as of ``StateStore.begin_commit``.

    Built by :meth:`RocksExpiringStore.freeze`. Nobody changes it until the commit ends or is
    aborted (new changes go to the live overlay), so :meth:`stage_into` may run in any thread.

    Attributes
    ----------
    layout
        Whose keys these are.
    entries
        Event id -> ``(ts, value)``, or :data:`TOMBSTONE` for a deletion.
    index_changes
        Time-index key -> put (``True``) or delete (``False``), for ids that are not fresh.
    fresh
        Ids in ``entries`` (as puts) that the database does not hold; their time-index puts
        are implied (``time_key(ts, id)`` of the entry) and written by :meth:`stage_into`.
    count
        Live entries as of the freeze: the count this commit stores.
    """

    layout: KeyLayout
    entries: dict[str, tuple[float, bytes] | _Tombstone]
    index_changes: dict[bytes, bool]
    fresh: set[str]
    count: int

    def stage_into(self, batch: rocksdict.WriteBatch) -> None:
        """Add the changes and the count to ``batch`` (a raw-mode WriteBatch). Reads only."""
        put, delete = batch.put, batch.delete
        entry_prefix, time_prefix, fresh = self.layout.entry_prefix, self.layout.time_prefix, self.fresh
        pack, from_bytes = _pack_double, _from_bytes
        entries = iter(self.entries.items())
        while chunk := list(itertools.islice(entries, YIELD_EVERY)):
            time.sleep(0)  # let the processing loop's thread take the GIL (see YIELD_EVERY)
            for event_id, entry in chunk:  # encode_ts inlined: this runs once per entry
                raw_id = event_id.encode("utf-8")
                if entry is TOMBSTONE:
                    delete(entry_prefix + raw_id)
                    continue
                ts, value = entry  # type: ignore[misc]
                bits = from_bytes(pack(ts), "big")
                ts8 = (bits | _SIGN_BIT if bits < _SIGN_BIT else bits ^ _ALL_BITS).to_bytes(8, "big")
                put(entry_prefix + raw_id, ts8 + value)
                if event_id in fresh:  # its index put is implied (see the module docstring)
                    put(time_prefix + ts8 + raw_id, b"")
        changes = iter(self.index_changes.items())
        while index_chunk := list(itertools.islice(changes, YIELD_EVERY)):
            time.sleep(0)
            for key, is_put in index_chunk:
                if is_put:
                    put(key, b"")
                else:
                    delete(key)
        put(self.layout.count_key, _U64.pack(self.count))


class RocksExpiringStore(ExpiringStore):
    """An expiring store in the checkpoint database, changed through an in-memory overlay.

    Reads consult the overlay first, then the committing layer (while a commit is in flight),
    then the database. Writes (``put``, ``delete``, ``expire``) only change the overlay.
    ``StateStore.begin_commit`` freezes the overlay into the committing layer (:meth:`freeze`),
    whose :meth:`FrozenOverlay.stage_into` fills the checkpoint batch; ``end_commit`` drops the
    layer once the batch is durable (:meth:`mark_committed`), ``abort_commit`` merges it back
    (:meth:`unfreeze`). Closing the store without a commit discards the overlay and the
    committing layer, exactly as a crash would.

    Do not construct this yourself; use ``StateStore.pending`` or ``StateStore.learned``.

    Parameters
    ----------
    db
        The store's database, opened with ``raw_mode=True``.
    read_only
        Refuse ``put``, ``delete`` and ``expire`` (the store was opened read-only).
    layout
        Which keys to use; one layout per independent set of entries in the database.
    """

    def __init__(
        self,
        db: rocksdict.Rdict,
        *,
        read_only: bool = False,
        layout: KeyLayout = PENDING_LAYOUT,
    ) -> None:
        self._db = db
        self._read_only = read_only
        self.layout = layout
        self._overlay: dict[str, tuple[float, bytes] | _Tombstone] = {}
        self._index_changes: dict[bytes, bool] = {}  # time-index key -> put (True) / delete
        # Puts of the overlay and of the committing layer; lazily cleaned.
        self._overlay_by_time: list[tuple[float, str]] = []
        # Ids put since the last commit while the database had no entry for them (nor the
        # committing layer, if any). Removing one just forgets the overlay entry: the database
        # never saw it, so the commit need not delete it. With labels that follow their events
        # within one checkpoint interval this halves the checkpoint batch (`make bench`).
        # Invariant: every fresh id has a put in the overlay.
        self._fresh: set[str] = set()
        self._frozen: FrozenOverlay | None = None  # the committing layer, while one is in flight
        self._db_expired_below: bytes | None = None  # DB time index already expired up to here
        self._committed_count = self._read_committed_count()
        self._count = self._committed_count

    # -- ExpiringStore -------------------------------------------------------------------------

    # get, put and delete run once or twice per record: the checks are inlined.

    def get(self, event_id: str) -> bytes | None:
        if event_id.__class__ is not str:
            event_id = _checked_id(event_id)
        entry = self._overlay.get(event_id)
        if entry is None:
            entry = self._base_entry(event_id)
            return None if entry is None else entry[1]
        return None if entry is TOMBSTONE else entry[1]  # type: ignore[index]

    def put(self, event_id: str, ts: float, value: bytes) -> None:
        if self._read_only:
            self._refuse_if_read_only("put")
        if event_id.__class__ is not str:
            event_id = _checked_id(event_id)
        ts = float(ts)
        if ts != ts:
            _checked_ts(ts)  # raises
        ts += 0.0
        if value.__class__ is not bytes:
            value = bytes(value)
        entry = self._overlay.get(event_id)
        if entry is None:
            base = self._base_entry(event_id)
            if base is None:  # neither the database nor the committing layer will hold it
                self._fresh.add(event_id)  # its index key is implied until the commit
                self._count += 1
            else:  # its old index key is (or will be, once the commit lands) in the database
                self._index_changes[self.layout.time_key(base[0], event_id)] = False
                self._index_changes[self.layout.time_key(ts, event_id)] = True
        elif entry is TOMBSTONE:
            self._count += 1
            self._index_changes[self.layout.time_key(ts, event_id)] = True
        elif event_id not in self._fresh:  # a fresh id's old index key was never written
            self._index_changes[self.layout.time_key(entry[0], event_id)] = False  # type: ignore[index]
            self._index_changes[self.layout.time_key(ts, event_id)] = True
        self._overlay[event_id] = (ts, value)
        heapq.heappush(self._overlay_by_time, (ts, event_id))

    def delete(self, event_id: str) -> None:
        if self._read_only:
            self._refuse_if_read_only("delete")
        if event_id.__class__ is not str:
            event_id = _checked_id(event_id)
        entry = self._overlay.get(event_id)
        if entry is None:
            entry = self._base_entry(event_id)
            if entry is None:
                return
        elif entry is TOMBSTONE:
            return
        self._remove(event_id, entry[0])  # type: ignore[index]

    def expire(self, before_ts: float) -> int:
        """Remove every entry whose ``ts < before_ts``, in the overlay and in the database.

        Overlay and committing-layer entries are found through a min-heap (a committing-layer
        entry whose id has an overlay entry is skipped: the overlay is newer); committed
        entries through the database's time index, scanned from its prefix (``b"t/"``) up to
        ``before_ts`` (a database entry whose id has an overlay or committing-layer entry is
        skipped). Removals go into the overlay.
        Until a commit lands the database does not change, so a later call resumes the scan
        where the previous one stopped.

        Returns
        -------
        int
            How many entries were removed.
        """
        self._refuse_if_read_only("expire")
        before_ts = _checked_ts(before_ts, "before_ts")
        removed = 0

        frozen_entries = {} if self._frozen is None else self._frozen.entries
        heap = self._overlay_by_time
        while heap and heap[0][0] < before_ts:
            ts, event_id = heapq.heappop(heap)
            entry = self._overlay.get(event_id)
            if entry is None:
                entry = frozen_entries.get(event_id)
            if isinstance(entry, tuple) and entry[0] == ts:  # else stale: overwritten/deleted
                self._remove(event_id, ts)
                removed += 1

        bound = self.layout.time_prefix + encode_ts(before_ts)
        start = self._db_expired_below or self.layout.time_prefix
        if start < bound:
            victims: list[tuple[str, float]] = []
            for key in self._db_keys_between(start, bound):
                ts, event_id = self.layout.parse_time_key(key)
                if event_id in self._overlay or event_id in frozen_entries:
                    continue  # superseded by a newer entry (removed above if it expired)
                victims.append((event_id, ts))
            for event_id, ts in victims:
                self._remove(event_id, ts)
            removed += len(victims)
            self._db_expired_below = bound
        return removed

    def __len__(self) -> int:
        return self._count

    # -- used by StateStore --------------------------------------------------------------------

    @property
    def overlay_size(self) -> int:
        """Number of event ids changed in the live overlay (since the last ``begin_commit``)."""
        return len(self._overlay)

    @property
    def frozen(self) -> FrozenOverlay | None:
        """The committing layer while a commit is in flight, else ``None``."""
        return self._frozen

    def freeze(self) -> FrozenOverlay:
        """Move the overlay into a new committing layer and start an empty overlay.

        Raises
        ------
        StateError
            A committing layer exists already (a commit is in flight).
        """
        if self._frozen is not None:
            raise StateError(
                f"cannot freeze the {self.layout.name}: a commit is already in flight; end or "
                f"abort it first"
            )
        frozen = FrozenOverlay(
            self.layout, self._overlay, self._index_changes, self._fresh, self._count
        )
        self._frozen = frozen
        self._overlay = {}
        self._index_changes = {}
        self._fresh = set()
        # The heap keeps the committing layer's puts: expire() still finds them there.
        return frozen

    def mark_committed(self) -> list[Any]:
        """The committing layer's batch is durable: the database now holds it; drop it.

        Returns the containers nobody uses any more (the layer's and the expiry heap that still
        held its entries) for the caller to free, e.g. in steps in another thread
        (:func:`state.release.release_in_steps`): freeing them here, at once, held the GIL for
        several milliseconds per 30,000 entries (see :mod:`state.release`).
        """
        frozen = self._require_frozen("mark as committed")
        self._frozen = None
        self._committed_count = frozen.count
        self._db_expired_below = None  # the database changed under the incremental scan
        old_heap = self._overlay_by_time
        self._rebuild_heap()
        return [old_heap, frozen.entries, frozen.index_changes, frozen.fresh]

    def unfreeze(self) -> None:
        """The commit failed: merge the committing layer back under the overlay (overlay wins).

        The result is as if :meth:`freeze` had never been called, plus the changes made since.
        """
        frozen = self._require_frozen("unfreeze")
        # Fresh means "not in the database": a live id that was fresh only over a committing
        # tombstone may be in the database, and a frozen fresh id changed live has a (stale)
        # overlay index delete; both are left non-fresh (deleting a missing key is harmless).
        fresh = {event_id for event_id in self._fresh if event_id not in frozen.entries}
        fresh.update(event_id for event_id in frozen.fresh if event_id not in self._overlay)
        entries = frozen.entries  # nobody else holds it any more: reuse it
        entries.update(self._overlay)
        index_changes = frozen.index_changes
        index_changes.update(self._index_changes)
        for event_id in self._fresh:
            if event_id not in fresh:  # its implied index put must now be written explicitly
                index_changes[self.layout.time_key(entries[event_id][0], event_id)] = True  # type: ignore[index]
        self._overlay = entries
        self._index_changes = index_changes
        self._fresh = fresh
        self._frozen = None
        # The database is unchanged: the scan position stays valid (every id it passed has an
        # overlay entry), and the heap still holds every merged put. Counts are unchanged.

    def discard_overlay(self) -> None:
        """Forget every change since the last commit, committing layer included (a crash)."""
        self._frozen = None
        self._overlay.clear()
        self._index_changes.clear()
        self._overlay_by_time.clear()
        self._fresh.clear()
        self._db_expired_below = None
        self._count = self._committed_count

    # -- internals -----------------------------------------------------------------------------

    def _require_frozen(self, action: str) -> FrozenOverlay:
        if self._frozen is None:
            raise StateError(
                f"cannot {action} the committing {self.layout.name}: no commit is in flight"
            )
        return self._frozen

    def _rebuild_heap(self) -> None:
        self._overlay_by_time = [
            (entry[0], event_id)
            for event_id, entry in self._overlay.items()
            if isinstance(entry, tuple)
        ]
        heapq.heapify(self._overlay_by_time)

    def _remove(self, event_id: str, ts: float) -> None:
        fresh = self._fresh
        if event_id in fresh:  # never in the database: forget it instead of deleting it
            fresh.discard(event_id)  # (its index key was implied, never built)
            del self._overlay[event_id]
        else:
            self._index_changes[self.layout.time_key(ts, event_id)] = False
            self._overlay[event_id] = TOMBSTONE
        self._count -= 1

    def _current(self, event_id: str) -> tuple[float, bytes] | None:
        """The newest entry: overlay, then committing layer, then database."""
        entry = self._overlay.get(event_id)
        if entry is None:
            return self._base_entry(event_id)
        return None if entry is TOMBSTONE else entry  # type: ignore[return-value]

    def _base_entry(self, event_id: str) -> tuple[float, bytes] | None:
        """The entry under the overlay: committing layer, then database."""
        frozen = self._frozen
        if frozen is not None:
            entry = frozen.entries.get(event_id)
            if entry is not None:
                return None if entry is TOMBSTONE else entry  # type: ignore[return-value]
        raw = self._db_get(event_id)
        return None if raw is None else (decode_ts(raw[:TS_SIZE]), raw[TS_SIZE:])

    def _db_get(self, event_id: str) -> bytes | None:
        try:
            raw = self._db.get(self.layout.entry_prefix + event_id.encode("utf-8"))
        except Exception as exc:  # rocksdict raises plain Exception (checksum mismatch, I/O)
            raise self._unreadable(exc) from exc
        if raw is not None and len(raw) < TS_SIZE:
            raise CorruptStateError(
                f"{self.layout.name} entry {event_id!r} in the state dir is {len(raw)} bytes, "
                f"shorter than its {TS_SIZE}-byte event time: the state dir is damaged; start "
                f"from a fresh [state] dir"
            )
        return raw

    def _db_keys_between(self, start: bytes, stop: bytes) -> list[bytes]:
        keys = []
        it = self._db.iter()
        it.seek(start)
        while it.valid():
            key = it.key()
            if key >= stop:
                break
            keys.append(key)
            it.next()
        try:
            it.status()  # valid() is False both at the end and after an error
        except Exception as exc:  # rocksdict raises plain Exception
            raise self._unreadable(exc) from exc
        return keys

    def _unreadable(self, exc: Exception) -> CorruptStateError:
        detail = " ".join(str(exc).split())
        return CorruptStateError(
            f"the {self.layout.name} in the state dir are unreadable (RocksDB: {detail}): the "
            f"checkpoints are intact; move the state dir aside and restart riverbed to start "
            f"from scratch"
        )

    def _read_committed_count(self) -> int:
        raw = self._db.get(self.layout.count_key)
        if raw is None:
            return 0
        if len(raw) != _U64.size:
            raise CorruptStateError(
                f"the count of {self.layout.name} in the state dir is {len(raw)} bytes, not 8: "
                f"the state dir is damaged; start from a fresh [state] dir"
            )
        return _U64.unpack(raw)[0]

    def _refuse_if_read_only(self, operation: str) -> None:
        if self._read_only:
            raise StateError(
                f"cannot {operation} {self.layout.name}: the state store was opened read-only "
                f"(as `riverbed status` does); open it read-write to change it"
            )


