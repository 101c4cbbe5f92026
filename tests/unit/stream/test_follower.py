"""The scorer's snapshot follower without Kafka: good snapshots swap in, bad ones are never unpickled."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math

import pytest
from prometheus_client import CollectorRegistry

from learners import ModelSet
from stream.config import DEFAULTS, Config
from stream.devtools.datasets import open_dataset
from stream.engine.model_bytes import seal_model_state
from stream.engine.model_config import build_model_set
from stream.scale.follower import SnapshotFollower, SnapshotMetrics
from stream.scale.snapshots import H_VERSION, make_chunks

CFG = Config(DEFAULTS)
UNPICKLED: list[str] = []


def _unpickled(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Canary:
    """Unpickling it records that it happened: proof that bytes were (or were not) unpickled."""

    def __init__(self, tag: str):
        self.tag = tag

    def __reduce__(self):
        return (_unpickled, (self.tag,))


@pytest.fixture(autouse=True)
def no_key(monkeypatch):
    monkeypatch.delenv("RIVERBED_MODEL_KEY", raising=False)
    UNPICKLED.clear()


def trained(n: int) -> ModelSet:
    models = build_model_set(CFG)
    for x, y in open_dataset("sea", limit=n, seed=7).rows:
        served = models.predict(x)
        models.learn(x, y, served.record)
    return models


def follower() -> tuple[SnapshotFollower, CollectorRegistry]:
    registry = CollectorRegistry()
    return SnapshotFollower(CFG, SnapshotMetrics(registry)), registry


def feed_all(f: SnapshotFollower, chunks) -> list[bool]:
    async def go():
        return [await f.feed(c.value, c.headers) for c in chunks]

    return asyncio.run(go())


def sample(registry: CollectorRegistry, name: str, **labels) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_good_snapshot_in_chunks_is_swapped_in():
    models = trained(200)
    chunks = make_chunks(seal_model_state(models, None), name="riverbed", version=200, chunk_bytes=2000,
                         created=1_000.0)
    assert len(chunks) > 2
    f, registry = follower()
    f.serve_fresh()
    assert f.version == 0 and f.swaps == 0
    assert math.isnan(sample(registry, "riverbed_snapshot_age_seconds"))
    fresh = f.current.models
    assert feed_all(f, chunks) == [False] * (len(chunks) - 1) + [True]
    assert f.version == 200 and f.current.created == 1_000.0 and f.current.models is not fresh
    x = {"0": 1.0, "1": 2.0, "2": 3.0}
    assert f.current.models.predict(x).proba == models.predict(x).proba
    assert f.current.models.inputs is None  # a scorer never acts on drift itself
    assert sample(registry, "riverbed_snapshot_swaps_total") == 1
    assert sample(registry, "riverbed_scorer_model_version") == 200
    assert sample(registry, "riverbed_snapshot_age_seconds") > 0


def test_the_canary_is_unpickled_when_its_bytes_are_intact():
    """The proof below works: intact canary bytes are unpickled (and refused: not a model set)."""
    f, registry = follower()
    f.serve_fresh()
    chunks = make_chunks(seal_model_state(Canary("intact"), None), name="riverbed", version=5, chunk_bytes=100)
    assert not any(feed_all(f, chunks))
    assert UNPICKLED == ["intact"]
    assert f.version == 0
    assert sample(registry, "riverbed_snapshots_rejected_total", reason="malformed") == 1


def test_a_flipped_byte_is_rejected_counted_and_never_unpickled(caplog):
    f, registry = follower()
    good = make_chunks(seal_model_state(trained(50), None), name="riverbed", version=50, chunk_bytes=2000)
    assert feed_all(f, good)[-1] is True
    served = f.current
    blob = seal_model_state(Canary("tampered"), None)
    chunks = make_chunks(blob, name="riverbed", version=80, chunk_bytes=100)
    bad = chunks[1]
    chunks[1] = type(bad)(bad.key, bad.value[:7] + bytes([bad.value[7] ^ 0x01]) + bad.value[8:], bad.headers)
    with caplog.at_level(logging.WARNING, logger="stream.scale.follower"):
        assert not any(feed_all(f, chunks))
    assert UNPICKLED == []
    assert f.current is served and f.version == 50
    assert sample(registry, "riverbed_snapshots_rejected_total", reason="sha256") == 1
    assert len([r for r in caplog.records if "rejected" in r.message]) == 1
    # an attacker who also rewrites the digest header is stopped by the seal, before any unpickle
    flipped = blob[:-5] + bytes([blob[-5] ^ 0x01]) + blob[-4:]  # in the pickle, not the header
    assert hashlib.sha256(flipped).hexdigest() != hashlib.sha256(blob).hexdigest()
    assert not any(feed_all(f, make_chunks(flipped, name="riverbed", version=90, chunk_bytes=100)))
    assert UNPICKLED == []
    assert sample(registry, "riverbed_snapshots_rejected_total", reason="seal") == 1
    assert f.current is served


def test_a_wrong_hmac_is_rejected_and_never_unpickled(monkeypatch):
    monkeypatch.setenv("RIVERBED_MODEL_KEY", "not-the-trainers-key")
    forged = make_chunks(seal_model_state(Canary("forged"), None), name="riverbed", version=10, chunk_bytes=100)
    monkeypatch.setenv("RIVERBED_MODEL_KEY", "the-trainers-key")
    f, registry = follower()
    f.serve_fresh()
    assert not any(feed_all(f, forged))
    assert UNPICKLED == [] and f.version == 0
    assert sample(registry, "riverbed_snapshots_rejected_total", reason="seal") == 1
    signed = make_chunks(seal_model_state(trained(30), None), name="riverbed", version=30, chunk_bytes=4000)
    assert feed_all(f, signed)[-1] is True and f.version == 30


def test_older_and_equal_versions_are_ignored_unverified(monkeypatch):
    f, registry = follower()
    assert feed_all(f, make_chunks(seal_model_state(trained(40), None), name="riverbed", version=40))[-1]
    served = f.current
    for version in (40, 39, 1):
        chunks = make_chunks(seal_model_state(Canary(f"v{version}"), None), name="riverbed", version=version)
        assert not any(feed_all(f, chunks))
    assert UNPICKLED == []
    assert f.current is served and f.swaps == 1
    assert sample(registry, "riverbed_snapshots_rejected_total", reason="sha256") is None


def test_a_rejected_high_version_does_not_hide_later_good_snapshots():
    f, registry = follower()
    f.serve_fresh()
    blob = seal_model_state(trained(20), None)
    bad = make_chunks(blob[:-1] + bytes([blob[-1] ^ 0xFF]), name="riverbed", version=10_000)
    bad = [type(c)(c.key, c.value, [(k, v) for k, v in c.headers if k != "riverbed-snapshot-sha256"]
                   + [("riverbed-snapshot-sha256", hashlib.sha256(blob).hexdigest().encode())]) for c in bad]
    assert not any(feed_all(f, bad))
    assert sample(registry, "riverbed_snapshots_rejected_total", reason="sha256") == 1
    assert feed_all(f, make_chunks(blob, name="riverbed", version=20))[-1] is True
    assert f.version == 20


def test_malformed_chunks_of_one_snapshot_count_and_log_once(caplog):
    f, registry = follower()
    f.serve_fresh()
    chunks = make_chunks(b"z" * 1000, name="riverbed", version=3, chunk_bytes=100, snapshot_id="broken")
    chunks = [type(c)(c.key, c.value, [(k, v) for k, v in c.headers if k != H_VERSION]) for c in chunks]
    with caplog.at_level(logging.WARNING, logger="stream.scale.follower"):
        assert not any(feed_all(f, chunks))
    assert sample(registry, "riverbed_snapshots_rejected_total", reason="malformed") == 1
    assert len(caplog.records) == 1 and "malformed" in caplog.records[0].message
    assert f.version == 0
