"""The record handlers without Kafka: in-memory stores, a list as the output, a real ModelSet.

What they must do is in the docstring of ``stream/engine/handlers.py``: an event becomes a
prediction and a pending entry, a label is scored and learned once, and any per-record failure
of a model is a dead letter with the reason -- the same on every replay.
"""

from __future__ import annotations

from typing import NamedTuple

import msgpack
from river import base, linear_model, preprocessing

from learners import ModelSet
from state.pending import MemoryExpiringStore
from stream.engine.codecs import Event, InvalidMessage, Label, OutputCodec
from stream.engine.handlers import Decoded, RecordHandlers, Topics
from stream.engine.merge import Item
from stream.engine.stream_state import StreamState

TOPICS = Topics("events", "labels", "predictions", "deadletter", "label-requests")


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class ListSink:
    def __init__(self):
        self.messages: list[tuple[str, bytes | None, bytes | None, list]] = []

    def add(self, topic, key, value, headers=()):
        self.messages.append((topic, key, value, list(headers)))

    def on(self, topic: str) -> list:
        return [m for m in self.messages if m[0] == topic]


class Picky(base.Classifier):
    """Needs feature ``a`` to predict; its ``learn_one`` raises on its 3rd call (counted in its state)."""

    def __init__(self):
        self.inner = linear_model.LogisticRegression()
        self.calls = 0

    def learn_one(self, x, y):
        self.calls += 1
        if self.calls == 3:
            raise ValueError("third call\nsecond line")
        self.inner.learn_one(x, y)

    def predict_proba_one(self, x):
        x["a"]  # noqa: B018 - a KeyError when the feature is missing
        return self.inner.predict_proba_one(x)


def handlers(model=None) -> tuple[RecordHandlers, ListSink]:
    model = model if model is not None else preprocessing.StandardScaler() | linear_model.LogisticRegression()
    models = ModelSet.single("m", model, "binary", ["accuracy"])
    sink = ListSink()
    h = RecordHandlers(StreamState(models=models), MemoryExpiringStore(), MemoryExpiringStore(), sink,
                       OutputCodec("msgpack"), TOPICS, ttl_s=1e9)
    return h, sink


def event(i: int, x: dict, ts: float) -> Item:
    return Item(ts, i, Decoded(Event(f"e{i}", x, ts), Record("events", 0, i, f"e{i}".encode(), b"raw")))


def label(i: int, offset: int, y, ts: float) -> Item:
    return Item(ts, offset, Decoded(Label(f"e{i}", y, ts), Record("labels", 0, offset, f"e{i}".encode(), b"raw")))


def reasons(sink: ListSink) -> list[str]:
    return [dict(h)["reason"].decode() for _, _, _, h in sink.on("deadletter")]


def test_an_event_is_predicted_and_kept_until_its_label_arrives():
    h, sink = handlers()
    h.apply([event(0, {"a": 1.0}, 1.0)])
    (topic, key, value, _), = sink.on("predictions")
    message = msgpack.unpackb(value)  # default settings: proba keys are strings
    assert key == b"e0" and message["id"] == "e0" and message["version"] == 0
    assert h.pending.get("e0") is not None and h.state.counts["events"] == 1
    h.apply([label(0, 0, True, 2.0)])
    assert h.pending.get("e0") is None and h.learned.get("e0") is not None
    assert h.state.counts["joined"] == 1 and h.state.models.serving_model.n_learned == 1
    h.apply([label(0, 1, True, 3.0), label(9, 2, True, 3.0)])
    assert (h.state.counts["duplicate_labels"], h.state.counts["unmatched_labels"]) == (1, 1)
    assert h.state.offsets == {("events", 0): 1, ("labels", 0): 3}


def test_invalid_records_are_dead_lettered_unchanged_with_where_they_came_from():
    h, sink = handlers()
    bad = Record("events", 0, 7, b"k", b"\x00garbage")
    h.apply([Item(None, 7, Decoded(InvalidMessage("undecodable", "why"), bad))])
    (_, key, value, headers), = sink.on("deadletter")
    assert (key, value) == (b"k", b"\x00garbage")
    assert dict(headers) == {"source_topic": b"events", "source_partition": b"0", "source_offset": b"7",
                             "reason": b"undecodable", "detail": b"why"}
    assert h.state.invalid_by_reason == {"events:undecodable": 1} and h.state.offsets[("events", 0)] == 8


def test_a_model_that_cannot_predict_an_event_dead_letters_it_and_goes_on():
    h, sink = handlers(Picky())
    h.apply([event(0, {"b": 1.0}, 1.0), event(1, {"a": 1.0}, 2.0)])
    assert reasons(sink) == ["model_predict_failed"]
    assert dict(sink.on("deadletter")[0][3])["detail"] == b"KeyError: 'a'"
    assert [msgpack.unpackb(v)["id"] for _, _, v, _ in sink.on("predictions")] == ["e1"]
    assert h.pending.get("e0") is None and h.state.counts["events"] == 1


def test_a_failed_learn_is_a_dead_letter_and_a_corrected_label_is_still_learned():
    h, sink = handlers(Picky())
    items = [event(i, {"a": float(i)}, float(i)) for i in range(4)]
    h.apply(items)
    h.apply([label(0, 0, True, 10.0), label(1, 1, False, 11.0), label(2, 2, True, 12.0)])  # 3rd learn raises
    assert reasons(sink) == ["model_learn_failed"]
    assert dict(sink.on("deadletter")[0][3])["detail"] == b"ValueError: third call"
    assert h.pending.get("e2") is not None and h.learned.get("e2") is None  # kept for a corrected label
    h.apply([label(2, 3, True, 13.0)])
    assert h.learned.get("e2") is not None and h.state.counts["joined"] == 3


def test_the_same_records_give_the_same_model_failures_included():
    def run():
        h, sink = handlers(Picky())
        h.apply([event(i, {"a": float(i % 5)} if i % 7 else {"b": 1.0}, float(i)) for i in range(60)])
        h.apply([label(i, i, i % 3 == 0, 100.0 + i) for i in range(60)])
        return h.state.models.fingerprint(), reasons(sink), dict(h.state.counts)

    assert run() == run()
    fingerprint, dead, counts = run()
    assert dead.count("model_predict_failed") == 9 and dead.count("model_learn_failed") == 1
    assert counts["joined"] == 60 - 9 - 1


def test_a_slice_stops_at_its_time_budget_and_says_so():
    h, _ = handlers()
    items = iter([event(i, {"a": 1.0}, float(i)) for i in range(200)])
    n = h.apply(items, until=0.0)  # already past: stops at the first check (every 64 records)
    assert n == 64 and h.sliced and h.state.counts["events"] == 64
