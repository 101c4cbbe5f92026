"""Prequential's one-pass scorers give River's values to the bit, for every metric of every task.

The reference is River itself: its own metric classes (``river_metric``), cumulative and wrapped
in ``utils.Rolling``, fed the prediction River's ``progressive_val_score`` would feed them.
"""

from __future__ import annotations

import pickle
import random

import pytest
from river import utils
from river.metrics.base import ClassificationMetric

from learners.evaluation import Prequential
from learners.fingerprints import fingerprint
from learners.metrics import metric_names, river_metric


def stream(rng: random.Random, task: str, n: int):
    """(y_true, y_pred, proba) triples, with unscorable predictions (None / {}) now and then."""
    classes = [True, False] if task == "binary" else ["a", "b", "c"]
    for _ in range(n):
        if task == "regression":
            y = rng.uniform(0.5, 20.0)
            yield y, (None if rng.random() < 0.02 else max(0.01, y + rng.gauss(0, 2))), None
            continue
        y = rng.choice(classes)
        if rng.random() < 0.02:
            yield y, None, {}
            continue
        weights = [rng.choice([rng.random(), 0.0, 1.0, 1 / 9, round(rng.random(), 1)]) for _ in classes]
        total = sum(weights) or 1.0
        proba = {c: w / total for c, w in zip(classes, weights)}
        yield y, max(proba, key=proba.get), proba


class Reference:
    """River's classes, updated the way River's progressive validation does it."""

    def __init__(self, names, task, window):
        self.metrics = {name: river_metric(name, task) for name in names}
        self.rolling = {name: utils.Rolling(type(m), window_size=window) for name, m in self.metrics.items()}

    def update(self, y, y_pred, proba):
        for name, metric in self.metrics.items():
            uses_proba = isinstance(metric, ClassificationMetric) and not metric.requires_labels
            prediction = proba if uses_proba else y_pred
            if prediction is None or prediction == {}:
                continue
            metric.update(y, prediction)
            self.rolling[name].update(y, prediction)

    def values(self):
        return {name: float(m.get()) for name, m in self.metrics.items()}

    def rolling_values(self):
        return {name: complex(r.get()).real if isinstance(r.get(), complex) else float(r.get())
                for name, r in self.rolling.items()}


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("window", [1, 7, 200])
def test_every_metric_matches_river_after_every_label(task, window):
    rng = random.Random(hash((task, window)) % 1000)
    # River's rolling R2 divides by zero when its window of one empties (River's own code path)
    names = [name for name in metric_names(task) if not (name == "r2" and window == 1)]
    ours, reference = Prequential.from_names(names, task, window=window), Reference(names, task, window)
    for i, (y, y_pred, proba) in enumerate(stream(rng, task, 1500)):
        ours.update(y, y_pred, proba)
        reference.update(y, y_pred, proba)
        if i % 97 == 0 or i > 1450:
            assert ours.values() == {n: v if n not in ours.unscored else None for n, v in reference.values().items()}
            rolling = ours.rolling_values()
            assert rolling == {n: rolling[n] if rolling[n] is None else v
                               for n, v in reference.rolling_values().items()}
            assert all(v is not None for v in rolling.values()) or i < 50
        if i == 700:  # a checkpoint and restore mid-stream: the scorers are rebuilt from the window
            ours = pickle.loads(pickle.dumps(ours))


def test_pickle_is_what_it_was_and_restore_continues_identically():
    rng = random.Random(3)
    data = list(stream(rng, "binary", 900))
    names = ["accuracy", "logloss", "rocauc", "f1"]
    straight, restored = Prequential.from_names(names, "binary", 50), Prequential.from_names(names, "binary", 50)
    for k, (y, y_pred, proba) in enumerate(data):
        straight.update(y, y_pred, proba)
        restored.update(y, y_pred, proba)
        if k in (10, 49, 50, 51, 400):
            blob = pickle.dumps(restored)
            assert b"_plan" not in blob  # derived state is never checkpointed
            restored = pickle.loads(blob)
    assert fingerprint(straight) == fingerprint(restored)
    assert straight.values() == restored.values() and straight.rolling_values() == restored.rolling_values()


def test_set_window_starts_a_new_window_for_the_scorers():
    evaluation = Prequential.from_names(["accuracy", "logloss", "rocauc"], "binary", window=3)
    for y, p in [(True, 0.9), (False, 0.8), (True, 0.7), (True, 0.2)]:
        evaluation.update(y, p > 0.5, {True: p, False: 1 - p})
    evaluation.set_window(2)
    assert evaluation.rolling_values() == {"accuracy": None, "logloss": None, "rocauc": None}
    reference = Reference(["accuracy", "logloss", "rocauc"], "binary", 2)
    for y, p in [(False, 0.1), (True, 0.6), (False, 0.55)]:
        evaluation.update(y, p > 0.5, {True: p, False: 1 - p})
        reference.update(y, p > 0.5, {True: p, False: 1 - p})
        assert evaluation.rolling_values() == reference.rolling_values()
