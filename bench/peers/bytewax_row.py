"""The pipeline as a bytewax 0.21 user writes it, recovery on.

Dataflow (one worker, ``bytewax.run.cli_main``):

- ``kop.input`` on the events and on the labels topic (``tail=False``: both are already full, the
  flow ends at their end), ``op.merge``, decode msgpack;
- ``op.key_on`` the id, ``op.stateful_map("join")``: an event's ``x`` is kept as that id's state
  until its label comes (a label that comes first waits as the state instead); when both are
  there the state is dropped and ``(x, y)`` goes on;
- a River model is one global object learned one label at a time, so the model step is a
  ``stateful_map`` under **one constant key** (``"model"``): the model is that key's state, every
  event is predicted there and every joined label learned there, in one worker;
- predictions as ``KafkaSinkMessage`` to ``kop.output``.

Recovery: a SQLite recovery directory made with ``bytewax.recovery.init_db_dir`` and passed as
``RecoveryConfig`` (bytewax snapshots every stateful step's state, the model included, at each
epoch end; default epoch interval 10 s). Plaintext only (no security settings are passed).

The clock starts when the first record reaches the join step and stops when ``cli_main``
returns (input exhausted, sink flushed and closed).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import msgpack


def run_bytewax(spec: dict) -> dict:
    import bytewax.connectors.kafka.operators as kop
    import bytewax.operators as op
    from bytewax.connectors.kafka import KafkaSinkMessage
    from bytewax.dataflow import Dataflow
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.run import cli_main

    from learners import build_model

    preset, topics = spec["preset"], spec["topics"]
    brokers = [spec["bootstrap"]]
    add_config = {"group.id": spec["app_id"]}
    # measurement only (not dataflow state): counts, first-record clock, prequential accuracy
    stats = {"events": 0, "labels": 0, "joined": 0, "early": 0, "correct": 0, "t_first": None}
    y_preds: dict = {}

    def decode(msg):
        if stats["t_first"] is None:
            stats["t_first"] = time.perf_counter()
        value = msgpack.unpackb(msg.value, raw=False)
        if "x" in value:
            return ("e", value["id"], value["x"], value.get("ts"))
        return ("l", value["id"], value["y"], None)

    def join(state, item):
        kind, event_id, value, ts = item
        if kind == "e":
            stats["events"] += 1
            if state is None:
                return ("x", value), ("e", event_id, value, ts)
            stats["joined"] += 1  # its label came first
            return None, ("both", event_id, value, state[1], ts)
        stats["labels"] += 1
        if state is None:
            stats["early"] += 1
            return ("y", value), None
        stats["joined"] += 1
        return None, ("l", event_id, state[1], value, None)

    def model_step(model, item):
        if model is None:
            model = build_model(preset, "binary")
        kind, event_id = item[0], item[1]
        out = None
        if kind in ("e", "both"):
            x = item[2]
            proba = model.predict_proba_one(x)
            y_pred = max(proba, key=proba.get) if proba else None
            y_preds[event_id] = y_pred
            out = KafkaSinkMessage(event_id.encode(), msgpack.packb(
                {"id": event_id, "y_pred": y_pred, "proba": proba, "model": preset, "ts": item[-1]}))
        if kind in ("l", "both"):
            x, y = item[2], item[3]
            stats["correct"] += y_preds.pop(event_id) == y
            model.learn_one(x, y)
        return model, out

    flow = Dataflow("riverbed_bench")
    events = kop.input("events", flow, brokers=brokers, topics=[topics["events"]], tail=False, add_config=add_config)
    labels = kop.input("labels", flow, brokers=brokers, topics=[topics["labels"]], tail=False, add_config=add_config)
    records = op.map("decode", op.merge("merge", events.oks, labels.oks), decode)
    joined = op.stateful_map("join", op.key_on("by_id", records, lambda item: item[1]), join)
    to_model = op.filter_map("drop_waiting", joined, lambda kv: kv[1])
    predicted = op.stateful_map("model", op.key_on("one_model", to_model, lambda _item: "model"), model_step)
    kop.output("predictions", op.filter_map("only_predictions", predicted, lambda kv: kv[1]),
               brokers=brokers, topic=topics["predictions"])

    with tempfile.TemporaryDirectory(prefix="bytewax-recovery-") as recovery_dir:
        init_db_dir(Path(recovery_dir), 1)
        cli_main(flow, workers_per_process=1, recovery_config=RecoveryConfig(Path(recovery_dir)))
        seconds = time.perf_counter() - stats["t_first"]
    return {"events": stats["events"], "labels": stats["labels"], "joined": stats["joined"],
            "early_labels": stats["early"], "accuracy": stats["correct"] / max(1, stats["labels"]),
            "seconds": seconds, "rate": stats["events"] / seconds}
