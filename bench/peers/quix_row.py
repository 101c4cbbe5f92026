"""The pipeline as a Quix Streams 3.28 user writes it.

Application (``quixstreams.Application``, one process):

- ``app.dataframe`` over the events topic ``concat`` the one over the labels topic (Quix aligns
  the two by Kafka record timestamp, not by a payload time), values decoded from msgpack by a
  small ``Deserializer`` (Quix ships none for msgpack), keys as strings (the event id);
- ``.apply(join, stateful=True)``: RocksDB state per message key (the id): an event's ``x`` is
  kept until its label comes (a label that comes first waits as the state instead); when both are
  there the state is deleted and the pair goes on;
- the River model is one Python object of the application (Quix has no global state short of a
  ``group_by`` onto a constant key, which repartitions through an extra topic): every event is
  predicted and every joined label learned in the order the dataframe delivers them;
- predictions serialized with msgpack ``.to_topic`` the predictions topic.

``spec["guarantee"]`` is Quix's ``processing_guarantee``: ``"at-least-once"`` (its default) or
``"exactly-once"`` (Kafka transactions). State changelog topics are on (Quix's default, its
recovery). The clock starts when the first record reaches the join and stops when
``Application.run`` returns (stopped once every event was predicted and every label learned;
its last commit and producer flush included). Plaintext only.
"""

from __future__ import annotations

import tempfile
import time

import msgpack


def run_quix(spec: dict) -> dict:
    from quixstreams import Application
    from quixstreams.models.serializers import Deserializer, Serializer

    from learners import build_model

    class MsgpackDeserializer(Deserializer):
        def __call__(self, value: bytes, ctx):
            return msgpack.unpackb(value, raw=False)

    class MsgpackSerializer(Serializer):
        def __call__(self, value, ctx) -> bytes:
            return msgpack.packb(value)

    preset, topics, n = spec["preset"], spec["topics"], spec["n"]
    guarantee = spec.get("guarantee", "at-least-once")
    model = build_model(preset, "binary")
    # measurement only (not application state): counts, first-record clock, prequential accuracy
    stats = {"events": 0, "labels": 0, "joined": 0, "early": 0, "correct": 0, "t_first": None}
    y_preds: dict = {}

    with tempfile.TemporaryDirectory(prefix="quix-state-") as state_dir:
        app = Application(
            broker_address=spec["bootstrap"], consumer_group=spec["app_id"], auto_offset_reset="earliest",
            processing_guarantee=guarantee, state_dir=state_dir, loglevel="WARNING",
        )
        events = app.topic(topics["events"], key_deserializer="str", value_deserializer=MsgpackDeserializer())
        labels = app.topic(topics["labels"], key_deserializer="str", value_deserializer=MsgpackDeserializer())
        predictions = app.topic(topics["predictions"], key_serializer="str", value_serializer=MsgpackSerializer())

        def join(value, state):
            if stats["t_first"] is None:
                stats["t_first"] = time.perf_counter()
            if "x" in value:
                stats["events"] += 1
                y = state.get("y")
                if y is None:
                    state.set("x", value["x"])
                    return ("e", value["id"], value["x"], None, value.get("ts"))
                state.delete("y")
                stats["joined"] += 1  # its label came first
                return ("both", value["id"], value["x"], y, value.get("ts"))
            stats["labels"] += 1
            x = state.get("x")
            if x is None:
                stats["early"] += 1
                state.set("y", value["y"])
                return None
            state.delete("x")
            stats["joined"] += 1
            return ("l", value["id"], x, value["y"], None)

        def model_step(item):
            kind, event_id, x, y, ts = item
            out = None
            if kind in ("e", "both"):
                proba = model.predict_proba_one(x)
                y_pred = max(proba, key=proba.get) if proba else None
                y_preds[event_id] = y_pred
                out = {"id": event_id, "y_pred": y_pred, "proba": proba, "model": preset, "ts": ts}
            if kind in ("l", "both"):
                stats["correct"] += y_preds.pop(event_id) == y
                model.learn_one(x, y)
            if stats["events"] >= n and stats["joined"] >= n:
                app.stop()  # Application.run returns after this message (commit and flush included)
            return out

        sdf = app.dataframe(events).concat(app.dataframe(labels))
        sdf = sdf.apply(join, stateful=True).filter(lambda item: item is not None)
        sdf = sdf.apply(model_step).filter(lambda out: out is not None)
        sdf.to_topic(predictions)
        app.run()
        seconds = time.perf_counter() - stats["t_first"]
    return {"events": stats["events"], "labels": stats["labels"], "joined": stats["joined"],
            "early_labels": stats["early"], "accuracy": stats["correct"] / max(1, stats["labels"]),
            "seconds": seconds, "rate": stats["events"] / seconds, "guarantee": guarantee}
