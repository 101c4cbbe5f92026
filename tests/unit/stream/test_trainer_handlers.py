"""The trainer's handlers and snapshot publisher without Kafka: in-memory stores, a list as the output.

What they must do is in the docstrings of ``stream/scale/trainer.py`` and
``stream/scale/publisher.py``: a served event makes a pending entry and no prediction, a label
is learned and scored against the prediction the scorer served, staleness is observed, a
malformed served record is dead-lettered, and snapshots are published at start, every N labels
or T seconds, with strictly increasing versions.
"""

from __future__ import annotations

from typing import NamedTuple

import msgpack
import pytest
from prometheus_client import CollectorRegistry
from river import linear_model, metrics, preprocessing

from learners import ModelSet
from learners.active import LabelRequestSampler
from state.pending import MemoryExpiringStore
from stream.engine.codecs import Label, OutputCodec
from stream.engine.handlers import Decoded, Topics
from stream.engine.merge import Item
from stream.engine.stream_state import StreamState
from stream.scale.metrics import TrainerMetrics
from stream.scale.publisher import SnapshotPublisher
from stream.scale.served import encode_served
from stream.scale.snapshots import reassemble_all, verify_snapshot
from stream.scale.trainer import ServedDecoder, TrainerHandlers
from stream.engine.decoding import FeaturePipeline

TOPICS = Topics("served", "labels", "predictions", "deadletter", "label-requests")


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0


class ListSink:
    def __init__(self):
        self.messages: list[tuple[str, bytes | None, bytes | None, list]] = []

    def add(self, topic, key, value, headers=()):
        self.messages.append((topic, key, value, list(headers)))

    def on(self, topic: str) -> list:
        return [m for m in self.messages if m[0] == topic]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def model_set() -> ModelSet:
    return ModelSet.single("m", preprocessing.StandardScaler() | linear_model.LogisticRegression(), "binary",
                           ["accuracy", "logloss"])


def trainer(sampler=None, publisher_options: dict | None = None):
    state = StreamState(models=model_set(), sampler=sampler)
    sink = ListSink()
    registry = CollectorRegistry()
    scale_metrics = TrainerMetrics(registry)
    publisher = None
    if publisher_options is not None:
        publisher = SnapshotPublisher(state, sink, topic="models", name="m", metrics=scale_metrics,
                                      **publisher_options)
    h = TrainerHandlers(state, MemoryExpiringStore(), MemoryExpiringStore(), sink, OutputCodec("msgpack"), TOPICS,
                        ttl_s=1e9, publisher=publisher, metrics=scale_metrics)
    return h, sink, registry


def served_raw(i: int, x: dict, ts: float, y_pred, p_true: float, version: int, model: str = "m") -> bytes:
    record = [["m", y_pred, [[False, 1.0 - p_true], [True, p_true]]]]
    return encode_served(f"e{i}", x, ts, record, model, version)


def decode(records: list[Record]) -> list[Item]:
    decoder = ServedDecoder("served", FeaturePipeline(), 1_000_000, "binary")
    return decoder.decode_batch("served", records)


def served(i: int, x: dict, ts: float, y_pred=True, p_true: float = 0.8, version: int = 0) -> Item:
    (item,) = decode([Record("served", 0, i, f"e{i}".encode(), served_raw(i, x, ts, y_pred, p_true, version))])
    return item


def label(i: int, offset: int, y, ts: float) -> Item:
    return Item(ts, offset, Decoded(Label(f"e{i}", y, ts), Record("labels", 0, offset, f"e{i}".encode(), b"raw")))


def sample(registry: CollectorRegistry, name: str, **labels) -> float | None:
    return registry.get_sample_value(name, labels or None)


def test_a_served_event_is_kept_pending_and_predicts_nothing():
    h, sink, _ = trainer()
    h.apply([served(0, {"a": 1.0}, 10.0, version=3)])
    assert sink.messages == []  # no prediction, no label request, no dead letter
    x, ts, record, version = msgpack.unpackb(h.pending.get("e0"), raw=False, strict_map_key=False)
    assert (x, ts, version) == ({"a": 1.0}, 10.0, 3)
    assert record == [["m", True, [[False, pytest.approx(0.2)], [True, 0.8]]]]
    counts = h.state.counts
    assert (counts["events"], counts["predictions"]) == (1, 0)
    assert h.state.models.events_seen == 1  # counted for the label-free monitors
    assert h.state.offsets == {("served", 0): 1}


def test_a_label_is_learned_and_scored_against_the_served_prediction():
    h, _, _ = trainer()
    # the scorer served "False" with p(True) = 0.3, whatever the trainer's own model would say
    h.apply([served(0, {"a": 1.0}, 10.0, y_pred=False, p_true=0.3), served(1, {"a": -1.0}, 11.0, y_pred=True,
                                                                           p_true=0.6)])
    h.apply([label(0, 0, True, 12.0), label(1, 1, True, 13.0)])
    model = h.state.models.serving_model
    assert h.state.counts["joined"] == 2 and model.n_learned == 2
    assert h.pending.get("e0") is None and h.learned.get("e0") is not None
    accuracy, logloss = metrics.Accuracy(), metrics.LogLoss()
    for y_pred, p_true in ((False, 0.3), (True, 0.6)):
        accuracy.update(True, y_pred)
        logloss.update(True, {False: 1 - p_true, True: p_true})
    values = model.evaluation.values()
    assert values["accuracy"] == accuracy.get() == 0.5
    assert values["logloss"] == pytest.approx(logloss.get(), abs=1e-12)


def test_learning_does_not_depend_on_the_served_predictions():
    def run(y_pred, p_true, version):
        h, _, _ = trainer()
        h.apply([served(i, {"a": float(i % 7), "b": float(i % 3)}, float(i), y_pred, p_true, version)
                 for i in range(50)])
        h.apply([label(i, i, i % 2 == 0, 100.0 + i) for i in range(50)])
        return h.state.models.serving_model.fingerprint(), h.state.models.serving_model.evaluation.values()

    (a, metrics_a), (b, metrics_b) = run(True, 0.9, 0), run(False, 0.2, 40)
    assert a == b and metrics_a != metrics_b


def test_an_event_served_again_is_skipped_and_counted_and_the_first_stands():
    h, _, registry = trainer()
    h.apply([served(0, {"a": 1.0}, 1.0, y_pred=True, p_true=0.9, version=2),
             served(0, {"a": 1.0}, 1.0, y_pred=False, p_true=0.1, version=5)])  # a scorer re-served it
    assert h.state.counts["events"] == 1 and h.state.models.events_seen == 1
    assert msgpack.unpackb(h.pending.get("e0"), raw=False, strict_map_key=False)[3] == 2
    h.apply([label(0, 0, True, 2.0), served(0, {"a": 1.0}, 1.0, version=9)])  # again, after it was learned
    assert h.state.counts["events"] == 1 and h.pending.get("e0") is None
    assert h.state.models.serving_model.evaluation.values()["accuracy"] == 1.0  # scored against the first
    assert sample(registry, "riverbed_served_duplicates_total") == 2


def test_staleness_is_labels_learned_before_minus_the_served_version():
    h, _, registry = trainer()
    versions = [0, 0, 1, 10]  # the last one is ahead of the trainer (as after a restart): 0
    h.apply([served(i, {"a": float(i)}, float(i), version=v) for i, v in enumerate(versions)])
    h.apply([label(i, i, True, 10.0 + i) for i in range(4)])  # learned before: 0, 1, 2, 3
    name = "riverbed_served_staleness_labels"
    assert sample(registry, f"{name}_count") == 4
    assert sample(registry, f"{name}_sum") == 0 + 1 + 1 + 0
    assert sample(registry, f"{name}_bucket", le="0.0") == 2
    assert sample(registry, f"{name}_bucket", le="10.0") == 4


def test_malformed_served_records_are_dead_lettered_and_the_stream_goes_on():
    bad = [
        (b"\xc1 not msgpack", "undecodable"),
        (msgpack.packb({"id": "e9", "x": {"a": 1.0}, "ts": 1.0}), "undecodable"),  # no record, model, version
        (served_raw(9, {"a": 1.0}, 1.0, True, 0.5, 0, model="other"), "undecodable"),  # no champion prediction
        (served_raw(9, {"a": float("nan")}, 1.0, True, 0.5, 0), "non_finite"),
        (served_raw(9, {"a": [1, 2]}, 1.0, True, 0.5, 0), "bad_feature_value"),
        (served_raw(9, {"a": 1.0}, float("inf"), True, 0.5, 0), "bad_ts"),
        (None, "empty"),
    ]
    records = [Record("served", 0, i, b"e9", raw) for i, (raw, _) in enumerate(bad)]
    records.append(Record("served", 0, len(bad), b"e0", served_raw(0, {"a": 1.0}, 5.0, True, 0.7, 0)))
    h, sink, _ = trainer()
    h.apply(decode(records))
    dead = sink.on("deadletter")
    assert [dict(headers)["reason"].decode() for _, _, _, headers in dead] == [reason for _, reason in bad]
    assert [value for _, _, value, _ in dead] == [raw for raw, _ in bad]  # unchanged
    assert h.state.counts["invalid"] == len(bad) and h.state.counts["events"] == 1
    assert h.pending.get("e0") is not None and h.pending.get("e9") is None
    assert h.state.offsets == {("served", 0): len(bad) + 1}


def test_label_requests_carry_the_served_model_and_version():
    sampler = LabelRequestSampler(budget=1000, window_s=1e9, strategy="random", seed=1)
    h, sink, _ = trainer(sampler=sampler)
    h.apply([served(i, {"a": float(i)}, float(i), p_true=0.55, version=7) for i in range(20)])
    requests = [msgpack.unpackb(v, strict_map_key=False) for _, _, v, _ in sink.on("label-requests")]
    assert requests and len(requests) == h.state.counts["label_requests"]
    assert all((r["model"], r["version"], r["y_pred"]) == ("m", 7, True) for r in requests)
    assert all(r["proba"] == {"false": pytest.approx(0.45), "true": 0.55} for r in requests)


def test_snapshots_at_start_every_n_labels_and_after_the_interval():
    clock = Clock()
    h, sink, registry = trainer(publisher_options=dict(every_labels=3, interval_s=5.0, chunk_bytes=512,
                                                       clock=clock))
    h.apply([])  # the first slice publishes the restored (here: fresh) model
    h.apply([served(i, {"a": float(i % 4)}, float(i)) for i in range(10)])
    h.apply([label(0, 0, True, 20.0), label(1, 1, False, 21.0)])  # 2 < 3 labels, no time passed: none
    h.apply([label(2, 2, True, 22.0), label(3, 3, True, 23.0)])  # 4 >= 3: one snapshot at version 4
    h.apply([label(4, 4, True, 24.0)])
    h.apply([])
    clock.now = 5.0  # interval passed with 1 label learned since: a snapshot
    h.apply([])
    clock.now = 20.0  # nothing learned since: none
    h.apply([])

    records = [(value, headers) for topic, _, value, headers in sink.messages if topic == "models"]
    snapshots = reassemble_all(records)
    assert [s.version for s in snapshots] == [0, 4, 5]
    assert len(records) > len(snapshots)  # chunked: the model set is larger than 512 bytes
    assert all(key.startswith(b"m/") for topic, key, _, _ in sink.messages if topic == "models")
    restored = verify_snapshot(snapshots[-1])["models"]
    assert restored.serving_model.fingerprint() == h.state.models.serving_model.fingerprint()
    assert snapshots[-1].offsets == {"labels:0": 5, "served:0": 10}
    assert sample(registry, "riverbed_snapshots_published_total") == 3
    assert sample(registry, "riverbed_snapshot_published_version") == 5
    assert sample(registry, "riverbed_snapshot_bytes") == len(snapshots[-1].blob)
    assert sample(registry, "riverbed_snapshot_seal_seconds_count") == 3
