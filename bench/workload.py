"""The benchmark's data and its upper bound.

One workload is used by every row: ``n`` samples of a seeded River dataset (SEA by default),
turned into events and labels by :func:`stream.devtools.replay.schedule` with a label delay of 100 events,
exactly what ``riverbed produce --label-delay 100`` publishes. Every event has one label, so a
rate in events/s means that many predictions *and* that many learned labels per second.

:func:`bare_river_rate` is **the limit P**: the same model and the same feature dicts in a plain
in-process loop (``predict_proba_one`` + argmax for every event, ``learn_one`` for every label,
joined through a dict), no Kafka, no decoding, no metrics, no state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from learners import build_model
from stream.devtools.datasets import open_dataset
from stream.devtools.replay import schedule

LABEL_DELAY = 100
SEED = 42


@dataclass(frozen=True)
class Workload:
    dataset: str
    n: int
    label_delay: int = LABEL_DELAY
    seed: int = SEED

    def records(self, id_prefix: str = "b"):
        """The events and labels, in the order ``simulate_qa(..., delay=label_delay)`` reveals them."""
        samples = open_dataset(self.dataset, limit=self.n, seed=self.seed)
        return schedule(samples.rows, label_delay=self.label_delay, seed=self.seed, id_prefix=id_prefix)


def bare_river_rate(workload: Workload, preset: str) -> dict:
    """Events/s of the bare River loop (the limit P) on ``workload``'s feature dicts."""
    ops = [(r.kind == "event", r.id, r.value["x"] if r.kind == "event" else r.value["y"])
           for r in workload.records()]
    model = build_model(preset, "binary")
    predict, learn = model.predict_proba_one, model.learn_one
    pending: dict = {}
    n_events = 0
    started = time.perf_counter()
    for is_event, event_id, value in ops:
        if is_event:
            proba = predict(value)
            _y_pred = max(proba, key=proba.get) if proba else None
            pending[event_id] = value
            n_events += 1
        else:
            learn(pending.pop(event_id), value)
    seconds = time.perf_counter() - started
    return {"events": n_events, "labels": len(ops) - n_events, "seconds": seconds, "rate": n_events / seconds,
            "accuracy": reference_accuracy(ops, preset)}


def reference_accuracy(ops: list, preset: str) -> float:
    """Prequential accuracy of a fresh model on ``ops`` (an untimed second pass): what a peer row must match."""
    model = build_model(preset, "binary")
    pending: dict = {}
    correct = labels = 0
    for is_event, event_id, value in ops:
        if is_event:
            proba = model.predict_proba_one(value)
            pending[event_id] = (value, max(proba, key=proba.get) if proba else None)
        else:
            x, y_pred = pending.pop(event_id)
            correct += y_pred == value
            labels += 1
            model.learn_one(x, value)
    return correct / labels if labels else 0.0
