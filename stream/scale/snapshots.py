"""Model snapshots on the compacted ``models`` topic: chunking, headers, reassembly, verification.

A snapshot is the sealed model bytes of :func:`stream.engine.model_bytes.seal_model_state` (the same
bytes a checkpoint carries), split into chunks of at most ``chunk_bytes`` so that each record stays
under the broker's message limit. Every chunk has its own key, ``<model-set name>/<i>``: a compacted
topic keeps only the newest record per key, so one key for all chunks would lose all but the last.
Headers name the snapshot id, the chunk index and count, the version (labels learned), the
checkpoint offsets (JSON), the SHA-256 of the whole sealed blob and the creation time.

Compaction leaves chunks of older snapshots behind (e.g. chunk 3 of an old, larger snapshot), so
:class:`Reassembler` groups chunks by snapshot id and only completes a snapshot when every one of its
chunks has arrived. :func:`verify_snapshot` checks the total SHA-256 and then hands the bytes to
:func:`stream.engine.model_bytes.load_model_state`, which verifies the seal (SHA-256, HMAC with
``RIVERBED_MODEL_KEY``, format) before it unpickles anything. Bytes that fail are never unpickled.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from state.errors import IncompatibleStateError, StateError
from stream.engine.model_bytes import load_model_state

#: Default chunk size: under the broker's default 1 MiB ``message.max.bytes`` with room for headers.
DEFAULT_CHUNK_BYTES = 512 * 1024

H_ID = "riverbed-snapshot-id"
H_INDEX = "riverbed-snapshot-chunk"
H_COUNT = "riverbed-snapshot-chunks"
H_VERSION = "riverbed-snapshot-version"
H_OFFSETS = "riverbed-snapshot-offsets"
H_SHA256 = "riverbed-snapshot-sha256"
H_CREATED = "riverbed-snapshot-created"
H_SIZE = "riverbed-snapshot-size"

#: Bound on the number of distinct partial snapshots kept while reassembling (memory bound).
MAX_PENDING_SNAPSHOTS = 4


class SnapshotRejected(Exception):
    """A snapshot (or one of its chunks) failed verification; ``reason`` is a metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ChunkHeader:
    """The parsed headers of one snapshot chunk."""

    snapshot_id: str
    index: int
    count: int
    version: int
    offsets: dict
    sha256: str
    created: float
    size: int


@dataclass(frozen=True)
class Chunk:
    """One record to publish to ``models``: key, value and Kafka headers."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass
class Snapshot:
    """A fully reassembled (not yet verified) snapshot."""

    snapshot_id: str
    version: int
    offsets: dict
    sha256: str
    created: float
    blob: bytes


def chunk_key(name: str, index: int) -> bytes:
    """The record key of chunk ``index`` of the model set ``name`` (distinct per chunk)."""
    return f"{name}/{index}".encode()


def make_chunks(
    blob: bytes,
    *,
    name: str,
    version: int,
    offsets: dict | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    snapshot_id: str | None = None,
    created: float | None = None,
) -> list[Chunk]:
    """Split the sealed ``blob`` into chunk records with the snapshot headers."""
    if chunk_bytes <= 0:
        raise ValueError("chunk_bytes must be positive")
    if version < 0:
        raise ValueError("version must be >= 0")
    sid = snapshot_id or uuid.uuid4().hex
    digest = hashlib.sha256(blob).hexdigest()
    stamp = time.time() if created is None else created
    pieces = [blob[i : i + chunk_bytes] for i in range(0, len(blob), chunk_bytes)] or [b""]
    common = [
        (H_ID, sid.encode()),
        (H_COUNT, str(len(pieces)).encode()),
        (H_VERSION, str(version).encode()),
        (H_OFFSETS, json.dumps(offsets or {}, sort_keys=True).encode()),
        (H_SHA256, digest.encode()),
        (H_CREATED, repr(float(stamp)).encode()),
        (H_SIZE, str(len(blob)).encode()),
    ]
    return [Chunk(chunk_key(name, i), piece, [*common, (H_INDEX, str(i).encode())]) for i, piece in enumerate(pieces)]


def parse_headers(headers: Iterable[tuple[str, bytes]] | None) -> ChunkHeader:
    """The chunk headers of a ``models`` record; :class:`SnapshotRejected` ("malformed") if not."""
    found = {k: v for k, v in (headers or ())}
    try:
        header = ChunkHeader(
            snapshot_id=found[H_ID].decode(),
            index=int(found[H_INDEX]),
            count=int(found[H_COUNT]),
            version=int(found[H_VERSION]),
            offsets=json.loads(found[H_OFFSETS]),
            sha256=found[H_SHA256].decode(),
            created=float(found[H_CREATED]),
            size=int(found[H_SIZE]),
        )
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise SnapshotRejected("malformed", f"snapshot chunk headers unreadable: {exc!r}") from None
    if not (0 <= header.index < header.count) or header.version < 0 or header.size < 0:
        raise SnapshotRejected("malformed", "snapshot chunk headers out of range")
    if not isinstance(header.offsets, dict) or not header.snapshot_id:
        raise SnapshotRejected("malformed", "snapshot chunk headers out of range")
    return header


@dataclass
class _Partial:
    first: ChunkHeader
    pieces: dict[int, bytes] = field(default_factory=dict)


class Reassembler:
    """Groups ``models`` records by snapshot id and yields each snapshot once it is complete.

    Chunks of older snapshots left by compaction are kept apart (they never mix into a newer
    snapshot: the id must match, and the count, version, digest and size must agree within an id).
    Snapshots with a version below the newest completed one are dropped. At most
    :data:`MAX_PENDING_SNAPSHOTS` partial snapshots are kept (the lowest versions are evicted).
    """

    def __init__(self, max_pending: int = MAX_PENDING_SNAPSHOTS) -> None:
        self._partials: dict[str, _Partial] = {}
        self._max_pending = max_pending
        self.newest_version = -1

    def feed(self, value: bytes | None, headers: Iterable[tuple[str, bytes]] | None) -> Snapshot | None:
        """Add one record; the snapshot it completes, if any. Raises :class:`SnapshotRejected`."""
        header = parse_headers(headers)
        if value is None:
            raise SnapshotRejected("malformed", "snapshot chunk has no value")
        if header.version < self.newest_version:
            return None  # stale chunk of an older snapshot
        partial = self._partials.get(header.snapshot_id)
        if partial is None:
            partial = self._partials[header.snapshot_id] = _Partial(header)
            self._evict()
            if header.snapshot_id not in self._partials:
                return None
        first = partial.first
        if (first.count, first.version, first.sha256, first.size) != (
            header.count,
            header.version,
            header.sha256,
            header.size,
        ):
            del self._partials[header.snapshot_id]
            raise SnapshotRejected("malformed", "snapshot chunks disagree on their headers")
        partial.pieces[header.index] = value
        if len(partial.pieces) < first.count:
            return None
        del self._partials[header.snapshot_id]
        blob = b"".join(partial.pieces[i] for i in range(first.count))
        self.newest_version = max(self.newest_version, first.version)
        for sid in [s for s, p in self._partials.items() if p.first.version < self.newest_version]:
            del self._partials[sid]
        return Snapshot(first.snapshot_id, first.version, first.offsets, first.sha256, first.created, blob)

    def _evict(self) -> None:
        while len(self._partials) > self._max_pending:
            oldest = min(self._partials, key=lambda s: self._partials[s].first.version)
            del self._partials[oldest]

    @property
    def pending(self) -> int:
        """How many partial snapshots are being held."""
        return len(self._partials)


def verify_snapshot(snapshot: Snapshot) -> dict:
    """The model state of a complete snapshot, verified; :class:`SnapshotRejected` if refused.

    The total SHA-256 from the headers is checked first, then
    :func:`stream.engine.model_bytes.load_model_state` verifies the seal (SHA-256, HMAC with
    ``RIVERBED_MODEL_KEY``, format) before unpickling. Meant to run off the event loop
    (``asyncio.to_thread``).
    """
    if len(snapshot.blob) != 0 and hashlib.sha256(snapshot.blob).hexdigest() != snapshot.sha256:
        raise SnapshotRejected("sha256", f"snapshot {snapshot.snapshot_id}: SHA-256 mismatch")
    if len(snapshot.blob) == 0:
        raise SnapshotRejected("malformed", f"snapshot {snapshot.snapshot_id}: empty")
    try:
        state = load_model_state(snapshot.blob)
    except IncompatibleStateError as exc:
        raise SnapshotRejected("incompatible", f"snapshot {snapshot.snapshot_id}: {exc}") from None
    except StateError as exc:
        raise SnapshotRejected("seal", f"snapshot {snapshot.snapshot_id}: {exc}") from None
    if not isinstance(state, dict) or "models" not in state:
        raise SnapshotRejected("malformed", f"snapshot {snapshot.snapshot_id}: no model set")
    return state


def reassemble_all(records: Sequence[tuple[bytes | None, Iterable[tuple[str, bytes]] | None]]) -> list[Snapshot]:
    """Every snapshot completed by ``records`` in order (rejected chunks skipped); for tests/tools."""
    out: list[Snapshot] = []
    r = Reassembler()
    for value, headers in records:
        try:
            snap = r.feed(value, headers)
        except SnapshotRejected:
            continue
        if snap is not None:
            out.append(snap)
    return out
