"""Snapshot chunking, reassembly and verification (no Kafka): bad bytes are never unpickled."""

from __future__ import annotations

import pickle
import types

import pytest

from stream.engine import model_bytes
from stream.engine.model_bytes import seal_model_state
from stream.scale.snapshots import (
    Reassembler,
    SnapshotRejected,
    make_chunks,
    reassemble_all,
    verify_snapshot,
)

STATE = {"weights": list(range(2000)), "name": "m"}


@pytest.fixture
def unpickles(monkeypatch):
    """Records every unpickle done by model_bytes (the only place snapshots are unpickled)."""
    calls: list[int] = []

    def loads(data, *a, **k):
        calls.append(len(data))
        return pickle.loads(data, *a, **k)

    monkeypatch.setattr(model_bytes, "pickle", types.SimpleNamespace(loads=loads, dumps=pickle.dumps))
    return calls


def _records(chunks):
    return [(c.value, c.headers) for c in chunks]


def test_chunks_have_distinct_keys_and_roundtrip(monkeypatch, unpickles):
    monkeypatch.delenv("RIVERBED_MODEL_KEY", raising=False)
    blob = seal_model_state(STATE, None)
    chunks = make_chunks(blob, name="set", version=7, offsets={"labels": {"0": 3}}, chunk_bytes=1000)
    assert len(chunks) == -(-len(blob) // 1000) > 3
    assert len({c.key for c in chunks}) == len(chunks)
    assert chunks[0].key == b"set/0"
    assert all(len(c.value) <= 1000 for c in chunks)
    # out of order arrival still completes once
    (snap,) = reassemble_all(_records(list(reversed(chunks))))
    assert snap.blob == blob and snap.version == 7 and snap.offsets == {"labels": {"0": 3}}
    state = verify_snapshot(snap)
    assert state["models"] == STATE and state["sampler"] is None
    assert len(unpickles) == 1


def test_flipped_byte_is_rejected_and_never_unpickled(monkeypatch, unpickles):
    monkeypatch.delenv("RIVERBED_MODEL_KEY", raising=False)
    blob = seal_model_state(STATE, None)
    chunks = make_chunks(blob, name="set", version=1, chunk_bytes=800)
    records = _records(chunks)
    value, headers = records[2]
    records[2] = (value[:10] + bytes([value[10] ^ 0x01]) + value[11:], headers)
    (snap,) = reassemble_all(records)
    with pytest.raises(SnapshotRejected) as err:
        verify_snapshot(snap)
    assert err.value.reason == "sha256"
    # an attacker who also fixes the header digest is stopped by the seal
    import hashlib

    snap.sha256 = hashlib.sha256(snap.blob).hexdigest()
    with pytest.raises(SnapshotRejected) as err:
        verify_snapshot(snap)
    assert err.value.reason == "seal"
    assert unpickles == []


def test_wrong_hmac_key_is_rejected_and_never_unpickled(monkeypatch, unpickles):
    monkeypatch.setenv("RIVERBED_MODEL_KEY", "attacker-key")
    blob = seal_model_state(STATE, None)
    monkeypatch.setenv("RIVERBED_MODEL_KEY", "the-real-key")
    (snap,) = reassemble_all(_records(make_chunks(blob, name="set", version=2, chunk_bytes=4096)))
    with pytest.raises(SnapshotRejected) as err:
        verify_snapshot(snap)
    assert err.value.reason in {"seal", "incompatible"}
    assert unpickles == []
    # and the right key verifies
    good = seal_model_state(STATE, None)
    (snap,) = reassemble_all(_records(make_chunks(good, name="set", version=3, chunk_bytes=4096)))
    assert verify_snapshot(snap)["models"] == STATE
    assert len(unpickles) == 1


def test_stale_chunks_of_an_older_snapshot_do_not_mix(monkeypatch, unpickles):
    monkeypatch.delenv("RIVERBED_MODEL_KEY", raising=False)
    old = make_chunks(seal_model_state({"old": list(range(3000))}, None), name="set", version=5, chunk_bytes=1000)
    new_blob = seal_model_state(STATE, None)
    new = make_chunks(new_blob, name="set", version=9, chunk_bytes=1000)
    assert len(old) > len(new)
    # what compaction leaves: newest record per key; old chunks beyond the new count survive, and
    # an old chunk of a shared key may still be read before the new one replaces it
    r = Reassembler()
    stream = [old[len(new)], old[0], *new[:-1], old[-1], new[-1]]
    done = [s for c in stream if (s := r.feed(c.value, c.headers)) is not None]
    assert [s.version for s in done] == [9]
    assert done[0].blob == new_blob
    assert verify_snapshot(done[0])["models"] == STATE
    # older snapshots' chunks after the newer one completed are ignored and dropped
    assert all(r.feed(c.value, c.headers) is None for c in old)
    assert r.pending == 0
    assert len(unpickles) == 1


def test_malformed_headers_and_disagreeing_chunks(monkeypatch):
    monkeypatch.delenv("RIVERBED_MODEL_KEY", raising=False)
    r = Reassembler()
    with pytest.raises(SnapshotRejected) as err:
        r.feed(b"x", [("riverbed-snapshot-id", b"a")])
    assert err.value.reason == "malformed"
    a = make_chunks(b"a" * 3000, name="s", version=1, chunk_bytes=1000, snapshot_id="same")
    b = make_chunks(b"b" * 4000, name="s", version=1, chunk_bytes=1000, snapshot_id="same")
    assert r.feed(a[0].value, a[0].headers) is None
    with pytest.raises(SnapshotRejected):
        r.feed(b[1].value, b[1].headers)
    assert r.pending == 0
